"""The real footage in ../shared/data (next to the repository, never in it): paths, or a skip saying why.

Tests on real frames skip with a reason where the folder is absent, so the suite runs anywhere.
"""

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
CLIPS = ("01_dog.mp4", "02_cups.mp4", "03_blocks.mp4")  # 1280x720 at 29.97 Hz (SAM 2 demo gallery)
DAVIS_SEQUENCES = ("dog", "libby", "car-shadow", "blackswan", "breakdance")  # 854x480, one object each


def footage(relative: str) -> Path:
    """The path of `relative` in the shared data folder, or skip the test saying what is missing."""
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"real footage {relative} is not in {DATA} (the shared data folder, see its README)")
    return path


def clip(name: str) -> Path:
    return footage(f"videos/{name}")


def davis_root() -> Path:
    """The DAVIS 2016 root: JPEGImages/480p/<seq>/*.jpg and Annotations/480p/<seq>/*.png."""
    return footage("davis2016")


def davis_sequence(name: str) -> tuple[Path, Path]:
    """(frames folder, annotations folder) of one DAVIS 2016 sequence."""
    root = davis_root()
    return footage(f"davis2016/JPEGImages/480p/{name}"), root / "Annotations" / "480p" / name
