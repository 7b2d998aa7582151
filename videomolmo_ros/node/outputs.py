"""Publishing what the pipelines produce: targets, tracks, masks, and the extras (3D positions, debug views).

Called from the pipelines' worker threads (this is their OutputSink). Every message carries its
source image's header and camera name. A failure in an extra (3D positions, debug image,
markers) is counted and logged (`extras_failed_<extra>`) and costs that extra only, never the
targets, tracks and masks of the frame; so is a debug image not drawn because its frame left the
stream ring first (`debug_images_skipped`: tracking and publishing slower than the ring is long).
"""

import traceback
from collections.abc import Callable

from geometry_msgs.msg import Point
from rclpy.node import Node
from sensor_msgs.msg import Image
from visualization_msgs.msg import Marker, MarkerArray

from videomolmo_ros.io.depth_projection import Localizer, transform_point
from videomolmo_ros.io.image_codec import encode_image
from videomolmo_ros.msg import ObjectMasks, ObjectTracks, PointedTargets
from videomolmo_ros.node import messages
from videomolmo_ros.node.camera_inputs import NodeCamera
from videomolmo_ros.node.parameters import NodeSettings
from videomolmo_ros.node.planner_api import PlannerApi
from videomolmo_ros.node.vision_outputs import VisionOutputs
from videomolmo_ros.pipeline.debug_overlay import draw_overlay, track_colour
from videomolmo_ros.pipeline.outputs import MasksOutput, TargetsOutput, TracksOutput


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
        self._extra(camera, "positions", lambda: self._fill_positions(camera, output.meta, points, msg, msg.tracks))
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
    def _extra(camera: NodeCamera, name: str, make: Callable[[], None]) -> None:
        """Run an extra; its failure is counted and logged, and the frame's outputs go out without it."""
        try:
            make()
        except Exception as error:
            camera.problem(f"extras_failed_{name}", f"{name} left out: {error!r}\n{traceback.format_exc(limit=-3)}")

    # ------------------------------------------------------------------ 3D positions

    def _fill_positions(self, camera: NodeCamera, meta, points: list, msg, items: list) -> None:
        """3D positions from the depth image taken with the frame; every miss is counted by reason.

        Sets msg.position_frame_id to the frame the positions are in (stays "" when none was filled).
        """
        pipeline = camera.pipeline  # once: deactivate may take it while the publisher thread is here
        if not self._settings.use_depth or not points or pipeline is None:
            return
        counters = pipeline.counters
        # On the publisher thread, wait for a depth image that comes after its colour frame.
        wait_s = self._settings.depth_sync_tolerance_s if self._settings.pipeline.publish_queue else 0.0
        depth = camera.depths.find(meta.stamp_ns, wait_s)
        shape = pipeline.stream.frame_shape
        if depth is None or camera.intrinsics is None or shape is None:
            counters.add("positions_missing_no_depth", len(points))
            return
        localizer = Localizer((shape[1], shape[0]), camera.intrinsics, depth)
        for item, position in zip(items, localizer.locate_all(points), strict=True):
            if position.xyz is None:
                counters.add(f"positions_missing_{position.reason}")
                continue
            item.position = Point(x=position.xyz[0], y=position.xyz[1], z=position.xyz[2])
            item.has_position = True
        msg.position_frame_id = self._to_target_frame(camera, meta.stamp_ns, meta.frame_id, items)

    def _transform_listener(self):
        """A tf2 buffer fed by a listener, or None (said once) where tf2_ros is not installed."""
        try:
            import tf2_ros
        except ImportError:
            self._node.get_logger().warning(
                f"target_frame {self._settings.target_frame!r} is set but tf2_ros is not installed: positions "
                "stay in the camera's optical frame (position_frame_id says which)"
            )
            return None
        buffer = tf2_ros.Buffer()
        self._tf_listener = tf2_ros.TransformListener(buffer, self._node)
        return buffer

    def _to_target_frame(self, camera: NodeCamera, stamp_ns: int, source_frame: str, items: list) -> str:
        """Move filled positions into target_frame when tf2 knows the transform; the frame they are in."""
        if self._tf_buffer is None:
            return source_frame
        from rclpy.time import Time

        target_frame = self._settings.target_frame
        try:
            transform = self._tf_buffer.lookup_transform(target_frame, source_frame, Time(nanoseconds=stamp_ns))
        except Exception as error:  # tf2's lookup errors have no common base class besides Exception
            camera.pipeline.problem("positions_untransformed", f"positions stay in {source_frame}: {error}")
            return source_frame
        t, r = transform.transform.translation, transform.transform.rotation
        for item in items:
            if item.has_position:
                p = item.position
                x, y, z = transform_point((p.x, p.y, p.z), (t.x, t.y, t.z), (r.x, r.y, r.z, r.w))
                item.position = Point(x=x, y=y, z=z)
        return target_frame

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
    """A sphere and a text label at each track's 3D position (tracks without one are skipped)."""
    array = MarkerArray()
    for track in msg.tracks:
        if not track.has_position:
            continue
        r, g, b = (c / 255 for c in track_colour(track.id))
        for kind, offset in ((Marker.SPHERE, 0.0), (Marker.TEXT_VIEW_FACING, -0.08)):
            ns = f"{msg.camera}/{msg.command_id}/{kind}"
            marker = Marker(header=msg.header, ns=ns, id=track.id, type=kind)
            marker.pose.position = Point(x=track.position.x, y=track.position.y + offset, z=track.position.z)
            marker.pose.orientation.w = 1.0
            marker.scale.x = marker.scale.y = marker.scale.z = 0.05
            marker.color.r, marker.color.g, marker.color.b, marker.color.a = r, g, b, 0.9
            marker.text = f"{track.id}: {track.label}"
            marker.lifetime.nanosec = 500_000_000
            array.markers.append(marker)
    return array
