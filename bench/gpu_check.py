"""One command for a CUDA machine: every GPU path of the package on random-weight models, offline.

    ./bench/gpu_check            # on a CUDA machine: one PASS / FAIL / SKIP line per path, per-frame times
    ./bench/gpu_check --device cpu --frames 200   # the same paths where a CPU can run them (a smoke run)

Without a CUDA GPU it says so and exits 0, so CI runs it too. It builds the tiny models the tests
use (no download), then checks: frame rings on the GPU, SAM2 steps under bf16 autocast, Molmo2 and
VideoMolmo generation in bf16, their 4-bit and 8-bit bitsandbytes loading, the frame-buffer budget
against torch.cuda.mem_get_info, two cameras sharing one SAM2, and a long stream whose peak GPU
memory (torch.cuda.max_memory_allocated) stays flat. Exit status 1 when a path FAILs.
"""

import argparse
import importlib.util
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from support import (
    default_scene,
    render,
    tiny_options,
    write_tiny_molmo2,
    write_tiny_sam2,
    write_tiny_videomolmo_with_tokenizer,
)

from videomolmo_ros.backends import registry
from videomolmo_ros.contracts.grounding import GroundingMode
from videomolmo_ros.contracts.interfaces import MaskPropagator, Pointer
from videomolmo_ros.pipeline.cameras import MIB, CameraConfig, buffer_budget, check_budget, memory_limit
from videomolmo_ros.pipeline.frame_buffer import FrameBuffer

SCENE = default_scene()
RED = (96.0, 120.0)  # the red disc's orbit centre at 320 x 240
FLAT_MEMORY_SLACK = 1 * MIB  # allocator rounding; a leak of one frame's state a step is far more


class CannotRunHereError(Exception):
    """A path this machine cannot run (said with the reason, not a failure)."""


def camera_frames(count: int, start: int = 0):
    """(image, stamp_ns) of the synthetic 30 fps video."""
    for k in range(start, start + count):
        image, _ = render(SCENE, k / 30)
        yield image, 10**9 + k * 33_333_333


