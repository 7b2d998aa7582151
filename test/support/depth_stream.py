"""A camera with aligned depth over DDS: colour, 16UC1 depth and camera_info, as an RGB-D driver publishes them."""

import time

import numpy as np
from polling import wait_for
from rclpy.qos import qos_profile_sensor_data
from ros_harness import FPS, START_S
from sensor_msgs.msg import CameraInfo, Image
from synthetic_video import default_scene, render

from videomolmo_ros.io.image_codec import encode_image

FX = FY = 300.0
CX, CY = 160.0, 120.0
DISC_DEPTH_MM, FLOOR_DEPTH_MM = 800, 2000


def play_with_depth(planner, seconds, depth_scale=2, start_s=START_S, info_qos=10):
    """Colour at 320x240 and aligned 16UC1 depth at 1/depth_scale resolution: discs at 0.8 m, floor at 2 m.

    The depth and camera_info publishers are made once per planner: a new publisher's first
    messages are lost until the node's side has matched it. camera_info is reliable unless
    `info_qos` says otherwise.
    """
    if not hasattr(planner, "depth_pubs"):
        planner.depth_pubs = (
            planner.node.create_publisher(Image, "depth", qos_profile_sensor_data),
            planner.node.create_publisher(CameraInfo, "camera_info", info_qos),
        )
    depth_pub, info_pub = planner.depth_pubs
    assert wait_for(lambda: depth_pub.get_subscription_count() > 0 and info_pub.get_subscription_count() > 0, 20)
    truth = {}
    for k in range(int(seconds * FPS)):
        t = start_s - START_S + k / FPS
        image, masks = render(default_scene(), t)
        stamp = round((START_S + t) * 1e9)
        truth[stamp] = masks
        info = CameraInfo(width=320, height=240, k=[FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0])
        info.header.stamp.sec, info.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        info_pub.publish(info)
        on_object = np.logical_or.reduce(list(masks.values()))[::depth_scale, ::depth_scale]
        depth = np.where(on_object, DISC_DEPTH_MM, FLOOR_DEPTH_MM).astype(np.uint16)
        height, width, step, data = encode_image(depth, "16UC1")
        msg = Image(height=height, width=width, encoding="16UC1", step=step, data=data)
        msg.header = info.header
        depth_pub.publish(msg)
        planner.send_image(image, "rgb8", stamp)
        time.sleep(1 / FPS)
    return truth
