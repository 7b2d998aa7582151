"""Ground goals over DDS never make the node deaf: none holds an executor thread, each ends with a result."""

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import GetState
from polling import wait_for
from rclpy.action import ActionClient
from ros_harness import DOUBLES, DiagnosticsRecorder, call, change_state, send_goal
from test_node_planner_api import goal, play_in_background
from videomolmo_ros.action import Ground
from videomolmo_ros.msg import GroundingCommand
from videomolmo_ros.srv import ListCommands, StopCommand

ANSWER_S = 5.0  # an executor held by a goal would never answer; generous for a shared 2-core machine
NEVER = "the purple elephant"  # nothing in the synthetic scene: these goals never succeed
GOAL_NODE = {**DOUBLES, "max_concurrent_goals": 8}  # the node these tests share


def test_goals_that_never_finish_leave_the_node_serving_and_every_one_ends_with_a_result(shared_node, planner):
    process = shared_node(planner, GOAL_NODE)
    diagnostics = DiagnosticsRecorder(planner.node)
    planner.wait_connected()
    client = ActionClient(planner.node, Ground, "ground")
    assert client.wait_for_server(timeout_sec=30)
    planner.send_command("red", id="tracked")
    sent = [send_goal(planner, client, goal(NEVER)) for _ in range(8)]
    assert wait_for(lambda: all(f.done() for f in sent), 20), "the goals were not answered"
    handles = [f.result() for f in sent]
    assert all(h.accepted for h in handles)
    one_more = send_goal(planner, client, goal(NEVER))
    assert wait_for(one_more.done, 20) and not one_more.result().accepted, "a 9th goal is over max_concurrent_goals"
    rejected = lambda: int(diagnostics.values("main: drops").get("goals_rejected", 0))  # noqa: E731
    assert wait_for(lambda: rejected() >= 1, 30), f"the rejected goal is counted: {diagnostics.values('main: drops')}"
    results = [h.get_result_async() for h in handles]

    playing = play_in_background(planner, 4.0)
    # The node still serves while 8 goals wait: tracks flow, services and the lifecycle answer.
    assert wait_for(lambda: any(m.command_id == "tracked" and m.tracks for m in planner.get("tracks")), 20), (
        process.log()[-3000:]
    )
    listed = call(planner, ListCommands, "list_commands", ListCommands.Request(), ANSWER_S)
    assert len(listed.ids) == 9, listed.ids
    state = call(planner, GetState, "/perception_node/get_state", GetState.Request(), ANSWER_S)
    assert state.current_state.id == State.PRIMARY_STATE_ACTIVE

    # Every cancel is answered, and the goal ends cancelled.
    cancels = [h.cancel_goal_async() for h in handles[:3]]
    assert wait_for(lambda: all(c.done() for c in cancels), ANSWER_S), "a cancel request went unanswered"
    assert wait_for(lambda: all(r.done() for r in results[:3]), 10)
    assert [r.result().result.message for r in results[:3]] == ["cancelled"] * 3

    # A goal whose command someone else stops ends, aborted, saying why (one of the goals
    # still running: the cancelled goals' commands are gone).
    running = call(planner, ListCommands, "list_commands", ListCommands.Request(), ANSWER_S).ids
    assert len(running) == 6, running
    command_id = sorted(set(running) - {"tracked"})[0]
    assert call(planner, StopCommand, "stop_command", StopCommand.Request(id=command_id)).success
    assert wait_for(lambda: any(r.done() for r in results[3:]), 10), "the goal outlived its command"
    [stopped] = [r.result().result for r in results[3:] if r.done()]
    assert stopped.command_id == command_id and not stopped.success and "stopped" in stopped.message

    # Deactivating ends every remaining goal with a result.
    playing.join()
    assert change_state(planner, Transition.TRANSITION_DEACTIVATE)
    assert wait_for(lambda: all(r.done() for r in results), 10), "a goal was left without a result"
    left = [r.result().result for r in results[3:] if r.result().result.command_id != command_id]
    assert len(left) == 4 and all("deactivated" in answer.message for answer in left), [a.message for a in left]
    assert "Traceback" not in process.log()


def test_a_goal_whose_command_is_replaced_by_another_planner_ends_aborted(shared_node, planner):
    shared_node(planner, GOAL_NODE)
    planner.wait_connected()
    client = ActionClient(planner.node, Ground, "ground")
    assert client.wait_for_server(timeout_sec=30)
    sent = send_goal(planner, client, goal(NEVER))
    assert wait_for(sent.done, 20) and sent.result().accepted
    result = sent.result().get_result_async()
    assert wait_for(lambda: call(planner, ListCommands, "list_commands", ListCommands.Request()).ids, 10)
    planner.send_command("blue", action=GroundingCommand.ACTION_REPLACE)
    assert wait_for(result.done, 10), "the goal outlived its command"
    assert not result.result().result.success and "replaced" in result.result().result.message
