"""Real frames over DDS: the real clips, raw (1280x720 rgb8) and JPEG-compressed, into one node with two cameras.

Both cameras are reliable with deep queues and the publishers here reliable too, so every frame
sent arrives and the counts are exact; nothing may be rejected.
"""

import time

from polling import wait_for
from real_footage import CLIPS, clip
from ros_harness import NO_BACKENDS, NODE_START_S, RELIABLE_IMAGES, DiagnosticsRecorder
from sensor_msgs.msg import CompressedImage, Image

from videomolmo_ros.io.image_codec import JPEG_FORMAT, encode_image, encode_jpeg
from videomolmo_ros.io.video_source import VideoSource

FRAMES_PER_CLIP = 20
RATE_HZ = 15.0
CAMERAS = {
    **NO_BACKENDS,
    "cameras.names": ["raw", "jpeg"],
    "cameras.raw.image_topic": "raw/image",
    "cameras.jpeg.image_topic": "jpeg/image/compressed",
    "cameras.jpeg.transport": "compressed",
    **{f"cameras.{name}.reliability": "reliable" for name in ("raw", "jpeg")},
    **{f"cameras.{name}.queue_depth": 1000 for name in ("raw", "jpeg")},
}


def decoded_frames() -> list:
    """Frames spread over each real clip, decoded once."""
    frames = []
    for name in CLIPS:
        with VideoSource(clip(name)) as source:
            step = source.frame_count // FRAMES_PER_CLIP
            frames += [f for k, f in enumerate(source.frames()) if k % step == 0][:FRAMES_PER_CLIP]
    return frames


def test_real_frames_raw_and_jpeg_are_all_counted_and_none_rejected(node, planner):
    frames = decoded_frames()
    process = node(CAMERAS)
    raw = planner.node.create_publisher(Image, "raw/image", RELIABLE_IMAGES)
    jpeg = planner.node.create_publisher(CompressedImage, "jpeg/image/compressed", RELIABLE_IMAGES)
    diagnostics = DiagnosticsRecorder(planner.node)
    # Reliable writers with a deep history: a frame written once the node's reader is matched here is
    # kept and resent until that reader acknowledges it, however long the node's side of the match
    # takes (test_node_large_images.py counts frames sent the same way exactly).
    connected = lambda: raw.get_subscription_count() and jpeg.get_subscription_count()  # noqa: E731
    assert wait_for(connected, NODE_START_S), process.log()
    due = time.monotonic()
    for k, frame in enumerate(frames):
        time.sleep(max(0.0, due - time.monotonic()))
        due += 1 / RATE_HZ
        stamp = round((2000 + k / RATE_HZ) * 1e9)
        height, width, step, data = encode_image(frame, "rgb8")
        image = Image(height=height, width=width, encoding="rgb8", step=step, data=data)
        compressed = CompressedImage(format=JPEG_FORMAT, data=encode_jpeg(frame))
        for msg, publisher, frame_id in ((image, raw, "raw_optical"), (compressed, jpeg, "jpeg_optical")):
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
            msg.header.frame_id = frame_id
            publisher.publish(msg)
    sent = str(len(frames))
    for camera in ("raw", "jpeg"):
        received = lambda c=camera: diagnostics.values(f"{c}: camera input").get("frames_received")  # noqa: E731
        assert wait_for(lambda r=received: r() == sent, 60), f"{camera}: {received()} of {sent}\n{process.log()}"
        assert diagnostics.values(f"{camera}: camera input")["frames_missing_suspected"] == "0"
        drops = diagnostics.values(f"{camera}: drops")
        assert drops["total"] == "0", f"{camera}: {drops}"
    assert " dropped: " not in process.log(), "no frame was rejected"
