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
  the others. The objects of a frame run together over its shared image features, in batches of
  objects whose memories line up (batching.py): one backbone pass per frame, and one memory-
  attention / decoder / memory-encoder pass per batch instead of per object.
- A prompt conditions on its clicks alone (an initial conditioning frame, no memory): the
  grounding model re-detected the object, and memory that drifted must not bend the new mask.
- Image features are computed once per frame and the last `feature_cache_frames` are kept by
  stamp (more when the pipeline catches up: `retain_frames`), so a prompt on a recently stepped
  frame, and catch-up through the frames since, reuse them.
- A prompt restarts the object from its clicks: its memories of frames after the prompted one
  (tracked before the prompt arrived) are dropped; catch-up (`step(frame, object_ids)` on those
  frames, oldest first) carries it to the newest frame again, leaving the other objects untouched.
- With the default 16 recent frames and prompts on the first frame, the masks are those of sam2's
  `propagate_in_video` on the same frames (the tests check it: exactly for one object, within
  float rounding for a batch), at a constant memory instead of one that grows with every frame.
- `propagate` runs a clip in a separate session (prompts on its first or last frame), for the
  backward pass of VideoMolmo's bidirectional mask fusion.

sam2 is pinned (1.1.0 = facebookresearch/sam2@2b90b9f) because this module calls the private
`SAM2Base._prepare_backbone_features` (flatten the backbone output) besides the public
`forward_image` and `track_step` (and batching.py the private steps `track_step` is made of:
`_prepare_memory_conditioned_features`, `_forward_sam_heads`, `_encode_new_memory`), and relies
on the layout `track_step` reads from its `output_dict` (`cond_frame_outputs` /
`non_cond_frame_outputs` of dicts with `maskmem_features`, `maskmem_pos_enc`, `obj_ptr`,
`object_score_logits`) and on the `fill_hole_area` attribute of `SAM2VideoPredictor`.
"""

import copy
import importlib.util
import threading
from collections import OrderedDict
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext

import torch
from torch.nn.functional import interpolate

from videomolmo_ros.backends.sam2.batching import Features
from videomolmo_ros.backends.sam2.loading import Sam2Options, load_sam2
from videomolmo_ros.backends.sam2.session import Session
from videomolmo_ros.contracts.frames import Frame
from videomolmo_ros.contracts.grounding import ObjectMask
from videomolmo_ros.contracts.interfaces import MaskPropagator

_IMAGE_MEAN = (0.485, 0.456, 0.406)  # what sam2's frame loader normalises with
_IMAGE_STD = (0.229, 0.224, 0.225)
# The live stream has no frame count; this only has to exceed every frame number (sam2 caps the
# object pointers it reads at min(num_frames, 16)).
_ENDLESS = 2**62
# Stamps of stepped frames remembered to place prompts on (about 34 s at 30 fps: groundings older
# than max_result_age_s are dropped before they get here).
_TIMELINE_FRAMES = 1024


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
        self._cache_frames = options.feature_cache_frames
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

    def step(self, frame: Frame, object_ids: Collection[int] | None = None) -> dict[int, ObjectMask]:
        """A stepped frame keeps its number: catch-up on an older frame lands where the live step put it."""
        index = self._step_index(frame.meta.stamp_ns)
        objects = self._session.objects
        ids = list(objects) if object_ids is None else [i for i in object_ids if i in objects]
        if not ids:
            return {}
        with self._inference():
            features = self._features(frame)
            return self._masks(self._session.track_many(ids, index, features, reverse=False), frame)

    def remove(self, object_ids: Iterable[int]) -> None:
        for object_id in object_ids:
            self._session.objects.pop(object_id, None)

    def retain_frames(self, count: int) -> None:
        """Keep the image features of the last `count` frames too (catch-up steps them again)."""
        self._cache_frames = max(self.options.feature_cache_frames, count)

    def reset(self) -> None:
        self._session = Session(self.model, _ENDLESS, self.options, self._hole_area)
        self._timeline: OrderedDict[int, int] = OrderedDict()  # stamp_ns -> frame number, oldest first
        self._next_index = 0
        with self._cache_lock:
            self._cache: OrderedDict[int, Features] = OrderedDict()

    def image_features(self, frame: Frame) -> torch.Tensor:
        """The image encoder's embedding of `frame` (the stride-16 map the memory attention reads: 256 x 64 x 64
        for the 1024 px models), from the cache the steps fill: a step or prompt on the frame reuses it."""
        with self._inference():
            vision_feats, _, sizes = self._features(frame)
        return vision_feats[-1][:, 0].permute(1, 0).unflatten(1, sizes[-1])  # (h w) x 1 x C -> C x h x w

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
        session = Session(self.model, len(frames), self.options, self._hole_area)
        order = range(len(frames) - 1, -1, -1) if reverse else range(len(frames))
        results: list[dict[int, ObjectMask]] = [{} for _ in frames]
        with self._inference():
            for k in order:
                frame, features = frames[k], self._features(frames[k], keep=False)
                if k == order[0]:
                    outs = {i: session.prompt(i, k, features, self._model_points(frame, p)) for i, p in prompts.items()}
                else:
                    outs = session.track_many(list(session.objects), k, features, reverse)
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
                while len(self._cache) > self._cache_frames:
                    self._cache.popitem(last=False)
        return features

    def _model_image(self, image: torch.Tensor) -> torch.Tensor:
        """H x W x 3 uint8 RGB -> the model's normalised 1 x 3 x S x S input, resized as sam2's frame loader does.

        sam2 resizes each frame with PIL's bicubic filter, which widens with the scale factor
        (antialiasing) and rounds to uint8 after its horizontal and again after its vertical pass.
        The same two passes run here on the frame's device; measured against PIL they differ by
        at most 1 of 255 on under 0.1% of pixels (its fixed-point rounding), never on smooth images.
        """
        x = image.to(self.device).permute(2, 0, 1)[None].float()
        for size in ((x.shape[2], self.image_size), (self.image_size, self.image_size)):
            x = interpolate(x, size=size, mode="bicubic", antialias=True).round_().clamp_(0, 255)
        return (x / 255.0 - self._mean) / self._std

    def _model_points(self, frame: Frame, points: Sequence[tuple[float, float]]) -> torch.Tensor:
        """Pixel clicks on `frame` -> P x 2 in the model's square input, as sam2's predictor scales them."""
        if not points:
            raise ValueError("a prompt needs at least one point per object")
        scale = torch.tensor([self.image_size / frame.width, self.image_size / frame.height], device=self.device)
        return torch.tensor(points, dtype=torch.float32, device=self.device).view(-1, 2) * scale

    def _masks(self, outs: Mapping[int, dict], frame: Frame) -> dict[int, ObjectMask]:
        """Low-res logits of every object -> H x W bool masks at the frame's resolution, with 0-1 scores."""
        ids = list(outs)
        masks = self._logits(outs, frame) > self.options.mask_threshold
        scores = torch.cat([outs[i]["object_score_logits"] for i in ids]).float().sigmoid().view(-1).tolist()
        return {i: ObjectMask(masks[k], scores[k]) for k, i in enumerate(ids)}

    def _logits(self, outs: Mapping[int, dict], frame: Frame) -> torch.Tensor:
        """N x H x W mask logits at the frame's resolution, objects in the order of `outs`."""
        low_res = torch.cat([out["pred_masks"] for out in outs.values()]).float()
        return interpolate(low_res, size=(frame.height, frame.width), mode="bilinear", align_corners=False)[:, 0]

    @contextmanager
    def _inference(self) -> Iterator[None]:
        """No autograd; bf16 autocast on CUDA as sam2's demos run it (CPUs run bf16 slower, so not there)."""
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if self.device.type == "cuda" else nullcontext()
        with torch.inference_mode(), autocast:
            yield
