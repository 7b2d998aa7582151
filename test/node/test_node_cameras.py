"""Several cameras over DDS: per-camera commands, ids and headers, a compressed camera, bad frames, the budget."""

import io
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from PIL import Image as PilImage
from polling import wait_for
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from ros_harness import DOUBLES, FPS, NO_BACKENDS, NODE_START_S, START_S, image_msg, stamp_ns
from sensor_msgs.msg import CompressedImage, Image
from synthetic_video import MovingDisc, default_scene, render
from test_node_planner_api import call, goal, ground
from videomolmo_ros.msg import GroundingCommand
from videomolmo_ros.srv import ListCommands

from videomolmo_ros.io.mask_codec import decode_masks

CAMERAS = {
    **DOUBLES,
    "cameras.names": ["head", "wrist"],
    "cameras.head.image_topic": "head/image",
    "cameras.wrist.image_topic": "wrist/image/compressed",
    "cameras.wrist.transport": "compressed",
    "cameras.wrist.reliability": "reliable",  # per-camera QoS: this driver publishes reliably
    "cameras.wrist.queue_depth": 100,  # and keeps every frame while the node is busy: each one is checked
    "cameras.wrist.max_width": 320,
    "cameras.wrist.max_height": 240,
    "stats_period_s": 1.0,
}
HEAD_SCENE = default_scene()  # red and blue
WRIST_SCENE = [MovingDisc("red", 90, 120, 25, 5.0, 22), MovingDisc("green", 220, 120, 30, 7.0, 26)]
RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
WRIST_OFFSET_NS = 3_000_000  # the wrist camera's stamps never equal the head's
FRAME_IDS = {"head": "head_optical", "wrist": "wrist_optical"}


def jpeg(image, quality=95) -> bytes:
    buffer = io.BytesIO()
    PilImage.fromarray(image).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def compressed_msg(data: bytes, stamp: int, fmt: str = "jpeg") -> CompressedImage:
    msg = CompressedImage(format=fmt, data=data)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    msg.header.frame_id = FRAME_IDS["wrist"]
    return msg


class TwoCameras:
    """The head (raw rgb8) and wrist (JPEG) cameras of a robot, played from the planner's node."""

    def __init__(self, planner):
        self.planner = planner
        self.head = planner.node.create_publisher(Image, "head/image", qos_profile_sensor_data)
        self.wrist = planner.node.create_publisher(CompressedImage, "wrist/image/compressed", RELIABLE)
        self.sent = {"head": set(), "wrist": set()}
        self.truth = {"head": {}, "wrist": {}}

    def wait_connected(self) -> None:
        publishers = [self.head, self.wrist, self.planner.command_pub]
        assert wait_for(lambda: all(p.get_subscription_count() > 0 for p in publishers), NODE_START_S), (
            "node never subscribed"
        )

    def play(self, seconds: float, first_frame: int = 0, wrist_payload=None, until=None) -> None:
        """Both cameras at FPS, for `seconds` or until `until()` holds; `wrist_payload(k, image)` may
        replace the wrist's JPEG bytes."""
        for k in range(first_frame, first_frame + int(seconds * FPS)):
            if until is not None and until():
                break
            t = k / FPS
            stamp = round((START_S + t) * 1e9)
            head_image, head_masks = render(HEAD_SCENE, t)
            wrist_image, wrist_masks = render(WRIST_SCENE, t)
            self.head.publish(image_msg(head_image, "rgb8", stamp, FRAME_IDS["head"]))
            payload = wrist_payload(k, wrist_image) if wrist_payload else jpeg(wrist_image)
            self.wrist.publish(compressed_msg(payload, stamp + WRIST_OFFSET_NS))
            self.sent["head"].add(stamp)
            self.sent["wrist"].add(stamp + WRIST_OFFSET_NS)
            self.truth["head"][stamp], self.truth["wrist"][stamp + WRIST_OFFSET_NS] = head_masks, wrist_masks
            time.sleep(1 / FPS)


def command(planner, query, id, camera):
    planner.command_pub.publish(GroundingCommand(id=id, query=query, mode=1, camera=camera))


