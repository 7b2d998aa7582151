"""SAM2 (Meta's `sam2` package) as a streaming mask propagator with bounded memory.

The stock `SAM2VideoPredictor` does not stream: `init_state` reads a whole video up front, fixes
the frame count, and keeps every frame's state, so its memory grows without bound on a camera.
This backend drives the model itself, one frame at a time:

- Frames are numbered in the order they are stepped (the model's temporal positions count frames
  processed, as `propagate_in_video` does on a video); a frame is identified by its stamp, never
  by `seq` (prompts can come from another buffer with its own seq space). A prompt on a frame that
  was stepped lands on that frame's number; on a frame that was not stepped, on the stepped frame
  nearest in time; on a frame newer than any stepped one, on a number reserved for it, which the
  step of that frame then reuses (the pipeline steps its newest frame, so later steps are newer).
- Each object keeps its conditioning (prompted) frames, at most `max_conditioning_frames` (the
  first is never pruned, the oldest other goes first), and the memories of its last
  `memory_frames` tracked frames. The model reads every conditioning frame, the 6 most recent
  memory frames and object pointers from up to 15 frames back, so 16 recent frames lose nothing.
- Objects are independent (as in sam2 1.1.0's predictor): adding or refreshing one never resets
  the others. Each object is a batch-of-one `track_step` over the frame's shared image features,
  so the cost is one backbone pass per frame plus one memory-attention/decoder pass per object.
- A prompt conditions on its clicks alone (an initial conditioning frame, no memory): the
  grounding model re-detected the object, and memory that drifted must not bend the new mask.
- Image features are computed once per frame and the last `feature_cache_frames` are kept by
  stamp, so a prompt on a recently stepped frame reuses them.
- With the default 16 recent frames and prompts on the first frame, the masks are exactly those of
  sam2's `propagate_in_video` on the same frames (the tests check it), at a constant memory instead
  of one that grows with every frame.
- `propagate` runs a clip in a separate session (prompts on its first or last frame), for the
  backward pass of VideoMolmo's bidirectional mask fusion.

sam2 is pinned (1.1.0 = facebookresearch/sam2@2b90b9f) because this module calls the private
`SAM2Base._prepare_backbone_features` (flatten the backbone output) besides the public
`forward_image` and `track_step`, and relies on the layout `track_step` reads from its
`output_dict` (`cond_frame_outputs` / `non_cond_frame_outputs` of dicts with `maskmem_features`,
`maskmem_pos_enc`, `obj_ptr`, `object_score_logits`) and on the `fill_hole_area` attribute of
`SAM2VideoPredictor`.
"""

import copy
import importlib.util
import pickle
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.functional import interpolate

from videomolmo_ros.backend_registry import BackendError
from videomolmo_ros.frame_buffer import Frame
from videomolmo_ros.interfaces import MaskPropagator, ObjectMask

# Short names -> (sam2 config, checkpoint file of Meta's SAM 2.1 release).
MODELS = {
    "tiny": ("configs/sam2.1/sam2.1_hiera_t.yaml", "sam2.1_hiera_tiny.pt"),
    "small": ("configs/sam2.1/sam2.1_hiera_s.yaml", "sam2.1_hiera_small.pt"),
    "base_plus": ("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt"),
    "large": ("configs/sam2.1/sam2.1_hiera_l.yaml", "sam2.1_hiera_large.pt"),
}
RELEASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_IMAGE_MEAN = (0.485, 0.456, 0.406)  # what sam2's frame loader normalises with
_IMAGE_STD = (0.229, 0.224, 0.225)
# The live stream has no frame count; this only has to exceed every frame number (sam2 caps the
# object pointers it reads at min(num_frames, 16)).
_ENDLESS = 2**62
# Stamps of stepped frames remembered to place prompts on (about 34 s at 30 fps: groundings older
# than max_result_age_s are dropped before they get here).
_TIMELINE_FRAMES = 1024

Features = tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[int, int]]]


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


