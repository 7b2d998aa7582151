"""evaluate_dataset: score the node's pipeline on a video-folder dataset, without ROS.

The command line of videomolmo_ros.evaluation.dataset_evaluation (what is run and scored is
described there): arguments in, backends built, the evaluation run, the table printed.
"""

import argparse
import dataclasses
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from videomolmo_ros.backends import registry as backend_registry
from videomolmo_ros.contracts.interfaces import BackendError, MaskPropagator, Pointer
from videomolmo_ros.evaluation.dataset_evaluation import (
    EvalError,
    ExpressionEvaluator,
    LocalWorkers,
    evaluate,
    pass_config,
)
from videomolmo_ros.evaluation.eval_report import Report, markdown_table
from videomolmo_ros.evaluation.lockstep_run import EvalConfig
from videomolmo_ros.evaluation.results_file import ResultsError, ResultsWriter
from videomolmo_ros.evaluation.video_dataset import VideoDataset
from videomolmo_ros.pipeline.device import resolve_device
from videomolmo_ros.pipeline.pipeline import PipelineConfig
from videomolmo_ros.pipeline.track_manager import TrackerConfig
from videomolmo_ros.tools.tool_main import EXIT_ERROR, run_tool

# Pipeline settings a run may change with --param (what VideoMolmo needs: 5 frames at camera rate).
PIPELINE_PARAMS = ("context_frames", "context_fps")


def settable_parameters(backends: Mapping[str, type]) -> dict[str, object]:
    """Every --param name with its default: each backend's options (named as the node's
    parameters, `<backend>.<option>`), the context window and the tracker thresholds."""
    base = PipelineConfig()
    defaults: dict[str, object] = {name: getattr(base, name) for name in PIPELINE_PARAMS}
    defaults |= {f"tracker.{f.name}": getattr(base.tracker, f.name) for f in dataclasses.fields(TrackerConfig)}
    for spec, kind in backends.items():
        prefix = backend_registry.parameter_prefix(spec)
        cls = backend_registry.resolve(spec, kind)
        defaults |= {f"{prefix}.{name}": value for name, value in backend_registry.option_defaults(cls).items()}
    return defaults


def parse_params(pairs: Sequence[str], defaults: Mapping[str, object]) -> dict[str, object]:
    """`name=value` strings -> values of the type of each name's default."""
    values = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise EvalError(f"--param {pair!r}: use name=value")
        if name not in defaults:
            raise EvalError(f"--param {name}: unknown; known: {', '.join(sorted(defaults))}")
        values[name] = _coerce(name, text, defaults[name])
    return values


def _coerce(name: str, text: str, default: object) -> object:
    try:
        if isinstance(default, bool):
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[text.lower()]
        if isinstance(default, int | float | str):
            return type(default)(text)
    except (KeyError, ValueError):
        raise EvalError(f"--param {name}={text}: expected a value of type {type(default).__name__}") from None
    raise EvalError(f"--param {name}: a {type(default).__name__} option cannot be set from the command line")


def backend_options(spec: str, values: Mapping[str, object]) -> dict[str, object]:
    prefix = backend_registry.parameter_prefix(spec) + "."
    return {name.removeprefix(prefix): value for name, value in values.items() if name.startswith(prefix)}


def pipeline_config(values: Mapping[str, object]) -> PipelineConfig:
    tracker = {k.removeprefix("tracker."): v for k, v in values.items() if k.startswith("tracker.")}
    top = {k: v for k, v in values.items() if k in PIPELINE_PARAMS}
    return PipelineConfig(**top, tracker=TrackerConfig(**tracker))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="evaluate_dataset", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="dataset folder (Ref-DAVIS17 / Ref-YouTube-VOS, MeViS or DAVIS 2016 layout)")
    parser.add_argument("-o", "--output", required=True, help="folder for report.json, table.md, GIFs, plots.png")
    parser.add_argument("--pointer", default="molmo2", help="registered name or package.module:Class")
    parser.add_argument("--propagator", default="sam2", help="registered name or package.module:Class")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="backend option (molmo2.model=..., sam2.checkpoint=...), context_frames, context_fps or "
        "tracker.*, as the node's parameters (repeat)",
    )
    parser.add_argument("--videos", default="", help="comma-separated video names (default: all)")
    parser.add_argument(
        "--query",
        action="append",
        default=[],
        metavar='VIDEO="TEXT"',
        help='DAVIS 2016 (no expressions of its own): the query of a video, dog="the dog" (repeat)',
    )
    parser.add_argument("--queries", help='DAVIS 2016: a JSON file {"video": "query", ...}')
    parser.add_argument("--max-expressions", type=int, default=0, help="at most N expressions per video (0: all)")
    parser.add_argument("--fps", type=float, default=10.0, help="rate to stamp the frames at, Hz")
    parser.add_argument("--frame-timeout", type=float, default=300.0, help="seconds to wait for one frame's outputs")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--resume", action="store_true", help="continue the pass in --output: skip the expressions results.jsonl has"
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="spread the videos over Ray workers: a cluster's address (ray://host:10001, auto), "
        "or none for a local Ray on this machine's cores and GPUs",
    )
    parser.add_argument("--workers", type=int, default=0, help="with --ray: how many (0: as many as fit)")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0, help="with --ray: CPUs each worker holds")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0, help="with --ray: GPUs each worker holds")
    args = parser.parse_args(argv)
    if args.fps <= 0 or args.frame_timeout <= 0 or args.max_expressions < 0:
        parser.error("--fps and --frame-timeout must be > 0, --max-expressions >= 0")
    if args.workers < 0 or args.cpus_per_worker < 0 or args.gpus_per_worker < 0:
        parser.error("--workers, --cpus-per-worker and --gpus-per-worker must be >= 0")
    return args


