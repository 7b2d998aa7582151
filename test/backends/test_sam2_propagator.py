"""The SAM2 propagator on a tiny random-weight checkpoint loaded through its real path.

Random weights give meaningless masks, so these tests check structure: shapes and ids, which
frame a prompt is keyed to (against a fresh propagator prompted on that frame alone), that
objects never disturb each other, bounded memory on a long stream, and the separate clip session.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_video import default_scene, render
from tiny_sam2 import FEATURES, OVERRIDES, write_tiny_sam2
from tiny_sam2 import tiny_options as options_for

from videomolmo_ros.backends import registry as backend_registry
from videomolmo_ros.backends.sam2 import propagator as sam2_propagator
from videomolmo_ros.backends.sam2.loading import Sam2Options, hydra_overrides
from videomolmo_ros.backends.sam2.propagator import Sam2Propagator
from videomolmo_ros.contracts.frames import Frame, FrameMeta
from videomolmo_ros.contracts.interfaces import BackendError, MaskPropagator

CPU = torch.device("cpu")
SCENE = default_scene()
PERIOD_NS = 33_000_000
RED, BLUE = (96.0, 120.0), (224.0, 120.0)  # the discs' orbit centres at 320 x 240
# sam2's predictor warns that it skips hole filling without its CUDA extension (so does the propagator).
WITHOUT_EXTENSION = pytest.mark.filterwarnings("ignore:cannot import name '_C'")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_sam2(tmp_path_factory.mktemp("sam2"))


def load(checkpoint, **extra) -> Sam2Propagator:
    """A propagator on weights loaded now, through the registry (for tests that patch or hook the model)."""
    return backend_registry.create("sam2", MaskPropagator, CPU, options_for(checkpoint, **extra))


_LOADED: dict[tuple, Sam2Propagator] = {}


def make(checkpoint, **extra) -> Sam2Propagator:
    """A propagator with a state of its own on weights loaded once per options: a twin, as a second camera
    gets (test_a_second_camera_shares_the_weights_and_keeps_its_own_objects: it tracks as a fresh one)."""
    key = (str(checkpoint), *sorted(extra.items()))
    if key not in _LOADED:
        _LOADED[key] = load(checkpoint, **extra)
    return _LOADED[key].for_another_camera()


def frame(k: int, seq: int | None = None, size=(320, 240), offset_ns: int = 0) -> Frame:
    """Camera frame k of the synthetic video (stamp from k; seq as its buffer numbered it)."""
    image, _ = render(SCENE, k / 30, *size)
    meta = FrameMeta(k if seq is None else seq, 10**9 + k * PERIOD_NS + offset_ns, "cam")
    return Frame(meta, torch.from_numpy(image))


def stepped(propagator: Sam2Propagator, ks, prompts_at_first=None):
    out = {}
    for k in ks:
        if prompts_at_first and k == ks[0]:
            propagator.add_prompts(frame(k), prompts_at_first)
        out = propagator.step(frame(k))
    return out


def prompt_output(propagator: Sam2Propagator, object_id: int) -> tuple[int, dict]:
    """The object's newest prompted frame number and what was stored for it."""
    cond = propagator._session.objects[object_id].cond
    index = max(cond)
    return index, cond[index]


def same_memories(a: dict, b: dict) -> bool:
    """The very same stored outputs under the same frame numbers (identity, not equal values)."""
    return a.keys() == b.keys() and all(a[k] is b[k] for k in a)


def same_prompt(a: dict, b: dict) -> bool:
    return all(torch.equal(a[key], b[key]) for key in ("maskmem_features", "pred_masks", "obj_ptr"))


