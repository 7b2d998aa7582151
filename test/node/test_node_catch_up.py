"""Tracking a fast object at camera rate while grounding answers a second late, over DDS."""

import numpy as np
from polling import wait_for
from ros_harness import DOUBLES, FPS, START_S, play, stamp_ns
from synthetic_video import fast_scene

from videomolmo_ros.io.mask_codec import decode_masks

POINTER, PROPAGATOR = "ColorOraclePointerDouble", "LocalPropagatorDouble"
SLOW_POINTER_LOCAL_TRACKER = {
    **DOUBLES,
    f"{POINTER}.delay_s": 1.0,  # every answer comes 1 s after the query
    "propagator_backend": f"oracle_doubles:{PROPAGATOR}",
    f"{PROPAGATOR}.search_radius": 25.0,  # finds the object only within 25 px of where it last saw it
}


def test_a_fast_object_is_tracked_on_every_frame_although_grounding_answers_a_second_late(node, planner):
    assert FPS == 15.0, "the disc moves 3 px a frame at 15 Hz: 45 px between a frame and its answer"
    process = node(SLOW_POINTER_LOCAL_TRACKER)
    planner.wait_connected()
    planner.send_command("the red disc", id="fast")
    truth = play(planner, 5.0, scene=fast_scene(3.0, FPS))
    last = max(truth)
    assert wait_for(lambda: any(stamp_ns(m.header) == last for m in planner.get("masks")), 20), process.log()
    scores = []
    for msg in planner.get("masks"):
        stamp = stamp_ns(msg.header)
        if msg.command_id != "fast" or stamp < START_S * 1e9 + 2e9:
            continue
        masks = decode_masks(bytes(msg.data), msg.height, msg.width, len(msg.ids))
        mask = masks[0] if masks else np.zeros((msg.height, msg.width), bool)
        true = truth[stamp]["red"]
        scores.append((mask & true).sum() / (mask | true).sum())
    assert len(scores) >= 20, f"masks at camera rate from 2 s on: {len(scores)}"
    assert np.mean(scores) >= 0.8, f"mean mask IoU {np.mean(scores):.2f} over {len(scores)} frames\n{process.log()}"
