"""SAM2: the streaming propagator against sam2's stock SAM2VideoPredictor, side by side in one run.

    ./bench/run bench_sam2 [--frames 100 1000] [--real-frames 30 100] [--device cpu]

Both run the same model object (random weights built from a config: no download) on the same
synthetic 320x240 frames with objects prompted on the first frame; the stock predictor reads the
frames back from a JPEG folder, the only input it takes.

- time per frame at 1, 4 and 8 objects: the streaming `step` (input resize + backbone + all
  objects, in batches) against one frame of the stock `propagate_in_video` (backbone + objects one
  after another; its JPEG decoding and resizing happen up front in init_state), the two
  interleaved frame by frame so a busy machine slows both alike; medians. Also the streaming
  step's own input resize (the part stock does up front), and the 8-object / 1-object ratios.
- memory: bytes of the tensors each keeps after N frames: the streaming state (memories,
  pointers, cached image features) against the stock inference state (its per-frame outputs, and
  the preloaded frames it also holds).

Models: the tiny config the tests use (128 px), and the real sam2.1 hiera-t config at 256 px (one
CPU frame takes about 0.25 s there, so it runs at --real-frames only; the N it ran at is printed).
With a GPU, the timing runs on CUDA too.
"""

import argparse
import functools
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # the stock predictor's progress bars

import torch
from PIL import Image
from support import default_scene, render, tiny_options, write_tiny_sam2

from videomolmo_ros.backends.sam2.loading import Sam2Options, hydra_overrides
from videomolmo_ros.backends.sam2.propagator import Sam2Propagator
from videomolmo_ros.contracts.frames import Frame, FrameMeta

SCENE = default_scene()
HIERA_T = "configs/sam2.1/sam2.1_hiera_t.yaml"
OBJECTS = (1, 4, 8)


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


def clicks(objects: int) -> dict[int, list[tuple[float, float]]]:
    """One click per object, spread over the frame (random weights: any place is an object)."""
    return {i: [(40.0 + 30.0 * (i % 8), 60.0 + 15.0 * i)] for i in range(1, objects + 1)}


def stock_state(propagator: Sam2Propagator, count: int, prompts: dict, folder: Path) -> dict:
    """sam2's inference state on `count` frames read back from JPEGs, prompted on frame 0."""
    model = propagator.model
    for k in range(count):
        Image.fromarray(frame(k).image.numpy()).save(folder / f"{k:05d}.jpg", quality=95)
    state = model.init_state(str(folder))
    for object_id, points in prompts.items():
        model.add_new_points_or_box(state, 0, object_id, points=points, labels=[1] * len(points))
    return state


def timed(device: torch.device, call) -> float:
    sync(device)
    start = time.perf_counter()
    call()
    sync(device)
    return time.perf_counter() - start


def per_frame(propagator: Sam2Propagator, objects: int, count: int) -> tuple[float, float, float]:
    """Median seconds per frame: streaming step, stock propagate_in_video, the step's input resize.

    The two run interleaved, frame by frame, in alternating order; the first 5 frames are warm-up.
    """
    prompts = clicks(objects)
    with tempfile.TemporaryDirectory() as folder:
        stock = propagator.model.propagate_in_video(stock_state(propagator, count, prompts, Path(folder)))
    propagator.reset()
    propagator.add_prompts(frame(0), prompts)
    device = propagator.device
    ours, theirs, resize = [], [], []
    for k in range(count):
        current = frame(k)
        step = functools.partial(propagator.step, current)
        for times, call in [(ours, step), (theirs, functools.partial(next, stock))][:: 1 if k % 2 else -1]:
            times.append(timed(device, call))
        with torch.inference_mode():
            resize.append(timed(device, functools.partial(propagator._model_image, current.image)))
    return tuple(statistics.median(times[5:]) for times in (ours, theirs, resize))


def report_time(name: str, propagator: Sam2Propagator, count: int) -> None:
    rows = {n: per_frame(propagator, n, count) for n in OBJECTS}
    for n, (ours, theirs, resize) in rows.items():
        print(
            f"{name:<22} {n:>4} {ours * 1e3:10.1f} {theirs * 1e3:9.1f} {ours / theirs:8.3f} "
            f"{resize * 1e3:9.2f} {(ours - resize) / theirs:11.3f}"
        )
    many, one = OBJECTS[-1], OBJECTS[0]
    print(
        f"{'':<22} {many} / {one} objects: streaming {rows[many][0] / rows[one][0]:.2f}, "
        f"stock {rows[many][1] / rows[one][1]:.2f} ({count} frames, medians of {count - 5})"
    )


def streaming_state(propagator: Sam2Propagator, counts: list[int]) -> dict[int, int]:
    """State bytes after each N of one stream of max(counts) frames, one object."""
    propagator.reset()
    propagator.add_prompts(frame(0), clicks(1))
    sizes = {}
    for k in range(max(counts)):
        propagator.step(frame(k))
        if k + 1 in counts:
            sizes[k + 1] = propagator.state_bytes()
    return sizes