def iou(a, b) -> float:
    return (a & b).sum() / max(1, (a | b).sum())


def test_two_cameras_serve_their_own_commands_with_their_own_headers_and_unique_ids(shared_node, planner):
    process = shared_node(planner, CAMERAS)
    cameras = TwoCameras(planner)
    cameras.wait_connected()
    command(planner, "red", "r", "*")
    command(planner, "green", "g", "wrist")
    command(planner, "blue", "b", "")  # the default camera: head
    expected = {("r", "head"), ("r", "wrist"), ("g", "wrist"), ("b", "head")}  # (command, camera)

    def served() -> bool:
        tracked = {(m.command_id, m.camera) for m in planner.get("tracks") if m.tracks}
        masked = {(m.command_id, m.camera) for m in planner.get("masks") if m.ids}
        return expected <= tracked and expected <= masked

    cameras.play(4.0, until=served)
    assert wait_for(served, 20), process.log()
    outputs = planner.get("targets") + planner.get("tracks") + planner.get("masks")
    for msg in outputs:
        assert msg.header.frame_id == FRAME_IDS[msg.camera], "outputs carry their source camera's header"
        assert stamp_ns(msg.header) in cameras.sent[msg.camera]
    runs_on = {c: {m.camera for m in outputs if m.command_id == c} for c in ("r", "g", "b")}
    assert runs_on == {"r": {"head", "wrist"}, "g": {"wrist"}, "b": {"head"}}
    ids = {(m.camera, t.id) for m in planner.get("tracks") for t in m.tracks}
    head_ids = {i for camera, i in ids if camera == "head"}
    wrist_ids = {i for camera, i in ids if camera == "wrist"}
    assert len(head_ids) == 2 and len(wrist_ids) == 2, ids
    assert not head_ids & wrist_ids, "the red disc of each camera is its own track, ids unique across cameras"
    green = [m for m in planner.get("masks") if m.command_id == "g" and m.ids][-5:]
    for msg in green:
        [mask] = decode_masks(bytes(msg.data), msg.height, msg.width, len(msg.ids))
        assert iou(mask, cameras.truth["wrist"][stamp_ns(msg.header)]["green"]) > 0.8, "JPEG frames tracked"
    statuses = {s.id: s for s in planner.get("command_status") if s.state == 0}
    assert statuses["r"].camera == "head,wrist" and statuses["g"].camera == "wrist" and statuses["b"].camera == "head"
    listed = call(planner, ListCommands, "list_commands", ListCommands.Request())
    assert dict(zip(listed.ids, listed.cameras, strict=True)) == {"r": "head,wrist", "g": "wrist", "b": "head"}


def test_a_goal_on_the_wrist_camera_answers_from_that_camera(shared_node, planner):
    shared_node(planner, CAMERAS)
    cameras = TwoCameras(planner)
    cameras.wait_connected()
    wrist_goal = goal("the green ball", timeout_s=20)
    wrist_goal.camera = "wrist"
    _, result, _ = ground(planner, wrist_goal)
    playing = threading.Thread(target=cameras.play, args=(4.0,), kwargs={"until": result.done}, daemon=True)
    playing.start()
    assert wait_for(result.done, 30)
    playing.join()
    answer = result.result().result
    assert answer.success, answer.message
    assert answer.targets.camera == "wrist" and answer.targets.header.frame_id == "wrist_optical"
    [target] = answer.targets.targets
    assert cameras.truth["wrist"][stamp_ns(answer.targets.header)]["green"][round(target.y), round(target.x)]


