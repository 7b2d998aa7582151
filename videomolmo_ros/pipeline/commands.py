"""The running grounding commands: validation, ids, add / replace / stop.

Plain Python: the node converts GroundingCommand messages into CommandRequest and reports
every CommandEvent on `command_status`, so a planner always learns what became of a command.
"""

import itertools
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum

from videomolmo_ros.contracts.grounding import GroundingMode
from videomolmo_ros.io.text import clean, clip


class CommandAction(IntEnum):
    """Values match GroundingCommand.ACTION_*."""

    ADD = 0
    REPLACE = 1
    STOP = 2
    STOP_ALL = 3


class CommandState(IntEnum):
    """Values match CommandStatus.ACCEPTED / REJECTED / STOPPED."""

    ACCEPTED = 0
    REJECTED = 1
    STOPPED = 2


@dataclass(frozen=True)
class CommandRequest:
    """A command as a planner sent it, before validation."""

    id: str
    query: str
    mode: int = GroundingMode.TRACK
    action: int = CommandAction.ADD
    camera: str = ""  # "" = the default camera, "a,b" = several, "*" = every camera


@dataclass(frozen=True)
class Command:
    """A running command. `generation` tells a replaced command from its successor of the same id."""

    id: str
    query: str
    mode: GroundingMode
    generation: int
    cameras: tuple[str, ...] = ("",)


@dataclass(frozen=True)
class CommandEvent:
    """What happened to a request; `id` and `query` are the request's (sanitised) ones."""

    state: CommandState
    id: str
    query: str
    reason: str = ""
    cameras: tuple[str, ...] = ()


class Verdict(Enum):
    """Outcome of query validation."""

    OK = "ok"
    EMPTY = "empty"
    TOO_LONG = "too long"


_SPACES = re.compile(r"\s+")
_ID = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")


def sanitize_query(text: str, max_chars: int) -> tuple[str, Verdict]:
    """Strip control and invisible characters, collapse whitespace; refuse empty or over-long queries.

    An over-long query is refused rather than cut: a truncated instruction can name a
    different object, and the planner is better told than silently misread.
    """
    if len(text) > 8 * max_chars:  # do not even scan megabytes of text
        return "", Verdict.TOO_LONG
    cleaned = _SPACES.sub(" ", clean(text)).strip()
    if not cleaned:
        return "", Verdict.EMPTY
    if len(cleaned) > max_chars:
        return "", Verdict.TOO_LONG
    return cleaned, Verdict.OK


def select_cameras(spec: str, names: Sequence[str]) -> tuple[str, ...]:
    """The cameras a command names: "" = the first (default) one, "*" = all, else comma-separated names.

    Raises ValueError naming the known cameras for a name that is not one of them.
    """
    if not spec.strip():
        return (names[0],)
    if spec.strip() == "*":
        return tuple(names)
    chosen = tuple(dict.fromkeys(part.strip() for part in spec.split(",") if part.strip()))
    unknown = [name for name in chosen if name not in names]
    if unknown or not chosen:
        raise ValueError(f"unknown camera {clip(', '.join(unknown) or spec)!r} (cameras: {', '.join(names)})")
    return chosen


def preview(text: str) -> str:
    """The start of an untrusted query, cleaned and clipped, to echo back in a rejection."""
    return _SPACES.sub(" ", clip(text)).strip()