def stock_state_bytes(propagator: Sam2Propagator, count: int) -> tuple[int, int, int]:
    """sam2's predictor after `count` frames: state bytes (tracking, all), frames of memory kept."""
    with tempfile.TemporaryDirectory() as folder:
        state = stock_state(propagator, count, clicks(1), Path(folder))
    for _ in propagator.model.propagate_in_video(state):
        pass
    # Its feature cache holds a view of the preloaded frames: tracking state is everything else.
    tracking = {key: value for key, value in state.items() if key not in ("images", "cached_features")}
    kept = len(state["output_dict_per_obj"][0]["non_cond_frame_outputs"])
    return tensor_bytes(tracking), tensor_bytes(state), kept


def report_memory(name: str, propagator: Sam2Propagator, counts: list[int]) -> None:
    ours = streaming_state(propagator, counts)
    for n in counts:
        stock, stock_all, kept = stock_state_bytes(propagator, n)
        print(
            f"{name:<22} {n:>5} {ours[n] / 2**20:9.2f} {stock / 2**20:10.2f} {stock_all / 2**20:11.2f} "
            f"{stock / ours[n]:8.2f} {stock_all / ours[n]:8.2f} {kept:>6}"
        )
    flat = ours[counts[-1]] / ours[counts[0]]
    print(f"{'':<22} streaming state at N={counts[-1]} / N={counts[0]}: {flat:.3f} (flat: 1.000)")


def hiera_t_checkpoint(folder: Path, image_size: int) -> Path:
    """The real hiera-t config at `image_size`, random weights, saved as sam2 loads checkpoints."""
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(0)
    overrides = hydra_overrides(Sam2Options(image_size=image_size))
    model = build_sam2_video_predictor(HIERA_T, None, device="cpu", hydra_overrides_extra=overrides)
    path = folder / f"hiera_t_{image_size}.pt"
    torch.save({"model": model.state_dict()}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (with a GPU, timing runs on both)")
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 1000], help="N for the tiny model")
    parser.add_argument("--real-frames", type=int, nargs="*", default=[30, 100], help="N for hiera-t (none: skip)")
    parser.add_argument("--real-size", type=int, default=256, help="hiera-t input size, px")
    parser.add_argument("--time-frames", type=int, default=40, help="frames timed per object count (tiny)")
    parser.add_argument("--real-time-frames", type=int, default=15, help="frames timed per object count (hiera-t)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*_C.*")  # sam2 without its CUDA extension: no hole filling
    devices = [torch.device(args.device)]
    if torch.cuda.is_available() and devices[0].type != "cuda":
        devices.append(torch.device("cuda"))
    print(f"{args.threads} torch thread(s); 320x240 frames; objects prompted on the first frame")
    with tempfile.TemporaryDirectory() as folder:
        models = [("tiny 128px", Sam2Options(**tiny_options(write_tiny_sam2(Path(folder)))), args.time_frames)]
        if args.real_frames:
            checkpoint = str(hiera_t_checkpoint(Path(folder), args.real_size))
            options = Sam2Options(checkpoint=checkpoint, image_size=args.real_size)
            models.append((f"hiera-t {args.real_size}px", options, args.real_time_frames))
        print("\ntime per frame, medians: streaming step (resize + backbone + objects in batches) vs stock")
        print("propagate_in_video (backbone + objects one by one; resized up front), interleaved frame by frame;")
        print("resize: the step's input resize (stock does it in init_state); -resize: the ratio without it")
        columns = f"{'stream ms':>10} {'stock ms':>9} {'str/stk':>8} {'resize ms':>9} {'-resize/stk':>11}"
        print(f"{'model, device':<22} {'objs':>4} {columns}")
        for device in devices:
            for name, options, count in models:
                report_time(f"{name} {device.type}", Sam2Propagator(options, device), count)
        print("\nstate: bytes of tensors kept after N frames, one object. streaming: memories, pointers and 4 frames")
        print("of cached image features; stock: its per-frame outputs (memories, pointers, low-res masks);")
        print("'all' adds its preloaded frames and its cached features")
        print(
            f"{'model':<22} {'N':>5} {'stream MB':>9} {'stock MB':>10} {'stock all':>11} {'stk/str':>8} "
            f"{'all/str':>8} {'stkfr':>6}"
        )
        for (name, options, _), counts in zip(models, (sorted(args.frames), sorted(args.real_frames)), strict=False):
            report_memory(name, Sam2Propagator(options, devices[0]), counts)
    if args.real_frames and max(args.real_frames) < max(args.frames):
        print(
            f"hiera-t measured at N={', '.join(map(str, sorted(args.real_frames)))} only (about 0.25 s a frame on "
            f"this CPU); the stock state grows linearly with N, the streaming state does not (see the tiny rows)"
        )
    print("stkfr: frames of memory the stock predictor keeps per object (the streaming one keeps 16)")


if __name__ == "__main__":
    main()
