"""Publishing what the pipelines produce: targets, tracks, masks, and the extras (3D positions, debug views).

Called from the pipelines' worker threads (this is their OutputSink). Every message carries its
source image's header and camera name. A failure in an extra (3D positions, debug image,
markers) is counted and logged (`extras_failed_<extra>`) and costs that extra only, never the
targets, tracks and masks of the frame; so is a debug image not drawn because its frame left the
stream ring first (`debug_images_skipped`: tracking and publishing slower than the ring is long).
"""

import traceback
from collections.abc import Callable
from typing import TypeVar

from geometry_msgs.msg import Point, Vector3
from rclpy.node import Node
from sensor_msgs.msg import Image
from visualization_msgs.msg import Marker, MarkerArray

from videomolmo_ros.io.image_codec import encode_image
from videomolmo_ros.msg import ObjectMasks, ObjectTracks, PointedTargets
from videomolmo_ros.node import messages
from videomolmo_ros.node.camera_inputs import NodeCamera
from videomolmo_ros.node.grasp_topics import GraspTopics
from videomolmo_ros.node.parameters import NodeSettings
from videomolmo_ros.node.planner_api import PlannerApi
from videomolmo_ros.node.vision_outputs import VisionOutputs
from videomolmo_ros.pipeline.debug_overlay import draw_overlay, track_colour
from videomolmo_ros.pipeline.object_geometry import RigidTransform, object_geometry
from videomolmo_ros.pipeline.outputs import MasksOutput, TargetsOutput, TracksOutput
from videomolmo_ros.pipeline.velocity import VelocityFilter

T = TypeVar("T")


