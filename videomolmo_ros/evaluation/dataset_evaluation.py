"""Offline evaluation on a video-folder dataset, through the node's own pipeline and without ROS.

Each (video, expression) runs in a fresh PerceptionPipeline with the given pointer and mask
propagator, so the scores are those of the code the node runs. The frames are fed in order,
stamped at a fixed rate, the expression is a TRACK command, and each frame waits for the
pipeline's outputs (lockstep_run.py) instead of racing it.

Scores are videomolmo_ros.evaluation.scoring's, as replay_bag's: J, F and J&F per sequence of the union
of the tracks' masks over the frames with ground truth (DAVIS; a frame the pipeline never
answered scores as finding nothing), pointing P/R/F1 and count accuracy on the annotated frames
the targets are on (Molmo2), identity switches (CLEAR-MOT), and mask and target latency from
when each frame was fed. Written: report.json, table.md, an overlay GIF per sequence and plots.png.
"""

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from videomolmo_ros.contracts.interfaces import MaskPropagator, Pointer
from videomolmo_ros.evaluation.eval_report import Report, score, summarize, write_gif, write_report
from videomolmo_ros.evaluation.lockstep_run import EvalConfig, run_sequence
from videomolmo_ros.evaluation.video_dataset import ExpressionRef, VideoDataset


class EvalError(RuntimeError):
    """A run that cannot start as asked; the message says what to change."""


def evaluate(
    dataset: VideoDataset,
    refs: Sequence[ExpressionRef],
    pointer: Pointer,
    propagator: MaskPropagator,
    device: torch.device,
    config: EvalConfig,
    out_dir: Path,
    settings: Mapping[str, object] | None = None,
) -> Report:
    """Run and score every expression; write report.json, table.md, the GIFs and plots.png.

    `settings` (backends, options, ...) is recorded in the report beside `config`.
    """
    if not refs:
        raise EvalError("no expression to evaluate")
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for ref in tqdm(refs, desc="evaluate", unit="seq", disable=None):
        sample = dataset.load(ref)
        run = run_sequence(sample, pointer, propagator, device, config)
        result = score(sample, run)
        write_gif(out_dir / f"{ref.name}.gif", sample, run, result, config)
        results.append(result)
    report = Report(results, summarize(results), {**dataclasses.asdict(config), **(settings or {})})
    write_report(out_dir, report)
    return report
