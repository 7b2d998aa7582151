"""What planners call: the command topics, the list_commands / stop_command services and the Ground action.

Every command event (accepted, rejected, stopped) is logged and published on command_status.
The cameras share one command book: the default camera's pipeline applies a request (and
counts it); the others learn what changed.
"""

import time
import uuid
from collections.abc import Callable

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.node import Node
from std_msgs.msg import String

from videomolmo_ros.msg import GroundingCommand
from videomolmo_ros.node import messages
from videomolmo_ros.node.goal_watch import GoalWatch
from videomolmo_ros.node.guarded import guarded
from videomolmo_ros.pipeline.commands import CommandAction, CommandBook, CommandRequest, CommandState, GroundingMode
from videomolmo_ros.pipeline.outputs import TargetsOutput, TracksOutput
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline

_GOAL_POLL_S = 0.05


class PlannerApi:
    """Commands in from planners, their status out; goals watched through the pipelines' outputs."""

    def __init__(
        self,
        node: Node,
        status_pub,
        pipelines: Callable[[], list[PerceptionPipeline]],
        report: Callable[[str], None],
    ):
        self._node = node
        self._status_pub = status_pub
        self._pipelines = pipelines
        self._report = report
        self._watches: dict[str, GoalWatch] = {}
        self.commands: CommandBook | None = None  # shared by the cameras' pipelines while active
        self.command_topic = ""

    def start(self, commands: CommandBook) -> list:
        """Offer the command topics, services and action; returns them (destroyed at deactivate)."""
        from videomolmo_ros.action import Ground
        from videomolmo_ros.srv import ListCommands, StopCommand

        self.commands = commands
        node, group = self._node, ReentrantCallbackGroup()  # a goal waits for results while others run
        command_sub = node.create_subscription(GroundingCommand, "command", guarded(self._on_command, self._report), 10)
        self.command_topic = command_sub.topic_name
        return [
            command_sub,
            node.create_subscription(String, "command_text", guarded(self._on_command_text, self._report), 10),
            node.create_service(ListCommands, "list_commands", self._list_commands, callback_group=group),
            node.create_service(StopCommand, "stop_command", self._stop_command, callback_group=group),
            ActionServer(
                node,
                Ground,
                "ground",
                execute_callback=self._execute_goal,
                goal_callback=lambda goal: GoalResponse.ACCEPT,
                cancel_callback=lambda goal: CancelResponse.ACCEPT,
                callback_group=group,
            ),
        ]

    def stop(self) -> None:
        self.commands = None

    # ------------------------------------------------------------------ goal watching (worker threads)

    def on_targets(self, output: TargetsOutput) -> None:
        if (watch := self._watches.get(output.command_id)) is not None:
            watch.on_targets(output)

    def on_tracks(self, output: TracksOutput) -> None:
        if (watch := self._watches.get(output.command_id)) is not None:
            watch.on_tracks(output)

    # ------------------------------------------------------------------ commands

    def _on_command(self, msg: GroundingCommand) -> None:
        self.apply(messages.request_from_msg(msg))

    def _on_command_text(self, msg: String) -> None:
        self.apply(CommandRequest("", msg.data, GroundingMode.TRACK))

    def apply(self, request: CommandRequest):
        """Carry out a command request; log and publish every event; return the events."""
        now = self._node.get_clock().now().nanoseconds
        default, *others = self._pipelines()
        events = default.submit_command(request)
        for pipeline in others:
            pipeline.commands_changed(events)
        logger = self._node.get_logger()
        for event in events:
            text = f"command {event.id or '(no id)'} {event.state.name.lower()}: {event.query!r} {event.reason}"
            if event.state is CommandState.REJECTED:
                logger.warning(text.rstrip())
            else:
                logger.info(text.rstrip())
            self._status_pub.publish(messages.status_msg(event, now))
        return events

    def _list_commands(self, request, response):
        running = self.commands.running() if self.commands else []
        response.ids = [c.id for c in running]
        response.queries = [c.query for c in running]
        response.modes = [int(c.mode) for c in running]
        response.cameras = [",".join(c.cameras) for c in running]
        return response

    def _stop_command(self, request, response):
        action = CommandAction.STOP if request.id else CommandAction.STOP_ALL
        events = self.apply(CommandRequest(request.id, "", action=action))
        response.success = all(e.state is CommandState.STOPPED for e in events)
        response.message = "; ".join(f"{e.id or 'all'}: {e.reason}" for e in events)
        return response

    # ------------------------------------------------------------------ the Ground action

    def _execute_goal(self, goal_handle):
        """Run the goal's query as a command until the result is in, the goal times out or is cancelled."""
        from videomolmo_ros.action import Ground

        goal, result = goal_handle.request, Ground.Result()
        result.command_id = f"goal-{uuid.uuid4().hex[:8]}"
        watch = GoalWatch(GroundingMode(goal.mode) if goal.mode in (0, 1) else GroundingMode.POINT, goal.track_frames)
        self._watches[result.command_id] = watch
        try:
            [*_, event] = self.apply(CommandRequest(result.command_id, goal.query, goal.mode, camera=goal.camera))
            if event.state is CommandState.REJECTED:
                return self._finish(goal_handle.abort, result, event.reason)
            return self._wait_for_goal(goal_handle, goal, watch, result)
        finally:
            self._watches.pop(result.command_id, None)
            if self.commands is not None and any(c.id == result.command_id for c in self.commands.running()):
                self.apply(CommandRequest(result.command_id, "", action=CommandAction.STOP))

    def _wait_for_goal(self, goal_handle, goal, watch: GoalWatch, result):
        from videomolmo_ros.action import Ground

        timeout_s = goal.timeout.sec + goal.timeout.nanosec / 1e9
        deadline = time.monotonic() + timeout_s if timeout_s > 0 else float("inf")
        while True:
            for targets in watch.feedback():
                goal_handle.publish_feedback(Ground.Feedback(targets=messages.targets_msg(targets)))
            if goal_handle.is_cancel_requested:
                return self._finish(goal_handle.canceled, result, "cancelled", watch)
            if watch.done():
                result.success = True
                return self._finish(goal_handle.succeed, result, "", watch)
            if time.monotonic() > deadline or self.commands is None:
                reason = f"no result within {timeout_s:.1f} s" if self.commands else "the node was deactivated"
                return self._finish(goal_handle.abort, result, reason, watch)
            time.sleep(_GOAL_POLL_S)

    @staticmethod
    def _finish(close, result, message: str, watch: GoalWatch | None = None):
        result.message = message
        if watch is not None:
            targets = watch.confident or watch.targets
            if targets is not None:
                result.targets = messages.targets_msg(targets)
            if watch.tracks is not None:
                result.tracks = messages.tracks_msg(watch.tracks)
        close()
        return result
