"""Find a backend class from a parameter: a registered name or `package.module:Class`."""

import ast
import dataclasses
import importlib
import inspect
import textwrap
import tokenize
from collections.abc import Mapping

import torch

from videomolmo_ros.contracts.interfaces import READ_ONLY, BackendError, Pointer

# Registered names -> "module:Class". Imported only when chosen, so a user of one backend
# never pays for (or needs the dependencies of) another.
POINTERS: dict[str, str] = {
    "molmo2": "videomolmo_ros.backends.molmo2.pointer:Molmo2Pointer",
    "videomolmo": "videomolmo_ros.backends.videomolmo.pointer:VideoMolmoPointer",
}
PROPAGATORS: dict[str, str] = {
    "sam2": "videomolmo_ros.backends.sam2.propagator:Sam2Propagator",
}
# The word for "no backend": a command line cannot carry an empty value (`ros2 launch ... propagator:=`
# is refused), so `none` says it there; empty still means none in a params file or the Python API.
NONE = "none"


def chosen(spec: str) -> str | None:
    """The backend `spec` names, or None for no backend (`none`, any case, or empty)."""
    return None if spec.strip().lower() in ("", NONE) else spec


def resolve(spec: str, kind: type) -> type:
    """The class named by `spec` for a backend of `kind` (Pointer or MaskPropagator)."""
    registry = POINTERS if kind is Pointer else PROPAGATORS
    target = registry.get(spec, spec)
    if ":" not in target:
        known = ", ".join(sorted(registry)) or "none yet"
        raise BackendError(
            f"unknown {kind.__name__} backend {spec!r}: use a registered name ({known}) or 'package.module:ClassName'"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except (ImportError, ValueError, TypeError) as error:  # not found, or a malformed module path
        raise BackendError(f"{kind.__name__} backend {spec!r}: cannot import {module_name!r}: {error}") from error
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, kind)):
        raise BackendError(
            f"{kind.__name__} backend {spec!r}: {target} is not a subclass of videomolmo_ros.contracts.{kind.__name__}"
        )
    return cls


def parameter_prefix(spec: str) -> str:
    """Where a backend's options live among the node's parameters: `<name>.<option>`.

    Each backend has its own namespace (molmo2.model, sam2.checkpoint, ...), so one params file
    can configure every backend and switching backends never hands one backend another's values.
    A user class `package.module:Class` gets `Class`.
    """
    return spec.rpartition(":")[2]


def option_defaults(cls: type) -> dict[str, object]:
    """The options a backend class takes, with their defaults (declared as ROS parameters)."""
    return {
        f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
        for f in dataclasses.fields(cls.Options)
    }


def option_descriptions(cls: type) -> dict[str, str]:
    """Each option's comment in the Options class, beside its field or on the lines just above it.

    The comment is what `ros2 param describe` and docs/parameters.md say of the parameter, so it is
    written once, where the option is. Options without one (or without source) are left out.
    """
    try:
        source = textwrap.dedent(inspect.getsource(cls.Options))  # dedented: an Options class may be nested
    except (OSError, TypeError):
        return {}
    lines = source.splitlines(keepends=True)
    tokens = tokenize.generate_tokens(iter(lines).__next__)
    comments = {token.start[0]: token for token in tokens if token.type == tokenize.COMMENT}
    nodes = ast.walk(ast.parse(source))
    fields = [n for n in nodes if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    texts = {f.target.id: _comment_of(comments, f.lineno, f.end_lineno or f.lineno) for f in fields}
    return {name: text for name, text in texts.items() if text}


def _comment_of(comments: dict[int, tokenize.TokenInfo], first: int, last: int) -> str:
    """The comment beside the code of lines `first`..`last` (on the last), else the comment lines right above."""
    if last in comments:
        return comments[last].string.lstrip("#").strip()
    above = []
    while (comment := comments.get(first - 1)) is not None and not comment.line[: comment.start[1]].strip():
        above.insert(0, comment.string.lstrip("#").strip())
        first -= 1
    return " ".join(above)


def read_only_options(cls: type) -> frozenset[str]:
    """The options a backend marks `startup_only` (code, files, endpoints): read-only parameters."""
    return frozenset(f.name for f in dataclasses.fields(cls.Options) if f.metadata.get(READ_ONLY))


def create(spec: str, kind: type, device: torch.device, options: Mapping[str, object] | None = None):
    """Build a backend with `options` (unknown names are an error, not silently ignored)."""
    cls = resolve(spec, kind)
    try:
        parsed = cls.Options(**dict(options or {}))
    except TypeError as error:
        known = ", ".join(option_defaults(cls)) or "none"
        raise BackendError(f"{kind.__name__} backend {spec!r}: bad options ({error}); it takes: {known}") from error
    return cls(parsed, device)
