"""VideoMolmo per-frame feature cache against re-encoding the previous frames at every query.

    ./bench/run bench_videomolmo [--queries 6]

One random-weight checkpoint at Molmo's real crop geometry (336 px crops: a 640x480 frame is 7
crops, 740 image tokens) with a narrower, shallower ViT and decoder so it runs on a CPU. The same
stream of camera frames is queried frame after frame (the window slides by one frame per query,
as when the model keeps up with the camera) twice in one run: with the cache (each frame encoded
once) and without it (the reference inference: the current frame and its 4 predecessors
re-encoded at every query). Ratios carry over to other machines better than the times.
"""

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from support import MOLMO_TOKENS, byte_level_tokenizer, random_state, write_checkpoint

from videomolmo_ros.backends.videomolmo.model import VisionConfig, tiny_config
from videomolmo_ros.backends.videomolmo.pointer import VideoMolmoOptions, VideoMolmoPointer
from videomolmo_ros.contracts.grounding import GroundingMode
from videomolmo_ros.pipeline.frame_buffer import FrameBuffer


def write_bench_checkpoint(folder: Path) -> Path:
    vision = VisionConfig(
        image_emb_dim=128, image_num_heads=4, image_head_dim=32, image_num_layers=9, image_mlp_dim=256
    )
    config = dataclasses.replace(tiny_config(image_size=336), vision=vision, d_model=128, mlp_hidden_size=256)
    write_checkpoint(folder, config, random_state(config))
    byte_level_tokenizer(MOLMO_TOKENS, eos_token="<|endoftext|>", pad_token="<|endoftext|>").save_pretrained(folder)
    return folder


def run(folder: Path, cache: bool, queries: int, tokens: int) -> tuple[float, float]:
    """Mean seconds per query and vision-encoder calls per query, after the first 5 frames."""
    options = VideoMolmoOptions(
        model=str(folder), tokenizer=str(folder), feature_cache=cache, constrained=False, max_new_tokens=tokens
    )
    pointer = VideoMolmoPointer(options, torch.device("cpu"))
    buffer = FrameBuffer(5)
    rng = np.random.default_rng(0)
    elapsed, calls = 0.0, 0
    for k in range(5 + queries):
        buffer.push(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), round(k * 1e9 / 30), "cam")
        before = pointer.encoder_calls
        start = time.perf_counter()
        pointer.ground(buffer.window(5), "the red mug", GroundingMode.POINT)
        if k >= 5:  # the window is full: steady state
            elapsed += time.perf_counter() - start
            calls += pointer.encoder_calls - before
    return elapsed / queries, calls / queries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=6)
    parser.add_argument("--tokens", type=int, default=8, help="new tokens per query")
    args = parser.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_bench_checkpoint(Path(tmp))
        cached_s, cached_calls = run(folder, True, args.queries, args.tokens)
        uncached_s, uncached_calls = run(folder, False, args.queries, args.tokens)
    print(f"640x480 frames (7 crops), window of 5 (current + 4 previous), {args.tokens} new tokens, CPU fp32, 1 thread")
    print(f"{'':>22} {'s/query':>9} {'encoder calls/query':>20}")
    print(f"{'re-encode (reference)':>22} {uncached_s:9.3f} {uncached_calls:20.1f}")
    print(f"{'feature cache':>22} {cached_s:9.3f} {cached_calls:20.1f}")
    print(f"{'speed-up':>22} {uncached_s / cached_s:9.2f} {uncached_calls / cached_calls:20.1f}")


if __name__ == "__main__":
    main()
