"""No peer sizes the node's memory: every sizing parameter is read-only in every lifecycle state, and configure
holds the frame buffers' budget to the machine (on a CPU, half the available memory) before allocating any of it."""

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import GetState
from lifecycle_soak import rss_mb
from rcl_interfaces.srv import GetParameters, SetParameters
from rclpy.parameter import Parameter
from ros_harness import DOUBLES, NODE_START_S, call, change_state, wait_until_answering

# In range, and what a peer set over DDS before these were read-only (RSS 0.68 -> 5.2 GB on a CPU).
SIZES = {
    "stream_frames": 256,
    "context_frames": 384,
    "catch_up_s": 10.0,
    "fusion_max_lag_frames": 10_000,
    "publish_queue": 10_000,
    "buffer_memory_limit_mb": 1e7,
    "cameras.main.max_width": 16384,
    "cameras.main.max_height": 16384,
    "cameras.main.queue_depth": 1000,
}
FRAME_16K_MIB = 16384 * 16384 * 3 / 2**20  # one frame of 16384 x 16384 RGB8: 768 MiB


def set_parameters(planner, values: dict[str, object]) -> dict[str, str]:
    """Set each of `values` over DDS, as any peer can; the refusal reason of each ("" if it was set)."""
    request = SetParameters.Request(parameters=[Parameter(n, value=v).to_parameter_msg() for n, v in values.items()])
    results = call(planner, SetParameters, "/perception_node/set_parameters", request).results
    return {name: "" if result.successful else result.reason for name, result in zip(values, results, strict=True)}


def test_no_peer_can_set_a_sizing_parameter_in_any_lifecycle_state(node, planner):
    process = node({**DOUBLES, "autostart": False})
    assert change_state(planner, Transition.TRANSITION_CONFIGURE), process.log()[-3000:]  # every parameter declared
    steps = [
        ("inactive", []),
        ("active", [Transition.TRANSITION_ACTIVATE]),
        ("unconfigured", [Transition.TRANSITION_DEACTIVATE, Transition.TRANSITION_CLEANUP]),
    ]
    for state, transitions in steps:
        for transition in transitions:
            assert change_state(planner, transition), process.log()[-3000:]
        reasons = set_parameters(planner, SIZES)
        assert [name for name, reason in reasons.items() if "read-only" not in reason] == [], (state, reasons)
    answer = call(planner, GetParameters, "/perception_node/get_parameters", GetParameters.Request(names=list(SIZES)))
    assert [v.integer_value for v in answer.values[:2]] == [4, 8], "the params file's values stand"


def test_buffers_over_the_machines_memory_fail_configure_with_the_numbers_before_any_is_allocated(node, planner):
    process = node({**DOUBLES, **SIZES, "device": "cpu", "autostart": False})  # from a params file: allowed
    wait_until_answering(planner, NODE_START_S)
    before_mib = rss_mb(process.process.pid)
    assert not change_state(planner, Transition.TRANSITION_CONFIGURE)
    [line] = [line for line in process.log().splitlines() if "cannot configure" in line]
    # 256 stream + 384 context + 301 tracked frames (1 live, 10 s of catch-up at up to 30 a second)
    assert "frame buffers need 722688.0 MiB for 941 frames per camera (main 722688.0 MiB)" in line, line
    assert "MiB allowed on cpu: 50% of the " in line and " MiB available (MemAvailable)" in line, line
    assert all(name in line for name in ("stream_frames", "context_frames", "catch_up_s", "max_width")), line
    grown_mib = rss_mb(process.process.pid, "VmHWM") - before_mib
    assert grown_mib < FRAME_16K_MIB, f"memory grew by {grown_mib:.0f} MiB before the check"
    # Refused, still serving: a manager can ask again (after fixing the params file and restarting it).
    state = call(planner, GetState, "/perception_node/get_state", GetState.Request()).current_state.id
    assert state == State.PRIMARY_STATE_UNCONFIGURED