class Outputs:
    """The pipelines' sink: converts their outputs to messages, fills 3D positions, publishes."""

    def __init__(
        self, node: Node, settings: NodeSettings, cameras: dict[str, NodeCamera], planner: PlannerApi, problems
    ):
        self._node = node
        self._settings = settings
        self._cameras = cameras
        self._planner = planner
        self.problem = problems  # problem(key, message): rate-limited warnings
        self._targets_pub = node.create_lifecycle_publisher(PointedTargets, "targets", 10)
        self._tracks_pub = node.create_lifecycle_publisher(ObjectTracks, "tracks", 10)
        self._masks_pub = node.create_lifecycle_publisher(ObjectMasks, "masks", 10)
        self._debug_markers_pub = node.create_lifecycle_publisher(MarkerArray, "debug_markers", 2)
        self._tf_buffer = self._transform_listener() if settings.target_frame else None
        self._vision = VisionOutputs(node, settings.vision_msgs)
        self._velocities = VelocityFilter()
        self._grasp = {name: GraspTopics(node, c.config, settings.cameras) for name, c in cameras.items()}

    def publish_targets(self, output: TargetsOutput) -> None:
        camera = self._cameras[output.meta.camera]
        self._planner.on_targets(output)
        msg = messages.targets_msg(output)
        points = [(t.x, t.y, None) for t in output.targets]
        self._extra(camera, "positions", lambda: self._fill_positions(camera, output.meta, points, msg, msg.targets))
        camera.last_targets[output.command_id] = output
        self._targets_pub.publish(msg)

    def publish_tracks(self, output: TracksOutput) -> None:
        camera = self._cameras[output.meta.camera]
        self._planner.on_tracks(output)
        msg = messages.tracks_msg(output)
        points = [(t.x, t.y, t.mask) for t in output.tracks]
        found = self._extra(
            camera, "positions", lambda: self._fill_positions(camera, output.meta, points, msg, msg.tracks)
        )
        self._extra(camera, "velocities", lambda: self._fill_velocities(msg))
        if found is not None:
            grasp = self._grasp[camera.name]
            self._extra(camera, "object_points", lambda: grasp.publish(msg, *found, camera.problem))
        camera.last_tracks[output.command_id] = output
        self._tracks_pub.publish(msg)
        self._vision.publish(output, msg, camera.problem)
        camera.health.outputs_published(output.meta.stamp_ns, self._node.get_clock().now().nanoseconds / 1e9)
        if self._settings.debug_views and self._debug_markers_pub.get_subscription_count() > 0:
            self._extra(camera, "markers", lambda: self._debug_markers_pub.publish(markers(msg)))

    def publish_masks(self, output: MasksOutput) -> None:
        camera = self._cameras[output.meta.camera]
        self._masks_pub.publish(messages.masks_msg(output, self._settings.mask_compression))
        if self._settings.debug_views and camera.debug_image_pub.get_subscription_count() > 0:
            self._extra(camera, "debug_image", lambda: self._publish_debug_image(camera, output))

    @staticmethod
    def _extra(camera: NodeCamera, name: str, make: Callable[[], T]) -> T | None:
        """Run an extra, returning its result; its failure is counted and logged (None), the frame's outputs go out."""
        try:
            return make()
        except Exception as error:
            camera.problem(f"extras_failed_{name}", f"{name} left out: {error!r}\n{traceback.format_exc(limit=-3)}")
            return None

    # ------------------------------------------------------------------ 3D positions

    def _fill_positions(self, camera: NodeCamera, meta, points: list, msg, items: list):
        """3D geometry from the depth image taken with the frame; every miss is counted by reason.

        Sets msg.position_frame_id to the frame the positions are in (stays "" when none was filled).
        Returns (depth image, geometries in `items` order), or None without depth.
        """
        pipeline = camera.pipeline  # once: deactivate may take it while the publisher thread is here
        if not self._settings.use_depth or not points or pipeline is None:
            return None
        counters = pipeline.counters
        # On the publisher thread, wait for a depth image that comes after its colour frame.
        wait_s = self._settings.depth_sync_tolerance_s if self._settings.pipeline.publish_queue else 0.0
        depth = camera.depths.find(meta.stamp_ns, wait_s)
        shape = pipeline.stream.frame_shape
        if depth is None or camera.intrinsics is None or shape is None:
            counters.add("positions_missing_no_depth", len(points))
            return None
        transform, frame = self._transform(camera, meta.stamp_ns, meta.frame_id)
        size = (shape[1], shape[0])
        found = object_geometry(points, size, camera.intrinsics, depth, self._settings.geometry, transform)
        for item, geometry in zip(items, found, strict=True):
            if geometry.position is None:
                counters.add(f"positions_missing_{geometry.reason}")
                continue
            messages.set_geometry(item, geometry)
        msg.position_frame_id = frame
        return depth, found

    def _fill_velocities(self, msg: ObjectTracks) -> None:
        """Each positioned track's velocity over its recent positions (in their frame)."""
        stamp_ns = messages.stamp_ns(msg.header.stamp)
        for track in msg.tracks:
            if track.has_position:
                p = track.position
                key = (msg.camera, msg.command_id, track.id)
                velocity = self._velocities.update(key, stamp_ns, (p.x, p.y, p.z), msg.position_frame_id)
                if velocity is not None:
                    track.velocity = Vector3(x=velocity[0], y=velocity[1], z=velocity[2])
                    track.has_velocity = True

    def _transform_listener(self):
        """A tf2 buffer fed by a listener, or None where tf2_ros is missing (said once, unless static_transforms)."""
        try:
            import tf2_ros
        except ImportError:
            if not self._settings.static_transforms:
                self._node.get_logger().warning(
                    f"target_frame {self._settings.target_frame!r} is set but tf2_ros is not installed and "
                    "static_transforms is empty: positions stay in the camera's optical frame (position_frame_id "
                    "says which)"
                )
            return None
        buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(buffer, self._node)
        return buffer

    def _transform(self, camera: NodeCamera, stamp_ns: int, source_frame: str) -> tuple[RigidTransform | None, str]:
        """target_frame <- source_frame at the image's time (static_transforms, then tf2), and the positions' frame.

        tf2 is asked for the transform at the image's stamp, waiting up to tf_timeout_s for it, never
        the latest one: on a moving robot that would put the object where the camera is now.
        """
        target_frame = self._settings.target_frame
        if not target_frame:
            return None, source_frame
        static = self._settings.static_transforms.lookup(target_frame, source_frame)
        if static is not None:
            return static, target_frame
        if self._tf_buffer is None:
            if self._settings.static_transforms:
                missing = f"no static transform {target_frame} <- {source_frame}"
                camera.pipeline.problem("positions_untransformed", missing)
            return None, source_frame
        from rclpy.duration import Duration
        from rclpy.time import Time

        try:
            transform = self._tf_buffer.lookup_transform(
                target_frame, source_frame, Time(nanoseconds=stamp_ns), Duration(seconds=self._settings.tf_timeout_s)
            )
        except Exception as error:  # tf2's lookup errors have no common base class besides Exception
            camera.pipeline.problem("positions_untransformed", f"positions stay in {source_frame}: {error}")
            return None, source_frame
        t, r = transform.transform.translation, transform.transform.rotation
        return RigidTransform((t.x, t.y, t.z), (r.x, r.y, r.z, r.w)), target_frame

    # ------------------------------------------------------------------ debug views

    def _publish_debug_image(self, camera: NodeCamera, output: MasksOutput) -> None:
        """Draw on the frame of `output` while the camera's ring still holds it; else count the skip and say why."""
        pipeline = camera.pipeline  # once: deactivate may take it meanwhile
        frame = pipeline.stream.get(output.meta.seq) if pipeline is not None else None
        tracks = camera.last_tracks.get(output.command_id)
        if frame is None or tracks is None or tracks.meta != output.meta:
            camera.problem("debug_images_skipped", debug_skip_text(output, frame, pipeline))
            return
        targets = camera.last_targets.get(output.command_id)
        image = draw_overlay(frame.image.cpu().numpy(), tracks.tracks, output, targets)
        height, width, step, data = encode_image(image, "rgb8")
        msg = Image(header=messages.source_header(output.meta), height=height, width=width)
        msg.encoding, msg.step, msg.data = "rgb8", step, data
        camera.debug_image_pub.publish(msg)