class CommandBook:
    """The set of running commands, and the round-robin order the grounding workers serve them in.

    One book serves every camera (`cameras`, the first is the default), so ids, replace and stop
    mean the same on all of them; each camera's workers read the commands that name it.
    """

    def __init__(self, max_query_chars: int = 512, max_commands: int = 16, cameras: Sequence[str] = ("",)):
        self.max_query_chars = max_query_chars
        self.max_commands = max_commands
        self.cameras = tuple(cameras)
        self._lock = threading.Lock()
        self._running: dict[str, Command] = {}
        self._ids = itertools.count(1)
        self._generations = itertools.count(1)
        self._turns: dict[str, int] = {}

    def apply(self, request: CommandRequest) -> list[CommandEvent]:
        """Carry out a request; return one event per command it accepted, rejected or stopped."""
        with self._lock:
            try:
                action = CommandAction(request.action)
            except ValueError:
                return [self._reject(request, preview(request.query), f"unknown action {request.action}")]
            if action is CommandAction.STOP_ALL:
                # Always answered, so a planner waiting for the reply gets one: empty id = all.
                return self._stop_all("stopped by a STOP_ALL command") or [
                    CommandEvent(CommandState.STOPPED, "", "", "STOP_ALL: no command was running")
                ]
            if action is CommandAction.STOP:
                return self._stop(request)
            return self._start(request, replace_all=action is CommandAction.REPLACE)

    def _reject(self, request: CommandRequest, query: str, reason: str) -> CommandEvent:
        return CommandEvent(CommandState.REJECTED, clip(request.id, 64), query, reason)

    def _stop_all(self, reason: str) -> list[CommandEvent]:
        events = [CommandEvent(CommandState.STOPPED, c.id, c.query, reason, c.cameras) for c in self._running.values()]
        self._running.clear()
        return events

    def _stop(self, request: CommandRequest) -> list[CommandEvent]:
        command = self._running.pop(request.id, None)
        if command is None:
            running = ", ".join(self._running) or "none"
            return [self._reject(request, "", f"no running command has id {clip(request.id)!r} (running: {running})")]
        return [
            CommandEvent(CommandState.STOPPED, command.id, command.query, "stopped by a STOP command", command.cameras)
        ]

    def _start(self, request: CommandRequest, replace_all: bool) -> list[CommandEvent]:
        query, verdict = sanitize_query(request.query, self.max_query_chars)
        if verdict is Verdict.EMPTY:
            return [self._reject(request, "", "the query is empty")]
        if verdict is Verdict.TOO_LONG:
            return [
                self._reject(
                    request,
                    preview(request.query),
                    f"the query has {len(request.query)} characters; at most {self.max_query_chars} are accepted",
                )
            ]
        try:
            mode = GroundingMode(request.mode)
        except ValueError:
            return [self._reject(request, query, f"unknown mode {request.mode} (0 = point, 1 = track)")]
        if request.id and not _ID.fullmatch(request.id):
            return [self._reject(request, query, "ids are 1-64 characters of letters, digits and _ . : / -")]
        try:
            cameras = select_cameras(request.camera, self.cameras)
        except ValueError as error:
            return [self._reject(request, query, str(error))]
        events = self._stop_all(f"replaced by command {request.id or '(new)'}") if replace_all else []
        command_id = request.id or self._new_id()
        replaced = self._running.pop(command_id, None)
        if replaced is not None:
            events.append(
                CommandEvent(CommandState.STOPPED, replaced.id, replaced.query, "replaced (same id)", replaced.cameras)
            )
        if len(self._running) >= self.max_commands:
            return [*events, self._reject(request, query, f"{self.max_commands} commands already run")]
        command = Command(command_id, query, mode, next(self._generations), cameras)
        self._running[command_id] = command
        return [*events, CommandEvent(CommandState.ACCEPTED, command_id, query, cameras=cameras)]

    def _new_id(self) -> str:
        while (candidate := f"cmd-{next(self._ids)}") in self._running:
            pass
        return candidate

    def running(self, camera: str | None = None) -> list[Command]:
        """The running commands; with `camera`, those that run on it."""
        with self._lock:
            return [c for c in self._running.values() if camera is None or camera in c.cameras]

    def is_current(self, command: Command) -> bool:
        """True while this very command (not a later one with its id) is running."""
        with self._lock:
            return self._running.get(command.id) == command

    def next_turn(self, camera: str = "") -> Command | None:
        """The next command to ground on `camera`, round-robin, so one query cannot starve the others."""
        with self._lock:
            commands = [c for c in self._running.values() if camera in c.cameras]
            if not commands:
                return None
            self._turns[camera] = (self._turns.get(camera, -1) + 1) % len(commands)
            return commands[self._turns[camera]]
