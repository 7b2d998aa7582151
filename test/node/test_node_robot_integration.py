"""What a manipulation stack relies on: 3D positions from depth, diagnostics, debug views, runtime tuning."""

import importlib.util
import math

import pytest
import yaml
from depth_stream import CX, CY, DISC_DEPTH_MM, FX, FY, play_with_depth
from diagnostic_msgs.msg import DiagnosticStatus
from polling import wait_for
from rclpy.qos import qos_profile_sensor_data
from ros_harness import DOUBLES, FPS, START_S, DiagnosticsRecorder, installed_params_file, play, set_parameter, stamp_ns
from sensor_msgs.msg import Image
from videomolmo_ros.msg import GroundingCommand
from visualization_msgs.msg import MarkerArray

HAVE_TF2 = importlib.util.find_spec("tf2_ros") is not None
DEPTH_NODE = {**DOUBLES, "use_depth": True, "ColorOraclePointerDouble.fail_on": "broken"}  # the node most tests share


def subscribe(planner, msg_type, topic, qos=10):
    received = []
    planner.node.create_subscription(msg_type, topic, received.append, qos)
    return received


def test_targets_and_tracks_get_3d_positions_from_aligned_depth(shared_node, planner):
    process = shared_node(planner, DEPTH_NODE)
    planner.wait_connected()
    planner.send_command("the red ball", id="r")
    play_with_depth(planner, 3.0)
    assert wait_for(lambda: any(t.has_position for m in planner.get("tracks") for t in m.tracks), 10), process.log()
    for msg in planner.get("tracks"):
        for track in msg.tracks:
            if not track.has_position:
                continue
            assert msg.position_frame_id == "test_camera", "no target_frame: positions in the camera's frame"
            assert track.position.z == pytest.approx(DISC_DEPTH_MM / 1000, abs=0.01), "the disc, not the floor"
            assert track.position.x == pytest.approx((track.x - CX) / FX * track.position.z, abs=0.01)
            assert track.position.y == pytest.approx((track.y - CY) / FY * track.position.z, abs=0.01)
    located = [t for m in planner.get("targets") for t in m.targets if t.has_position]
    assert located and all(t.position.z == pytest.approx(0.8, abs=0.01) for t in located)


def test_tracks_get_an_oriented_box_and_a_velocity_from_their_points(shared_node, planner):
    """The red disc is flat at 0.8 m, 48 px (13 cm) across, circling at 25 px/s (6.7 cm/s) in the image plane."""
    process = shared_node(planner, DEPTH_NODE)
    planner.wait_connected()
    planner.send_command("the red ball", id="r")
    play_with_depth(planner, 3.0)
    tracks = lambda: [t for m in planner.get("tracks") for t in m.tracks]  # noqa: E731
    assert wait_for(lambda: any(t.has_velocity for t in tracks()), 10), process.log()
    boxed = [t for t in tracks() if t.has_box]
    assert boxed and all(t.has_position for t in boxed)
    for track in boxed:
        size = sorted((track.box_size.x, track.box_size.y, track.box_size.z))
        assert size[0] < 0.01 and size[2] == pytest.approx(48 / FX * DISC_DEPTH_MM / 1000, abs=0.02)
        assert track.box_pose.position.z == pytest.approx(DISC_DEPTH_MM / 1000, abs=0.01)
    moving = [t for t in tracks() if t.has_velocity]
    assert all(abs(t.velocity.z) < 0.02 for t in moving), "the disc keeps its depth"
    speed = 2 * math.pi * 32 / 8 / FX * DISC_DEPTH_MM / 1000  # orbit 32 px, period 8 s
    assert all(math.hypot(t.velocity.x, t.velocity.y) == pytest.approx(speed, abs=0.02) for t in moving)