def debug_skip_text(output: MasksOutput, frame, pipeline) -> str:
    """Why the debug image of `output` was not drawn."""
    where = f"debug image of {output.command_id} on the frame stamped {output.meta.stamp_ns / 1e9:.3f} s skipped"
    if pipeline is None:
        return f"{where}: the node was deactivated"
    if frame is None:
        return (
            f"{where}: the frame left the {pipeline.stream.capacity}-frame ring (stream_frames) before it could be "
            "drawn (tracking and publishing take longer than that many camera frames; fewer debug readers, a "
            "smaller image or a larger stream_frames help)"
        )
    return f"{where}: its tracks were not published"


def markers(msg: ObjectTracks) -> MarkerArray:
    """A sphere and a label at each track's 3D position, its oriented box as a cube (in the positions' frame)."""
    array = MarkerArray()
    header = type(msg.header)(stamp=msg.header.stamp, frame_id=msg.position_frame_id or msg.header.frame_id)
    for track in msg.tracks:
        if not track.has_position:
            continue
        colour = tuple(c / 255 for c in track_colour(track.id))
        for kind, offset in ((Marker.SPHERE, 0.0), (Marker.TEXT_VIEW_FACING, -0.08)):
            marker = _marker(header, f"{msg.camera}/{msg.command_id}/{kind}", track.id, kind, colour, 0.9)
            marker.pose.position = Point(x=track.position.x, y=track.position.y + offset, z=track.position.z)
            marker.pose.orientation.w = 1.0
            marker.scale.x = marker.scale.y = marker.scale.z = 0.05
            marker.text = f"{track.id}: {track.label}"
            array.markers.append(marker)
        if track.has_box:
            cube = _marker(header, f"{msg.camera}/{msg.command_id}/{Marker.CUBE}", track.id, Marker.CUBE, colour, 0.4)
            cube.pose = track.box_pose
            cube.scale.x, cube.scale.y, cube.scale.z = track.box_size.x, track.box_size.y, track.box_size.z
            array.markers.append(cube)
    return array


def _marker(header, ns: str, track_id: int, kind: int, colour: tuple[float, float, float], alpha: float) -> Marker:
    marker = Marker(header=header, ns=ns, id=track_id, type=kind)
    marker.color.r, marker.color.g, marker.color.b = colour
    marker.color.a = alpha
    marker.lifetime.nanosec = 500_000_000
    return marker