def timed_ms(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm up (kernels, caches)
    sync()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    sync()
    return (time.perf_counter() - start) / repeat * 1000


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Checks:
    def __init__(self, device: torch.device, folder: Path, frames: int):
        self.device, self.folder, self.frames = device, folder, frames
        self.sam2_checkpoint = write_tiny_sam2(folder)
        self.molmo2 = write_tiny_molmo2(folder / "molmo2")
        self.videomolmo = write_tiny_videomolmo_with_tokenizer(folder / "videomolmo")

    def cuda_only(self) -> None:
        if self.device.type != "cuda":
            raise CannotRunHereError("needs a CUDA GPU")

    def sam2(self) -> MaskPropagator:
        return registry.create("sam2", MaskPropagator, self.device, tiny_options(self.sam2_checkpoint))

    def pointer(self, name: str, **options) -> Pointer:
        folder = str(self.molmo2 if name == "molmo2" else self.videomolmo)
        base = {"model": folder} if name == "molmo2" else {"model": folder, "tokenizer": folder}
        limits = {"max_points_per_frame": 3} if name == "molmo2" else {"max_points": 3}
        return registry.create(name, Pointer, self.device, {**base, **limits, **options})

    def window(self, frames: int = 5):
        buffer = FrameBuffer(frames, self.device)
        for image, stamp in camera_frames(frames):
            buffer.push(image, stamp, "cam")
        return buffer.window(frames)

    # ---------------------------------------------------------------------- the paths

    def frame_ring(self) -> str:
        ring, batch = FrameBuffer(8, self.device), 16
        stream = iter(camera_frames(5 * batch))  # warm-up and 3 timed rounds of fresh stamps
        ms = timed_ms(lambda: [ring.push(*next(stream), "cam") for _ in range(batch)], 3) / batch
        images = list(camera_frames(batch, start=5 * batch))
        for image, stamp in images:
            ring.push(image, stamp, "cam")
        window = ring.window(8)
        if window.images.device.type != self.device.type or len(window) != 8:
            raise AssertionError(f"window of {len(window)} frames on {window.images.device}")
        if not torch.equal(window.images[-1].cpu(), torch.from_numpy(images[-1][0])):
            raise AssertionError("the newest frame read back differs from the one pushed")
        return f"push {ms:.2f} ms/frame, window of 8 on {window.images.device}"

    def sam2_steps(self) -> str:
        propagator = self.sam2()
        frames = [propagator_frame(image, stamp, self.device) for image, stamp in camera_frames(20)]
        propagator.add_prompts(frames[0], {1: [RED]})
        steps = iter(frames)
        ms = timed_ms(lambda: propagator.step(next(steps)), 18)
        masks = propagator.step(frames[-1])
        autocast = "bf16 autocast" if self.device.type == "cuda" else "fp32"
        return f"{ms:.1f} ms/frame ({autocast}), mask on {masks[1].mask.device}"

    def generation(self, name: str, **options) -> str:
        pointer = self.pointer(name, **options)
        window = self.window(8 if name == "molmo2" else 5)
        ms = timed_ms(lambda: pointer.ground(window, "the red disc", GroundingMode.POINT), 2)
        result = pointer.ground(window, "the red disc", GroundingMode.POINT)
        if result.problems:
            raise AssertionError(f"constrained answer did not parse: {result.problems}")
        weights = next(pointer.model.parameters()).dtype
        return f"{ms:.0f} ms/query, weights {weights}, answer {result.raw_output[:40]!r}"

    def quantized(self, name: str, bits: str) -> str:
        self.cuda_only()
        if importlib.util.find_spec("bitsandbytes") is None:
            raise CannotRunHereError("bitsandbytes is not installed (pip install bitsandbytes)")
        return self.generation(name, quantization=bits)

    def memory_budget(self) -> str:
        self.cuda_only()
        free, total = torch.cuda.mem_get_info(self.device)
        camera = CameraConfig("main", max_width=1920, max_height=1080)
        fits = buffer_budget([camera], 4, 8)
        limit = memory_limit(str(self.device), 0.0, free, None)
        check_budget(fits, limit)
        frames = free // (1920 * 1080 * 3) + 1
        try:
            check_budget(buffer_budget([camera], frames, 0), limit)
        except ValueError as error:
            said = str(error)
        else:
            raise AssertionError(f"{frames} 1080p frames were let through with {free / MIB:.0f} MiB free")
        return f"{free / MIB:.0f} of {total / MIB:.0f} MiB free: 12 frames fit, {frames} refused ({said[:60]}...)"

    def two_cameras(self) -> str:
        head = self.sam2()
        wrist = head.for_another_camera()
        if head.model is not wrist.model:
            raise AssertionError("the second camera loaded its own weights")
        frames = [propagator_frame(image, stamp, self.device) for image, stamp in camera_frames(6)]
        head.add_prompts(frames[0], {1: [RED]})
        wrist.add_prompts(frames[0], {2: [RED]})
        for frame in frames:
            if sorted(head.step(frame)) != [1] or sorted(wrist.step(frame)) != [2]:
                raise AssertionError("a camera saw the other camera's object")
        return "one set of weights, each camera its own objects"

    def long_stream(self) -> str:
        self.cuda_only()
        propagator, ring = self.sam2(), FrameBuffer(4, self.device)
        warmup = max(100, self.frames // 20)
        peaks, started = [], time.perf_counter()
        for k, (image, stamp) in enumerate(camera_frames(self.frames)):
            ring.push(image, stamp, "cam")
            frame = ring.latest()
            if k == 0:
                propagator.add_prompts(frame, {1: [RED]})
            propagator.step(frame)
            if k + 1 == warmup:
                torch.cuda.reset_peak_memory_stats(self.device)
            if k + 1 in (2 * warmup, self.frames):
                peaks.append(torch.cuda.max_memory_allocated(self.device))
        ms = (time.perf_counter() - started) / self.frames * 1000
        if peaks[-1] > peaks[0] + FLAT_MEMORY_SLACK:
            raise AssertionError(f"peak memory grew from {peaks[0] / MIB:.1f} to {peaks[-1] / MIB:.1f} MiB")
        return f"{self.frames} frames, {ms:.1f} ms/frame, peak {peaks[0] / MIB:.1f} -> {peaks[-1] / MIB:.1f} MiB"

    def all(self) -> list[tuple[str, Callable[[], str]]]:
        return [
            ("frame rings on the device", self.frame_ring),
            ("SAM2 steps (bf16 autocast on CUDA)", self.sam2_steps),
            ("Molmo2 generation (bf16 on CUDA)", lambda: self.generation("molmo2")),
            ("VideoMolmo generation (bf16 on CUDA)", lambda: self.generation("videomolmo")),
            ("Molmo2 4-bit", lambda: self.quantized("molmo2", "4bit")),
            ("Molmo2 8-bit", lambda: self.quantized("molmo2", "8bit")),
            ("VideoMolmo 4-bit", lambda: self.quantized("videomolmo", "4bit")),
            ("VideoMolmo 8-bit", lambda: self.quantized("videomolmo", "8bit")),
            ("frame-buffer budget vs torch.cuda.mem_get_info", self.memory_budget),
            ("two cameras sharing SAM2", self.two_cameras),
            (f"{self.frames}-frame stream, flat peak GPU memory", self.long_stream),
        ]


def propagator_frame(image: np.ndarray, stamp: int, device: torch.device):
    ring = FrameBuffer(1, device)
    ring.push(image, stamp, "cam")
    return ring.latest()


def run(device: torch.device, frames: int) -> int:
    failed = 0
    with tempfile.TemporaryDirectory() as folder:
        checks = Checks(device, Path(folder), frames)
        for name, check in checks.all():
            try:
                print(f"PASS  {name}: {check()}", flush=True)
            except CannotRunHereError as reason:
                print(f"SKIP  {name}: {reason}", flush=True)
            except Exception as error:  # every path is reported, whatever breaks
                failed += 1
                print(f"FAIL  {name}: {error!r}\n{traceback.format_exc(limit=3)}", flush=True)
    print(f"gpu_check: {failed} path(s) failed on {device}")
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N, or cpu for a smoke run of the same paths")
    parser.add_argument("--frames", type=int, default=2000, help="frames of the long stream")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_check: SKIP: no CUDA GPU here (torch {torch.__version__} sees none); nothing to check")
        return 0
    torch.manual_seed(0)
    return run(device, args.frames)


if __name__ == "__main__":
    sys.exit(main())
