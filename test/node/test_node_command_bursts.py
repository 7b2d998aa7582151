"""Commands are never lost without a word: a burst gets a status per command, churn does not flood the log,
a command the node cannot take is counted and said."""

import re
import time

from lifecycle_msgs.msg import Transition
from polling import wait_for
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from ros_harness import DOUBLES, NODE_START_S, DiagnosticsRecorder, change_state
from videomolmo_ros.msg import CommandStatus, GroundingCommand

from videomolmo_ros.node.planner_api import EVENT_LOG_BURST, EVENT_LOG_PERIOD_S

# What docs/topics.md asks of a planner: reliable and keep-all.
PLANNER_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
MAX_COMMANDS = 16  # the installed params file's max_commands
FLOOD = 12_000  # commands back to back: more than Fast DDS holds unread (5000), so some are lost
CHURN_RATE_HZ = 100  # REPLACE commands a second: about the churn that gave 1,975 log lines in 10 s


def command_endpoints(planner, publisher_qos=PLANNER_QOS):
    """The planner's command publisher and status subscription (PLANNER_QOS), once matched; the statuses
    received, and the losses the planner's own middleware reports on them (a failing test says so)."""
    statuses, losses = [], []
    publisher = planner.node.create_publisher(GroundingCommand, "command", publisher_qos)
    events = SubscriptionEventCallbacks(message_lost=lambda info: losses.append(info.total_count_change))
    subscription = planner.node.create_subscription(
        CommandStatus, "command_status", statuses.append, PLANNER_QOS, event_callbacks=events
    )
    matched = wait_for(lambda: publisher.get_subscription_count() and subscription.get_publisher_count(), NODE_START_S)
    assert matched, "perception_node never matched the planner's command / command_status"
    return publisher, statuses, losses


def by_id(statuses) -> dict[str, CommandStatus]:
    return {status.id: status for status in list(statuses)}


def test_a_burst_of_100_commands_gets_a_status_for_every_command(shared_node, planner):
    shared_node(planner, DOUBLES)
    publisher, statuses, losses = command_endpoints(planner)
    ids = [f"burst-{k}" for k in range(100)]
    for command_id in ids:  # back to back, as fast as the planner can publish
        publisher.publish(GroundingCommand(id=command_id, query="red", mode=GroundingCommand.MODE_POINT))
    wait_for(lambda: set(ids) <= by_id(statuses).keys(), 60)
    answers = by_id(statuses)
    missing = [i for i in ids if i not in answers]
    assert not missing, f"{len(missing)} of 100 commands got no status, e.g. {missing[:3]}; {sum(losses)} lost here"
    assert [i for i in ids if answers[i].state == CommandStatus.ACCEPTED] == ids[:MAX_COMMANDS]
    refused = [answers[i] for i in ids[MAX_COMMANDS:]]
    full = f"{MAX_COMMANDS} commands already run"
    assert all(s.state == CommandStatus.REJECTED and full in s.reason for s in refused), refused[0]


def test_replace_churn_logs_a_bounded_number_of_lines_that_carry_the_counts(shared_node, planner):
    process = shared_node(planner, DOUBLES)
    publisher, statuses, losses = command_endpoints(planner)

    def summary():  # an accepted line that says how many more were accepted unlogged
        return re.search(r"command churn-\d+ accepted: 'red' \((\d+) more like this", process.log())

    ids, start = [], time.monotonic()
    while not summary() and time.monotonic() - start < 60:  # at least one log period
        ids.append(f"churn-{len(ids)}")
        publisher.publish(GroundingCommand(id=ids[-1], query="red", action=GroundingCommand.ACTION_REPLACE))
        time.sleep(1 / CHURN_RATE_HZ)
    elapsed = time.monotonic() - start

    def accepted():
        return {s.id for s in list(statuses) if s.state == CommandStatus.ACCEPTED}

    answered = wait_for(lambda: set(ids) <= accepted(), 60)
    assert answered, f"{len(set(ids) - accepted())} REPLACE commands unanswered; {sum(losses)} statuses lost here"
    assert summary(), f"no summary line after {elapsed:.0f} s of churn:\n{process.log()[-3000:]}"
    assert int(summary().group(1)) > 0
    lines = re.findall(r"command churn-\d+ (?:accepted|stopped):.*", process.log())
    bound = 2 * EVENT_LOG_BURST * (elapsed / EVENT_LOG_PERIOD_S + 1)  # accepted and stopped lines, per period
    assert len(lines) <= bound, f"{len(lines)} lines for {len(ids)} REPLACE commands in {elapsed:.1f} s"
    assert len(ids) > 2 * bound, "the churn was fast enough to need the limit"


def test_a_command_sent_while_the_node_is_inactive_is_counted_and_said(shared_node, planner):
    process = shared_node(planner, DOUBLES)
    publisher, _, _ = command_endpoints(planner)
    diagnostics = DiagnosticsRecorder(planner.node)
    assert change_state(planner, Transition.TRANSITION_DEACTIVATE), process.log()[-3000:]
    publisher.publish(GroundingCommand(id="too-early", query="red"))
    assert process.wait_for_log("command too-early 'red' ignored: the node is not active", 30), process.log()[-3000:]
    assert change_state(planner, Transition.TRANSITION_ACTIVATE), process.log()[-3000:]
    assert wait_for(lambda: diagnostics.values("main: drops").get("commands_ignored_inactive") == "1", 30), (
        diagnostics.values("main: drops")
    )


def test_commands_a_shallow_planner_queue_loses_are_counted_and_the_others_answered(shared_node, planner):
    """A planner publishing with the ROS default (keep last 10) loses what its own queue overwrites before
    the node acknowledged it: the middleware reports each such loss to the node, which counts it."""
    shared_node(planner, DOUBLES)
    publisher, statuses, losses = command_endpoints(planner, QoSProfile(depth=10))
    diagnostics = DiagnosticsRecorder(planner.node)
    ids = [f"flood-{k}" for k in range(FLOOD)]
    for command_id in ids:
        publisher.publish(GroundingCommand(id=command_id, query="red", mode=GroundingCommand.MODE_POINT))

    def lost() -> int:
        return int(diagnostics.values("main: drops").get("commands_lost", 0))

    def answered() -> int:
        return len({s.id for s in list(statuses)} & set(ids))

    wait_for(lambda: answered() + lost() == FLOOD, 120)
    assert answered() + lost() == FLOOD, f"{answered()} answered + {lost()} counted lost; {sum(losses)} lost here"
    assert lost() > 0, "nothing was lost: the flood no longer tests the count"