@dataclass
class _Object:
    """One object's memory: frame number -> sam2's compact per-frame output (what later frames read)."""

    cond: dict[int, dict]  # prompted frames
    recent: dict[int, dict]  # last tracked frames
    first: int  # the first prompted frame, never pruned

    def output_dict(self) -> dict[str, dict[int, dict]]:
        return {"cond_frame_outputs": self.cond, "non_cond_frame_outputs": self.recent}


class _Session:
    """Objects and their bounded memories over one numbering of frames (the live stream, or one clip)."""

    def __init__(self, model, num_frames: int, options: Sam2Options, hole_area: int):
        self.model = model
        self.num_frames = num_frames
        self.options = options
        self.hole_area = hole_area
        self.objects: dict[int, _Object] = {}
        self._pos_enc: list[torch.Tensor] | None = None  # the same for every memory: one copy

    def prompt(self, object_id: int, index: int, features: Features, points: torch.Tensor) -> dict:
        """Condition `object_id` on positive clicks (model pixels, P x 2) on frame `index`."""
        inputs = {
            "point_coords": points[None],
            "point_labels": torch.ones((1, len(points)), dtype=torch.int32, device=points.device),
        }
        obj = self.objects.setdefault(object_id, _Object({}, {}, index))
        out = self._run(index, features, obj, inputs, init=True, reverse=False)
        out["pred_masks"] = self._fill_holes(out["pred_masks"])  # kept: a step may land on this frame
        obj.cond[index] = out
        obj.recent.pop(index, None)
        self._prune_cond(obj)
        return out

    def track(self, object_id: int, index: int, features: Features, reverse: bool) -> dict:
        """The object on frame `index` from its memory; a prompted frame returns its prompt's output."""
        obj = self.objects[object_id]
        if index in obj.cond:
            return obj.cond[index]
        out = self._run(index, features, obj, None, init=False, reverse=reverse)
        masks = self._fill_holes(out.pop("pred_masks"))
        obj.recent[index] = out
        for old in sorted(obj.recent, reverse=reverse)[: -self.options.memory_frames]:
            del obj.recent[old]
        return {**out, "pred_masks": masks}

    def _run(self, index: int, features: Features, obj: _Object, points, init: bool, reverse: bool) -> dict:
        vision_feats, vision_pos, sizes = features
        out = self.model.track_step(
            frame_idx=index,
            is_init_cond_frame=init,
            current_vision_feats=vision_feats,
            current_vision_pos_embeds=vision_pos,
            feat_sizes=sizes,
            point_inputs=points,
            mask_inputs=None,
            output_dict=obj.output_dict(),
            num_frames=self.num_frames,
            track_in_reverse=reverse,
        )
        if self._pos_enc is None:
            self._pos_enc = out["maskmem_pos_enc"]
        return {  # what sam2's predictor keeps per frame; features in bf16 as it does
            "maskmem_features": out["maskmem_features"].to(torch.bfloat16),
            "maskmem_pos_enc": self._pos_enc,
            "obj_ptr": out["obj_ptr"],
            "object_score_logits": out["object_score_logits"],
            "pred_masks": out["pred_masks"],
        }

    def _fill_holes(self, low_res: torch.Tensor) -> torch.Tensor:
        """sam2's output hole filling, as its predictor does it (0: off, as sam2 is without its CUDA extension)."""
        if not self.hole_area:
            return low_res
        from sam2.utils.misc import fill_holes_in_mask_scores

        return fill_holes_in_mask_scores(low_res, self.hole_area)

    def _prune_cond(self, obj: _Object) -> None:
        while len(obj.cond) > self.options.max_conditioning_frames:
            del obj.cond[min(i for i in obj.cond if i != obj.first)]


