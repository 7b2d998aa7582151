"""Building sam2's video model from a config and a checkpoint, with errors that say what to download or change.

sam2 is pinned (1.1.0 = facebookresearch/sam2@2b90b9f): the streaming session (session.py) relies
on its private layout.
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from videomolmo_ros.backends.registry import BackendError

# Short names -> (sam2 config, checkpoint file of Meta's SAM 2.1 release).
MODELS = {
    "tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "base_plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}
RELEASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"


@dataclass(frozen=True)
class Sam2Options:
    config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"  # or tiny, small, base_plus, large
    checkpoint: str = ""  # path to the matching .pt (e.g. sam2.1_hiera_tiny.pt); required
    image_size: int = 0  # model input side in px, multiple of 32; 0: the config's (1024)
    config_overrides: str = ""  # advanced: space-separated hydra overrides of the config
    memory_frames: int = 16  # recent tracked frames kept per object (the model reads 6 + 15 pointers)
    max_conditioning_frames: int = 4  # prompted frames kept per object (the first is never pruned)
    feature_cache_frames: int = 4  # frames whose image features are kept for late prompts
    mask_threshold: float = 0.0  # mask logit above which a pixel is the object


def config_name(config: str) -> str:
    """The sam2 config for a short model name, or the config name itself."""
    return MODELS[config][0] if config in MODELS else config


def checkpoint_file(config: str) -> str:
    """The release file that fits a config (tiny's when the config is not a released one)."""
    name = config_name(config)
    return next((ckpt for cfg, ckpt in MODELS.values() if cfg == name), MODELS["tiny"][1])


def check_options(options: Sam2Options) -> None:
    """Refuse settings the model cannot run with, naming the parameter."""
    if options.image_size < 0 or options.image_size % 32:
        raise BackendError(
            f"sam2.image_size {options.image_size}: use 0 (the config's 1024) or a multiple of 32 "
            "(the backbone's 4 px patches in 8-patch windows)"
        )
    if options.memory_frames < 1:
        raise BackendError(f"sam2.memory_frames {options.memory_frames}: keep at least 1 (16 is exact)")
    if options.max_conditioning_frames < 2:
        raise BackendError(
            f"sam2.max_conditioning_frames {options.max_conditioning_frames}: keep at least 2 "
            "(the first prompt and the newest)"
        )
    if options.feature_cache_frames < 1:
        raise BackendError(f"sam2.feature_cache_frames {options.feature_cache_frames}: keep at least 1")


def missing_checkpoint(options: Sam2Options) -> BackendError | None:
    """Say what to download and which parameter to set when the checkpoint is not there."""
    path = Path(options.checkpoint).expanduser()
    if options.checkpoint and path.is_file():
        return None
    wanted = checkpoint_file(options.config)
    where = f"sam2.checkpoint {options.checkpoint!r} is not a file" if options.checkpoint else "no checkpoint"
    return BackendError(
        f"SAM2: {where}. Download {wanted} from Meta's SAM 2.1 release ({RELEASE_URL}{wanted}, or the "
        f"Hugging Face repo facebook/{wanted[:-3].replace('_', '-')}), put it on this machine (e.g. "
        f"~/models/sam2/{wanted}) and set sam2.checkpoint to its path; it must match "
        f"sam2.config ({config_name(options.config)})."
    )


def hydra_overrides(options: Sam2Options) -> list[str]:
    """The config overrides the options ask for: input size (with the RoPE grid it implies), then the user's."""
    overrides = []
    if options.image_size:
        grid = f"[{options.image_size // 16},{options.image_size // 16}]"
        overrides += [
            f"++model.image_size={options.image_size}",
            f"++model.memory_attention.layer.self_attention.feat_sizes={grid}",
            f"++model.memory_attention.layer.cross_attention.feat_sizes={grid}",
        ]
    return overrides + options.config_overrides.split()


def load_sam2(options: Sam2Options, device: torch.device):
    """sam2's own video model (SAM2VideoPredictor, a SAM2Base) with the checkpoint, in eval mode."""
    check_options(options)
    problem = missing_checkpoint(options)
    if problem is not None:
        raise problem
    try:
        from hydra.errors import HydraException
        from sam2.build_sam import build_sam2_video_predictor
    except ImportError as error:
        raise BackendError(
            f"SAM2 needs the sam2 package: see requirements-sam2.txt and the README set-up ({error})"
        ) from error
    config = config_name(options.config)
    checkpoint = str(Path(options.checkpoint).expanduser())
    overrides = hydra_overrides(options)
    try:
        return build_sam2_video_predictor(config, checkpoint, device=device, hydra_overrides_extra=overrides)
    except HydraException as error:
        raise BackendError(
            f"SAM2 config {config!r} with overrides {overrides}: {error} "
            "(check sam2.config, sam2.image_size and sam2.config_overrides)"
        ) from error
    except (pickle.UnpicklingError, EOFError, KeyError) as error:
        raise BackendError(
            f"sam2.checkpoint {checkpoint} is not a SAM2 checkpoint (a torch file holding "
            f"{{'model': state_dict}}, as Meta's release ships): {type(error).__name__}"
        ) from error
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as error:  # load_state_dict: the weights of another model size
        raise BackendError(
            f"SAM2 checkpoint {checkpoint} does not load into config {config} with overrides {overrides}: "
            f"{_shortened(error)}. Does sam2.checkpoint match sam2.config (tiny, small, base_plus, "
            "large)?"
        ) from error


def _shortened(error: Exception, limit: int = 300) -> str:
    """The start of a long error (a state-dict mismatch lists every weight)."""
    text = str(error)
    return text if len(text) <= limit else text[:limit] + " ..."
