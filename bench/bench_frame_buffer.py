"""Frame buffer costs, measured side by side in one run.

    ./bench/run bench_frame_buffer [--device cuda]

Prints, per frame size: the cost of reading the last K frames (one gather of K slots)
against copying the whole ring, the cost of a push against decoding the image message it
came from, and the ring's memory after 100 and after 10,000 frames (must not grow).
"""

import argparse
import time

import numpy as np
import torch

from videomolmo_ros.io.image_codec import decode_image, encode_image, to_rgb8
from videomolmo_ros.pipeline.frame_buffer import FrameBuffer


def per_call(fn, repeat: int) -> float:
    fn()  # warm up
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeat


def bench(height: int, width: int, capacity: int, k: int, device: str, repeat: int) -> dict[str, float]:
    buffer = FrameBuffer(capacity, device)
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    for seq in range(100):
        buffer.push(image, seq, "cam")
    bytes_after_100 = buffer.nbytes
    h, w, step, data = encode_image(image[:, :, ::-1].copy(), "bgr8")
    stamp = iter(range(100, 10**9))
    push_s = per_call(lambda: buffer.push(image, next(stamp), "cam"), repeat)
    decode_s = per_call(lambda: to_rgb8(decode_image("bgr8", h, w, step, data), "bgr8"), repeat)
    window_s = per_call(lambda: buffer.window(k), repeat)
    ring = torch.zeros((capacity, height, width, 3), dtype=torch.uint8, device=device)  # same size as the ring
    ring_s = per_call(lambda: ring.clone(), repeat)
    for _ in range(10_000 - 100 - 2 * repeat):
        buffer.push(image, next(stamp), "cam")
    return {
        "window": window_s,
        "ring": ring_s,
        "push": push_s,
        "decode": decode_s,
        "mem100": bytes_after_100,
        "mem10k": buffer.nbytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--capacity", type=int, default=32)
    parser.add_argument("--k", type=int, default=8, help="frames a query reads")
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"device {args.device}, ring of {args.capacity} frames, reading the last {args.k}")
    header = (
        f"{'frame':>10} {'window ms':>10} {'ring copy ms':>13} {'ring/window':>12} "
        f"{'push ms':>8} {'decode ms':>10} {'push/decode':>12} {'MB @100':>8} {'MB @10k':>8} {'10k/100':>8}"
    )
    print(header)
    for height, width in [(480, 640), (1080, 1920)]:
        r = bench(height, width, args.capacity, args.k, args.device, args.repeat)
        print(
            f"{width}x{height:<6} {r['window'] * 1e3:10.3f} {r['ring'] * 1e3:13.3f} {r['ring'] / r['window']:12.1f} "
            f"{r['push'] * 1e3:8.3f} {r['decode'] * 1e3:10.3f} {r['push'] / r['decode']:12.2f} "
            f"{r['mem100'] / 2**20:8.1f} {r['mem10k'] / 2**20:8.1f} {r['mem10k'] / r['mem100']:8.2f}"
        )


if __name__ == "__main__":
    main()