class Sam2Propagator(MaskPropagator):
    """SAM2 masks carried frame to frame on a live stream, with bounded per-object memory."""

    Options = Sam2Options

    def __init__(self, options: Sam2Options, device: torch.device):
        super().__init__(options, device)
        self.model = load_sam2(options, device)
        self.image_size = int(self.model.image_size)
        # sam2 fills small mask holes with its CUDA extension, and skips it (warning) without one.
        self._hole_area = self.model.fill_hole_area if importlib.util.find_spec("sam2._C") else 0
        self._mean = torch.tensor(_IMAGE_MEAN, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(_IMAGE_STD, device=device).view(1, 3, 1, 1)
        self._cache_lock = threading.Lock()  # propagate() may read the cache from another thread
        self._position_encodings: dict[tuple, torch.Tensor] = {}
        self.reset()

    # ------------------------------------------------------------------ MaskPropagator

    def add_prompts(self, frame: Frame, prompts: Mapping[int, Sequence[tuple[float, float]]]) -> None:
        if not prompts:
            return
        with self._inference():
            index = self._prompt_index(frame.meta.stamp_ns)
            features = self._features(frame)
            for object_id, points in prompts.items():
                self._session.prompt(object_id, index, features, self._model_points(frame, points))

    def step(self, frame: Frame) -> dict[int, ObjectMask]:
        index = self._step_index(frame.meta.stamp_ns)
        if not self._session.objects:
            return {}
        with self._inference():
            features = self._features(frame)
            outs = {i: self._session.track(i, index, features, reverse=False) for i in self._session.objects}
            return self._masks(outs, frame)

    def remove(self, object_ids: Iterable[int]) -> None:
        for object_id in object_ids:
            self._session.objects.pop(object_id, None)

    def reset(self) -> None:
        self._session = _Session(self.model, _ENDLESS, self.options, self._hole_area)
        self._timeline: OrderedDict[int, int] = OrderedDict()  # stamp_ns -> frame number, oldest first
        self._next_index = 0
        with self._cache_lock:
            self._cache: OrderedDict[int, Features] = OrderedDict()

    def for_another_camera(self) -> "Sam2Propagator":
        """Shares the model (and its read-only caches); reset gives the twin its own streaming state."""
        twin = copy.copy(self)
        twin.reset()
        return twin

    # ------------------------------------------------------------------ bidirectional fusion

    def propagate(
        self, frames: Sequence[Frame], prompts: Mapping[int, Sequence[tuple[float, float]]], reverse: bool
    ) -> list[dict[int, ObjectMask]]:
        """Masks on every frame of a clip from prompts on its last frame (reverse) or first frame.

        A separate, temporary session over the clip's own numbering: the live objects, memories and
        frame numbers are untouched (cached image features are read, not added to). Masks come
        back in the order of `frames`.
        """
        if not frames or not prompts:
            return [{} for _ in frames]
        session = _Session(self.model, len(frames), self.options, self._hole_area)
        order = range(len(frames) - 1, -1, -1) if reverse else range(len(frames))
        results: list[dict[int, ObjectMask]] = [{} for _ in frames]
        with self._inference():
            for k in order:
                frame, features = frames[k], self._features(frames[k], keep=False)
                if k == order[0]:
                    outs = {i: session.prompt(i, k, features, self._model_points(frame, p)) for i, p in prompts.items()}
                else:
                    outs = {i: session.track(i, k, features, reverse) for i in session.objects}
                results[k] = self._masks(outs, frame)
        return results

    # ------------------------------------------------------------------ introspection

    def kept_memories(self) -> dict[int, tuple[int, int]]:
        """Per live object: (conditioning frames, recent tracked frames) held in memory."""
        return {i: (len(o.cond), len(o.recent)) for i, o in self._session.objects.items()}

    def state_tensors(self) -> list[torch.Tensor]:
        """Every distinct tensor the live state holds (memories, pointers, cached features)."""
        found: dict[int, torch.Tensor] = {}
        for obj in self._session.objects.values():
            for out in (*obj.cond.values(), *obj.recent.values()):
                for value in out.values():
                    for tensor in value if isinstance(value, list) else [value]:
                        found[id(tensor)] = tensor
        with self._cache_lock:
            for vision_feats, vision_pos, _ in self._cache.values():
                for tensor in (*vision_feats, *vision_pos):
                    found[id(tensor)] = tensor
        return list(found.values())

    def state_bytes(self) -> int:
        """Bytes of the live state: bounded on an endless stream."""
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in self.state_tensors()}
        return sum(storages.values())

    # ------------------------------------------------------------------ frames

    def _step_index(self, stamp_ns: int) -> int:
        """The frame number of a stepped frame: the one reserved for it by a prompt, else the next."""
        index = self._timeline.get(stamp_ns)
        if index is None:
            index = self._reserve(stamp_ns)
        return index

    def _prompt_index(self, stamp_ns: int) -> int:
        """The frame number a prompt lands on: its own, the nearest stepped one, or a reserved one."""
        if stamp_ns in self._timeline:
            return self._timeline[stamp_ns]
        if not self._timeline or stamp_ns > max(self._timeline):
            return self._reserve(stamp_ns)
        nearest = min(self._timeline, key=lambda stamp: abs(stamp - stamp_ns))
        return self._timeline[nearest]

    def _reserve(self, stamp_ns: int) -> int:
        index, self._next_index = self._next_index, self._next_index + 1
        self._timeline[stamp_ns] = index
        if len(self._timeline) > _TIMELINE_FRAMES:
            self._timeline.popitem(last=False)
        return index

    def _features(self, frame: Frame, keep: bool = True) -> Features:
        """The frame's image features, computed once per stamp (the last few are cached)."""
        stamp = frame.meta.stamp_ns
        with self._cache_lock:
            cached = self._cache.get(stamp)
        if cached is not None:
            return cached
        backbone = self.model.forward_image(self._model_image(frame.image))
        _, vision_feats, vision_pos, sizes = self.model._prepare_backbone_features(backbone)
        # track_step reads only the lowest-resolution position encoding, which depends only on the
        # feature size (sine encoding): one copy serves every frame instead of 5 MB per frame at 256 px.
        key = (tuple(vision_pos[-1].shape), vision_pos[-1].dtype)
        pos = self._position_encodings.setdefault(key, vision_pos[-1])
        features = (vision_feats, [pos], sizes)
        if keep:
            with self._cache_lock:
                self._cache[stamp] = features
                while len(self._cache) > self.options.feature_cache_frames:
                    self._cache.popitem(last=False)
        return features

    def _model_image(self, image: torch.Tensor) -> torch.Tensor:
        """H x W x 3 uint8 RGB -> the model's normalised 1 x 3 x S x S input (antialiased resize on the device)."""
        x = image.to(self.device).permute(2, 0, 1)[None].float() / 255.0
        x = interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return (x - self._mean) / self._std

    def _model_points(self, frame: Frame, points: Sequence[tuple[float, float]]) -> torch.Tensor:
        """Pixel clicks on `frame` -> P x 2 in the model's square input, as sam2's predictor scales them."""
        if not points:
            raise ValueError("a prompt needs at least one point per object")
        scale = torch.tensor([self.image_size / frame.width, self.image_size / frame.height], device=self.device)
        return torch.tensor(points, dtype=torch.float32, device=self.device).view(-1, 2) * scale

    def _masks(self, outs: Mapping[int, dict], frame: Frame) -> dict[int, ObjectMask]:
        """Low-res logits of every object -> H x W bool masks at the frame's resolution, with 0-1 scores."""
        ids = list(outs)
        low_res = torch.cat([outs[i]["pred_masks"] for i in ids]).float()
        logits = interpolate(low_res, size=(frame.height, frame.width), mode="bilinear", align_corners=False)
        masks = logits[:, 0] > self.options.mask_threshold
        scores = torch.cat([outs[i]["object_score_logits"] for i in ids]).float().sigmoid().view(-1).tolist()
        return {i: ObjectMask(masks[k], scores[k]) for k, i in enumerate(ids)}

    @contextmanager
    def _inference(self) -> Iterator[None]:
        """No autograd; bf16 autocast on CUDA as sam2's demos run it (CPUs run bf16 slower, so not there)."""
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else nullcontext()
        with torch.inference_mode(), autocast:
            yield
