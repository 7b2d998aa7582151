"""Robustness of perception_node over real DDS: fuzzed input, and a bounded soak at camera rate.

- Fuzz: arbitrary sensor_msgs/Image messages (valid and invalid encodings, sizes, steps, data
  lengths, byte orders), GroundingCommand messages (odd ids and queries, mode / action 0-255)
  and command_text strings, all sent to one running node; afterwards it is alive, still
  serves, and counted every frame it rejected.
- Soak: 30 Hz 320x240 frames for SOAK_S seconds of video with commands coming and going on the
  video's clock; the node never exits, its memory stays bounded, outputs keep arriving while a
  command runs, and every frame it received is accounted for (tracked, skipped or rejected). The
  camera waits while the node is more than SOAK_MAX_BACKLOG frames behind (a slow or contended
  machine would otherwise queue hundreds of reliable frames in the transport, which is the
  queue_depth the test chose, not the node's memory), so the checks hold on any machine speed.

Both send their frames reliably into a reliable camera with a deep queue (RELIABLE_CAMERA): the
node must count every frame, so the transport must deliver every one (best effort drops frames
whenever the node's queue of 5 is full, on a busy machine, and the node never sees those).
"""

import os
import random
import re
import threading
import time
from itertools import pairwise

from diagnostic_msgs.msg import DiagnosticArray
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lifecycle_soak import rss_mb
from polling import wait_for
from ros_harness import DOUBLES, RELIABLE_CAMERA, START_S, play, stamp_ns
from sensor_msgs.msg import Image
from synthetic_video import default_scene, render
from videomolmo_ros.msg import CommandStatus, GroundingCommand

from videomolmo_ros.io.image_codec import ImageDecodeError
from videomolmo_ros.node import messages as ros_messages

# Soak length: five command cycles. Every buffer of the node is a ring of frames that fills within
# the first 2.5 s of video (4 stream + 8 context + 61 tracked frames at 30 Hz), and every cycle
# creates and ends the same commands and tracks, so from the second cycle on each cycle repeats
# the same allocations: RSS is flat from about 7 s of video on (90-s runs: within 10 MB from there
# to the end). Three cycles after warm-up then show what a longer run would: a frame kept per frame
# (230 KB at 30 Hz, 7 MB/s) grows RSS by 120 MB in those 18 s, even a mask kept per frame (77 KB) by
# 40 MB, beyond the allowance; and tracking that stops within a cycle or after one fails the
# per-cycle checks below. VIDEOMOLMO_SOAK_S=600 (say) runs a longer one by hand.
SOAK_S = float(os.environ.get("VIDEOMOLMO_SOAK_S", "30"))
SOAK_FPS = 30.0
SOAK_WARM_UP_S = 12.0  # RSS is compared between this point (two cycles) and the end
SOAK_RSS_GROWTH_MB = 30.0  # allowed RSS growth after warm-up (3x the steps seen on a flat run): memory is bounded
SOAK_CYCLE_S = 6.0  # the command schedule repeats every SOAK_CYCLE_S (see _soak_commands)
SOAK_MAX_TRACKS_GAP_S = 1.0  # a longer gap in a cycle's tracks counts as time without tracks
SOAK_MIN_TRACKED_SHARE = 0.75  # of the running spans overall: one stall of a busy machine passes, a stop does not
SOAK_MAX_BACKLOG = 45  # frames sent but not yet received: the camera waits beyond this (1.5 s of video)
FUZZ_EXAMPLES = 60
ROBUSTNESS_NODE = {**DOUBLES, "stats_period_s": 0.5, **RELIABLE_CAMERA}  # shared by the fuzz and the soak

