"""Ray actors as the workers of an evaluation pass (dataset_evaluation.Workers), on this machine or a cluster.

One actor per worker, with the resources it declares (GPUs, CPUs), loads the models once and
evaluates the expressions it is handed, a video's one after another. An actor that dies (out of
memory, its node lost) is replaced; the expression it was running comes back as the error, and
the pass tries its video once more. Ray is imported only here, so a pass without --ray never
loads it.
"""

import os
import socket
from collections.abc import Callable

import ray
from ray.exceptions import RayActorError, RayTaskError

from videomolmo_ros.evaluation.dataset_evaluation import EvalError, ExpressionEvaluator, Scored
from videomolmo_ros.evaluation.video_dataset import ExpressionRef


class _Worker:
    """The actor: a worker's evaluator, built where the actor runs (its models loaded there, once)."""

    def __init__(self, build: Callable[[], ExpressionEvaluator]) -> None:
        self._evaluate = build()

    def where(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    def evaluate(self, ref: ExpressionRef) -> Scored:
        return self._evaluate(ref)


class RayWorkers:
    """`workers` actors of `cpus` CPUs and `gpus` GPUs each, on the Ray at `address` (or a local one)."""

    def __init__(
        self,
        build: Callable[[], ExpressionEvaluator],
        address: str | None = None,
        workers: int = 0,
        cpus: float = 1.0,
        gpus: float = 0.0,
    ) -> None:
        """Connect (or start a local Ray with this machine's cores and GPUs; one already started is
        used as it is) and wait until every actor has loaded its models; `workers` 0: as many as fit."""
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address or None, include_dashboard=False, log_to_driver=True)
        self.slots = workers or _fitting(cpus, gpus)
        if self.slots < 1:
            raise EvalError(f"no Ray worker of {cpus} CPU(s) and {gpus} GPU(s) fits in {ray.cluster_resources()}")
        self._actor = ray.remote(_Worker).options(num_cpus=cpus, num_gpus=gpus)
        self._build = build
        self._actors = [self._actor.remote(build) for _ in range(self.slots)]
        self._names = self._ready(self._actors)
        self._running: dict[ray.ObjectRef, int] = {}

    def __enter__(self) -> "RayWorkers":
        return self

    def __exit__(self, *exc: object) -> None:
        for actor in self._actors:
            ray.kill(actor)
        if self._owns_ray:
            ray.shutdown()

    def start(self, slot: int, ref: ExpressionRef) -> None:
        self._running[self._actors[slot].evaluate.remote(ref)] = slot

    def finished(self) -> list[tuple[int, Scored | BaseException]]:
        ready, _ = ray.wait(list(self._running), num_returns=1)
        others = [r for r in self._running if r not in ready]
        ready += ray.wait(others, num_returns=len(others), timeout=0)[0] if others else []
        slots = [self._running.pop(ref) for ref in ready]
        return [(slot, self._outcome(slot, ref)) for slot, ref in zip(slots, ready, strict=True)]

    def name(self, slot: int) -> str:
        return self._names[slot]

    def _outcome(self, slot: int, ref: ray.ObjectRef) -> Scored | BaseException:
        try:
            return ray.get(ref)
        except RayTaskError as error:  # raised by the evaluation: the actor lives on
            return error.cause if isinstance(error.cause, Exception) else error
        except RayActorError as error:  # the actor died: a new one takes its slot
            self._actors[slot] = self._actor.remote(self._build)
            [self._names[slot]] = self._ready([self._actors[slot]])
            return RuntimeError(f"Ray worker died: {_reason(error)}")

    @staticmethod
    def _ready(actors: list) -> list[str]:
        """Where each actor runs, once it has loaded its models; an EvalError if one could not."""
        try:
            return ray.get([a.where.remote() for a in actors])
        except RayActorError as error:
            raise EvalError(f"a Ray worker could not load its models: {_reason(error)}") from None


def _fitting(cpus: float, gpus: float) -> int:
    """How many workers of `cpus` CPUs and `gpus` GPUs the cluster holds."""
    resources = ray.cluster_resources()
    counts = [int(resources.get("CPU", 0) // cpus)] if cpus > 0 else []
    counts += [int(resources.get("GPU", 0) // gpus)] if gpus > 0 else []
    return min(counts, default=1)


def _reason(error: BaseException) -> str:
    """The last line of a Ray error (its tracebacks are long), which names what went wrong."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__
