"""Rectangular bool masks: the hand-made cases the metric and scoring tests compute by hand."""

import numpy as np


def box(top: int, left: int, bottom: int, right: int, size: int = 100) -> np.ndarray:
    """A size x size mask with rows top..bottom-1 and columns left..right-1 set."""
    mask = np.zeros((size, size), bool)
    mask[top:bottom, left:right] = True
    return mask
