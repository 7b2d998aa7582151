"""SAM2: the streaming propagator against sam2's stock SAM2VideoPredictor, side by side in one run.

    . scripts/env.sh && python bench/bench_sam2.py [--frames 100 1000] [--real-frames 100] [--device cpu]

Both run the same model object (random weights built from a config: no download) on the same
synthetic 320x240 frames with one object prompted on the first frame; the stock predictor reads
the frames back from a JPEG folder, the only input it takes. Per model, it prints the time per
frame of `step` against `propagate_in_video`, and the bytes of tensors each keeps after N frames:
the streaming state (memories, pointers, cached image features) against the stock inference state
(its per-frame outputs, and the preloaded frames it also holds).

Models: the tiny config the tests use (128 px), and the real sam2.1 hiera-t config at 256 px (one
CPU frame takes about 0.25 s there, so it runs at --real-frames only; the N it ran at is printed).
"""

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the stock predictor's progress bars

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "test" / "support"))
from synthetic_video import default_scene, render
from tiny_sam2 import tiny_options, write_tiny_sam2

from videomolmo_ros.backends.sam2.loading import Sam2Options, hydra_overrides
from videomolmo_ros.backends.sam2.propagator import Sam2Propagator
from videomolmo_ros.pipeline.frame_buffer import Frame, FrameMeta

SCENE = default_scene()
CLICK = (96.0, 120.0)  # on the red disc's orbit centre
HIERA_T = "configs/sam2.1/sam2.1_hiera_t.yaml"


def frame(k: int) -> Frame:
    image, _ = render(SCENE, k / 30)
    return Frame(FrameMeta(k, 10**9 + k * 33_000_000, "cam"), torch.from_numpy(image))


def tensor_bytes(state: object) -> int:
    """Bytes of the distinct tensor storages reachable from `state` (dicts, lists, tuples)."""
    storages: dict[int, int] = {}
    stack = [state]
    while stack:
        item = stack.pop()
        if isinstance(item, torch.Tensor):
            storage = item.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return sum(storages.values())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def streaming(propagator: Sam2Propagator, counts: list[int]) -> dict[int, tuple[float, int]]:
    """One stream of max(counts) frames: per N, (seconds per step so far, state bytes at N)."""
    propagator.reset()
    propagator.add_prompts(frame(0), {1: [CLICK]})
    results, elapsed = {}, 0.0
    for k in range(max(counts)):
        current = frame(k)
        sync(propagator.device)
        start = time.perf_counter()
        propagator.step(current)
        sync(propagator.device)
        elapsed += time.perf_counter() - start
        if k + 1 in counts:
            results[k + 1] = (elapsed / (k + 1), propagator.state_bytes())
    return results


def stock(propagator: Sam2Propagator, count: int) -> tuple[float, float, int, int, int]:
    """sam2's predictor on `count` frames: s per frame tracking and loading, state bytes (tracking, all),
    frames of memory kept."""
    model = propagator.model
    with tempfile.TemporaryDirectory() as folder:
        for k in range(count):
            Image.fromarray(frame(k).image.numpy()).save(Path(folder) / f"{k:05d}.jpg", quality=95)
        start = time.perf_counter()
        state = model.init_state(folder)
        load_s = time.perf_counter() - start
    model.add_new_points_or_box(state, 0, 1, points=[list(CLICK)], labels=[1])
    sync(propagator.device)
    start = time.perf_counter()
    for _ in model.propagate_in_video(state):
        pass
    sync(propagator.device)
    per_frame = (time.perf_counter() - start) / count
    # Its feature cache holds a view of the preloaded frames: tracking state is everything else.
    tracking = {key: value for key, value in state.items() if key not in ("images", "cached_features")}
    kept = len(state["output_dict_per_obj"][0]["non_cond_frame_outputs"])
    return per_frame, load_s / count, tensor_bytes(tracking), tensor_bytes(state), kept


def hiera_t_checkpoint(folder: Path, image_size: int) -> Path:
    """The real hiera-t config at `image_size`, random weights, saved as sam2 loads checkpoints."""
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(0)
    overrides = hydra_overrides(Sam2Options(image_size=image_size))
    model = build_sam2_video_predictor(HIERA_T, None, device="cpu", hydra_overrides_extra=overrides)
    path = folder / f"hiera_t_{image_size}.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def report(name: str, propagator: Sam2Propagator, counts: list[int]) -> None:
    ours = streaming(propagator, counts)
    for n in counts:
        step_s, state = ours[n]
        stock_s, load_s, stock_state, stock_all, kept = stock(propagator, n)
        print(
            f"{name:<16} {n:>5} {step_s * 1e3:9.1f} {stock_s * 1e3:9.1f} {stock_s / step_s:7.2f} "
            f"{(stock_s + load_s) * 1e3:9.1f} {(stock_s + load_s) / step_s:7.2f} "
            f"{state / 2**20:9.2f} {stock_state / 2**20:10.2f} {stock_all / 2**20:11.2f} "
            f"{stock_state / state:8.2f} {stock_all / state:8.2f} {kept:>6}"
        )
    first, last = ours[counts[0]][1], ours[counts[-1]][1]
    print(f"{'':<16} streaming state at N={counts[-1]} / N={counts[0]}: {last / first:.3f} (flat: 1.000)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 1000], help="N for the tiny model")
    parser.add_argument("--real-frames", type=int, nargs="*", default=[30, 100], help="N for hiera-t (none: skip)")
    parser.add_argument("--real-size", type=int, default=256, help="hiera-t input size, px")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*_C.*")  # sam2 without its CUDA extension: no hole filling
    device = torch.device(args.device)
    print(f"device {device}, {args.threads} torch thread(s); one object; 320x240 frames")
    print("time: streaming step (resize + backbone + tracking) vs stock propagate_in_video per frame")
    print("      (its JPEG decoding and resizing happen in init_state: '+load' adds that time per frame)")
    print("state: bytes of tensors kept. streaming: memories, pointers and 4 frames of cached image features;")
    print("       stock: its per-frame outputs (memories, pointers, low-res masks); 'all' adds its preloaded")
    print("       frames and its cached features")
    print(
        f"{'model':<16} {'N':>5} {'stream ms':>9} {'stock ms':>9} {'stk/str':>7} {'+load ms':>9} {'+ld/str':>7} "
        f"{'stream MB':>9} {'stock MB':>10} {'stock all':>11} {'stk/str':>8} {'all/str':>8} {'stkfr':>6}"
    )
    with tempfile.TemporaryDirectory() as folder:
        tiny = Sam2Propagator(Sam2Options(**tiny_options(write_tiny_sam2(Path(folder)))), device)
        report("tiny 128px", tiny, sorted(args.frames))
        if args.real_frames:
            checkpoint = hiera_t_checkpoint(Path(folder), args.real_size)
            real = Sam2Propagator(Sam2Options(checkpoint=str(checkpoint), image_size=args.real_size), device)
            report(f"hiera-t {args.real_size}px", real, sorted(args.real_frames))
            if max(args.real_frames) < max(args.frames):
                print(
                    f"hiera-t measured at N={', '.join(map(str, sorted(args.real_frames)))} only (about 0.25 s a "
                    f"frame on this CPU: N={max(args.frames)} would take minutes per predictor); the stock "
                    "state grows linearly with N, the streaming state does not (see the tiny rows)"
                )
    print("stkfr: frames of memory the stock predictor keeps per object (the streaming one keeps 16)")


if __name__ == "__main__":
    main()
