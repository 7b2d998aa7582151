"""What planners call: the command topics, the list_commands / stop_command services and the Ground action.

Every command event (accepted, rejected, stopped) is published on command_status and logged,
rate-limited (anyone can send commands; a planner churning REPLACE must not flood the log): the
counters keep every one. The command topics are reliable and keep-all (COMMAND_QOS): a planner's
burst is queued, not overwritten, and what the middleware loses all the same it reports, counted
as `commands_lost`; command_status keeps a burst's statuses (STATUS_QOS). A command that arrives
while the node is inactive is counted (`commands_ignored_inactive`) and logged. The cameras share
one command book: the default camera's pipeline applies a request (and counts it); the others
learn what changed.

The topics, services and action server live from configure to cleanup; while the node is
inactive they answer that it is not active. A Ground goal never holds an executor thread: it is
a record checked by a timer and by the command events, and it is executed (closed with its
result) only once its outcome is known: found, timed out, cancelled, its command stopped for any
reason, or the node deactivated or shut down.
"""

import functools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from videomolmo_ros.contracts.grounding import GroundingMode
from videomolmo_ros.io.text import clip
from videomolmo_ros.msg import GroundingCommand
from videomolmo_ros.node import messages
from videomolmo_ros.node.goal_watch import GoalWatch
from videomolmo_ros.node.guarded import guarded
from videomolmo_ros.pipeline.commands import CommandAction, CommandBook, CommandEvent, CommandRequest, CommandState
from videomolmo_ros.pipeline.counters import ProblemLog
from videomolmo_ros.pipeline.outputs import TargetsOutput, TracksOutput
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline

GOAL_CHECK_PERIOD_S = 0.05  # feedback, success and timeouts of running goals are checked this often
NOT_ACTIVE = "the node is not active"
# command and command_text: reliable and keep-all. Fast DDS then holds up to 5000 unread commands
# (its default resource limit) and reports every one it loses (a keep-last queue overwrites unread
# ones without a word); the count is `commands_lost`. A planner should publish with the same.
COMMAND_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE
)
# command_status: reliable, keep the last 1000 (a burst's statuses; each command gives one or more).
# Not keep-all: a reader that never reads would then block the node's publishing.
STATUS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1000,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.VOLATILE,
)
# Accepted and stopped commands are logged up to this many lines of each per period; the rest are
# counted in the next line (and in commands_accepted / commands_stopped).
EVENT_LOG_BURST, EVENT_LOG_PERIOD_S = 10, 5.0


@dataclass
class _Goal:
    """A Ground goal in flight: its handle, what it collected, its deadline; `outcome` once it ended."""

    handle: object
    watch: GoalWatch
    result: object
    deadline: float
    timeout_s: float
    outcome: str = ""  # "", then succeed, abort or canceled


