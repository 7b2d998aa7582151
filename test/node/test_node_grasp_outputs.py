"""object_points and object_labels over DDS: the tracks' segmented cloud and an instance image aligned with depth."""

import numpy as np
import pytest
from depth_stream import DISC_DEPTH_MM, play_with_depth
from polling import wait_for
from ros_harness import DOUBLES, START_S, stamp_ns
from sensor_msgs.msg import Image, PointCloud2, PointField

from videomolmo_ros.io.image_codec import decode_image

DEPTH_NODE = {**DOUBLES, "use_depth": True}
CLOUD_FIELDS = [("x", 0, PointField.FLOAT32), ("y", 4, PointField.FLOAT32), ("z", 8, PointField.FLOAT32)]
CLOUD_FIELDS += [("rgb", 12, PointField.FLOAT32), ("id", 16, PointField.UINT32)]
CLOUD = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4"), ("id", "<u4")])


def test_the_cloud_and_label_image_hold_each_tracked_objects_points_under_its_id(shared_node, planner):
    process = shared_node(planner, DEPTH_NODE)
    clouds, labels = [], []
    planner.node.create_subscription(PointCloud2, "object_points", clouds.append, 10)
    planner.node.create_subscription(Image, "object_labels", labels.append, 10)
    planner.wait_connected()
    planner.send_command("the red ball", id="r")
    truth = {}
    for second in range(15):  # frames whose depth came late have no 3D: play on until both came
        truth |= play_with_depth(planner, 1.0, start_s=START_S + second)
        if any(c.width for c in clouds) and labels:
            break
    assert wait_for(lambda: any(c.width for c in clouds) and labels, 10), process.log()
    tracks = {stamp_ns(m.header): m for m in planner.get("tracks")}
    cloud = next(c for c in clouds if c.width)
    assert [(f.name, f.offset, f.datatype) for f in cloud.fields] == CLOUD_FIELDS
    assert (cloud.point_step, cloud.height, cloud.is_bigendian) == (20, 1, False)
    points = np.frombuffer(bytes(cloud.data), CLOUD)
    source = tracks[stamp_ns(cloud.header)]
    assert cloud.header.frame_id == source.position_frame_id == "test_camera"
    assert set(points["id"]) <= {t.id for t in source.tracks if t.has_box}
    assert points["z"] == pytest.approx(DISC_DEPTH_MM / 1000, abs=0.01), "the disc's points, not the floor's"

    label = labels[-1]
    assert (label.encoding, label.height, label.width) == ("mono16", 120, 160), "the depth image's size (half)"
    assert label.header.frame_id == "test_camera" and stamp_ns(label.header) in tracks
    ids = decode_image(label.encoding, label.height, label.width, label.step, bytes(label.data))
    labelled = ids > 0
    assert labelled.any()
    assert set(np.unique(ids[labelled])) <= {t.id for t in tracks[stamp_ns(label.header)].tracks}
    on_discs = np.logical_or.reduce(list(truth[stamp_ns(label.header)].values()))[::2, ::2]
    assert not (labelled & ~on_discs).any(), "only disc pixels are labelled, never the floor"
