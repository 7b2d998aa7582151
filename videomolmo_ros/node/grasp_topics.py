"""`object_points` (PointCloud2) and `object_labels` (mono16, aligned with depth): the tracks' 3D for grasp planners.

Per camera (`<camera>/object_points` from the second camera on, as debug_image), built only while
someone subscribes. The cloud is in the positions' frame (`position_frame_id`) with the source
image's stamp; the label image has the source header (the depth image is registered to it).
"""

from rclpy.node import Node
from sensor_msgs.msg import Image, PointCloud2, PointField

from videomolmo_ros.io.depth_projection import DepthImage
from videomolmo_ros.io.image_codec import encode_image
from videomolmo_ros.msg import ObjectTracks
from videomolmo_ros.pipeline.cameras import CameraConfig
from videomolmo_ros.pipeline.grasp_outputs import CLOUD_DTYPE, label_image, object_cloud
from videomolmo_ros.pipeline.object_geometry import ObjectGeometry

_FIELD_TYPES = {"<f4": PointField.FLOAT32, "<u4": PointField.UINT32}
MAX_LABEL_ID = 65535


def camera_topic(camera: CameraConfig, cameras: tuple[CameraConfig, ...], name: str) -> str:
    """`name` for the first camera, `<camera>/name` for the others."""
    return name if camera is cameras[0] else f"{camera.name}/{name}"


class GraspTopics:
    """One camera's object_points and object_labels publishers."""

    def __init__(self, node: Node, camera: CameraConfig, cameras: tuple[CameraConfig, ...]):
        self._points_pub = node.create_lifecycle_publisher(
            PointCloud2, camera_topic(camera, cameras, "object_points"), 2
        )
        self._labels_pub = node.create_lifecycle_publisher(Image, camera_topic(camera, cameras, "object_labels"), 2)

    def publish(self, msg: ObjectTracks, depth: DepthImage, geometries: list[ObjectGeometry], problem) -> None:
        """`geometries` in the order of msg.tracks; `problem(key, message)` reports what the label image cannot hold."""
        ids = [t.id for t in msg.tracks]
        if self._points_pub.get_subscription_count() > 0:
            self._points_pub.publish(cloud_msg(msg, ids, geometries))
        if self._labels_pub.get_subscription_count() > 0:
            too_large = sum(
                1 for i, g in zip(ids, geometries, strict=True) if g.points is not None and i > MAX_LABEL_ID
            )
            if too_large:
                problem(
                    "object_labels_id_too_large", f"{too_large} objects with ids over {MAX_LABEL_ID} left unlabelled"
                )
            labels = label_image(depth.depth_m.shape, ids, geometries)
            height, width, step, data = encode_image(labels, "mono16")
            image = Image(header=msg.header, height=height, width=width, encoding="mono16", step=step, data=data)
            self._labels_pub.publish(image)


def cloud_msg(msg: ObjectTracks, ids: list[int], geometries: list[ObjectGeometry]) -> PointCloud2:
    records = object_cloud(ids, geometries)
    header = type(msg.header)(stamp=msg.header.stamp, frame_id=msg.position_frame_id or msg.header.frame_id)
    fields = [
        PointField(name=name, offset=offset, datatype=_FIELD_TYPES[dtype.str], count=1)
        for name, (dtype, offset) in CLOUD_DTYPE.fields.items()
    ]
    return PointCloud2(
        header=header,
        height=1,
        width=len(records),
        fields=fields,
        is_bigendian=False,
        point_step=CLOUD_DTYPE.itemsize,
        row_step=CLOUD_DTYPE.itemsize * len(records),
        data=records.tobytes(),
        is_dense=True,
    )