def stock_logits(propagator: Sam2Propagator, frames, prompts, folder, reverse: bool) -> list[dict[int, torch.Tensor]]:
    """sam2's own SAM2VideoPredictor on the same model and the same preprocessed frames: mask logits.

    Its JPEG folder only sets the frame count and size; its images are swapped for the frames as
    the propagator preprocesses them, so any difference comes from the tracking itself.
    """
    model = propagator.model
    for k, f in enumerate(frames):
        Image.fromarray(f.image.numpy()).save(folder / f"{k:05d}.jpg")
    state = model.init_state(str(folder))
    with torch.inference_mode():
        state["images"] = torch.cat([propagator._model_image(f.image) for f in frames])
    state["cached_features"] = {}
    start = len(frames) - 1 if reverse else 0
    for object_id, points in prompts.items():
        model.add_new_points_or_box(state, start, object_id, np.array(points), np.ones(len(points), np.int32))
    out: list[dict[int, torch.Tensor]] = [{} for _ in frames]
    for k, ids, logits in model.propagate_in_video(state, reverse=reverse):
        out[k] = {i: logits[n, 0].clone() for n, i in enumerate(ids)}
    return out


def record_logits(propagator: Sam2Propagator) -> list[dict[int, torch.Tensor]]:
    """Every call's mask logits per object, as the propagator thresholds them."""
    calls: list[dict[int, torch.Tensor]] = []
    logits = propagator._logits

    def recorded(outs, frame):
        result = logits(outs, frame)
        calls.append(dict(zip(outs, result.clone(), strict=True)))
        return result

    propagator._logits = recorded
    return calls


# The streaming step and the stock predictor run the same model on the same inputs, but batch and
# order the work differently, so float sums may round differently on another CPU (AVX-512):
# logits agree within a tolerance, masks on all but a few pixels on the threshold. Measured here
# (tiny model, logits up to about 0.1): 8e-8 apart over 40 frames; keeping 2 memory frames instead
# of 16 (a real loss) puts them 1.3e-3 apart, far outside the tolerance.
LOGIT_TOLERANCE = {"atol": 1e-5, "rtol": 1e-4}
MASK_AGREEMENT = 0.999


def assert_same_tracking(ours: torch.Tensor, mask: torch.Tensor, stock: torch.Tensor, where: str) -> None:
    torch.testing.assert_close(ours, stock, **LOGIT_TOLERANCE, msg=lambda m: f"{where}: {m}")
    assert (mask == (stock > 0)).float().mean() >= MASK_AGREEMENT, where


@WITHOUT_EXTENSION
def test_streaming_gives_the_stock_predictors_masks_with_bounded_memory(checkpoint, tmp_path):
    """What pruning drops, the model never reads (40 frames, 16 kept)."""
    propagator = make(checkpoint)
    frames = [frame(k) for k in range(40)]
    prompts = {1: [RED], 2: [BLUE, (230.0, 125.0)]}
    expected = stock_logits(propagator, frames, prompts, tmp_path, reverse=False)
    logits = record_logits(propagator)
    propagator.add_prompts(frames[0], prompts)
    for k, f in enumerate(frames):
        masks = propagator.step(f)
        assert sorted(masks) == [1, 2]
        for i in masks:
            assert_same_tracking(logits[-1][i], masks[i].mask, expected[k][i], f"frame {k}, object {i}")
    assert propagator.kept_memories() == {1: (1, 16), 2: (1, 16)}


@WITHOUT_EXTENSION
def test_propagate_backward_gives_the_stock_predictors_reverse_masks(checkpoint, tmp_path):
    propagator = make(checkpoint)
    clip = [frame(k) for k in range(20, 40)]
    expected = stock_logits(propagator, clip, {3: [BLUE]}, tmp_path, reverse=True)
    logits = record_logits(propagator)
    backward = propagator.propagate(clip, {3: [BLUE]}, reverse=True)
    by_frame = logits[::-1]  # computed from the last frame back
    for k in range(len(clip)):
        assert_same_tracking(by_frame[k][3], backward[k][3].mask, expected[k][3], f"frame {k}")


