"""docs/parameters.md, written from the node's own parameter declarations so that it cannot drift.

    python -m videomolmo_ros.node.parameter_docs > docs/parameters.md

The node's declaring code runs against a recorder instead of a node: every parameter it declares
(description, default, range and read-only flag, as `ros2 param describe` reports them), for the
first camera and another one, with the options of every registered backend. A test fails when
the committed file differs from this output.
"""

from dataclasses import dataclass

from rcl_interfaces.msg import ParameterDescriptor

from videomolmo_ros.backends import registry
from videomolmo_ros.contracts.interfaces import MaskPropagator, Pointer
from videomolmo_ros.node.parameters import RUNTIME_PARAMETERS, Parameters, describe

COMMAND = "python -m videomolmo_ros.node.parameter_docs > docs/parameters.md"
CAMERA = "<name>"  # how the reference writes a camera's name: cameras.<name>.image_topic
_FIRST, _OTHER = "main", "other"  # the cameras the recorder declares: the default one, then another
_ROLES = (("pointer", Pointer, registry.POINTERS), ("propagator", MaskPropagator, registry.PROPAGATORS))

HEADER = f"""# Parameters

<!-- Generated from the node's declarations by `{COMMAND}`: edit those, not this file. -->

Every parameter of `perception_node`, as `ros2 param describe` reports it.
[`config/perception.yaml`](../config/perception.yaml) holds each one at its default, with longer
notes; give yours in a params file or through launch. rclpy adds its own `use_sim_time` and
`start_type_description_service`.

**When it can change.** *read-only*: it selects code, files or endpoints, or sizes the node's memory,
so it comes from a params file or launch only; `ros2 param set` is refused in every state
([security](security.md)). *any time*: applied at once in every lifecycle state, and kept across
deactivate / activate. *unconfigured*: only while the node is unconfigured (with `autostart: false`:
deactivate, cleanup, set, configure), so the values the node uses always equal what `get_parameters`
returns ([lifecycle](running.md#lifecycle)). A value of the wrong
type or outside its range stops the node with one FATAL line naming the parameter, the value, what
was expected and the file that gave it; an integer given for a double is taken as that double.
"""


@dataclass(frozen=True)
class Declared:
    name: str
    default: object
    descriptor: ParameterDescriptor


class Recorder(Parameters):
    """The node's Parameters declaring into a dict instead of a node; each declaration returns its default."""

    def __init__(self):
        super().__init__(node=None)
        self.declared: dict[str, Declared] = {}

    def declare(self, name: str, default, description: str, bounds: tuple | None = None, read_only: bool = False):
        self.declared.setdefault(name, Declared(name, default, describe(name, default, description, bounds, read_only)))
        return [_FIRST, _OTHER] if name == "cameras.names" else default

    def record(self) -> dict[str, Declared]:
        """What the node declares at start-up and configure, then the options of every registered backend."""
        self.autostart()
        self.read()
        for role, kind, names in _ROLES:
            self._backend_options(role, kind)
            for spec in names:
                self.backend_options(spec, kind)
        return self.declared


def markdown() -> str:
    """The text of docs/parameters.md."""
    declared = Recorder().record()
    backends = {name for _, _, names in _ROLES for name in names}
    node = [d for d in declared.values() if d.name.partition(".")[0] not in {"cameras", *backends}]
    first_camera = [
        declared["cameras.names"],
        *(d for d in declared.values() if d.name.startswith(f"cameras.{_FIRST}.")),
    ]
    sections = [HEADER, "## The node\n", _table(node, declared)]
    sections += [
        f"## Cameras: `cameras.names`, then `cameras.{CAMERA}.<setting>` for each\n",
        "Defaults name the first camera's topics; where another camera's differ, they follow.\n",
        _table(first_camera, declared),
    ]
    for role, _, names in _ROLES:
        for spec in names:
            cls = registry.resolve(spec, Pointer if role == "pointer" else MaskPropagator)
            sections += [
                f"## `{spec}` options (`{role}_backend: {spec}`, {cls.__name__})\n",
                "Declared when this backend is selected; a params file may hold every backend's.\n",
                _table([d for d in declared.values() if d.name.startswith(f"{spec}.")], declared),
            ]
    return "\n".join(sections)


def _table(rows: list[Declared], declared: dict[str, Declared]) -> str:
    lines = ["| parameter | default | range | changes | description |", "|---|---|---|---|---|"]
    for row in rows:
        cells = (f"`{_documented_name(row.name)}`", _default(row, declared), _range(row.descriptor), _changes(row))
        lines.append("| " + " | ".join((*cells, row.descriptor.description.replace("|", "\\|"))) + " |")
    return "\n".join(lines) + "\n"


def _documented_name(name: str) -> str:
    return name.replace(f"cameras.{_FIRST}.", f"cameras.{CAMERA}.")


def _default(row: Declared, declared: dict[str, Declared]) -> str:
    """The default, and another camera's where it differs from the first camera's."""
    text = f"`{_value(row.default)}`"
    other = declared.get(row.name.replace(f"cameras.{_FIRST}.", f"cameras.{_OTHER}."))
    if other is not None and other.default != row.default:
        text += f"; another camera: `{_value(other.default).replace(_OTHER, CAMERA)}`"
    return text


def _value(value) -> str:
    """A value as a params file writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return '""' if value == "" else str(value)


def _range(descriptor: ParameterDescriptor) -> str:
    bounds = [*descriptor.integer_range, *descriptor.floating_point_range]
    number = lambda v: str(v) if isinstance(v, int) else f"{v:g}"  # noqa: E731
    return "".join(f"{number(b.from_value)} to {number(b.to_value)}" for b in bounds)


def _changes(row: Declared) -> str:
    if row.descriptor.read_only:
        return "read-only"
    return "any time" if row.name in RUNTIME_PARAMETERS else "unconfigured"


if __name__ == "__main__":
    print(markdown(), end="")
