"""A debug image of what the node sees: masks, boxes, points and labels drawn on the camera frame.

Meant to run on every tracked frame (640x480 in a few milliseconds): masks are blended in one
vectorised pass, the rest is a handful of OpenCV drawing calls. Text and lines grow with the
image (a 480-pixel side is the unit), so labels read as well at 720p and 1080p as at VGA; labels
sit on a filled box in their track's colour. It is a debugging aid, so it never raises on what
the pipeline hands it: masks of another size are skipped, coordinates outside the image are
clipped onto its border, non-finite ones are skipped.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from videomolmo_ros.pipeline.outputs import MasksOutput, TargetsOutput, TrackSnapshot
from videomolmo_ros.pipeline.track_manager import TrackState

# Twelve well-separated RGB colours; ids map onto them with a step coprime to 12, so any 12
# consecutive ids get different colours and neighbouring ids are far apart in the palette.
PALETTE = np.array(
    [
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
        (210, 245, 60),
        (250, 190, 212),
        (0, 128, 128),
        (170, 110, 40),
    ],
    dtype=np.uint8,
)
_PALETTE_STEP = 5
MASK_ALPHA = 0.45
MAX_LABEL_CHARS = 40  # a 500-character query would run off the image
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_FONT_SCALE = 0.5  # at a 480-pixel short side: letters about 2.3% of the image high
_UNIT_SIDE = 480
_OUTLINE = (0, 0, 0)
_WHITE = (255, 255, 255)


@dataclass(frozen=True)
class _Style:
    """Sizes in pixels for an image: everything scales with its short side (never below VGA's)."""

    scale: float

    @classmethod
    def of(cls, canvas: np.ndarray) -> "_Style":
        return cls(max(1.0, min(canvas.shape[:2]) / _UNIT_SIDE))

    def px(self, size: float) -> int:
        return max(1, round(size * self.scale))

    @property
    def font(self) -> float:
        return _FONT_SCALE * self.scale


def track_colour(track_id: int) -> tuple[int, int, int]:
    """The RGB colour of a track id: the same on every frame, so an object is followed by eye."""
    r, g, b = PALETTE[(track_id * _PALETTE_STEP) % len(PALETTE)]
    return int(r), int(g), int(b)


def draw_overlay(
    image_rgb: np.ndarray,
    tracks: Sequence[TrackSnapshot],
    masks: MasksOutput | None,
    targets: TargetsOutput | None,
) -> np.ndarray:
    """A new H x W x 3 uint8 RGB image: `image_rgb` (left untouched) with the outputs drawn on it.

    Masks are tinted in their track's colour; each track gets its box (thick while TRACKED,
    thin while TENTATIVE or LOST), its interior point and an "id:label state" label; targets
    are crosses with their object id.
    """
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"draw_overlay needs an H x W x 3 uint8 image, got {image_rgb.shape} {image_rgb.dtype}")
    canvas = np.array(image_rgb, dtype=np.uint8, order="C", copy=True)
    style = _Style.of(canvas)
    if masks is not None:
        _blend_masks(canvas, masks)
    for track in tracks:
        _draw_track(canvas, track, style)
    if targets is not None:
        for target in targets.targets:
            _draw_target(canvas, target.object_id, target.x, target.y, style)
    return canvas


def _blend_masks(canvas: np.ndarray, masks: MasksOutput) -> None:
    """Tint every mask pixel in its id's colour; later masks win where masks overlap."""
    height, width = canvas.shape[:2]
    tint = np.zeros_like(canvas)
    covered = np.zeros((height, width), dtype=bool)
    for track_id, mask in zip(masks.ids, masks.masks, strict=False):
        mask = np.asarray(mask)
        if mask.shape != (height, width):
            continue
        mask = mask.astype(bool, copy=False)
        tint[mask] = track_colour(track_id)
        covered |= mask
    if covered.any():
        blended = cv2.addWeighted(canvas, 1.0 - MASK_ALPHA, tint, MASK_ALPHA, 0.0)
        np.copyto(canvas, blended, where=covered[..., None])


def _draw_track(canvas: np.ndarray, track: TrackSnapshot, style: _Style) -> None:
    colour = track_colour(track.id)
    point = _pixel(canvas, track.x, track.y)
    corner = point
    if track.box is not None and all(math.isfinite(v) for v in track.box):
        x0, y0 = _pixel(canvas, track.box[0], track.box[1])
        x1, y1 = _pixel(canvas, track.box[2], track.box[3])
        thickness = style.px(2) if track.state == TrackState.TRACKED else style.px(1)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness)
        corner = (x0, y0)
    if point is not None:
        cv2.circle(canvas, point, style.px(4), _OUTLINE, -1)
        cv2.circle(canvas, point, style.px(3), colour, -1)
    if corner is not None:
        _draw_label(canvas, f"{track.id}:{_ascii(track.label)} {_state_name(track.state)}", corner, colour, style)


def _draw_target(canvas: np.ndarray, object_id: int, x: float, y: float, style: _Style) -> None:
    """A cross where the model pointed, outlined so it stands out on its own track's mask."""
    point = _pixel(canvas, x, y)
    if point is None:
        return
    colour = track_colour(object_id)
    cv2.drawMarker(canvas, point, _OUTLINE, cv2.MARKER_CROSS, style.px(14), style.px(4))
    cv2.drawMarker(canvas, point, colour, cv2.MARKER_CROSS, style.px(12), style.px(2))
    _draw_label(canvas, str(object_id), (point[0] + style.px(8), point[1] + style.px(24)), colour, style)


def _draw_label(
    canvas: np.ndarray, text: str, corner: tuple[int, int], colour: tuple[int, int, int], style: _Style
) -> None:
    """Text on a filled box in `colour` just above `corner` (below it at the top edge), inside the image."""
    height, width = canvas.shape[:2]
    thickness, pad = style.px(1), style.px(2)
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, style.font, thickness)
    box_w, box_h = text_w + 2 * pad, text_h + baseline + 2 * pad
    x = min(max(corner[0], 0), max(width - box_w, 0))
    y = corner[1] - box_h if corner[1] - box_h >= 0 else corner[1] + 1
    y = min(max(y, 0), max(height - box_h, 0))
    cv2.rectangle(canvas, (x, y), (x + box_w - 1, y + box_h - 1), colour, -1)
    ink = _OUTLINE if 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2] > 140 else _WHITE
    cv2.putText(canvas, text, (x + pad, y + pad + text_h), _FONT, style.font, ink, thickness, cv2.LINE_AA)


def _pixel(canvas: np.ndarray, x: float, y: float) -> tuple[int, int] | None:
    """(x, y) rounded and clipped onto the image; None when not finite."""
    if not (math.isfinite(x) and math.isfinite(y)):
        return None
    height, width = canvas.shape[:2]
    return min(max(round(x), 0), width - 1), min(max(round(y), 0), height - 1)


def _state_name(state: TrackState | int) -> str:
    try:
        return TrackState(state).name.lower()
    except ValueError:
        return str(state)


def _ascii(label: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only; shorten long labels so they stay on the image."""
    text = str(label).encode("ascii", "replace").decode()
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 3] + "..."