@pytest.mark.parametrize(("size", "side"), [((320, 240), 128), ((640, 480), 512), ((1920, 1080), 256)])
def test_frames_are_resized_as_sam2s_frame_loader_resizes_them(checkpoint, size, side):
    """PIL bicubic, as sam2 loads a video's frames: at most 1 of 255 apart, on under 0.1% of the values."""
    propagator = make(checkpoint)
    propagator.image_size = side  # the resize alone (the tiny model itself takes 128)
    noise = np.random.default_rng(side).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    for image in (frame(7, size=size).image.numpy(), noise):
        pil = np.asarray(Image.fromarray(image).resize((side, side)), dtype=np.float32) / 255.0
        with torch.inference_mode():
            ours = propagator._model_image(torch.from_numpy(image))
        ours = (ours * propagator._std + propagator._mean)[0].permute(1, 2, 0).numpy()
        apart = np.abs(ours - pil) * 255
        assert apart.max() < 1.01 and (apart > 0.5).mean() < 0.001


def test_masks_per_object_at_each_frames_resolution(checkpoint):
    propagator = make(checkpoint)
    assert propagator.step(frame(0)) == {}, "no objects, no masks"
    propagator.add_prompts(frame(0), {7: [RED], 9: [BLUE, (230.0, 125.0)]})
    for k, size in [(1, (320, 240)), (2, (320, 240)), (3, (160, 96))]:
        masks = propagator.step(frame(k, size=size))
        assert sorted(masks) == [7, 9]
        for m in masks.values():
            assert m.mask.dtype == torch.bool and tuple(m.mask.shape) == (size[1], size[0])
            assert 0.0 <= m.score <= 1.0


def test_registered_and_loaded_from_the_checkpoint(checkpoint):
    propagator = load(checkpoint)
    saved = torch.load(checkpoint, weights_only=True)["model"]
    assert propagator.model.image_size == 128 and not propagator.model.training
    assert all(torch.equal(value, saved[name]) for name, value in propagator.model.state_dict().items())


def test_image_features_computed_once_per_frame(checkpoint):
    propagator = load(checkpoint)
    calls = []
    forward_image = propagator.model.forward_image
    propagator.model.forward_image = lambda image: calls.append(1) or forward_image(image)
    propagator.add_prompts(frame(0), {1: [RED], 2: [BLUE]})
    propagator.step(frame(0))
    propagator.step(frame(1))
    propagator.add_prompts(frame(1), {3: [RED]})  # late prompt on a recently stepped frame
    propagator.step(frame(2))
    assert len(calls) == 3, "frames 0, 1, 2 each encoded once, whatever the objects and prompts"


def test_image_features_are_the_encoders_embedding_shared_with_the_steps(checkpoint):
    """What tracker.descriptor propagator_features pools: sam2's own image embedding (forward_image's
    vision_features, C x h x w), encoded once per frame whether the step or the pipeline asks first."""
    propagator = load(checkpoint)
    calls = []
    forward_image = propagator.model.forward_image
    propagator.model.forward_image = lambda image: calls.append(1) or forward_image(image)
    features = propagator.image_features(frame(0))
    propagator.add_prompts(frame(0), {1: [RED]})
    propagator.step(frame(0))
    assert torch.equal(propagator.image_features(frame(0)), features) and len(calls) == 1
    with torch.inference_mode():
        embedding = forward_image(propagator._model_image(frame(0).image))["vision_features"][0]
    assert features.shape == embedding.shape == (propagator.model.hidden_dim, FEATURES, FEATURES)
    torch.testing.assert_close(features, embedding)
    assert not torch.allclose(propagator.image_features(frame(5)), features), "another frame, other features"


def test_prompt_on_an_older_stepped_frame_is_keyed_to_that_frame(checkpoint):
    live = make(checkpoint, feature_cache_frames=2)  # frame 3's features are long gone from the cache
    stepped(live, range(10), {1: [RED]})
    live.add_prompts(frame(3, seq=503), {2: [BLUE]})  # another buffer's seq: only the stamp counts
    index, out = prompt_output(live, 2)
    assert index == 3, "frame 3 was the 4th frame stepped"

    alone = make(checkpoint)
    alone.add_prompts(frame(3), {2: [BLUE]})
    wrong = make(checkpoint)
    wrong.add_prompts(frame(9), {2: [BLUE]})
    assert same_prompt(out, prompt_output(alone, 2)[1]), "conditioned on frame 3's image"
    assert not same_prompt(out, prompt_output(wrong, 2)[1]), "not on the newest frame's"

    masks = live.step(frame(10))
    assert sorted(masks) == [1, 2], "the new object is carried to the next frames"
    assert sorted(live._session.objects[2].recent) == [10]
    assert tuple(masks[2].mask.shape) == (240, 320)


