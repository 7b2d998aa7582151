"""perception_node as a separate process over real DDS, driven as a planner would drive it."""

import yaml
from block_tampering import Tampering
from diagnostic_msgs.msg import DiagnosticStatus
from parameter_reference import documented_parameters
from polling import wait_for
from ros_harness import (
    DOUBLES,
    NO_BACKENDS,
    NODE_START_S,
    RELIABLE_CAMERA,
    START_S,
    DiagnosticsRecorder,
    installed_params_file,
    play,
    stamp_ns,
)
from synthetic_video import default_scene, render
from tiny_molmo2 import write_tiny_molmo2
from tiny_sam2 import tiny_options, write_tiny_sam2
from tiny_videomolmo import write_tiny_videomolmo_with_tokenizer
from videomolmo_ros.msg import CommandStatus, GroundingCommand, ObjectTrack

from videomolmo_ros.backends import registry as backend_registry
from videomolmo_ros.contracts.interfaces import MaskPropagator, Pointer
from videomolmo_ros.io.mask_codec import decode_masks

# What rclpy declares on every node.
ROS_OWN_PARAMETERS = {"use_sim_time", "start_type_description_service"}


def test_targets_tracks_and_masks_follow_the_objects_with_source_headers(node, planner):
    process = node(DOUBLES)
    planner.wait_connected()
    planner.send_text("the red ball")
    planner.send_command("blue one", id="blue-1", mode=GroundingCommand.MODE_POINT)
    truth = play(planner, 4.0, encoding="bgr8")
    assert wait_for(lambda: {"blue-1"} < {m.command_id for m in planner.get("masks") if m.ids}, 10)
    assert process.process.poll() is None, process.log()

    statuses = planner.get("command_status")
    assert [s.state for s in statuses] == [CommandStatus.ACCEPTED] * 2, statuses
    red_id = next(s.id for s in statuses if s.query == "the red ball")
    assert red_id.startswith("cmd-"), "the node assigns ids to commands that come without one"
    colour = {red_id: "red", "blue-1": "blue"}

    targets = planner.get("targets")
    assert {t.command_id for t in targets} == {red_id, "blue-1"}
    for msg in targets:
        assert msg.header.frame_id == "test_camera" and stamp_ns(msg.header) in truth
        [target] = msg.targets
        assert truth[stamp_ns(msg.header)][colour[msg.command_id]][round(target.y), round(target.x)]

    tracks = planner.get("tracks")
    for command_id in colour:
        ids = {t.id for msg in tracks if msg.command_id == command_id for t in msg.tracks}
        assert len(ids) == 1, f"{command_id}: one object keeps one id while it moves: {ids}"
    assert tracks[-1].tracks[0].state == ObjectTrack.STATE_TRACKED
    assert all(stamp_ns(m.header) in truth and m.header.frame_id == "test_camera" for m in tracks)

    masks = [m for m in planner.get("masks") if m.ids]
    assert len(masks) > 20, "masks arrive at camera rate"
    for msg in masks:
        [mask] = decode_masks(bytes(msg.data), msg.height, msg.width, len(msg.ids))
        true = truth[stamp_ns(msg.header)][colour[msg.command_id]]
        assert (mask & true).sum() / (mask | true).sum() > 0.9
    track_ids = {(m.command_id, t.id) for m in tracks for t in m.tracks}
    assert {(m.command_id, m.ids[0]) for m in masks} <= track_ids, "mask ids are track ids"
    assert process.stop() == 0, "Ctrl-C shuts the node down cleanly"


def test_bad_input_is_reported_and_the_node_keeps_serving(node, reliable_planner):
    planner = reliable_planner  # every bad frame arrives: the test waits for what the node says of each
    process = node({**DOUBLES, **RELIABLE_CAMERA})
    planner.wait_connected()
    image, _ = render(default_scene(), 0.0)
    bad = planner.image_pub.msg_type(height=240, width=320, encoding="yuv422_weird", step=640, data=bytes(240 * 640))
    truncated = planner.image_pub.msg_type(height=240, width=320, encoding="rgb8", step=960, data=bytes(1000))
    planner.send_image(image, "rgb8", round(990 * 1e9))
    planner.image_pub.publish(bad)
    planner.image_pub.publish(truncated)
    planner.send_text("")
    planner.send_text("red " * 250_000)  # 1 MB
    planner.send_command("red", id="bad id with spaces")
    planner.send_command("", id="nope", action=GroundingCommand.ACTION_STOP)
    assert wait_for(lambda: len(planner.get("command_status")) >= 4, 30), process.log()
    reasons = [s.reason for s in planner.get("command_status")]
    assert all(s.state == CommandStatus.REJECTED for s in planner.get("command_status"))
    assert any("empty" in r for r in reasons)
    assert any("1000000 characters" in r for r in reasons)
    assert any("no running command has id 'nope'" in r for r in reasons)

    planner.send_command("red", id="r")
    masked = lambda: any(m.ids for m in planner.get("masks"))  # noqa: E731
    play(planner, 2.0, until=masked)
    serving = wait_for(masked, 30)
    assert serving, f"not serving after bad input:\n{process.log()}"
    # Each kind of problem is logged at once with its reason (later ones of a kind are rate-limited:
    # of the four rejected commands, whichever came first is logged).
    for said in ("unsupported encoding 'yuv422_weird'", "data has 1000 bytes", " rejected: "):
        assert wait_for(lambda said=said: said in process.log(), 10), f"{said!r} not in the log:\n{process.log()}"