class PlannerApi:
    """Commands in from planners, their status out; goals watched through the pipelines' outputs."""

    def __init__(
        self,
        node: Node,
        status_pub,
        pipelines: Callable[[], list[PerceptionPipeline]],
        counted: Callable[..., None],
        problem: Callable[[str, str], None],
        max_goals: int,
    ):
        """`counted(key, message, amount=1)` counts on the default camera and logs (rate-limited);
        `problem(key, message)` only logs (rate-limited): what it reports is counted elsewhere."""
        from videomolmo_ros.action import Ground
        from videomolmo_ros.srv import ListCommands, StopCommand

        report = functools.partial(counted, "internal_errors")  # a bug in a callback
        self._node = node
        self._status_pub = status_pub
        self._pipelines = pipelines
        self._counted = counted
        self._problem = problem
        self._events_log = ProblemLog(self._log_event, EVENT_LOG_PERIOD_S, burst=EVENT_LOG_BURST)
        self._max_goals = max_goals
        self._lock = threading.Lock()
        self._goals: dict[str, _Goal] = {}  # by command id
        self._reserved = 0  # goals accepted, not yet registered
        self._ending: dict[bytes, _Goal] = {}  # ended goals, by goal id, until the action server closes them
        self.commands: CommandBook | None = None  # shared by the cameras' pipelines while active
        group = ReentrantCallbackGroup()
        command_sub = self._command_subscription(GroundingCommand, "command", self._on_command, report)
        self.command_topic = command_sub.topic_name
        self._action_server = ActionServer(
            node,
            Ground,
            "ground",
            execute_callback=self._close_goal,
            goal_callback=self._on_goal,
            handle_accepted_callback=guarded(self._on_goal_accepted, report),
            cancel_callback=lambda request: CancelResponse.ACCEPT,
            callback_group=group,
        )
        self._entities = [
            command_sub,
            self._command_subscription(String, "command_text", self._on_command_text, report),
            node.create_service(ListCommands, "list_commands", self._list_commands, callback_group=group),
            node.create_service(StopCommand, "stop_command", self._stop_command, callback_group=group),
            node.create_timer(GOAL_CHECK_PERIOD_S, guarded(self._check_goals, report), callback_group=group),
        ]

    def _command_subscription(self, msg_type, topic: str, callback, report: Callable[[str], None]):
        """A command topic with COMMAND_QOS; what the middleware reports lost on it is counted (`commands_lost`)."""
        lost = functools.partial(self._on_commands_lost, self._node.resolve_topic_name(topic))
        events = SubscriptionEventCallbacks(message_lost=guarded(lost, report))
        return self._node.create_subscription(
            msg_type, topic, guarded(callback, report), COMMAND_QOS, event_callbacks=events
        )

    def start(self, commands: CommandBook) -> None:
        """Serve commands and goals on this command book (activate)."""
        self.commands = commands

    def stop(self, reason: str = "the node was deactivated") -> None:
        """End every goal with a result saying `reason`; serve nothing until the next start."""
        self.commands = None
        with self._lock:
            goals = list(self._goals.values())
        for goal in goals:
            self._end(goal, "abort", reason)

    def close(self) -> None:
        """Destroy the topics, services and action server (cleanup, shutdown)."""
        self.stop("the node is shutting down")
        for entity in self._entities:
            for destroy in (self._node.destroy_subscription, self._node.destroy_service, self._node.destroy_timer):
                if destroy(entity):
                    break
        self._action_server.destroy()
        self._entities = []

    # ------------------------------------------------------------------ goal watching (worker threads)

    def on_targets(self, output: TargetsOutput) -> None:
        if (goal := self._goals.get(output.command_id)) is not None:
            goal.watch.on_targets(output)

    def on_tracks(self, output: TracksOutput) -> None:
        if (goal := self._goals.get(output.command_id)) is not None:
            goal.watch.on_tracks(output)

    # ------------------------------------------------------------------ commands

    def _on_command(self, msg: GroundingCommand) -> None:
        self._apply_while_active(messages.request_from_msg(msg))

    def _on_command_text(self, msg: String) -> None:
        self._apply_while_active(CommandRequest("", msg.data, GroundingMode.TRACK))

    def _apply_while_active(self, request: CommandRequest) -> None:
        """Apply a command from a topic; while inactive no status can go out, so it is counted and logged."""
        if self.commands is not None:
            self.apply(request)
            return
        self._counted(
            "commands_ignored_inactive",
            f"command {clip(request.id) or '(no id)'} {clip(request.query)!r} ignored: {NOT_ACTIVE} "
            "(no status is published while inactive; send it again once active)",
        )

    def _log_event(self, text: str) -> None:
        # Logged from here, not from ProblemLog.report: rclpy ties each line of code that logs to one
        # severity, and the node's problems are logged as warnings from there (ValueError otherwise).
        self._node.get_logger().info(text)

    def _on_commands_lost(self, topic: str, info) -> None:
        self._counted(
            "commands_lost",
            f"{info.total_count_change} command(s) on {topic} lost before the node read them "
            f"({info.total_count} in all): the middleware reports them lost (a planner's publisher should be "
            "reliable and at least as deep as its bursts; docs/topics.md)",
            info.total_count_change,
        )

    def apply(self, request: CommandRequest) -> list[CommandEvent]:
        """Carry out a command request; log and publish every event; end goals whose command stopped."""
        now = self._node.get_clock().now().nanoseconds
        default, *others = self._pipelines()
        events = default.submit_command(request)
        for pipeline in others:
            pipeline.commands_changed(events)
        for event in events:
            state = event.state.name.lower()
            text = f"command {event.id or '(no id)'} {state}: {event.query!r} {event.reason}".rstrip()
            if event.state is CommandState.REJECTED:
                self._problem("commands_rejected", text)
            else:
                self._events_log.report(f"commands_{state}", text)
            self._status_pub.publish(messages.status_msg(event, now))
            if event.state is CommandState.STOPPED and (goal := self._goals.get(event.id)) is not None:
                self._end(goal, "abort", f"its command was stopped: {event.reason}")
        return events

    def _list_commands(self, request, response):
        running = self.commands.running() if self.commands else []
        response.ids = [c.id for c in running]
        response.queries = [c.query for c in running]
        response.modes = [int(c.mode) for c in running]
        response.cameras = [",".join(c.cameras) for c in running]
        return response

    def _stop_command(self, request, response):
        if self.commands is None:
            response.success, response.message = False, NOT_ACTIVE
            return response
        action = CommandAction.STOP if request.id else CommandAction.STOP_ALL
        events = self.apply(CommandRequest(request.id, "", action=action))
        response.success = all(e.state is CommandState.STOPPED for e in events)
        response.message = "; ".join(f"{e.id or 'all'}: {e.reason}" for e in events)
        return response

    # ------------------------------------------------------------------ the Ground action

    def _on_goal(self, goal) -> GoalResponse:
        """Accept while active and fewer than max_concurrent_goals run; say why otherwise."""
        with self._lock:
            running = len(self._goals) + self._reserved
            if self.commands is not None and running < self._max_goals:
                self._reserved += 1
                return GoalResponse.ACCEPT
        reason = NOT_ACTIVE if self.commands is None else f"{running} goals run (max_concurrent_goals)"
        self._counted("goals_rejected", f"Ground goal {clip(goal.query)!r} rejected: {reason}")
        return GoalResponse.REJECT

    def _on_goal_accepted(self, handle) -> None:
        """Start the goal's command; the goal is executed (closed) once its outcome is known."""
        from videomolmo_ros.action import Ground

        request, result = handle.request, Ground.Result()
        result.command_id = f"goal-{uuid.uuid4().hex[:8]}"
        timeout_s = request.timeout.sec + request.timeout.nanosec / 1e9
        mode = GroundingMode(request.mode) if request.mode in (0, 1) else GroundingMode.POINT
        goal = _Goal(
            handle,
            GoalWatch(mode, request.track_frames),
            result,
            time.monotonic() + timeout_s if timeout_s > 0 else float("inf"),
            timeout_s,
        )
        with self._lock:
            self._reserved -= 1
            self._goals[result.command_id] = goal
        if self.commands is None:
            self._end(goal, "abort", NOT_ACTIVE)
            return
        command = CommandRequest(result.command_id, request.query, request.mode, camera=request.camera)
        [*_, event] = self.apply(command)
        if event.state is CommandState.REJECTED:
            self._end(goal, "abort", event.reason)

    def _check_goals(self) -> None:
        """Timer: send fresh feedback; end goals that are done, cancelled or past their deadline."""
        from videomolmo_ros.action import Ground

        with self._lock:
            goals = list(self._goals.values())
        for goal in goals:
            for targets in goal.watch.feedback():
                goal.handle.publish_feedback(Ground.Feedback(targets=messages.targets_msg(targets)))
            if goal.handle.is_cancel_requested:
                self._end(goal, "canceled", "cancelled")
            elif goal.watch.done():
                goal.result.success = True
                self._end(goal, "succeed", "")
            elif time.monotonic() > goal.deadline:
                self._end(goal, "abort", f"no result within {goal.timeout_s:.1f} s")

    def _end(self, goal: _Goal, outcome: str, message: str) -> None:
        """End a goal once: stop its command, fill its result, have the action server close it."""
        with self._lock:
            if goal.outcome or self._goals.get(goal.result.command_id) is not goal:
                return
            goal.outcome = outcome
            del self._goals[goal.result.command_id]
        result, watch = goal.result, goal.watch
        result.message = message
        targets = watch.confident or watch.targets
        if targets is not None:
            result.targets = messages.targets_msg(targets)
        if watch.tracks is not None:
            result.tracks = messages.tracks_msg(watch.tracks)
        if self.commands is not None and any(c.id == result.command_id for c in self.commands.running()):
            self.apply(CommandRequest(result.command_id, "", action=CommandAction.STOP))
        with self._lock:
            self._ending[bytes(goal.handle.goal_id.uuid)] = goal
        goal.handle.execute()  # runs _close_goal on the executor

    def _close_goal(self, handle):
        """The action server's execute callback, for an ended goal only: close it, return its result."""
        with self._lock:
            goal = self._ending.pop(bytes(handle.goal_id.uuid))
        getattr(handle, goal.outcome)()
        return goal.result
