"""Building sam2's video model from a config and a checkpoint, with errors that say what to download or change.

sam2 is pinned (1.1.0 = facebookresearch/sam2@2b90b9f): the streaming session (session.py) relies
on its private layout.

The checkpoint is read without running code (safetensors, or torch.load with weights_only) and
checked to be a state dict before it reaches the model. `sam2.config_overrides` can change only
existing numbers and booleans of the config: hydra instantiates any `_target_`, so a free
override would be code.
"""

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from videomolmo_ros.backends.hub import hub_file, is_repo_id
from videomolmo_ros.contracts.interfaces import BackendError, startup_only

# Short names -> (sam2 config, checkpoint file of Meta's SAM 2.1 release).
MODELS = {
    "tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "base_plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}
RELEASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
HUB_OWNER = "facebook"  # facebook/sam2.1-hiera-tiny, ... hold the release's .pt files


@dataclass(frozen=True)
class Sam2Options:
    config: str = startup_only("tiny")  # tiny, small, base_plus, large, or a sam2 config name
    # A hub id (downloaded once, then cached) or a local .pt / .safetensors matching the config.
    checkpoint: str = startup_only("facebook/sam2.1-hiera-tiny")
    image_size: int = 0  # model input side in px, multiple of 32; 0: the config's (1024)
    config_overrides: str = startup_only("")  # advanced: space-separated key=value of the config's numbers / bools
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


def hub_repo(config: str) -> str:
    """The hub repository holding the release checkpoint that fits a config (facebook/sam2.1-hiera-tiny, ...)."""
    return f"{HUB_OWNER}/{checkpoint_file(config)[:-3].replace('_', '-')}"


def checkpoint_path(options: Sam2Options) -> str:
    """The local checkpoint: the path given, or the hub id's file (`owner/sam2.1-hiera-x` holds `sam2.1_hiera_x.pt`)
    from the Hugging Face cache, downloaded there first when there is a network."""
    path = Path(options.checkpoint).expanduser()
    if path.is_file():
        return str(path)
    if not is_repo_id(options.checkpoint):
        raise missing_checkpoint(options, f"sam2.checkpoint {options.checkpoint!r} is not a file")
    filename = options.checkpoint.partition("/")[2].replace("-", "_") + ".pt"
    try:
        return hub_file(options.checkpoint, filename)
    except FileNotFoundError as error:
        raise missing_checkpoint(options, str(error)) from error


def missing_checkpoint(options: Sam2Options, why: str) -> BackendError:
    """Say the two ways to a checkpoint: a hub id with internet, or a local .pt."""
    wanted = checkpoint_file(options.config)
    return BackendError(
        f"SAM2 checkpoint not found ({why}). Either set sam2.checkpoint to a Hugging Face hub id "
        f"({hub_repo(options.config)}, downloaded on the first start with internet, then cached), or to a local "
        f".pt: download {wanted} (from that repo or Meta's SAM 2.1 release, {RELEASE_URL}{wanted}), put it on this "
        f"machine (e.g. ~/models/sam2/{wanted}) and set sam2.checkpoint to its path. It must match sam2.config "
        f"({config_name(options.config)})."
    )


_OVERRIDE = re.compile(r"(\+{0,2})([A-Za-z]\w*(?:\.[A-Za-z]\w*)*)=(.+)")  # no segment starting with _


def checked_overrides(options: Sam2Options) -> list[str]:
    """The user's overrides, each setting a number, bool or list of numbers in an existing node of the config.

    An existing key keeps its kind; a new key (`++`) is a leaf of a node the config has. No key
    starts with `_` (`_target_`, `_args_`, ...) and no value is a string, so nothing new is instantiated.
    """
    items = options.config_overrides.split()
    if not items:
        return []
    import sam2  # noqa: F401 - importing it points hydra at sam2's configs
    from hydra import compose
    from omegaconf import DictConfig, OmegaConf

    config = compose(config_name=config_name(options.config))
    for item in items:
        match = _OVERRIDE.fullmatch(item)
        if match is not None:
            _, key, text = match.groups()
            value, current = _plain_value(text), OmegaConf.select(config, key, default=_ABSENT)
            if current is _ABSENT:
                fits = isinstance(OmegaConf.select(config, key.rpartition(".")[0], default=None), DictConfig)
            else:
                fits = _kind(current) == _kind(value)
            if value is not _ABSENT and fits:
                continue
        raise BackendError(
            f"sam2.config_overrides {item[:80]!r} refused: only key=value setting a number, bool or list of "
            f"numbers in a node the config {config_name(options.config)} has, of the kind it holds there "
            "(no _target_ or other _ keys, no strings, no new nodes)"
        )
    return items


_ABSENT = object()


def _plain_value(text: str):
    """A bool, number or flat list of numbers written as hydra takes it; _ABSENT for anything else."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return _ABSENT
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-3 as a string
        except ValueError:
            return _ABSENT
    if isinstance(value, list) and all(_kind(v) == "number" for v in value):
        return value
    return value if _kind(value) in ("bool", "number") else _ABSENT


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    from omegaconf import ListConfig

    return "list" if isinstance(value, list | ListConfig) else "other"


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
    return overrides + checked_overrides(options)


def load_sam2(options: Sam2Options, device: torch.device):
    """sam2's own video model (SAM2VideoPredictor, a SAM2Base) with the checkpoint, in eval mode."""
    check_options(options)
    checkpoint = checkpoint_path(options)
    try:
        from hydra.errors import HydraException
        from sam2.build_sam import build_sam2_video_predictor
    except ImportError as error:
        raise BackendError(
            f"SAM2 needs the sam2 package: see requirements-sam2.txt and docs/setup.md ({error})"
        ) from error
    config = config_name(options.config)
    overrides = hydra_overrides(options)
    state = read_state_dict(Path(checkpoint))
    try:
        model = build_sam2_video_predictor(config, None, device="cpu", hydra_overrides_extra=overrides)
        model.load_state_dict(state, strict=True)
        return model.to(device)
    except HydraException as error:
        raise BackendError(
            f"SAM2 config {config!r} with overrides {overrides}: {error} "
            "(check sam2.config, sam2.image_size and sam2.config_overrides)"
        ) from error
    except torch.OutOfMemoryError:
        raise
    except RuntimeError as error:  # load_state_dict: the weights of another model size
        raise BackendError(
            f"SAM2 checkpoint {checkpoint} does not load into config {config} with overrides {overrides}: "
            f"{_shortened(error)}. Does sam2.checkpoint match sam2.config (tiny, small, base_plus, "
            "large)?"
        ) from error


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors, read without running code: safetensors, or torch.load with weights_only.

    A .pt must hold {'model': state_dict} as Meta's release ships; anything else is a clear error.
    """
    not_one = (
        f"sam2.checkpoint {path} is not a SAM2 checkpoint (a .safetensors, or a .pt holding {{'model': state_dict}})"
    )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = state.get("model") if isinstance(state, dict) else None
    except (pickle.UnpicklingError, EOFError, OSError, ValueError, RuntimeError) as error:
        raise BackendError(f"{not_one}: {type(error).__name__}: {_shortened(error, 120)}") from error
    if not (isinstance(state, dict) and state and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise BackendError(f"{not_one}: it holds no tensors by name")
    return state


def _shortened(error: Exception, limit: int = 300) -> str:
    """The start of a long error (a state-dict mismatch lists every weight)."""
    text = str(error)
    return text if len(text) <= limit else text[:limit] + " ..."