def tiny_sam2_parameters(folder) -> dict[str, object]:
    """The node parameters that load a tiny random SAM2 written to `folder`."""
    return {f"sam2.{k}": v for k, v in tiny_options(write_tiny_sam2(folder)).items()}


def test_a_bad_parameter_stops_start_up_with_the_reason(node):
    process = node({**NO_BACKENDS, "cameras.main.reliability": "sometimes"})
    assert process.process.wait(30) == 1
    assert "cameras.main.reliability = 'sometimes'" in process.log()


def test_a_missing_checkpoint_stops_start_up_saying_what_to_download(node):
    process = node()  # the shipped defaults: Molmo2-4B, which this machine does not have
    assert process.process.wait(NODE_START_S) == 1
    assert "hf download allenai/Molmo2-4B" in process.log()


def test_a_missing_sam2_checkpoint_stops_start_up_saying_what_to_download(node):
    process = node({"pointer_backend": ""})  # the shipped SAM2 default, without its checkpoint
    assert process.process.wait(NODE_START_S) == 1
    assert "sam2.1_hiera_tiny.pt" in process.log() and "sam2.checkpoint" in process.log()


def test_without_a_params_file_the_node_fails_saying_what_to_download(node):
    """As `ros2 run` starts it: the code's defaults are the documented ones (Molmo2-4B, SAM 2.1 tiny)."""
    process = node(params_file=False)
    assert process.process.wait(NODE_START_S) == 1
    assert "hf download allenai/Molmo2-4B" in process.log() and "HF_HUB_OFFLINE" in process.log()


