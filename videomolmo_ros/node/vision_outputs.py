"""vision_msgs outputs (`publish_vision_msgs`): `detections` and `detections_3d` beside the package's own messages.

vision_msgs is optional: where it is not installed the node says so once and publishes the
rest. A failure here costs these two topics, never the tracks and masks.
"""

from collections.abc import Callable

from rclpy.node import Node

from videomolmo_ros.msg import ObjectTracks
from videomolmo_ros.node import messages
from videomolmo_ros.pipeline.detections import Detection2D, Detection3D, detections_2d, detections_3d
from videomolmo_ros.pipeline.outputs import TracksOutput


class VisionOutputs:
    """Publishes each tracked frame's TRACKED tracks as Detection2DArray and (with positions) Detection3DArray."""

    def __init__(self, node: Node, enabled: bool):
        self._publishers = None
        if not enabled:
            return
        try:
            from vision_msgs.msg import Detection2DArray, Detection3DArray
        except ImportError:
            node.get_logger().warning(
                "publish_vision_msgs is set but vision_msgs is not installed (ros-<distro>-vision-msgs): "
                "detections and detections_3d are not published; tracks, masks and targets are"
            )
            return
        self._publishers = (
            node.create_lifecycle_publisher(Detection2DArray, "detections", 10),
            node.create_lifecycle_publisher(Detection3DArray, "detections_3d", 10),
        )

    def publish(self, output: TracksOutput, msg: ObjectTracks, problem: Callable[[str, str], None]) -> None:
        """`msg` is the ObjectTracks published for `output` (header, positions, their frame); failures: `problem`."""
        if self._publishers is None:
            return
        try:
            detections_pub, detections_3d_pub = self._publishers
            detections_pub.publish(detection2d_array(msg.header, detections_2d(output)))
            positions = [(t.position.x, t.position.y, t.position.z) if t.has_position else None for t in msg.tracks]
            located = detections_3d(output, positions, [messages.oriented_box(t) for t in msg.tracks])
            if located:
                header = type(msg.header)(stamp=msg.header.stamp, frame_id=msg.position_frame_id)
                detections_3d_pub.publish(detection3d_array(header, located))
        except Exception as error:  # an extra: its failure must not reach the tracks
            problem("vision_msgs_failures", f"vision_msgs detections not published: {error!r}")


def detection2d_array(header, detections: list[Detection2D]):
    from vision_msgs.msg import Detection2D as Detection2DMsg
    from vision_msgs.msg import Detection2DArray, ObjectHypothesisWithPose

    array = Detection2DArray(header=header)
    for d in detections:
        msg = Detection2DMsg(header=header, id=d.id)
        msg.bbox.center.position.x, msg.bbox.center.position.y = d.center_x, d.center_y
        msg.bbox.size_x, msg.bbox.size_y = d.size_x, d.size_y
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = d.class_id, d.score
        msg.results.append(hypothesis)
        array.detections.append(msg)
    return array


def detection3d_array(header, detections: list[Detection3D]):
    from vision_msgs.msg import Detection3D as Detection3DMsg
    from vision_msgs.msg import Detection3DArray, ObjectHypothesisWithPose

    array = Detection3DArray(header=header)
    for d in detections:
        msg = Detection3DMsg(header=header, id=d.id)
        centre, orientation = msg.bbox.center.position, msg.bbox.center.orientation
        if d.box is None:
            centre.x, centre.y, centre.z = d.position
            orientation.w = 1.0
        else:
            centre.x, centre.y, centre.z = d.box.centre
            orientation.x, orientation.y, orientation.z, orientation.w = d.box.rotation_xyzw
            msg.bbox.size.x, msg.bbox.size.y, msg.bbox.size.z = d.box.size
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = d.class_id, d.score
        hypothesis.pose.pose = msg.bbox.center
        msg.results.append(hypothesis)
        array.detections.append(msg)
    return array
