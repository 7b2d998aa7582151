"""Who drives the node's lifecycle over DDS: with autostart no peer can (no lifecycle services, so a peer's
shutdown ends nothing); with autostart false a manager can, and once the node is finalized, by a shutdown or
by an error in a transition, the process exits with code 3 so that launch's respawn starts it again."""

from failing_doubles import LOAD_ERROR
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from polling import wait_for
from ros_harness import DOUBLES, NODE_START_S, activate, play, wait_until_answering
from test_node_planner_api import served

EXIT_FINALIZED = 3  # docs/running.md#lifecycle
LIFECYCLE_SERVICES = {
    f"/perception_node/{name}"
    for name in ("change_state", "get_state", "get_available_states", "get_available_transitions")
}


def offered_services(planner) -> set[str]:
    return {name for name, _ in planner.node.get_service_names_and_types_by_node("perception_node", "/")}


def request_transition(planner, transition: int):
    """Ask for a lifecycle transition once the node answers; the future of its answer (not waited for: the
    process may end with it)."""
    wait_until_answering(planner, NODE_START_S)
    client = planner.node.create_client(ChangeState, "/perception_node/change_state")
    assert client.wait_for_service(timeout_sec=NODE_START_S), "change_state not offered"
    request = ChangeState.Request()
    request.transition.id = transition
    return client.call_async(request)


def exit_code(process) -> int:
    assert wait_for(lambda: process.process.poll() is not None, NODE_START_S), "the finalized node kept running"
    return process.process.returncode


def test_with_autostart_no_peer_can_shut_the_node_down_and_outputs_keep_flowing(node, planner):
    process = node(DOUBLES)  # the installed params file: autostart true
    wait_until_answering(planner, NODE_START_S)
    # The lifecycle services would be made with the node, before list_commands (made at configure): once
    # list_commands is seen, they would be too (a node of an earlier test may linger a moment: waited out).
    unmanageable = lambda: (  # noqa: E731
        "/list_commands" in offered_services(planner) and not offered_services(planner) & LIFECYCLE_SERVICES
    )
    assert wait_for(unmanageable, NODE_START_S), f"a peer can drive the node's lifecycle: {offered_services(planner)}"

    # A peer asks for a shutdown anyway: nobody serves the request, and the node keeps tracking.
    shutdown = ChangeState.Request()
    shutdown.transition.id = Transition.TRANSITION_ACTIVE_SHUTDOWN
    planner.node.create_client(ChangeState, "/perception_node/change_state").call_async(shutdown)
    planner.wait_connected()
    planner.send_command("red", id="after-shutdown-request")
    play(planner, 3.0, until=lambda: served(planner, "after-shutdown-request"))
    assert wait_for(lambda: served(planner, "after-shutdown-request"), 10), process.log()[-3000:]
    assert process.process.poll() is None


def test_a_managers_shutdown_ends_the_process_with_exit_code_3(node, planner):
    process = node(DOUBLES, ros_args=("-p", "autostart:=false"))  # given on the command line, over the files
    activate(planner, process)
    request_transition(planner, Transition.TRANSITION_ACTIVE_SHUTDOWN)
    assert exit_code(process) == EXIT_FINALIZED, process.log()[-3000:]
    log = process.log()
    assert "a shutdown transition (from active) finalized the node: exiting with code 3" in log, log[-3000:]
    assert "Traceback" not in log


def test_an_error_in_a_transition_finalizes_the_node_and_ends_the_process_with_exit_code_3(node, planner):
    unloadable = {**DOUBLES, "pointer_backend": "failing_doubles:UnloadablePointerDouble", "autostart": False}
    process = node(unloadable)
    request_transition(planner, Transition.TRANSITION_CONFIGURE)
    assert exit_code(process) == EXIT_FINALIZED, process.log()[-3000:]
    log = process.log()
    assert "on_configure failed:" in log and f"RuntimeError: {LOAD_ERROR}" in log, log[-3000:]
    assert "an error in a transition from unconfigured finalized the node: exiting with code 3" in log
