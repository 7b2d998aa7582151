"""Conversions between the pipeline's plain values and this package's ROS messages."""

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, Quaternion, Vector3
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from videomolmo_ros.contracts.frames import FrameMeta
from videomolmo_ros.io import mask_codec
from videomolmo_ros.io.image_codec import decode_image, to_rgb8
from videomolmo_ros.msg import (
    CommandStatus,
    GroundingCommand,
    ObjectMasks,
    ObjectTrack,
    ObjectTracks,
    PointedTarget,
    PointedTargets,
)
from videomolmo_ros.pipeline.commands import CommandEvent, CommandRequest
from videomolmo_ros.pipeline.object_geometry import ObjectGeometry
from videomolmo_ros.pipeline.oriented_box import OrientedBox
from videomolmo_ros.pipeline.outputs import MasksOutput, TargetsOutput, TracksOutput


def stamp_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def time_msg(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def source_header(meta: FrameMeta) -> Header:
    """The header of the image a result came from: consumers synchronise on it."""
    return Header(stamp=time_msg(meta.stamp_ns), frame_id=meta.frame_id)


def rgb_from_image(msg: Image) -> np.ndarray:
    """An H x W x 3 uint8 RGB array from any colour or 8-bit mono image message."""
    native = decode_image(msg.encoding, msg.height, msg.width, msg.step, msg.data, bool(msg.is_bigendian))
    return to_rgb8(native, msg.encoding)


def request_from_msg(msg: GroundingCommand) -> CommandRequest:
    return CommandRequest(msg.id, msg.query, msg.mode, msg.action, msg.camera)


def status_msg(event: CommandEvent, now_ns: int) -> CommandStatus:
    return CommandStatus(
        stamp=time_msg(now_ns),
        id=event.id,
        query=event.query,
        camera=",".join(event.cameras),
        state=int(event.state),
        reason=event.reason,
    )


def targets_msg(output: TargetsOutput) -> PointedTargets:
    return PointedTargets(
        header=source_header(output.meta),
        command_id=output.command_id,
        query=output.query,
        camera=output.meta.camera,
        targets=[PointedTarget(object_id=t.object_id, label=t.label, x=t.x, y=t.y) for t in output.targets],
    )


def set_geometry(item, geometry: ObjectGeometry) -> None:
    """An ObjectTrack's or PointedTarget's 3D fields from the geometry stage (a target, having no mask, has no box)."""
    x, y, z = geometry.position
    item.position, item.has_position = Point(x=x, y=y, z=z), True
    box = geometry.box
    if box is None:
        return
    item.box_pose.position = Point(x=box.centre[0], y=box.centre[1], z=box.centre[2])
    qx, qy, qz, qw = box.rotation_xyzw
    item.box_pose.orientation = Quaternion(x=qx, y=qy, z=qz, w=qw)
    item.box_size = Vector3(x=box.size[0], y=box.size[1], z=box.size[2])
    item.has_box = True


def oriented_box(track: ObjectTrack) -> OrientedBox | None:
    """A track message's box as the pipeline's value (None without one)."""
    if not track.has_box:
        return None
    p, q, s = track.box_pose.position, track.box_pose.orientation, track.box_size
    return OrientedBox((p.x, p.y, p.z), (q.x, q.y, q.z, q.w), (s.x, s.y, s.z))


def tracks_msg(output: TracksOutput) -> ObjectTracks:
    tracks = []
    for t in output.tracks:
        box = t.box or (t.x, t.y, t.x, t.y)
        tracks.append(
            ObjectTrack(
                id=t.id,
                label=t.label,
                state=int(t.state),
                score=t.score,
                x=t.x,
                y=t.y,
                box_x_min=box[0],
                box_y_min=box[1],
                box_x_max=box[2],
                box_y_max=box[3],
                age=Duration(sec=t.age_ns // 1_000_000_000, nanosec=t.age_ns % 1_000_000_000),
                last_seen=time_msg(t.last_seen_ns),
            )
        )
    return ObjectTracks(
        header=source_header(output.meta),
        command_id=output.command_id,
        query=output.query,
        camera=output.meta.camera,
        tracks=tracks,
    )


def masks_msg(output: MasksOutput, compression: int) -> ObjectMasks:
    height, width, data = mask_codec.encode_masks(output.masks, output.shape, compression)
    return ObjectMasks(
        header=source_header(output.meta),
        command_id=output.command_id,
        camera=output.meta.camera,
        ids=list(output.ids),
        height=height,
        width=width,
        format=mask_codec.FORMAT,
        data=data,
    )
