"""What a planner wants from a mask: its box and a point well inside it."""

import cv2
import numpy as np

Box = tuple[float, float, float, float]  # x_min, y_min, x_max, y_max in pixels


def mask_box(mask: np.ndarray) -> Box | None:
    """The tight bounding box of a boolean mask, None when it is empty.

    One pass over the rows, then over the columns of the rows the mask spans only: the mask is
    usually a small part of a large frame.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1]), float(rows[-1])


def box_crop(mask: np.ndarray, box: Box) -> np.ndarray:
    """The part of `mask` inside `box` (a view): where every pixel of the mask is."""
    x0, y0, x1, y1 = (int(v) for v in box)
    return mask[y0 : y1 + 1, x0 : x1 + 1]


def interior_point(mask: np.ndarray, box: Box) -> tuple[float, float]:
    """The mask pixel farthest from its border.

    Unlike the centroid, it always lies on the object, even for a ring or an L-shape: a safe
    point to aim a gripper or a depth lookup at.
    """
    x0, y0 = int(box[0]), int(box[1])
    crop = np.pad(box_crop(mask, box).astype(np.uint8), 1)
    distance = cv2.distanceTransform(crop, cv2.DIST_L2, 3)
    y, x = np.unravel_index(int(np.argmax(distance)), distance.shape)
    return float(x0 + x - 1), float(y0 + y - 1)


def points_in_mask(mask: np.ndarray | None, xy: np.ndarray) -> np.ndarray:
    """Which (x, y) points fall on a pixel of `mask` (rounded to the nearest pixel, as a point's pixel)."""
    inside = np.zeros(len(xy), bool)
    if mask is None:
        return inside
    cols, rows = np.rint(xy).astype(np.int64).T
    within = (rows >= 0) & (rows < mask.shape[0]) & (cols >= 0) & (cols < mask.shape[1])
    inside[within] = mask[rows[within], cols[within]]
    return inside
