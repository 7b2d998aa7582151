"""Where a Molmo2 query's time goes: preprocessing, prefill, decode, the grammar; and visual tokens per frame.

    ./bench/run bench_molmo2 [--frames 8] [--tokens 32]

Random-weight checkpoints built from configs (no download): the tiny one the tests use and a
mid-size one with Molmo2's real 378 px frames (81 visual tokens per frame) and a wider, deeper
decoder. All figures come from one run on this machine, side by side; the ratios carry over to
other machines better than the absolute times.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from support import write_tiny_molmo2
from transformers import LogitsProcessorList

from videomolmo_ros.backends.constrained_decoding import grammar_logits_processor
from videomolmo_ros.backends.molmo2.pointer import Molmo2Options, Molmo2Pointer, printed_time
from videomolmo_ros.contracts.grounding import GroundingMode
from videomolmo_ros.pipeline.frame_buffer import FrameBuffer

CONFIGS = {
    "tiny": {"hidden": 32, "layers": 2, "image_size": 56},
    "mid": {"hidden": 256, "layers": 4, "image_size": 378},
}


def timed(fn, repeat: int) -> tuple[float, object]:
    result = fn()  # warm up
    start = time.perf_counter()
    for _ in range(repeat):
        result = fn()
    return (time.perf_counter() - start) / repeat, result


def grammar_cost(pointer: Molmo2Pointer, inputs, regex: str) -> tuple[int, float]:
    """New tokens of one constrained answer, and the grammar mask's own seconds per token (replayed alone)."""
    tokenizer = pointer.processor.tokenizer
    head_size = pointer.model.get_output_embeddings().weight.shape[0]
    with torch.inference_mode():
        output = pointer.model.generate(
            **inputs,
            max_new_tokens=pointer.options.max_new_tokens,
            do_sample=False,
            logits_processor=LogitsProcessorList([grammar_logits_processor(tokenizer, regex, head_size)]),
        )
    prompt_tokens = inputs["input_ids"].shape[1]
    mask = grammar_logits_processor(tokenizer, regex, head_size)
    start = time.perf_counter()
    for end in range(prompt_tokens, output.shape[1]):  # one call per new token, as generate makes them
        mask(output[:, :end], torch.zeros(1, head_size))
    tokens = output.shape[1] - prompt_tokens
    return tokens, (time.perf_counter() - start) / tokens


def measure(folder: Path, frames: int, tokens: int, repeat: int) -> dict[str, float]:
    pointer = Molmo2Pointer(Molmo2Options(model=str(folder), max_new_tokens=tokens), torch.device("cpu"))
    buffer = FrameBuffer(frames)
    rng = np.random.default_rng(0)
    for k in range(frames):
        buffer.push(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), round(k * 0.5e9), "cam")
    window = buffer.window(frames)
    prompt = "Point to the red mug."
    fps, steps = pointer.frame_steps(window.seconds_since_first())
    prep_s, inputs = timed(lambda: pointer.prepare(window.images, steps, prompt), repeat)
    with torch.inference_mode():
        prefill_s, _ = timed(lambda: pointer.model(**inputs), repeat)
        # Exactly `tokens` new tokens, unconstrained, so decode time per token is comparable.
        total_s, _ = timed(
            lambda: pointer.model.generate(**inputs, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False),
            repeat,
        )
    regex = pointer.answer_regex(GroundingMode.POINT, [printed_time(k, fps) for k in steps])
    constrained_s, _ = timed(lambda: pointer.generate(inputs, regex), repeat)
    constrained_tokens, mask_s = grammar_cost(pointer, inputs, regex)
    patch_id = pointer.model.config.image_patch_id
    return {
        "visual_per_frame": int((inputs["input_ids"] == patch_id).sum()) / frames,
        "prompt_tokens": inputs["input_ids"].shape[1],
        "prep": prep_s,
        "prefill": prefill_s,
        "decode_per_token": (total_s - prefill_s) / (tokens - 1),
        "constrained_query": constrained_s,
        "constrained_per_token": (constrained_s - prefill_s) / max(constrained_tokens - 1, 1),
        "mask_per_token": mask_s,
        "vocabulary": len(pointer.processor.tokenizer),
        "params_m": sum(p.numel() for p in pointer.model.parameters()) / 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="context frames per query")
    parser.add_argument("--tokens", type=int, default=32, help="new tokens per query")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    print(f"{args.frames} frames of 640x480 per query, {args.tokens} new tokens, CPU fp32, 1 thread")
    print(
        f"{'config':>7} {'params M':>9} {'vis tok/frame':>14} {'prompt tok':>11} {'prep ms':>9} {'prefill ms':>11} "
        f"{'decode ms/tok':>14} {'prefill/prep':>13} {'decode/prefill':>15} {'constrained query ms':>21}"
        f" {'constrained ms/tok':>19} {'mask us/tok':>12} {'vocabulary':>11}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for name, config in CONFIGS.items():
            r = measure(write_tiny_molmo2(Path(tmp) / name, **config), args.frames, args.tokens, args.repeat)
            print(
                f"{name:>7} {r['params_m']:9.2f} {r['visual_per_frame']:14.0f} {r['prompt_tokens']:11d} "
                f"{r['prep'] * 1e3:9.1f} {r['prefill'] * 1e3:11.1f} {r['decode_per_token'] * 1e3:14.2f} "
                f"{r['prefill'] / r['prep']:13.2f} {r['decode_per_token'] * args.tokens / r['prefill']:15.2f} "
                f"{r['constrained_query'] * 1e3:21.1f} {r['constrained_per_token'] * 1e3:19.2f} "
                f"{r['mask_per_token'] * 1e6:12.0f} {r['vocabulary']:11d}"
            )
    print("decode/prefill: decoding all new tokens against one prefill; constrained query: prep excluded.")
    print(
        "constrained ms/tok: a constrained query after prefill per new token (grammar set-up included); mask us/tok: "
        "the grammar mask alone, replaying that answer."
    )


if __name__ == "__main__":
    main()
