"""results.jsonl: every finished expression of an evaluation pass, one JSON line each, appended as it ends.

A pass of days must lose nothing it computed: each expression's scores are appended (and flushed to
disk) the moment they exist, a video that failed is recorded with its error, and the report is
rebuilt from this file alone. The first line is the pass's config; a pass resumed with other
settings is refused, since its scores could not be pooled with these. A last line cut short by a
kill is dropped (and said so): its expression is run again.

Lines: {"kind": "config", "config": {...}}, {"kind": "done", "name", "video", "seconds", "worker",
"result": {...}} and {"kind": "failed", "video", "names": [...], "attempts", "error"}. Later lines
win: a failed video that a resumed pass then scores counts as scored.
"""

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from videomolmo_ros.evaluation.eval_report import FailedVideo, Report, SequenceResult, VideoTiming, summarize
from videomolmo_ros.evaluation.metrics import CountScores, LatencyStats, PointingScores

RESULTS_FILE = "results.jsonl"
# Settings that may change between a pass and its resumption without changing a score.
RESUMABLE_CHANGES = ("device",)


class ResultsError(RuntimeError):
    """A results file that cannot be read or continued; the message says why."""


@dataclass
class Results:
    """What results.jsonl holds: the config, the scored expressions by name, the failed videos."""

    config: dict
    done: dict[str, dict]  # name -> its "done" line
    failures: dict[str, FailedVideo]  # video -> its last failure, if none of its expressions scored since
    dropped_partial_line: bool = False


def result_to_json(result: SequenceResult) -> dict:
    return dataclasses.asdict(result)


def result_from_json(data: Mapping) -> SequenceResult:
    """The SequenceResult of a "done" line (JSON's lists back into tuples, its objects into dataclasses)."""

    def optional(cls: type, value: Mapping | None) -> object:
        return None if value is None else cls(**value)

    return SequenceResult(
        **{
            **data,
            "pointing": optional(PointingScores, data["pointing"]),
            "frame_count": optional(CountScores, data["frame_count"]),
            "frame_count_pairs": [tuple(p) for p in data["frame_count_pairs"]],
            "tracking_latency": optional(LatencyStats, data["tracking_latency"]),
            "grounding_latency": optional(LatencyStats, data["grounding_latency"]),
            "latency_samples": {k: [tuple(s) for s in v] for k, v in data["latency_samples"].items()},
        }
    )


def as_json(value: object) -> object:
    """`value` as it reads back from JSON (tuples as lists, other objects as strings)."""
    return json.loads(json.dumps(value, default=str))


def report_from_results(results: Results) -> Report:
    """The report of a results file: its sequences in dataset order, its failed videos, time per video."""
    done = sorted(results.done.values(), key=lambda d: (d["video"], len(d["name"]), d["name"]))  # "2" before "10"
    timings: dict[str, VideoTiming] = {}
    for line in done:
        before = timings.get(line["video"], VideoTiming(0.0, 0, []))
        workers = before.workers + [line["worker"]] * (line["worker"] not in before.workers)
        timings[line["video"]] = VideoTiming(before.seconds + line["seconds"], before.expressions + 1, workers)
    sequences = [result_from_json(line["result"]) for line in done]
    failed = sorted(results.failures.values(), key=lambda f: f.video)
    return Report(sequences, summarize(sequences), results.config, failed, timings)


def read_results(path: Path) -> Results:
    """The lines of `path`; a DatasetError if it is not a results file."""
    try:
        lines = path.read_text().splitlines(keepends=True)
    except OSError as error:
        raise ResultsError(f"{path}: {error.strerror or error}") from error
    partial = bool(lines) and not lines[-1].endswith("\n")
    records = []
    for number, line in enumerate(lines[:-1] if partial else lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ResultsError(f"{path}:{number}: not a results line ({error})") from error
    if not records or records[0].get("kind") != "config":
        raise ResultsError(f"{path}: not a results file of evaluate_dataset (no config line first)")
    results = Results(records[0]["config"], {}, {}, partial)
    for record in records[1:]:
        if record["kind"] == "done":
            results.done[record["name"]] = record
            results.failures.pop(record["video"], None)
        elif record["kind"] == "failed":
            results.failures[record["video"]] = FailedVideo(
                record["video"], record["names"], record["attempts"], record["error"]
            )
    return results


class ResultsWriter:
    """Appends lines to results.jsonl, each whole and on disk before the next expression starts."""

    def __init__(self, out_dir: Path, config: Mapping, resume: bool) -> None:
        """Start the file, or on `resume` continue it (a partial last line cut off) after checking
        that its config is `config`."""
        self.path = out_dir / RESULTS_FILE
        self.previous = self.check(out_dir, config, resume)
        if not self.path.exists():
            self._append({"kind": "config", "config": as_json(config)}, mode="x")
        elif self.previous.dropped_partial_line:
            text = self.path.read_text()
            with self.path.open("r+") as file:
                file.truncate(len(text[: text.rfind("\n") + 1].encode()))

    @staticmethod
    def check(out_dir: Path, config: Mapping, resume: bool) -> Results:
        """What `out_dir` holds of a pass with `config`, or a ResultsError if it cannot go on there
        (a tool calls this before loading models, which can take minutes)."""
        path, config = out_dir / RESULTS_FILE, as_json(config)
        if not path.exists():
            return Results(config, {}, {})
        if not resume:
            raise ResultsError(f"{path} exists: --resume to continue that pass, or another --output")
        previous = read_results(path)
        changed = sorted(
            k
            for k in set(config) | set(previous.config)
            if k not in RESUMABLE_CHANGES and config.get(k) != previous.config.get(k)
        )
        if changed:
            raise ResultsError(f"{path} was made with other settings ({', '.join(changed)}): cannot resume it")
        return previous

    def done(self, name: str, video: str, seconds: float, worker: str, result: SequenceResult) -> None:
        line = {"kind": "done", "name": name, "video": video, "seconds": seconds, "worker": worker}
        self._append({**line, "result": result_to_json(result)})

    def failed(self, failure: FailedVideo) -> None:
        self._append({"kind": "failed", **dataclasses.asdict(failure)})

    def _append(self, record: Mapping, mode: str = "a") -> None:
        with self.path.open(mode) as file:
            file.write(json.dumps(record, default=str) + "\n")
            file.flush()
            os.fsync(file.fileno())