def test_without_a_network_the_sam2_default_fails_naming_both_ways(node):
    """No HF_HUB_OFFLINE, the hub endpoint a closed local port: start-up fails with a message naming the
    hub repository and the local checkpoint parameter."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        endpoint = f"http://127.0.0.1:{probe.getsockname()[1]}"
    process = node({"pointer_backend": ""}, params_file=False, env={"HF_HUB_OFFLINE": None, "HF_ENDPOINT": endpoint})
    assert process.process.wait(NODE_START_S) == 1
    log = process.log()
    assert f"no network: {endpoint} did not answer" in log, log
    assert "facebook/sam2.1-hiera-tiny" in log and "local .pt" in log and "sam2.checkpoint" in log


def test_the_documented_parameters_are_the_declared_ones_with_the_code_defaults(node, planner, tmp_path):
    """Started without the params file (tiny models for the two checkpoints): the node declares exactly the
    parameters docs/parameters.md and config/perception.yaml name (less the backends not selected), and every
    one has the value config/perception.yaml gives."""
    from rcl_interfaces.srv import GetParameters, ListParameters
    from rclpy.parameter import parameter_value_to_python

    checkpoints = {"molmo2.model": str(write_tiny_molmo2(tmp_path / "molmo2")), **tiny_sam2_parameters(tmp_path)}
    process = node(checkpoints, params_file=False)
    assert process.wait_for_log("ready on cpu"), process.log()
    client = planner.node.create_client(ListParameters, "/perception_node/list_parameters")
    assert client.wait_for_service(timeout_sec=20)
    future = client.call_async(ListParameters.Request())
    assert wait_for(future.done, 20)
    declared = set(future.result().result.names) - ROS_OWN_PARAMETERS
    file_values = yaml.safe_load(installed_params_file().read_text())["perception_node"]["ros__parameters"]
    documented = documented_parameters("main")
    assert set(file_values) == documented, "config/perception.yaml and docs/parameters.md name the same parameters"
    backends = {**backend_registry.POINTERS, **backend_registry.PROPAGATORS}
    not_selected = {name for name in documented if name.partition(".")[0] in set(backends) - {"molmo2", "sam2"}}
    assert sorted(declared - documented) == [], "declared but not documented"
    assert sorted(documented - not_selected - declared) == [], "documented but not declared"
    compared = sorted(declared - set(checkpoints))
    getter = planner.node.create_client(GetParameters, "/perception_node/get_parameters")
    future = getter.call_async(GetParameters.Request(names=compared))
    assert wait_for(future.done, 20)
    values = {name: parameter_value_to_python(v) for name, v in zip(compared, future.result().values, strict=True)}
    differ = {name: (values[name], file_values[name]) for name in compared if values[name] != file_values[name]}
    assert differ == {}, "code default != perception.yaml"
    for backend in backends:  # the options of the backends not selected too
        options = {name.partition(".")[2] for name in documented if name.startswith(f"{backend}.")}
        kind = Pointer if backend in backend_registry.POINTERS else MaskPropagator
        defaults = backend_registry.option_defaults(backend_registry.resolve(backend, kind))
        assert {option: file_values[f"{backend}.{option}"] for option in options} == defaults, backend


def test_a_context_rate_molmo2_was_not_trained_on_is_warned_about_once_or_refused(node, tmp_path):
    checkpoint = write_tiny_molmo2(tmp_path / "molmo2")
    overrides = {"molmo2.model": str(checkpoint), "propagator_backend": DOUBLES["propagator_backend"]}
    colliding = node({**overrides, "context_fps": 12.0})
    assert colliding.process.wait(NODE_START_S) == 1
    assert "context_fps 12 Hz is too fast for Molmo2" in colliding.log(), colliding.log()
    untrained = node({**overrides, "context_fps": 5.0})
    assert untrained.wait_for_log("ready on cpu"), untrained.log()
    assert untrained.log().count("Molmo2 was trained on video sampled at 2 Hz") == 1, untrained.log()


def test_commands_are_rejected_with_a_reason_when_no_pointer_is_configured(node, planner):
    process = node(NO_BACKENDS)
    assert process.wait_for_log("no pointer_backend set"), process.log()
    planner.wait_connected()
    planner.send_command("red", id="r")
    assert wait_for(lambda: planner.get("command_status"), 10)
    [status] = planner.get("command_status")
    assert status.state == CommandStatus.REJECTED and "pointer_backend" in status.reason


def test_the_node_grounds_with_molmo2_on_a_tiny_random_checkpoint(node, planner, tmp_path):
    checkpoint = write_tiny_molmo2(tmp_path / "molmo2")
    overrides = {"pointer_backend": "molmo2", "molmo2.model": str(checkpoint), "molmo2.max_new_tokens": 64}
    process = node({**overrides, "propagator_backend": DOUBLES["propagator_backend"]})
    planner.wait_connected()
    planner.send_command("the red ball", id="m", mode=GroundingCommand.MODE_POINT)
    pointed = lambda: any(t.command_id == "m" for t in planner.get("targets"))  # noqa: E731
    truth = play(planner, 4.0, until=pointed)
    assert wait_for(pointed, 30), process.log()
    for msg in planner.get("targets"):
        assert stamp_ns(msg.header) in truth and msg.header.frame_id == "test_camera"
        assert all(0 <= t.x < 320 and 0 <= t.y < 240 for t in msg.targets), "points land in the source image"
    assert "Molmo2Pointer" in process.log()


def test_the_node_tracks_with_sam2_on_a_tiny_random_checkpoint(node, planner, tmp_path):
    sam2 = tiny_sam2_parameters(tmp_path)
    process = node({"pointer_backend": DOUBLES["pointer_backend"], "propagator_backend": "sam2", **sam2})
    planner.wait_connected()
    planner.send_command("the red ball", id="s")
    masked = lambda: len(planner.get("masks")) > 5  # noqa: E731
    truth = play(planner, 4.0, until=masked)
    assert wait_for(masked, 30), process.log()
    assert "Sam2Propagator" in process.log()
    tracks = {stamp_ns(m.header): m for m in planner.get("tracks")}
    for msg in planner.get("masks"):
        assert stamp_ns(msg.header) in truth and msg.header.frame_id == "test_camera"
        assert (msg.height, msg.width) == (240, 320), "masks at the source image's size"
        masks = decode_masks(bytes(msg.data), msg.height, msg.width, len(msg.ids))
        assert len(masks) == len(msg.ids)
        assert set(msg.ids) <= {t.id for t in tracks[stamp_ns(msg.header)].tracks}


def test_the_node_grounds_with_videomolmo_on_a_tiny_random_checkpoint(node, planner, tmp_path):
    checkpoint = str(write_tiny_videomolmo_with_tokenizer(tmp_path / "videomolmo"))
    process = node(
        {
            "pointer_backend": "videomolmo",
            "videomolmo.model": checkpoint,
            "videomolmo.tokenizer": checkpoint,
            "videomolmo.max_new_tokens": 400,
            "context_frames": 5,
            "context_fps": 30.0,
            "propagator_backend": DOUBLES["propagator_backend"],
        }
    )
    planner.wait_connected()
    planner.send_command("the red ball", id="v", mode=GroundingCommand.MODE_POINT)
    pointed = lambda: any(t.command_id == "v" for t in planner.get("targets"))  # noqa: E731
    truth = play(planner, 3.0, until=pointed)
    assert wait_for(pointed, 30), process.log()
    for msg in planner.get("targets"):
        assert stamp_ns(msg.header) in truth and msg.header.frame_id == "test_camera"
        assert all(0 <= t.x < 320 and 0 <= t.y < 240 for t in msg.targets)
    assert "VideoMolmoPointer" in process.log()


def test_the_pointer_runs_in_a_process_of_its_own_whose_death_for_good_is_a_diagnosed_error(node, planner, tmp_path):
    diagnostics = DiagnosticsRecorder(planner.node)
    dying = {"pointer_backend": "failing_doubles:DyingPointerDouble", "DyingPointerDouble.answers": 2}
    process = node({**DOUBLES, **dying, "pointer_process": True, "DyingPointerDouble.loaded_file": str(tmp_path / "x")})
    planner.wait_connected()
    planner.send_command("the red ball", id="p", mode=GroundingCommand.MODE_POINT)
    pointed = lambda: any(t.command_id == "p" for t in planner.get("targets"))  # noqa: E731
    truth = play(planner, 3.0, until=pointed)
    assert wait_for(pointed, 30), process.log()
    for msg in planner.get("targets"):
        [target] = msg.targets
        assert truth[stamp_ns(msg.header)]["red"][round(target.y), round(target.x)], "on the red ball"
    assert "pointer, propagator = DyingPointerDouble in a process of its own, Color" in process.log()

    def down() -> bool:  # its third query kills it, and it cannot be loaded again
        status = diagnostics.status(": main: pointer")
        return status is not None and status.level == DiagnosticStatus.ERROR

    for second in range(30):  # the video goes on: each new window is a query, each query a restart
        if down():
            break
        play(planner, 1.0, start_s=START_S + 3.0 + second)
    assert down(), process.log()
    status = diagnostics.status(": main: pointer")
    assert status.message == (
        "the pointer process was killed by SIGKILL (out of memory?) and could not be started again: "
        "not enough memory to load the model again"
    )
    assert status.hardware_id == "cpu"
    assert process.stop() == 0, "the pointer process is stopped with the node"


def test_another_process_tampering_with_the_pointer_process_frames_leaves_the_node_grounding(node, planner):
    """Truncated, the shared block faulted the node's next write (SIGBUS, no log line); unlinked, no query worked."""
    # Windows of one frame: the block the first query makes is the one every later query writes to.
    process = node({**DOUBLES, "pointer_process": True, "context_frames": 1})
    planner.wait_connected()
    tampering = Tampering(process.process.pid, ("truncate", "unlink", "overwrite"), timeout_s=NODE_START_S)
    pointed = lambda command_id: any(t.command_id == command_id for t in planner.get("targets"))  # noqa: E731
    planner.send_command("the red ball", id="before", mode=GroundingCommand.MODE_POINT)
    truth = play(planner, 3.0, until=lambda: pointed("before"))
    assert wait_for(lambda: pointed("before"), 30), process.log()
    refused = {"truncate": "PermissionError", "unlink": "FileNotFoundError", "overwrite": "PermissionError"}
    assert tampering.outcomes() == [refused], "the block made for the first query, found and attacked in vain"

    planner.send_command("the blue ball", id="after", mode=GroundingCommand.MODE_POINT)
    truth |= play(planner, 3.0, start_s=START_S + 3.0, until=lambda: pointed("after"))
    assert wait_for(lambda: pointed("after"), 30), process.log()
    for msg in (m for m in planner.get("targets") if m.command_id == "after"):
        [target] = msg.targets
        assert truth[stamp_ns(msg.header)]["blue"][round(target.y), round(target.x)], "on the blue ball"
    assert process.stop() == 0, "still running, and stopped cleanly"
