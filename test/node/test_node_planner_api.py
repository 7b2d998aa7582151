"""What a planner uses besides topics: the Ground action, the command services, the lifecycle."""

import threading

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from polling import wait_for
from rclpy.action import ActionClient
from ros_harness import DOUBLES, call, change_state, play, send_goal, stamp_ns
from synthetic_video import default_scene, render
from videomolmo_ros.action import Ground
from videomolmo_ros.msg import GroundingCommand
from videomolmo_ros.srv import ListCommands, StopCommand


def ground(planner, goal):
    """Send a goal while frames play; return (goal handle, result future, feedback list)."""
    client = ActionClient(planner.node, Ground, "ground")
    assert client.wait_for_server(timeout_sec=30)
    feedback = []
    future = send_goal(planner, client, goal, feedback_callback=lambda msg: feedback.append(msg.feedback))
    assert wait_for(future.done, 20)
    handle = future.result()
    assert handle.accepted
    return handle, handle.get_result_async(), feedback


def play_in_background(planner, seconds, until=None):
    """play() on a thread: for `seconds`, or until `until()` holds."""
    thread = threading.Thread(target=play, args=(planner, seconds), kwargs={"until": until}, daemon=True)
    thread.start()
    return thread


def goal(query, mode=GroundingCommand.MODE_POINT, timeout_s=0, track_frames=0):
    g = Ground.Goal(query=query, mode=mode, track_frames=track_frames)
    g.timeout.sec = timeout_s
    return g


def served(planner, command_id: str) -> bool:
    """Masks and tracks of `command_id` have arrived."""
    masked = any(m.command_id == command_id and m.ids for m in planner.get("masks"))
    return masked and any(m.command_id == command_id and m.tracks for m in planner.get("tracks"))


def test_a_point_goal_succeeds_with_targets_on_the_object_and_stops_its_command(shared_node, planner):
    shared_node(planner, DOUBLES)
    planner.wait_connected()
    _, result, feedback = ground(planner, goal("the red ball", timeout_s=20))
    playing = play_in_background(planner, 4.0, until=result.done)
    assert wait_for(result.done, 30)
    playing.join()
    answer = result.result().result
    assert answer.success, answer.message
    [target] = answer.targets.targets
    _, masks = render(default_scene(), stamp_ns(answer.targets.header) / 1e9 - 1000.0)
    assert masks["red"][round(target.y), round(target.x)], "the result's point lies on the red disc"
    assert feedback and feedback[0].targets.command_id == answer.command_id
    listed = call(planner, ListCommands, "list_commands", ListCommands.Request())
    assert answer.command_id not in listed.ids, "a finished goal leaves no command running"


def test_a_track_goal_succeeds_after_the_asked_number_of_tracked_frames(shared_node, planner):
    shared_node(planner, DOUBLES)
    planner.wait_connected()
    _, result, _ = ground(planner, goal("blue", GroundingCommand.MODE_TRACK, timeout_s=20, track_frames=10))
    playing = play_in_background(planner, 5.0, until=result.done)
    assert wait_for(result.done, 30)
    playing.join()
    answer = result.result().result
    assert answer.success, answer.message
    assert answer.tracks.tracks and answer.tracks.tracks[0].state == 1


def test_a_goal_with_nothing_to_find_times_out_and_one_can_be_cancelled(shared_node, planner):
    shared_node(planner, DOUBLES)
    planner.wait_connected()
    _, timed_out, _ = ground(planner, goal("the purple elephant", timeout_s=2))
    handle, cancelled, _ = ground(planner, goal("the purple elephant"))
    playing = play_in_background(planner, 3.0, until=timed_out.done)
    assert wait_for(timed_out.done, 20)
    playing.join()
    assert not timed_out.result().result.success and "no result within 2.0 s" in timed_out.result().result.message
    running = call(planner, ListCommands, "list_commands", ListCommands.Request())
    assert len(running.ids) == 1, "the cancellable goal's command runs"
    cancel = handle.cancel_goal_async()
    assert wait_for(cancel.done, 10) and wait_for(cancelled.done, 10)
    assert cancelled.result().result.message == "cancelled"
    assert call(planner, ListCommands, "list_commands", ListCommands.Request()).ids == []


def test_commands_can_be_listed_and_stopped_through_services(shared_node, planner):
    shared_node(planner, DOUBLES)
    planner.wait_connected()
    planner.send_command("red", id="a")
    planner.send_command("blue", id="b", mode=GroundingCommand.MODE_POINT)
    assert wait_for(lambda: len(planner.get("command_status")) == 2, 10)
    listed = call(planner, ListCommands, "list_commands", ListCommands.Request())
    assert sorted(zip(listed.ids, listed.queries, listed.modes, strict=True)) == [("a", "red", 1), ("b", "blue", 0)]
    stopped = call(planner, StopCommand, "stop_command", StopCommand.Request(id="a"))
    assert stopped.success
    assert not call(planner, StopCommand, "stop_command", StopCommand.Request(id="zzz")).success
    assert call(planner, StopCommand, "stop_command", StopCommand.Request(id="")).success
    assert call(planner, ListCommands, "list_commands", ListCommands.Request()).ids == []


def test_the_lifecycle_waits_for_a_manager_and_deactivation_stops_outputs(node, planner):
    process = node({**DOUBLES, "autostart": False})
    state = call(planner, GetState, "/perception_node/get_state", GetState.Request())
    assert state.current_state.id == State.PRIMARY_STATE_UNCONFIGURED
    for transition in (Transition.TRANSITION_CONFIGURE, Transition.TRANSITION_ACTIVATE):
        change = ChangeState.Request()
        change.transition.id = transition
        assert call(planner, ChangeState, "/perception_node/change_state", change).success, process.log()
    planner.wait_connected()
    planner.send_command("red", id="r")
    play(planner, 2.0, until=lambda: served(planner, "r"))
    assert wait_for(lambda: served(planner, "r"), 10), process.log()
    change = ChangeState.Request()
    change.transition.id = Transition.TRANSITION_DEACTIVATE
    assert call(planner, ChangeState, "/perception_node/change_state", change).success
    state = call(planner, GetState, "/perception_node/get_state", GetState.Request())
    assert state.current_state.id == State.PRIMARY_STATE_INACTIVE
    count = len(planner.get("masks"))
    play(planner, 1.0, start_s=2000.0)
    assert len(planner.get("masks")) == count, "an inactive node publishes nothing"

    # Active again: track ids stay unique for the node's lifetime, and nothing of the last run is tracked.
    first_ids = {t.id for m in planner.get("tracks") for t in m.tracks}
    assert change_state(planner, Transition.TRANSITION_ACTIVATE), process.log()
    planner.wait_connected()
    planner.send_command("red", id="r2")
    play(planner, 2.0, start_s=3000.0, until=lambda: served(planner, "r2"))
    assert wait_for(lambda: served(planner, "r2"), 10), process.log()
    second_ids = {t.id for m in planner.get("tracks") if m.command_id == "r2" for t in m.tracks}
    assert second_ids and not second_ids & first_ids, (first_ids, second_ids)
