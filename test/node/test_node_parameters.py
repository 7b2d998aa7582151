"""Parameters over DDS: nobody on the network changes what code, files or endpoints the node uses; runtime
changes hold across the lifecycle; a bad params file is one FATAL line that says what to fix."""

from lifecycle_msgs.msg import Transition
from openai_server_double import DEFAULT_MODEL, OpenAIServerDouble
from polling import wait_for
from rcl_interfaces.srv import DescribeParameters, GetParameters, ListParameters
from ros_harness import (
    DOUBLES,
    NODE_START_S,
    activate,
    call,
    change_state,
    installed_params_file,
    play,
    set_parameter,
)
from videomolmo_ros.msg import ObjectTrack

# What selects code, files or endpoints, by name: every declared parameter matching it must be read-only.
SELECTING_OPTIONS = {
    "model", "checkpoint", "tokenizer", "revision", "trust_remote_code", "quantization", "dtype",
    "config", "config_overrides", "server_url", "server_model",
}  # fmt: skip


def selects_code_files_or_endpoints(name: str) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return (
        name in ("device", "pointer_backend", "propagator_backend", "pointer_process", "cameras.names")
        or name == "tracker.descriptor"
        or (name.startswith("cameras.") and leaf in ("image_topic", "depth_topic", "camera_info_topic", "transport"))
        or ("." in name and not name.startswith("cameras.") and leaf in SELECTING_OPTIONS)
    )


def declared(planner) -> dict[str, bool]:
    """Every parameter the node declared -> whether it is read-only."""
    names = call(planner, ListParameters, "/perception_node/list_parameters", ListParameters.Request()).result.names
    described = call(
        planner, DescribeParameters, "/perception_node/describe_parameters", DescribeParameters.Request(names=names)
    )
    return {d.name: d.read_only for d in described.descriptors}


def test_every_code_file_or_endpoint_selecting_parameter_is_read_only(node, planner):
    # Molmo2 and SAM2 cannot load here (no weights): configure fails after declaring all their options.
    process = node({"pointer_backend": "molmo2", "propagator_backend": "sam2", "autostart": False})
    assert not change_state(planner, Transition.TRANSITION_CONFIGURE)
    params = declared(planner)
    selecting = {name for name in params if selects_code_files_or_endpoints(name)}
    assert {"molmo2.model", "molmo2.trust_remote_code", "molmo2.server_url", "sam2.config_overrides"} <= selecting
    assert [name for name in sorted(selecting) if not params[name]] == []
    for name, value in [
        ("pointer_backend", "os:system"),
        ("molmo2.trust_remote_code", True),
        ("pointer_process", True),
        ("tracker.descriptor", "propagator_features"),
    ]:
        result = set_parameter(planner, name, value)
        assert not result.successful, (name, process.log()[-2000:])
    assert "read-only" in set_parameter(planner, "sam2.config_overrides", "++model._target_=builtins.print").reason


def states(planner, command_id: str) -> set[int]:
    return {t.state for m in planner.get("tracks") if m.command_id == command_id for t in m.tracks}


def value(planner, name: str):
    answer = call(planner, GetParameters, "/perception_node/get_parameters", GetParameters.Request(names=[name]))
    return answer.values[0].integer_value


def test_parameter_changes_hold_across_the_lifecycle_and_reconfigure_only_settings_are_refused(node, planner):
    process = node({**DOUBLES, "tracker.confirm_frames": 1000, "autostart": False})  # tracks stay tentative
    activate(planner, process)
    planner.wait_connected()
    # While inactive: a runtime threshold is applied at activate; code and reconfigure settings are refused.
    assert change_state(planner, Transition.TRANSITION_DEACTIVATE)
    assert set_parameter(planner, "tracker.confirm_frames", 1).successful
    assert not set_parameter(planner, "pointer_backend", "os:system").successful  # the code-execution chain
    refused = set_parameter(planner, "max_commands", 3)
    assert not refused.successful and "reconfigure" in refused.reason
    assert change_state(planner, Transition.TRANSITION_ACTIVATE)
    planner.wait_connected()
    planner.send_command("red", id="after-inactive-change")
    confirmed = lambda: ObjectTrack.STATE_TRACKED in states(planner, "after-inactive-change")  # noqa: E731
    play(planner, 2.0, until=confirmed)
    assert wait_for(confirmed, 10), (
        f"confirm_frames reads {value(planner, 'tracker.confirm_frames')}, but the node still uses 1000:\n"
        + process.log()[-3000:]
    )
    # While active: the change survives deactivate / activate.
    assert set_parameter(planner, "tracker.confirm_frames", 2).successful
    assert change_state(planner, Transition.TRANSITION_DEACTIVATE)
    assert change_state(planner, Transition.TRANSITION_ACTIVATE)
    planner.wait_connected()
    planner.send_command("red", id="after-cycle")
    confirmed = lambda: ObjectTrack.STATE_TRACKED in states(planner, "after-cycle")  # noqa: E731
    play(planner, 2.0, start_s=2000.0, until=confirmed)
    assert value(planner, "tracker.confirm_frames") == 2
    assert wait_for(confirmed, 10), process.log()[-3000:]


