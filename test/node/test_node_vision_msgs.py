"""publish_vision_msgs over DDS: detections for vision_msgs consumers where installed, nothing lost where not."""

import importlib.util

import pytest
from depth_stream import DISC_DEPTH_MM, play_with_depth
from polling import wait_for
from ros_harness import DOUBLES, play, stamp_ns

HAVE_VISION_MSGS = importlib.util.find_spec("vision_msgs") is not None


@pytest.mark.skipif(
    not HAVE_VISION_MSGS,
    reason="vision_msgs is not installable here (no PyPI wheel); the conversion is tested in "
    "test/pipeline/test_detections.py and the node without it below",
)
def test_tracks_are_also_published_as_vision_msgs_detections(node, planner):
    from vision_msgs.msg import Detection2DArray, Detection3DArray

    detections, detections_3d = [], []
    planner.node.create_subscription(Detection2DArray, "detections", detections.append, 50)
    planner.node.create_subscription(Detection3DArray, "detections_3d", detections_3d.append, 50)
    process = node({**DOUBLES, "publish_vision_msgs": True, "use_depth": True})
    planner.wait_connected()
    planner.send_command("the red ball", id="r")
    play_with_depth(planner, 3.0)
    assert wait_for(lambda: any(a.detections for a in detections) and any(a.detections for a in detections_3d), 10), (
        f"{len(detections)} 2D and {len(detections_3d)} 3D arrays, none with a detection:\n{process.log()}"
    )
    tracked = {stamp_ns(m.header): {str(t.id): t for t in m.tracks if t.state == 1} for m in planner.get("tracks")}
    for array in detections:
        assert array.header.frame_id == "test_camera"
        tracks = tracked.get(stamp_ns(array.header), {})
        assert {d.id for d in array.detections} <= set(tracks)
        for d in array.detections:
            track = tracks[d.id]
            assert d.bbox.size_x == pytest.approx(track.box_x_max - track.box_x_min + 1)
            assert d.bbox.center.position.x == pytest.approx((track.box_x_min + track.box_x_max) / 2)
            hypothesis = d.results[0].hypothesis
            assert hypothesis.class_id == track.label and hypothesis.score == pytest.approx(track.score, abs=1e-6)
    for array in detections_3d:
        assert array.header.frame_id == "test_camera"
        for d in array.detections:
            assert d.bbox.center.position.z == pytest.approx(DISC_DEPTH_MM / 1000, abs=0.01), "on the disc"


@pytest.mark.skipif(HAVE_VISION_MSGS, reason="vision_msgs is installed: its topics are tested above")
def test_without_vision_msgs_the_node_says_so_once_and_serves_the_rest(node, planner):
    process = node({**DOUBLES, "publish_vision_msgs": True})
    planner.wait_connected()
    planner.send_command("the red ball", id="r")
    served = lambda: planner.get("masks") and planner.get("tracks")  # noqa: E731
    play(planner, 2.0, until=served)
    assert wait_for(served, 10), process.log()
    assert process.log().count("vision_msgs is not installed") == 1