ENCODINGS = [
    # supported
    "rgb8",
    "bgr8",
    "rgba8",
    "bgra8",
    "mono8",
    "8UC1",
    "8UC3",
    "8UC4",
    "yuv422",
    "yuv422_yuy2",
    "bayer_rggb8",
    "bayer_gbrg16",
    # decodable but not colour
    "mono16",
    "16UC1",
    "32FC1",
    # unsupported
    "",
    "RGB8",
    "rgb8 ",
    "nv21",
    "64FC1",
    "ÿ漢字",
]
# Bytes per pixel of the encodings the codec knows, to make well-formed images often.
PIXEL_BYTES = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3, "8UC4": 4}
PIXEL_BYTES |= {"yuv422": 2, "yuv422_yuy2": 2, "bayer_rggb8": 1, "bayer_gbrg16": 2}
PIXEL_BYTES |= {"mono16": 2, "16UC1": 2, "32FC1": 4}
# Text with control characters, unicode and NULs; no lone surrogates (not encodable as UTF-8 at all).
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
QUERIES = st.one_of(
    TEXT,
    st.just(""),
    st.sampled_from(["red", "the blue ball", "red\x00blue", "\x1b[31mred\x1b[0m", "  \t\n "]),
    st.integers(400, 200_000).map(lambda n: "red " * (n // 4)),  # around and far beyond max_query_chars
)


@st.composite
def images(draw):
    encoding = draw(st.sampled_from(ENCODINGS))
    size = st.one_of(st.integers(0, 24), st.sampled_from([1, 65_535, 2**31]))
    width, height = draw(size), draw(size)
    natural_step = width * PIXEL_BYTES.get(encoding, 3)
    step = draw(st.one_of(st.just(natural_step), st.just(natural_step + 3), st.integers(0, 120)))
    step = min(step, 2**32 - 1)
    wanted = step * height
    length = draw(st.one_of(st.just(wanted), st.integers(0, 3000)))
    length = min(length, 5000)  # huge sizes with the data they claim would not fit a test
    data = random.Random(draw(st.integers(0, 2**32))).randbytes(length)
    msg = Image(height=height, width=width, encoding=encoding, step=step, data=data)
    msg.is_bigendian = draw(st.integers(0, 255))
    msg.header.stamp.sec = draw(st.integers(0, 999))  # the valid frames after the fuzz come later
    msg.header.stamp.nanosec = draw(st.integers(0, 999_999_999))
    msg.header.frame_id = draw(TEXT)
    return msg


COMMANDS = st.builds(
    GroundingCommand,
    id=st.one_of(TEXT, st.just(""), st.sampled_from(["a", "fuzz-1", "cmd-1"])),
    query=QUERIES,
    mode=st.integers(0, 255),
    action=st.one_of(st.integers(0, 3), st.integers(0, 255)),
    camera=st.one_of(st.just(""), st.just("*"), st.just("main"), TEXT),
)
# Images weigh twice as much as commands and texts.
MESSAGES = st.lists(st.one_of(images(), images(), COMMANDS, QUERIES), min_size=1, max_size=6)


def counters(log: str) -> dict[str, int]:
    """The node's last `counters of camera main: name value, ...` log line, as a dict."""
    lines = re.findall(r"counters of camera main: (.*)", log)
    assert lines, "the node never logged its counters"
    return {name: int(value) for name, value in (item.rsplit(" ", 1) for item in lines[-1].strip().split(", "))}


def frames_received(process) -> int:
    """Frames the node has logged as received (every 0.5 s), 0 before its first counters line."""
    log = process.log()
    return counters(log).get("frames_received", 0) if "counters of camera main" in log else 0


def counters_once(process, done, timeout_s: float = 30.0) -> dict[str, int]:
    """The logged counters (every 0.5 s) once `done(counters)` holds, else the last ones after
    `timeout_s`: the assertions on them then say what is missing."""
    wait_for(lambda: "counters of camera main" in process.log() and done(counters(process.log())), timeout_s)
    return counters(process.log())


def rejected(counts: dict[str, int]) -> int:
    return sum(v for k, v in counts.items() if k.startswith("frames_rejected_"))


def decode_reason(msg: Image) -> str | None:
    """Why the node rejects this image, or None if it accepts it: a claimed size over the camera's max
    (1920x1080 by default) before anything is decoded, else the codec's reason."""
    if msg.width > 1920 or msg.height > 1080:
        return "too_large"
    try:
        ros_messages.rgb_from_image(msg)
    except ImageDecodeError as error:
        return error.reason
    return None


def test_fuzzed_images_and_commands_do_not_crash_the_node_and_every_rejection_is_counted(shared_node, reliable_planner):
    """The node is shared with the soak; Ctrl-C must still end it cleanly at the end (module_nodes)."""
    planner = reliable_planner
    process = shared_node(planner, ROBUSTNESS_NODE)
    planner.wait_connected()
    sent_reasons: dict[str, int] = {}
    images_sent = 0

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(MESSAGES)
    def send(messages):
        nonlocal images_sent
        for msg in messages:
            if isinstance(msg, Image):
                reason = decode_reason(msg)
                if reason is not None:
                    sent_reasons[reason] = sent_reasons.get(reason, 0) + 1
                images_sent += 1
                planner.image_pub.publish(msg)
            elif isinstance(msg, GroundingCommand):
                planner.command_pub.publish(msg)
            else:
                planner.send_text(msg)
            time.sleep(0.01)  # a fast camera, not a flood
        assert process.process.poll() is None, f"the node died on {messages!r}:\n{process.log()[-5000:]}"

    send()
    assert process.process.poll() is None, process.log()[-5000:]
    assert sum(sent_reasons.values()) > 0, "the fuzz sent no invalid image at all"

    # It still serves: a valid command on a valid stream gives tracks and masks.
    planner.send_command("red", id="after-fuzz", action=GroundingCommand.ACTION_REPLACE)
    assert wait_for(
        lambda: any(s.id == "after-fuzz" and s.state == CommandStatus.ACCEPTED for s in planner.get("command_status")),
        20,
    ), process.log()[-5000:]

    def serving() -> bool:
        masked = any(m.command_id == "after-fuzz" and m.ids for m in planner.get("masks"))
        return masked and any(m.command_id == "after-fuzz" and m.tracks for m in planner.get("tracks"))

    truth = play(planner, 3.0, until=serving)
    assert wait_for(serving, 20), f"not serving after the fuzz:\n{process.log()[-5000:]}"
    assert process.process.poll() is None

    frames_sent = images_sent + len(truth)

    def all_counted(counts: dict[str, int]) -> bool:
        rejections = (counts.get(f"frames_rejected_{reason}", 0) == sent for reason, sent in sent_reasons.items())
        return counts.get("frames_received", 0) == frames_sent and all(rejections)

    counts = counters_once(process, all_counted)
    print(f"fuzz: {images_sent} images sent, codec rejections sent {sent_reasons}, node counters {counts}")
    assert counts.get("internal_errors", 0) == 0, f"a fuzzed message hit a bug:\n{process.log()[-8000:]}"
    # Every frame sent was received and counted, once; each rejection under the codec's reason.
    assert counts["frames_received"] == frames_sent, counts
    assert rejected(counts) <= counts["frames_received"], counts
    for reason, sent in sent_reasons.items():
        assert counts.get(f"frames_rejected_{reason}", 0) == sent, (reason, sent, counts)


def accounted(counts: dict[str, int]) -> int:
    """Frames the tracker took or skipped while a command ran."""
    return counts.get("frames_tracked", 0) + counts.get("frames_skipped_tracking_busy", 0)


def settled(counts: dict[str, int]) -> bool:
    """A command runs 5 s of every 6 s: most frames received are tracked or skipped, not silently lost."""
    return accounted(counts) >= 0.7 * counts.get("frames_received", 0)


def _soak_commands(planner, cycle: int, t_in_cycle: float, done: set) -> None:
    """Within each SOAK_CYCLE_S: a command runs from 0 s until STOP_ALL at 5 s; idle until 6 s.

    0 s: REPLACE "red" (stops all); 2 s: command_text adds the blue ball; 4 s: STOP the red one;
    5 s: STOP_ALL.
    """
    schedule = [
        (0.0, lambda: planner.send_command("red", id=f"soak-{cycle}", action=GroundingCommand.ACTION_REPLACE)),
        (2.0, lambda: planner.send_text("the blue ball")),
        (4.0, lambda: planner.send_command("", id=f"soak-{cycle}", action=GroundingCommand.ACTION_STOP)),
        (5.0, lambda: planner.send_command("", action=GroundingCommand.ACTION_STOP_ALL)),
    ]
    for at, send in schedule:
        if t_in_cycle >= at and (cycle, at) not in done:
            done.add((cycle, at))
            send()


def test_soak_at_camera_rate_with_commands_coming_and_going(shared_node, reliable_planner):
    planner = reliable_planner
    process = shared_node(planner, ROBUSTNESS_NODE)
    planner.wait_connected()
    diagnostics = []
    lock = threading.Lock()

    def on_diagnostics(msg):
        with lock:
            diagnostics.append(msg)

    planner.node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    pid = process.process.pid
    scene = default_scene()
    frames = [render(scene, k / SOAK_FPS)[0] for k in range(int(2 * SOAK_CYCLE_S * SOAK_FPS))]  # loops every 12 s
    done: set = set()
    sent = 0
    rss_warm = None
    deadline = time.monotonic() + 4 * SOAK_S
    next_at = time.monotonic()
    while (video_s := sent / SOAK_FPS) < SOAK_S:
        cycle, t_in_cycle = divmod(video_s, SOAK_CYCLE_S)
        _soak_commands(planner, int(cycle), t_in_cycle, done)
        planner.send_image(frames[sent % len(frames)], "rgb8", round((START_S + video_s) * 1e9))
        sent += 1
        if rss_warm is None and video_s >= SOAK_WARM_UP_S:
            rss_warm = rss_mb(pid)
        if sent % 30 == 0:
            assert process.process.poll() is None, f"the node exited during the soak:\n{process.log()[-8000:]}"
            while sent - frames_received(process) > SOAK_MAX_BACKLOG:
                assert time.monotonic() < deadline, f"the node stopped taking frames:\n{process.log()[-8000:]}"
                time.sleep(0.05)
        next_at = max(next_at + 1 / SOAK_FPS, time.monotonic() - 1 / SOAK_FPS)  # camera rate after a wait
        time.sleep(max(0.0, next_at - time.monotonic()))
    assert process.process.poll() is None, process.log()[-8000:]
    rss_end = rss_mb(pid)
    counts = counters_once(process, lambda counts: counts.get("frames_received", 0) == sent and settled(counts))
    assert process.process.poll() is None

    # Memory is bounded: after warm-up, RSS grows by less than the bound.
    assert rss_warm is not None
    print(f"soak: {sent} frames, RSS {rss_warm:.1f} -> {rss_end:.1f} MB, node counters {counts}")
    assert rss_end - rss_warm < SOAK_RSS_GROWTH_MB, f"RSS {rss_warm:.0f} MB at warm-up, {rss_end:.0f} MB at the end"

    # Outputs keep arriving while a command runs: every command is tracked within its cycle, and
    # over all running spans (after the first grounding's latency) tracked source stamps leave few
    # gaps. Not a bound per cycle: a busy machine may stall the node once (frames skipped while
    # the tracker was busy are the designed degradation); a command that never tracks, or tracking
    # that stops, fails.
    tracked = sorted(stamp_ns(m.header) / 1e9 - START_S for m in planner.get("tracks") if m.tracks)
    assert tracked, f"no tracks during the soak:\n{process.log()[-8000:]}"
    cycles = range(int(SOAK_S // SOAK_CYCLE_S))
    untracked = {}
    for cycle in cycles:
        start_s = cycle * SOAK_CYCLE_S
        assert any(start_s <= t < start_s + 5.0 for t in tracked), f"cycle {cycle}: its commands were never tracked"
        lo, hi = start_s + 1.5, start_s + 4.8
        points = [lo, *(t for t in tracked if lo <= t <= hi), hi]
        untracked[cycle] = sum(b - a for a, b in pairwise(points) if b - a > SOAK_MAX_TRACKS_GAP_S)
    share = 1 - sum(untracked.values()) / (len(cycles) * (4.8 - 1.5))
    gaps = {c: round(g, 1) for c, g in untracked.items() if g}
    assert share >= SOAK_MIN_TRACKED_SHARE, f"tracked {share:.0%} of the running time; gaps (s) by cycle: {gaps}"

    # Nothing vanished: the node received every frame sent, and every frame it received was
    # tracked, skipped, rejected or arrived with no command running.
    received = counts["frames_received"]
    assert received == sent, (sent, counts)
    assert accounted(counts) + rejected(counts) + counts.get("propagation_failures", 0) <= received, counts
    assert settled(counts), counts
    assert counts.get("internal_errors", 0) == 0, process.log()[-8000:]
    assert counts.get("commands_accepted", 0) >= 2 * int(SOAK_S // SOAK_CYCLE_S), counts

    # /diagnostics kept coming (1 Hz), and its drop counts agree with the logged counters.
    with lock:
        arrays = list(diagnostics)
    assert len(arrays) >= 0.5 * SOAK_S, f"{len(arrays)} diagnostics in {SOAK_S:.0f} s"
    drops = next(s for s in arrays[-1].status if s.name.endswith(": drops"))
    values = {kv.key: kv.value for kv in drops.values}
    skipped = int(values.get("frames_skipped_tracking_busy", "0"))
    assert skipped <= counts.get("frames_skipped_tracking_busy", 0), (values, counts)