def parse_queries(pairs: Sequence[str], path: str | None) -> dict[str, str]:
    """{video: query} from --queries (a JSON map) and --query video=text (which win)."""
    queries: dict[str, str] = {}
    if path:
        try:
            loaded = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise EvalError(f"--queries {path}: {error}") from error
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise EvalError(f'--queries {path}: expected a JSON object {{"video": "query", ...}}')
        queries.update(loaded)
    for pair in pairs:
        video, sep, text = pair.partition("=")
        if not sep or not video or not text.strip():
            raise EvalError(f'--query {pair!r}: use video="query text"')
        queries[video] = text.strip()
    return queries


@dataclass(frozen=True)
class EvaluatorSpec:
    """What a worker needs to load its models, wherever it runs (a Ray actor gets this, not the models)."""

    dataset: str
    queries: dict[str, str]
    pointer: str
    propagator: str
    values: dict[str, object]
    device: str
    config: EvalConfig

    def build(self) -> ExpressionEvaluator:
        try:
            device = resolve_device(self.device)
        except ValueError as error:
            raise EvalError(str(error)) from error
        # The propagator first: SAM2 loads in seconds, a grounding model can take minutes.
        options = backend_options(self.propagator, self.values)
        propagator = backend_registry.create(self.propagator, MaskPropagator, device, options)
        pointer = backend_registry.create(self.pointer, Pointer, device, backend_options(self.pointer, self.values))
        return ExpressionEvaluator(VideoDataset(self.dataset, self.queries), pointer, propagator, device, self.config)


def run(args: argparse.Namespace) -> Report:
    """Check the dataset first (cheap), then load the models (slow) and evaluate."""
    queries = parse_queries(args.query, args.queries)
    dataset = VideoDataset(args.dataset, queries)
    refs = dataset.expressions([v for v in args.videos.split(",") if v], args.max_expressions)
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        raise EvalError(str(error)) from error
    values = parse_params(args.param, settable_parameters({args.pointer: Pointer, args.propagator: MaskPropagator}))
    config = EvalConfig(args.fps, args.frame_timeout, pipeline_config(values))
    settings = {
        "dataset": str(dataset.root),
        "layout": dataset.layout,
        "pointer": args.pointer,
        "propagator": args.propagator,
        "params": values,
        "device": str(device),
    }
    ResultsWriter.check(Path(args.output), pass_config(config, settings), args.resume)  # before the models load
    spec = EvaluatorSpec(str(dataset.root), queries, args.pointer, args.propagator, values, args.device, config)
    if args.ray is None:
        workers = LocalWorkers(spec.build())
        return evaluate(refs, workers, config, Path(args.output), settings, args.resume)
    from videomolmo_ros.evaluation.ray_workers import RayWorkers  # Ray loads only for --ray

    with RayWorkers(spec.build, args.ray, args.workers, args.cpus_per_worker, args.gpus_per_worker) as workers:
        return evaluate(refs, workers, config, Path(args.output), settings, args.resume)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def evaluation() -> int:
        report = run(args)
        print(markdown_table(report), end="")
        print(f"report.json, table.md, plots.png, results.jsonl and {len(report.sequences)} GIF(s) in {args.output}")
        if not report.failed:
            return 0
        first = report.failed[0]
        print(
            f"evaluate_dataset: error: {len(report.failed)} video(s) failed (in report.json; --resume tries them "
            f"again): {first.video}: {first.error}",
            file=sys.stderr,
        )
        return EXIT_ERROR

    return run_tool("evaluate_dataset", evaluation, (BackendError, EvalError, ResultsError))


if __name__ == "__main__":
    sys.exit(main())