def test_prompt_on_a_frame_never_stepped_lands_on_the_nearest_stepped_one(checkpoint):
    live = make(checkpoint)
    stepped(live, range(10), {1: [RED]})
    between = frame(5, seq=77, offset_ns=PERIOD_NS // 3)  # camera frame the tracker skipped
    live.add_prompts(between, {2: [BLUE]})
    index, out = prompt_output(live, 2)
    assert index == 5
    alone = make(checkpoint)
    alone.add_prompts(between, {2: [BLUE]})
    assert same_prompt(out, prompt_output(alone, 2)[1]), "conditioned on the given frame's own image"


def test_prompt_on_a_frame_newer_than_the_last_stepped_one(checkpoint):
    live = make(checkpoint)
    stepped(live, range(5), {1: [RED]})
    live.add_prompts(frame(8), {2: [BLUE]})  # grounding saw a frame the tracker has not reached
    index, out = prompt_output(live, 2)
    assert index == 5, "the next frame number, reserved for that frame"
    masks = live.step(frame(8))
    logits = torch.nn.functional.interpolate(out["pred_masks"], (240, 320), mode="bilinear", align_corners=False)
    expected = logits[0, 0] > 0
    assert torch.equal(masks[2].mask, expected), "the step of that frame gives the prompt's mask"
    live.step(frame(9))
    assert max(live._session.objects[1].recent) == 6, "numbering goes on after the reserved frame"


def test_adding_an_object_leaves_the_others_untouched(checkpoint):
    live, control = make(checkpoint), make(checkpoint)
    for propagator in (live, control):
        stepped(propagator, range(6), {4: [RED]})
    before = dict(live._session.objects[4].recent)
    live.add_prompts(frame(3), {5: [BLUE]})
    assert same_memories(live._session.objects[4].recent, before), "no reset: same memories, same frame numbers"
    for k in range(6, 9):
        masks, expected = live.step(frame(k)), control.step(frame(k))
        assert sorted(masks) == [4, 5]
        assert torch.equal(masks[4].mask, expected[4].mask) and masks[4].score == expected[4].score


def test_refreshing_an_object_adds_a_conditioning_frame_and_prunes_the_oldest_but_first(checkpoint):
    propagator = make(checkpoint, max_conditioning_frames=3)
    propagator.add_prompts(frame(0), {1: [RED]})
    for k in range(1, 12):
        propagator.step(frame(k))
        if k % 2 == 0:
            propagator.add_prompts(frame(k), {1: [RED]})
    assert sorted(propagator._session.objects[1].cond) == [0, 8, 10]
    assert 8 not in propagator._session.objects[1].recent, "a prompted frame is memory once, as a prompt"


def test_memory_is_bounded_on_a_long_stream(checkpoint, monkeypatch):
    """Every store of the live state is full by frame 40 (16 memories, 4 cached features, a timeline cut to
    32 stamps here instead of 1024, the same code); from then on a store that kept anything per frame
    (a tensor, a stamp) would differ between frames 40, 80 and 120, by 40 items at least."""
    monkeypatch.setattr(sam2_propagator, "_TIMELINE_FRAMES", 32)
    propagator = make(checkpoint, memory_frames=16)
    propagator.add_prompts(frame(0), {1: [RED]})
    sizes = {}
    for k in range(120):
        propagator.step(frame(k, size=(64, 48)))
        if k + 1 in (40, 80, 120):
            sizes[k + 1] = (len(propagator.state_tensors()), propagator.state_bytes(), len(propagator._timeline))
    assert propagator.kept_memories() == {1: (1, 16)}
    assert sizes[40] == sizes[80] == sizes[120], sizes
    assert sizes[120][2] == 32, "the timeline is cut at its bound"


def test_propagate_backward_is_a_separate_session(checkpoint):
    live, control = make(checkpoint), make(checkpoint)
    for propagator in (live, control):
        stepped(propagator, range(4), {1: [RED]})
    objects_before = {i: (dict(o.cond), dict(o.recent)) for i, o in live._session.objects.items()}
    timeline_before, cache_before = dict(live._timeline), list(live._cache)

    clip = [frame(k, seq=k + 100) for k in range(20, 28)]
    backward = live.propagate(clip, {3: [BLUE]}, reverse=True)
    assert len(backward) == len(clip) and all(sorted(m) == [3] for m in backward)
    assert all(tuple(m[3].mask.shape) == (240, 320) for m in backward)
    fresh = make(checkpoint)
    fresh.add_prompts(clip[-1], {3: [BLUE]})
    assert torch.equal(backward[-1][3].mask, fresh.step(clip[-1])[3].mask), "conditioned on the last frame"
    forward = live.propagate(clip, {3: [BLUE]}, reverse=False)
    assert torch.equal(forward[0][3].mask, make(checkpoint).propagate(clip[:1], {3: [BLUE]}, False)[0][3].mask)

    assert live._session.objects.keys() == objects_before.keys()
    for i, (cond, recent) in objects_before.items():
        assert same_memories(live._session.objects[i].cond, cond)
        assert same_memories(live._session.objects[i].recent, recent)
    assert dict(live._timeline) == timeline_before and list(live._cache) == cache_before
    assert torch.equal(live.step(frame(4))[1].mask, control.step(frame(4))[1].mask)


def test_propagate_keeps_clip_memory_bounded_too(checkpoint):
    propagator = make(checkpoint, memory_frames=4)
    clip = [frame(k, size=(64, 48)) for k in range(12)]
    masks = propagator.propagate(clip, {1: [(20.0, 24.0)]}, reverse=True)
    assert [sorted(m) for m in masks] == [[1]] * 12
    assert propagator.propagate(clip, {}, reverse=True) == [{}] * 12
    assert propagator.propagate([], {1: [(1.0, 1.0)]}, reverse=False) == []


def test_remove_and_reset(checkpoint):
    propagator = make(checkpoint)
    stepped(propagator, range(3), {1: [RED], 2: [BLUE]})
    propagator.remove([1, 42])
    assert sorted(propagator.step(frame(3))) == [2]
    assert sorted(propagator.kept_memories()) == [2]
    propagator.reset()
    assert propagator.step(frame(4)) == {} and propagator.state_bytes() == 0
    propagator.add_prompts(frame(5), {3: [RED]})
    assert prompt_output(propagator, 3)[0] == 1, "numbering restarted: frame 4 was 0"


def test_missing_checkpoint_names_both_ways_to_one(tmp_path):
    """Offline and not cached: the hub id (with internet) or a local .pt, and the parameter to set."""
    with pytest.raises(BackendError) as raised:
        backend_registry.create("sam2", MaskPropagator, CPU, {})  # the default: the hub's tiny
    message = str(raised.value)
    assert "HF_HUB_OFFLINE" in message and "facebook/sam2.1-hiera-tiny" in message
    assert "sam2.1_hiera_tiny.pt" in message and "sam2.checkpoint" in message
    with pytest.raises(BackendError, match=r"not a file.*facebook/sam2\.1-hiera-small.*sam2\.1_hiera_small\.pt"):
        backend_registry.create("sam2", MaskPropagator, CPU, {"config": "small", "checkpoint": str(tmp_path / "x.pt")})


def test_without_a_network_the_hub_is_not_asked_and_the_message_says_so(offline_hub):
    """One refused connection to the endpoint, then the message: no minutes of the hub client's retries."""
    with pytest.raises(BackendError, match=r"no network: http://127\.0\.0\.1:\d+ did not answer") as raised:
        backend_registry.create("sam2", MaskPropagator, CPU, {})
    assert offline_hub.asked_for("facebook/sam2.1-hiera-tiny") == [], "only the cache was looked in"
    assert "facebook/sam2.1-hiera-tiny" in str(raised.value) and "local" in str(raised.value)


def test_a_hub_id_in_the_cache_loads_without_a_network(offline_hub, checkpoint):
    repo = offline_hub.cache / "models--facebook--sam2.1-hiera-tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "sam2.1_hiera_tiny.pt").write_bytes(checkpoint.read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    options = {**options_for(checkpoint), "checkpoint": "facebook/sam2.1-hiera-tiny"}
    propagator = backend_registry.create("sam2", MaskPropagator, CPU, options)
    assert offline_hub.asked_for("facebook/sam2.1-hiera-tiny") == [], "found in the cache, the hub is not asked"
    saved = torch.load(checkpoint, weights_only=True)["model"]
    assert all(torch.equal(value, saved[name]) for name, value in propagator.model.state_dict().items())


def test_a_checkpoint_that_does_not_fit_the_config_is_refused(checkpoint):
    with pytest.raises(BackendError, match="does not load into config"):
        backend_registry.create("sam2", MaskPropagator, CPU, {"checkpoint": str(checkpoint)})


def test_bad_options_are_refused(checkpoint):
    for bad in ({"image_size": 500}, {"max_conditioning_frames": 1}, {"memory_frames": 0}):
        with pytest.raises(BackendError, match=r"sam2\."):
            make(checkpoint, **bad)


def test_image_size_overrides_the_model_input_and_its_feature_grid(checkpoint):
    assert hydra_overrides(Sam2Options(image_size=512))[:2] == [
        "++model.image_size=512",
        "++model.memory_attention.layer.self_attention.feat_sizes=[32,32]",
    ]
    tiny_without_size = [o for o in OVERRIDES if "image_size" not in o and "feat_sizes" not in o]
    propagator = make(checkpoint, image_size=256, config_overrides=" ".join(tiny_without_size))
    assert propagator.model.image_size == 256
    propagator.add_prompts(frame(0), {1: [RED]})
    assert tuple(propagator.step(frame(1))[1].mask.shape) == (240, 320)


def test_a_second_camera_shares_the_weights_and_keeps_its_own_objects(checkpoint):
    head = make(checkpoint)
    wrist = head.for_another_camera()
    assert wrist.model is head.model, "one copy of the weights for every camera"
    stepped(head, range(4), {1: [RED]})
    stepped(wrist, range(10, 14), {2: [BLUE]})
    assert sorted(head.step(frame(4))) == [1] and sorted(wrist.step(frame(14))) == [2]
    head.reset()
    assert sorted(wrist.step(frame(15))) == [2], "resetting one camera leaves the other tracking"
    alone = load(checkpoint)
    stepped(alone, range(10, 14), {2: [BLUE]})
    for k in (14, 15):
        alone.step(frame(k))
    assert torch.equal(wrist.step(frame(16))[2].mask, alone.step(frame(16))[2].mask), "twin tracks as if alone"


def test_catch_up_carries_a_late_prompt_to_the_newest_frame_leaving_the_others_as_they_were(checkpoint):
    live, alone_a, alone_b = make(checkpoint), make(checkpoint), make(checkpoint)
    stepped(live, range(10), {1: [RED]})
    stepped(alone_a, range(10), {1: [RED]})
    live.add_prompts(frame(3), {2: [BLUE]})  # grounding answered on frame 3, tracking is at frame 9
    for k in range(4, 10):
        assert sorted(live.step(frame(k), [2, 42])) == [2], "only the objects asked for (unknown ids ignored)"
    stepped(alone_b, range(3))  # the same frame numbers, no objects yet
    alone_b.add_prompts(frame(3), {2: [BLUE]})
    stepped(alone_b, range(3, 10))
    masks = live.step(frame(10))
    assert torch.equal(masks[1].mask, alone_a.step(frame(10))[1].mask), "object 1 was never stepped again"
    assert torch.equal(masks[2].mask, alone_b.step(frame(10))[2].mask), "object 2 as if tracked from frame 3 on"


def test_a_refresh_drops_the_memories_tracked_after_its_frame(checkpoint):
    propagator = make(checkpoint)
    stepped(propagator, range(10), {1: [RED]})
    propagator.add_prompts(frame(3), {1: [RED]})
    assert sorted(propagator._session.objects[1].recent) == [1, 2], "frames 4-9 came before these clicks"
    for k in range(4, 10):
        propagator.step(frame(k), [1])
    assert sorted(propagator._session.objects[1].recent) == [1, 2, 4, 5, 6, 7, 8, 9]
    assert sorted(propagator._session.objects[1].cond) == [0, 3]


def test_retained_frames_keep_their_image_features_for_catch_up(checkpoint):
    propagator = load(checkpoint, feature_cache_frames=2)
    propagator.retain_frames(8)
    calls = []
    forward_image = propagator.model.forward_image
    propagator.model.forward_image = lambda image: calls.append(1) or forward_image(image)
    stepped(propagator, range(10), {1: [RED]})
    propagator.add_prompts(frame(3), {2: [BLUE]})
    for k in range(4, 10):
        propagator.step(frame(k), [2])
    assert len(calls) == 10, "every frame encoded once: catch-up reads the kept features"


def stepped_outputs(propagator: Sam2Propagator, f: Frame, batched: bool) -> dict[int, dict]:
    """sam2's outputs of every live object on `f`, in batches or one object at a time (as sam2 steps them)."""
    index = propagator._step_index(f.meta.stamp_ns)
    with propagator._inference():
        features = propagator._features(f)
        session = propagator._session
        if batched:
            return session.track_many(list(session.objects), index, features, reverse=False)
        return {i: session.track(i, index, features, reverse=False) for i in session.objects}


def test_the_objects_of_a_frame_run_as_batches_with_the_per_object_paths_masks(checkpoint):
    batched, alone = load(checkpoint), make(checkpoint)  # batched: hooked
    prompts = {i: [(40.0 + 50 * i, 100.0 + 10 * i)] for i in range(1, 5)}
    for propagator in (batched, alone):
        propagator.add_prompts(frame(0), prompts)
    calls = []
    batched.model.memory_attention.register_forward_hook(lambda module, args, out: calls.append(out.shape[1]))
    for k in range(1, 30):
        if k == 8:  # an object with fewer memories than the others for a while: a batch of its own
            for propagator in (batched, alone):
                propagator.add_prompts(frame(8), {9: [BLUE]})
        calls.clear()
        ours, reference = stepped_outputs(batched, frame(k), True), stepped_outputs(alone, frame(k), False)
        # The late object's memory lines up with the others' once it has 15 frames of object pointers.
        assert sorted(calls, reverse=True) == ([4] if k <= 8 else [4, 1] if k < 24 else [5]), f"frame {k}"
        for i, out in reference.items():
            for key in ("pred_masks", "obj_ptr", "object_score_logits"):
                assert torch.allclose(ours[i][key], out[key], rtol=1e-4, atol=1e-5), f"frame {k}, object {i}, {key}"


def test_a_checkpoint_that_is_no_state_dict_is_a_clear_error_and_safetensors_load(checkpoint, tmp_path):
    for name, content in (("list.pt", [1, 2]), ("object.pt", {"model": np.arange(3)}), ("empty.pt", {"model": {}})):
        torch.save(content, tmp_path / name)
        with pytest.raises(BackendError, match="is not a SAM2 checkpoint"):
            make(tmp_path / name)
    from safetensors.torch import save_file

    state = torch.load(checkpoint, weights_only=True)["model"]
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "tiny.safetensors")
    propagator = make(tmp_path / "tiny.safetensors")
    propagator.add_prompts(frame(0), {1: [RED]})
    assert 1 in propagator.step(frame(1))


@pytest.mark.parametrize(
    "override",
    [
        "++model._target_=builtins.print",  # hydra would instantiate it
        "++model.memory_encoder._target_=os.system",
        "model.image_encoder=1",  # replaces a node
        "++model.new_node.x=1",  # a new node
        "model.num_maskmem=${oc.env:HOME}",  # a string
        "model.num_maskmem=true",  # another kind than the config holds
        "~model.num_maskmem",
    ],
)
def test_config_overrides_that_are_more_than_numbers_are_refused_naming_the_parameter(checkpoint, override):
    with pytest.raises(BackendError, match=r"sam2\.config_overrides .* refused"):
        make(checkpoint, config_overrides=override)
