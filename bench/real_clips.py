"""The real clips of ../shared/data/videos (1280x720, SAM 2 demo gallery), decoded once for the benchmarks.

The benchmarks print their rows only where the folder is present (it never lives in the repository).
"""

import sys
from pathlib import Path

import numpy as np

from videomolmo_ros.tools.video_source import VideoSource

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
CLIPS = ("01_dog.mp4", "02_cups.mp4", "03_blocks.mp4")


def real_clips(frames_per_clip: int = 30) -> dict[str, list[np.ndarray]]:
    """{clip name: its first RGB frames}; empty (said once on stderr) without the shared data folder."""
    if not all((VIDEOS / name).is_file() for name in CLIPS):
        print(f"(no real clips in {VIDEOS}: their rows are left out)", file=sys.stderr)
        return {}
    clips = {}
    for name in CLIPS:
        with VideoSource(VIDEOS / name) as source:
            clips[name] = [frame for _, frame in zip(range(frames_per_clip), source.frames(), strict=False)]
    return clips