def fatal_lines(process) -> list[str]:
    assert wait_for(lambda: process.process.poll() is not None, NODE_START_S), "the node kept running"
    return [line for line in process.log().splitlines() if "FATAL" in line]


def test_a_bad_params_file_is_one_fatal_line_naming_parameter_value_expectation_and_file(node):
    cases = [
        ({"context_fps": "fast"}, "context_fps", ["'fast'", "a double"]),
        ({"stream_frames": 100_000}, "stream_frames", ["100000", "[1, 256]"]),
        ({**DOUBLES, "ColorOraclePointerDouble.delay_s": "slow"}, "ColorOraclePointerDouble.delay_s", ["a double"]),
        ({"static_transforms": "base_link camera 0 0 1"}, "static_transforms", ["'base_link camera 0 0 1' is not"]),
    ]
    # Config overrides are code to hydra: only numbers and booleans of the config may change.
    evil = {"propagator_backend": "sam2", "sam2.config_overrides": "++model._target_=builtins.print"}
    overrides = node({"pointer_backend": "", **evil, "sam2.checkpoint": str(installed_params_file())})
    [line] = fatal_lines(overrides)
    assert "sam2.config_overrides '++model._target_=builtins.print' refused" in line, line
    processes = [(node(overrides), name, words) for overrides, name, words in cases]
    for process, name, words in processes:
        [line] = fatal_lines(process)
        assert process.process.returncode == 1
        for word in [f"parameter {name}", *words, str(process.log_path.with_suffix(".params.yaml"))]:
            assert word in line, (word, line)


def test_propagator_features_from_a_propagator_that_exposes_none_is_refused_at_configure(node):
    [line] = fatal_lines(node({**DOUBLES, "tracker.descriptor": "propagator_features"}))
    assert "cannot configure: tracker.descriptor propagator_features needs a propagator" in line, line
    assert "ColorOraclePropagatorDouble has none: use colour_texture" in line, line


def test_an_integer_for_a_double_parameter_is_taken_as_that_double(node, planner):
    process = node({**DOUBLES, "context_fps": 2, "max_result_age_s": 4})
    assert process.wait_for_log("ready on"), process.log()
    answer = call(
        planner,
        GetParameters,
        "/perception_node/get_parameters",
        GetParameters.Request(names=["context_fps", "max_result_age_s"]),
    )
    assert [v.double_value for v in answer.values] == [2.0, 4.0]


def test_the_grounding_server_is_named_at_configure_and_its_key_never_leaves_the_node(node, planner, monkeypatch):
    key = "sk-test-secret-key-0123456789"
    monkeypatch.setenv("VIDEOMOLMO_SERVER_API_KEY", key)
    with OpenAIServerDouble(DEFAULT_MODEL) as server:
        remote = {"pointer_backend": "molmo2", "molmo2.server_url": server.url, "molmo2.server_model": DEFAULT_MODEL}
        process = node({**DOUBLES, **remote, "autostart": False})
        activate(planner, process)
        assert process.wait_for_log("ready on"), process.log()
        assert f"server 127.0.0.1:{server.port}, model {DEFAULT_MODEL}" in process.log()
        # Re-pointing the server (and with it the key and the frames) is refused, in any state.
        assert change_state(planner, Transition.TRANSITION_DEACTIVATE)
        assert not set_parameter(planner, "molmo2.server_url", "http://127.0.0.2:8000/v1").successful
    assert key not in process.log()
