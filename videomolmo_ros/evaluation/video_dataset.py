"""Video segmentation datasets stored as folders of frames, read without extra packages.

Two referring layouts, both with `<root>/JPEGImages/<video>/<frame>.jpg` and
`<root>/meta_expressions.json` = {"videos": {video: {"expressions": {id: {"exp": text, "obj_id": ...}},
"frames": [frame, ...]}}}:

- Ref-DAVIS17 / Ref-YouTube-VOS: `<root>/Annotations/<video>/<frame>.png`, palette (indexed)
  PNGs whose pixel value is the object id (0 background); `obj_id` is one id ("1"). A frame
  without a PNG has no ground truth and is not scored.
- MeViS: `<root>/mask_dict.json` = {anno_id: [COCO RLE or null, one per frame]}; `obj_id` and
  `anno_id` are lists (an expression may name several objects; null: not in that frame).

And DAVIS 2016 (`<root>/JPEGImages/480p/<video>/<frame>.jpg`, `<root>/Annotations/480p/<video>/
<frame>.png`): one object per video, grayscale masks (0 background, 255 the object), and no
expressions: the queries are given (`queries`: {video: text}), one per video.

Validation splits that ship no masks (neither Annotations/ nor mask_dict.json) cannot be scored.
COCO's compressed RLE is decoded here rather than through pycocotools, which would add a
compiled dependency for twenty lines of code.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from videomolmo_ros.io.image_files import MAX_IMAGE_SIDE, image_file, image_size


class DatasetError(RuntimeError):
    """A dataset that is missing, laid out otherwise or inconsistent; the message says where."""


# ---------------------------------------------------------------- COCO run-length encoding

# Compressed counts: each count is cut into 5-bit groups, least significant first, written as
# chr(48 + group), with 0x20 set on every group but the last; the last group's 0x10 is the sign.
# From the fourth count on, the count two places back is subtracted first (runs of the same
# value tend to have similar lengths, so the differences are short).
_OFFSET, _MORE, _SIGN, _BITS = 48, 0x20, 0x10, 5
# The largest mask decoded (a bool a pixel): MAX_IMAGE_SIDE squared, as the frames it belongs to.
MAX_MASK_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE


def rle_decode(rle: Mapping, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The H x W bool mask of a COCO RLE: {"size": [h, w], "counts": str (compressed) or list}.

    Checked before anything is allocated: the size against `shape` (its frame's) if given and
    against MAX_MASK_PIXELS, the counts against the size; eight characters can claim 10^10 pixels.
    """
    height, width, counts = _rle_fields(rle)
    if shape is not None and (height, width) != tuple(shape):
        raise DatasetError(f"RLE of {height}x{width} (h x w) for a frame of {shape[0]}x{shape[1]}")
    if height * width > MAX_MASK_PIXELS:
        raise DatasetError(f"RLE claims {height}x{width} (h x w) pixels, more than the {MAX_MASK_PIXELS} allowed")
    if isinstance(counts, str):
        counts = _counts_from_string(counts)
    if sum(counts) != height * width or min(counts, default=0) < 0:
        raise DatasetError(f"RLE counts cover {sum(counts)} pixels, not the {height}x{width} of its size")
    runs = np.arange(len(counts)) % 2 == 1  # runs alternate 0, 1, 0, ... starting with background
    return np.repeat(runs, counts).reshape((height, width), order="F")  # column-major


def _rle_fields(rle: object) -> tuple[int, int, str | list[int]]:
    """(height, width, counts) of an RLE object, or a DatasetError saying what is malformed."""
    size = rle.get("size") if isinstance(rle, Mapping) else None
    counts = rle.get("counts") if isinstance(rle, Mapping) else None
    if not (isinstance(size, list | tuple) and len(size) == 2 and all(type(v) is int and v >= 0 for v in size)):
        raise DatasetError(f"RLE without a size [height, width] of two whole numbers: {str(rle)[:80]}")
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if not (isinstance(counts, str) or (isinstance(counts, list) and all(type(c) is int for c in counts))):
        raise DatasetError(f"RLE counts are neither a string nor a list of whole numbers: {str(counts)[:80]}")
    return size[0], size[1], counts


def rle_encode(mask: np.ndarray) -> dict:
    """The compressed COCO RLE of a 2-D bool mask, as MeViS's mask_dict.json stores it."""
    flat = np.asarray(mask, bool).ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], changes, [flat.size]))
    counts = np.diff(edges).tolist()
    if flat.size and flat[0]:
        counts.insert(0, 0)  # counts start with a (here empty) background run
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": _counts_to_string(counts)}