def test_diagnostics_report_rates_drops_and_a_failing_model_as_diagnostic_updater_does(shared_node, planner):
    process = shared_node(planner, DEPTH_NODE)
    diagnostics = DiagnosticsRecorder(planner.node)  # from this test's activation on
    planner.wait_connected()
    planner.send_text("")  # a rejected command: a drop the diagnostics must show
    planner.send_command("broken red", id="r")  # the pointer raises on every query of it
    video_s = START_S

    def play_until(level) -> bool:
        """Play the video on, a second at a time, until the pointer's status has `level` (at most 20 s)."""
        nonlocal video_s
        for _ in range(20):
            play(planner, 1.0, start_s=video_s)
            video_s += 1.0
            status = diagnostics.status(": main: pointer")
            if status is not None and status.level == level:
                return True
        return False

    assert play_until(DiagnosticStatus.WARN), process.log()
    statuses = {s.name: s for s in diagnostics.latest().status}
    tasks = ["camera input", "outputs", "grounding", "drops", "time", "buffers", "pointer", "propagator"]
    assert {f"perception_node: main: {task}" for task in tasks} | {"perception_node: device"} <= set(statuses)
    sick = statuses["perception_node: main: pointer"]
    assert sick.message.startswith("the last ") and "double told to fail on 'broken'" in sick.message
    values = {kv.key: kv.value for kv in sick.values}
    assert int(values["failures_in_a_row"]) >= 3 and "broken" in values["last_error"]
    assert (values["backend"], sick.hardware_id) == ("ColorOraclePointerDouble", "cpu")
    camera = statuses["perception_node: main: camera input"]
    assert camera.hardware_id == "/image", "a camera's statuses name its image topic"
    rate = float({kv.key: kv.value for kv in camera.values}["rate_hz"])
    assert 5 < rate < 25, f"camera input rate {rate} Hz while {FPS} Hz are sent"
    assert any(int(values.get("commands_rejected", 0)) >= 1 for values in diagnostics.history("main: drops"))

    planner.send_command("red", id="r", action=GroundingCommand.ACTION_REPLACE)  # a query the model answers
    assert play_until(DiagnosticStatus.OK), process.log()
    assert diagnostics.status(": main: pointer").message.startswith("answering")


def test_debug_views_are_published_only_to_subscribers(shared_node, planner):
    process = shared_node(planner, DEPTH_NODE)
    planner.wait_connected()
    planner.send_command("red", id="r")
    play_with_depth(planner, 1.5)
    assert wait_for(lambda: planner.get("masks"), 10), process.log()
    images = subscribe(planner, Image, "debug_image")
    markers = subscribe(planner, MarkerArray, "debug_markers")

    def spheres():
        return [m for array in list(markers) for m in array.markers if m.type == m.SPHERE]

    # Frames whose depth came too late (another topic, best effort) get no position, so no sphere:
    # play on until spheres come, and every sphere sits on the disc at 0.8 m.
    for second in range(1, 16):
        play_with_depth(planner, 1.0, start_s=START_S + 0.5 + second)
        if images and spheres():
            break
    assert images and spheres(), f"debug image and sphere markers: {len(images)} images, {len(markers)} arrays"
    image = images[-1]
    assert (image.height, image.width, image.encoding) == (240, 320, "rgb8")
    assert stamp_ns(image.header) >= round(START_S * 1e9) and image.header.frame_id == "test_camera"
    assert all(m.pose.position.z == pytest.approx(0.8, abs=0.01) for m in spheres())
    cubes = [m for array in list(markers) for m in array.markers if m.type == m.CUBE]
    assert cubes, "each track's oriented box as a cube"
    assert all(c.pose.position.z == pytest.approx(0.8, abs=0.01) and min(c.scale.x, c.scale.y) > 0.05 for c in cubes)


def test_thresholds_change_at_run_time_and_bad_values_are_refused(shared_node, planner):
    shared_node(planner, DEPTH_NODE)
    planner.wait_connected()
    shipped = yaml.safe_load(installed_params_file().read_text())["perception_node"]["ros__parameters"]
    try:
        assert set_parameter(planner, "tracker.match_distance", 0.3).successful
        assert not set_parameter(planner, "tracker.match_distance", 7.0).successful, "outside its declared range"
        assert set_parameter(planner, "tracker.min_mask_score", 0.5).successful
        assert set_parameter(planner, "tracker.min_point_score", 0.3).successful
        assert not set_parameter(planner, "tracker.min_mask_score", 1.5).successful, "a score is 0-1"
        refused = set_parameter(planner, "fusion", "bidirectional")
        assert not refused.successful and "reconfigure" in refused.reason
    finally:  # the node is shared: the tests after this one get the shipped thresholds
        for name in ("tracker.match_distance", "tracker.min_mask_score", "tracker.min_point_score"):
            assert set_parameter(planner, name, shipped[name]).successful, name


def test_a_best_effort_camera_info_publisher_is_heard(node, planner):
    """Most drivers publish camera_info with the sensor QoS: the node subscribes with the camera's (best effort).

    A node of its own: a shared one would still hold the camera_info of an earlier test."""
    process = node(DEPTH_NODE)
    planner.wait_connected()
    planner.send_command("the red ball", id="r")
    play_with_depth(planner, 3.0, info_qos=qos_profile_sensor_data)
    assert wait_for(lambda: any(t.has_position for m in planner.get("tracks") for t in m.tracks), 10), process.log()