def test_corrupt_and_oversized_frames_are_counted_and_the_cameras_keep_serving(shared_node, planner):
    process = shared_node(planner, CAMERAS)
    diagnostics = []
    planner.node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    cameras = TwoCameras(planner)
    cameras.wait_connected()
    command(planner, "red", "r", "*")
    command(planner, "green", "g", "tail")  # no such camera

    def damaged(k, image):
        if k == 20:
            return jpeg(image)[:400]  # truncated in transit
        if k == 21:
            return b"\xff\xd8\xff\xe0" + bytes(1000)  # not an image at all
        if k == 22:
            return jpeg(render(WRIST_SCENE, 0, 640, 480)[0])  # larger than the wrist's 320x240 budget
        return jpeg(image)

    cameras.play(3.0, wrist_payload=damaged)
    late = START_S + 25 / FPS
    assert wait_for(
        lambda: any(m.camera == "wrist" and m.ids and stamp_ns(m.header) / 1e9 > late for m in planner.get("masks")),
        20,
    ), "the wrist camera keeps tracking after the bad frames"
    [rejected] = [s for s in planner.get("command_status") if s.id == "g"]
    assert rejected.state == 1 and "unknown camera 'tail' (cameras: head, wrist)" in rejected.reason
    for line in (
        "camera wrist: image from wrist_optical dropped: corrupt jpeg payload",
        "640x480 is larger than the 320x240",
    ):
        assert wait_for(lambda line=line: line in process.log(), 10), (line, process.log()[-3000:])

    def latest(name):
        for array in reversed(diagnostics):
            for status in array.status:
                if status.name.endswith(name):
                    return {kv.key: kv.value for kv in status.values}
        return {}

    assert wait_for(lambda: latest("wrist: drops").get("frames_rejected_corrupt") == "2", 10), latest("wrist: drops")
    assert latest("wrist: drops").get("frames_rejected_too_large") == "1"
    assert "frames_rejected_corrupt" not in latest("head: drops"), "the head camera's counters are its own"
    values = latest("wrist: buffers")
    frames = 4 + 8 + 61  # stream, context, tracked: the live frame and 2 s of catch-up at up to 30 a second
    assert int(values["budget_bytes"]) == frames * 320 * 240 * 3 >= int(values["memory_bytes"]) > 0
    # The node's frame buffers, all cameras: held now (the sum of the cameras'), the budget, the limit it fits.
    memory = latest("buffer memory")
    held = sum(int(latest(f"{camera}: buffers")["memory_bytes"]) for camera in ("head", "wrist"))
    assert int(memory["held_bytes"]) == held
    assert int(memory["budget_bytes"]) == frames * 3 * (1920 * 1080 + 320 * 240) <= int(memory["limit_bytes"])
    assert "MemAvailable" in memory["limit"] or "free on cuda" in memory["limit"], memory


def test_buffers_that_do_not_fit_the_memory_limit_fail_at_configure_with_the_numbers(node):
    process = node({**CAMERAS, "buffer_memory_limit_mb": 10.0})
    assert process.process.wait(NODE_START_S) == 1
    log = process.log()
    # 4 stream + 8 context + 61 tracked (the live frame and 2 s of catch-up at up to 30 a second)
    assert "frame buffers need 449.1 MiB for 73 frames per camera (head 433.1 MiB, wrist 16.0 MiB)" in log
    assert "only 10.0 MiB allowed (buffer_memory_limit_mb)" in log


def test_a_misspelt_camera_parameter_is_reported_not_silently_ignored(node):
    process = node({**NO_BACKENDS, "cameras.names": ["head"], "cameras.haed.image_topic": "/head/image"})
    assert process.wait_for_log("ready on cpu"), process.log()
    assert "unknown to the node (typos?), ignored: cameras.haed.image_topic" in process.log()
    assert "head <- image (raw)" in process.log(), "the real camera keeps its default topic"


def test_a_raw_frame_larger_than_budgeted_is_rejected_and_counted(node, planner):
    process = node({**NO_BACKENDS, "cameras.main.max_width": 32, "cameras.main.max_height": 24, "stats_period_s": 0.5})
    planner.wait_connected()
    image, _ = render(HEAD_SCENE, 0.0, 40, 30)
    sent = 0

    def rejected() -> bool:  # best effort loses frames until both sides matched: send until one is counted
        nonlocal sent
        planner.send_image(image, "rgb8", round((START_S + sent) * 1e9))
        sent += 1
        return process.wait_for_log("frames_rejected_too_large", 0.1)

    assert wait_for(rejected, 30), process.log()
    assert "40x30 is larger than the 32x24 its buffers were budgeted for" in process.log()