def _counts_from_string(text: str) -> list[int]:
    counts: list[int] = []
    value = shift = 0
    for char in text:
        group = ord(char) - _OFFSET
        value |= (group & 0x1F) << shift
        shift += _BITS
        if group & _MORE:
            continue
        if group & _SIGN:
            value -= 1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
        value = shift = 0
    if shift:
        raise DatasetError(f"RLE counts string {text[:40]!r} ends inside a number")
    return counts


def _counts_to_string(counts: Sequence[int]) -> str:
    chars = []
    for index, count in enumerate(counts):
        value = count - counts[index - 2] if index > 2 else count
        while True:
            group = value & 0x1F
            value >>= _BITS
            done = value == -1 if group & _SIGN else value == 0
            chars.append(chr(_OFFSET + group + (0 if done else _MORE)))
            if done:
                break
    return "".join(chars)


# ---------------------------------------------------------------- the dataset


@dataclass(frozen=True)
class ExpressionRef:
    """One (video, expression) of the dataset, before its frames and masks are read."""

    video: str
    expression_id: str
    text: str

    @property
    def name(self) -> str:
        """`<video>__<expression id>`: unique in the dataset, safe as a file name."""
        return f"{self.video}__{self.expression_id}"


@dataclass(frozen=True)
class Sample:
    """An expression with its frames and ground truth.

    `object_masks` maps each object the expression names to its bool mask per frame (None on
    frames without ground truth); `masks` is their union, what the expression refers to.
    """

    ref: ExpressionRef
    frame_paths: tuple[Path, ...]
    object_masks: dict[str, tuple[np.ndarray | None, ...]]

    @cached_property
    def masks(self) -> list[np.ndarray | None]:
        per_frame = zip(*self.object_masks.values(), strict=True)
        return [None if masks[0] is None else np.logical_or.reduce(masks) for masks in per_frame]

    @cached_property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the ground truth, which every frame must have."""
        return next(m.shape for m in self.masks if m is not None)


class VideoDataset:
    """A dataset folder in one of the layouts above (found from the files present).

    `queries` ({video: text}) are DAVIS 2016's expressions, which it does not ship; the other
    layouts have theirs.
    """

    def __init__(self, root: str | Path, queries: Mapping[str, str] | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset root {self.root} is not a folder")
        self.images, self.annotations = self.root / "JPEGImages", self.root / "Annotations"
        self._mask_dict: dict[str, list] | None = None
        if (self.images / "480p").is_dir() and not (self.root / "meta_expressions.json").is_file():
            self._davis2016(queries or {})
            return
        if queries:
            raise DatasetError(f"{self.root} has its expressions (meta_expressions.json): --query is for DAVIS 2016")
        self.videos: dict[str, dict] = _read_json(self.root / "meta_expressions.json").get("videos", {})
        if (self.root / "mask_dict.json").is_file():
            self.layout = "mevis"
        elif (self.root / "Annotations").is_dir():
            self.layout = "annotations"
        else:
            raise DatasetError(
                f"{self.root} has no ground truth: neither Annotations/ (Ref-DAVIS17, Ref-YouTube-VOS) "
                "nor mask_dict.json (MeViS); a split without public masks cannot be scored offline"
            )

    def _davis2016(self, queries: Mapping[str, str]) -> None:
        """One expression per video from `queries`, over every frame of the video."""
        self.layout = "davis2016"
        self.images, self.annotations = self.images / "480p", self.annotations / "480p"
        available = sorted(p.name for p in self.images.iterdir() if p.is_dir())
        if not queries:
            raise DatasetError(
                f"{self.root} is DAVIS 2016, which has no expressions: give a query per video "
                f'(--query dog="the dog" or --queries map.json); its videos: {", ".join(available)}'
            )
        unknown = sorted(set(queries) - set(available))
        if unknown:
            raise DatasetError(f"no video {', '.join(unknown)} in {self.images}; its videos: {', '.join(available)}")
        self.videos = {
            video: {
                "expressions": {"0": {"exp": text, "obj_id": "1"}},
                "frames": sorted(p.stem for p in (self.images / video).glob("*.jpg")),
            }
            for video, text in queries.items()
        }

    def expressions(self, videos: Sequence[str] = (), max_per_video: int = 0) -> list[ExpressionRef]:
        """The expressions of `videos` (all when empty), at most `max_per_video` each (0: all)."""
        unknown = sorted(set(videos) - set(self.videos))
        if unknown:
            raise DatasetError(f"videos not in {self.root / 'meta_expressions.json'}: {', '.join(unknown)}")
        refs = []
        for video in videos or sorted(self.videos):
            expressions = self.videos[video].get("expressions", {})
            ids = sorted(expressions, key=lambda k: (len(k), k))  # "2" before "10"
            refs += [ExpressionRef(video, i, str(expressions[i]["exp"])) for i in ids[: max_per_video or None]]
        if not refs:
            raise DatasetError(f"no expression in {self.root / 'meta_expressions.json'} for the videos asked for")
        return refs

    def load(self, ref: ExpressionRef) -> Sample:
        """Frame paths and ground-truth masks of one expression (every file checked)."""
        try:
            entry = self.videos[ref.video]
            frames = [str(f) for f in entry["frames"]]
            expression = entry["expressions"][ref.expression_id]
            paths = tuple(self.images / ref.video / f"{frame}.jpg" for frame in frames)
            missing = [p for p in paths if not p.is_file()]
            if missing or not paths:
                raise DatasetError(f"{len(missing)} of {len(paths)} frame(s) of {ref.video} missing: {missing[:1]}")
            if self.layout == "mevis":
                masks = self._rle_masks(ref, expression, len(frames), image_size(paths[0])[::-1])
            else:
                masks = self._png_masks(ref, expression, frames)
        except (KeyError, TypeError, ValueError) as error:
            raise DatasetError(f"{ref.name}: not laid out as meta_expressions.json should be ({error!r})") from error
        if not masks or all(m is None for m in next(iter(masks.values()))):
            raise DatasetError(f"{ref.name}: names no object, or no frame of it has ground truth")
        return Sample(ref, paths, masks)

    def _png_masks(self, ref: ExpressionRef, expression: dict, frames: list[str]) -> dict:
        ids = [int(i) for i in _as_list(expression["obj_id"])]
        masks: dict[str, list[np.ndarray | None]] = {str(i): [] for i in ids}
        for frame in frames:
            labels = _label_image(self.annotations / ref.video / f"{frame}.png")
            if labels is not None and self.layout == "davis2016":
                labels = (labels > 0).astype(np.uint8)  # 0 / 255: the one object is id 1
            for i in ids:
                masks[str(i)].append(None if labels is None else labels == i)
        return {i: tuple(m) for i, m in masks.items()}

    def _rle_masks(self, ref: ExpressionRef, expression: dict, count: int, shape: tuple[int, int]) -> dict:
        if self._mask_dict is None:
            self._mask_dict = _read_json(self.root / "mask_dict.json")
        masks = {}
        pairs = zip(_as_list(expression["obj_id"]), _as_list(expression["anno_id"]), strict=True)
        for obj_id, anno_id in pairs:
            rles = self._mask_dict.get(str(anno_id))
            if not isinstance(rles, list) or len(rles) != count:
                found = f"{len(rles)} masks" if isinstance(rles, list) else "no list of masks"
                raise DatasetError(f"mask_dict.json: anno_id {anno_id} of {ref.name} has {found}, not {count}")
            masks[str(obj_id)] = tuple(self._rle_mask(anno_id, index, rle, shape) for index, rle in enumerate(rles))
        return masks

    def _rle_mask(self, anno_id: object, index: int, rle: object, shape: tuple[int, int]) -> np.ndarray:
        """One frame's mask of an annotation, empty where its RLE is None (the object is not in that frame)."""
        if rle is None:
            return np.zeros(shape, bool)
        try:
            return rle_decode(rle, shape)
        except DatasetError as error:
            raise DatasetError(f"{self.root / 'mask_dict.json'}: anno_id {anno_id}, mask {index}: {error}") from None


def _as_list(value: object) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"{path} not found")
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(document, dict):
        raise DatasetError(f"{path} holds a JSON {type(document).__name__}, not an object")
    return document


def _label_image(path: Path) -> np.ndarray | None:
    """Object ids per pixel from an indexed (palette) or grey PNG; None when there is no PNG."""
    if not path.is_file():
        return None
    with image_file(path) as image:
        if image.mode not in ("P", "L", "I", "I;16"):
            raise DatasetError(f"{path} is a {image.mode} image: annotations must be indexed (palette) PNGs")
        return np.asarray(image)
