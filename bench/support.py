"""What the benchmarks share, and the one place they get the tests' doubles and tiny models from.

The benchmarks measure the package against the same doubles and random-weight models the tests
use (test/support/); ./bench/run and ./bench/gpu_check put that folder on PYTHONPATH, so no
benchmark edits sys.path. Also here: the real clips of ../shared/data, decoded once.
"""

import sys
from pathlib import Path

import numpy as np

try:
    from eval_datasets import make_davis_layout
    from lifecycle_soak import Stream, cycle
    from molmo2_work_double import Molmo2WorkPointerDouble
    from oracle_doubles import (
        ColorOraclePointerDouble,
        ColorOraclePropagatorDouble,
        LocalOptions,
        LocalPropagatorDouble,
        OracleOptions,
    )
    from rgbd_scene import Box, Cylinder
    from rgbd_scene import render as render_rgbd
    from ros_harness import DOUBLES, FPS, START_S, NodeProcess, Planner, activate, image_msg, installed_params_file
    from sink_double import ListSinkDouble
    from synthetic_video import MovingDisc, default_scene, fast_scene, render
    from tiny_molmo2 import byte_level_tokenizer, write_tiny_molmo2
    from tiny_sam2 import tiny_options, write_tiny_sam2
    from tiny_videomolmo import MOLMO_TOKENS, random_state, write_checkpoint, write_tiny_videomolmo_with_tokenizer
except ModuleNotFoundError as error:
    if (error.name or "").startswith("videomolmo_ros"):  # the package itself: scripts/env.sh not sourced
        raise
    raise SystemExit(
        f"{error}: run benchmarks through ./bench/run [NAME] (it puts test/support on PYTHONPATH)"
    ) from None

from videomolmo_ros.io.video_source import VideoSource

__all__ = [
    "DOUBLES",
    "FPS",
    "MOLMO_TOKENS",
    "START_S",
    "Box",
    "ColorOraclePointerDouble",
    "ColorOraclePropagatorDouble",
    "Cylinder",
    "ListSinkDouble",
    "LocalOptions",
    "LocalPropagatorDouble",
    "Molmo2WorkPointerDouble",
    "MovingDisc",
    "NodeProcess",
    "OracleOptions",
    "Planner",
    "Stream",
    "activate",
    "byte_level_tokenizer",
    "cycle",
    "default_scene",
    "fast_scene",
    "image_msg",
    "installed_params_file",
    "make_davis_layout",
    "random_state",
    "real_clips",
    "render",
    "render_rgbd",
    "tiny_options",
    "write_checkpoint",
    "write_tiny_molmo2",
    "write_tiny_sam2",
    "write_tiny_videomolmo_with_tokenizer",
]

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