@pytest.mark.skipif(
    not HAVE_TF2,
    reason="tf2_ros is not installable here (no PyPI wheel): the transform itself is tested in "
    "test/io/test_depth_projection.py, the node without tf2 below",
)
def test_with_a_target_frame_positions_are_moved_into_it_by_tf2(node, planner):
    import tf2_ros
    from geometry_msgs.msg import TransformStamped

    process = node({**DEPTH_NODE, "target_frame": "base_link"})
    camera_in_base = TransformStamped()
    camera_in_base.header.frame_id, camera_in_base.child_frame_id = "base_link", "test_camera"
    offset = (0.1, 0.0, 0.5)  # the camera frame's origin in base_link; not rotated
    translation = camera_in_base.transform.translation
    translation.x, translation.y, translation.z = offset
    camera_in_base.transform.rotation.w = 1.0
    broadcaster = tf2_ros.StaticTransformBroadcaster(planner.node)  # latched: the node hears it whenever it joins
    broadcaster.sendTransform(camera_in_base)
    planner.wait_connected()
    planner.send_command("the red ball", id="r")
    play_with_depth(planner, 3.0)
    in_base = lambda: [m for m in planner.get("tracks") if m.position_frame_id == "base_link"]  # noqa: E731
    assert wait_for(lambda: any(t.has_position for m in in_base() for t in m.tracks), 10), process.log()
    z = DISC_DEPTH_MM / 1000  # in the camera's frame
    for msg in in_base():
        for track in (t for t in msg.tracks if t.has_position):
            assert track.position.z == pytest.approx(z + offset[2], abs=0.01)
            assert track.position.x == pytest.approx((track.x - CX) / FX * z + offset[0], abs=0.01)
            assert track.position.y == pytest.approx((track.y - CY) / FY * z + offset[1], abs=0.01)


def test_with_static_transforms_positions_and_upright_boxes_are_in_the_target_frame(node, planner):
    """The camera 1 m above base_link looking straight down: the disc (0.8 m away) is flat, 0.2 m up."""
    down = "base_link test_camera 0.1 0 1.0 1 0 0 0"  # half a turn about x: optical z is base -z
    process = node({**DEPTH_NODE, "target_frame": "base_link", "static_transforms": down})
    markers = subscribe(planner, MarkerArray, "debug_markers")
    planner.wait_connected()
    planner.send_command("the red ball", id="r")
    play_with_depth(planner, 3.0)
    boxed = lambda: [t for m in planner.get("tracks") for t in m.tracks if t.has_box]  # noqa: E731
    assert wait_for(lambda: boxed(), 10), process.log()
    assert {m.position_frame_id for m in planner.get("tracks") if any(t.has_position for t in m.tracks)} == {
        "base_link"
    }
    diameter = 48 / FX * DISC_DEPTH_MM / 1000
    for track in boxed():
        assert track.position.z == pytest.approx(0.2, abs=0.01)
        pose, size = track.box_pose, track.box_size
        assert (pose.orientation.x, pose.orientation.y) == pytest.approx((0.0, 0.0), abs=1e-6), "upright"
        assert pose.position.z == pytest.approx(0.2, abs=0.01), "floating 1.2 m above the floor: not stood on it"
        assert size.z < 0.01 and size.x == pytest.approx(diameter, abs=0.02)
    assert "tf2_ros is not installed" not in process.log(), "the static transform serves"
    assert wait_for(lambda: any(array.markers for array in markers), 10)
    assert {m.header.frame_id for array in markers for m in array.markers} == {"base_link"}, "RViz draws them there"


@pytest.mark.skipif(HAVE_TF2, reason="tf2_ros is installed: the transform is tested above")
def test_without_tf2_a_target_frame_is_said_once_and_positions_stay_in_the_camera_frame(node, planner):
    process = node({**DEPTH_NODE, "target_frame": "base_link"})
    planner.wait_connected()
    planner.send_command("the red ball", id="r")
    play_with_depth(planner, 3.0)
    assert wait_for(lambda: any(t.has_position for m in planner.get("tracks") for t in m.tracks), 10), process.log()
    framed = {m.position_frame_id for m in planner.get("tracks") if any(t.has_position for t in m.tracks)}
    assert framed == {"test_camera"}, "the outputs say which frame their positions are in"
    assert process.log().count("tf2_ros is not installed") == 1
