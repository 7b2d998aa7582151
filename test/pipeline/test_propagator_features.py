"""The second appearance source: the propagator's own image features pooled under a mask (tracker.descriptor).

The real SAM2 propagator runs here on the tests' tiny random-weight checkpoint: its features say
nothing about how well objects are told apart (bench/bench_reid.py needs the real checkpoint for
that), so these tests check the rule (what is pooled, normalised, refused, counted) and that the
same pixels are recognised; ColourFeaturesPropagatorDouble gives features that do tell colours apart.
"""

import numpy as np
import pytest
import torch
from oracle_doubles import ColourFeaturesPropagatorDouble, LocalOptions, LocalPropagatorDouble, ScriptedPointerDouble
from polling import wait_for
from sink_double import ListSinkDouble
from test_reid import disc_frame as disc_image
from tiny_sam2 import FEATURES, tiny_options, write_tiny_sam2

from videomolmo_ros.backends import registry
from videomolmo_ros.contracts.frames import Frame, FrameMeta
from videomolmo_ros.contracts.grounding import GroundingMode, GroundingResult
from videomolmo_ros.contracts.interfaces import MaskPropagator
from videomolmo_ros.pipeline.appearance import (
    ColourTextureDescriptor,
    FeatureMap,
    PropagatorFeatureDescriptor,
    descriptor_for,
)
from videomolmo_ros.pipeline.commands import CommandRequest
from videomolmo_ros.pipeline.pipeline import PerceptionPipeline, PipelineConfig
from videomolmo_ros.pipeline.track_manager import TrackerConfig, TrackManager, TrackState

CPU = torch.device("cpu")
SECOND = 10**9
SIZE = (240, 320)
RED, BLUE = (220, 30, 30), (30, 60, 220)


@pytest.fixture(scope="module")
def sam2(tmp_path_factory):
    """The real Sam2Propagator on random tiny weights."""
    checkpoint = write_tiny_sam2(tmp_path_factory.mktemp("sam2"))
    return registry.create("sam2", MaskPropagator, CPU, tiny_options(checkpoint))


def disc_frame(stamp_ns: int, *discs) -> tuple[Frame, list[np.ndarray]]:
    """A frame with discs (x, y, r, rgb) on grey, and their masks."""
    image, masks = disc_image(*discs, size=SIZE)
    return Frame(FrameMeta(stamp_ns // SECOND, stamp_ns, "cam"), torch.from_numpy(image)), masks


def test_sam2s_features_are_averaged_under_the_mask_per_feature_cell_and_l2_normalised(sam2):
    descriptor = descriptor_for("propagator_features", sam2)
    frame, _ = disc_frame(SECOND, (80, 120, 20, RED))
    picture = descriptor.look(frame)
    channels = picture.features.shape[0]
    assert tuple(picture.features.shape[1:]) == (FEATURES, FEATURES) and picture.shape == SIZE
    left_half = np.zeros(SIZE, bool)
    left_half[:, : SIZE[1] // 2] = True  # exactly the left half of the feature cells
    view = descriptor.describe(picture, left_half, (0, 0, SIZE[1] // 2 - 1, SIZE[0] - 1))
    expected = picture.features[:, :, : FEATURES // 2].mean(dim=(1, 2)).numpy()
    assert view.shape == (channels,) and np.linalg.norm(view) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(view, expected / np.linalg.norm(expected), atol=1e-5)
    assert descriptor.similarity(view, view) == pytest.approx(1.0, abs=1e-6)
    assert descriptor.similarity(view, -view) == pytest.approx(0.0, abs=1e-6)
    across, along = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert descriptor.similarity(across, along) == pytest.approx(0.5), "cosine -1..1 mapped to 0..1"
    assert descriptor.similarity(2 * across, across) == pytest.approx(1.0), "a gallery's mean views need not be unit"


def test_a_zero_pixel_mask_or_features_that_are_not_finite_describe_nothing(sam2):
    descriptor = descriptor_for("propagator_features", sam2)
    frame, [mask] = disc_frame(SECOND, (80, 120, 20, RED))
    picture = descriptor.look(frame)
    assert descriptor.describe(picture, np.zeros(SIZE, bool), (60, 100, 100, 140)) is None
    broken = FeatureMap(torch.full_like(picture.features, float("nan")), picture.shape)
    assert descriptor.describe(broken, mask, (60, 100, 100, 140)) is None


def learnt_then_lost(descriptor, frame: Frame, mask: np.ndarray) -> tuple[TrackManager, int]:
    """A tracker whose one track learnt its look on `frame` at 0-0.4 s, then was lost at 1 s."""
    tracker = TrackManager(TrackerConfig(confirm_frames=1), descriptor=descriptor)
    [track_id] = tracker.associate("c", [(80, 120, "a")], SIZE, 0).ids
    for k in range(3):
        tracker.update_from_masks("c", {track_id: (mask, 0.9)}, k * SECOND // 5, descriptor.look(frame))
    tracker.update_from_masks("c", {}, SECOND)
    return tracker, track_id


def test_a_track_learns_sam2s_features_and_its_own_view_coming_back_takes_its_id(sam2):
    """Through the real propagator code: the same pixels on a later frame encode to the same features."""
    descriptor = descriptor_for("propagator_features", sam2)
    frame, [mask] = disc_frame(SECOND, (80, 120, 20, RED))
    tracker, red = learnt_then_lost(descriptor, frame, mask)
    [track] = tracker.tracks("c")
    assert track.state is TrackState.LOST and track.gallery is not None
    assert all(np.isfinite(v).all() and v.shape == (sam2.image_features(frame).shape[0],) for v in track.gallery.views)
    again, _ = disc_frame(40 * SECOND, (80, 120, 20, RED))  # back 39 s later (Hiera's features depend on position)
    association = tracker.associate("c", [(80, 120, "a")], SIZE, 40 * SECOND, None, lambda _: descriptor.look(again))
    assert association.ids == [red] and association.reattached == 1


def test_features_that_are_not_finite_never_take_an_id_and_are_counted():
    descriptor = PropagatorFeatureDescriptor(ColourFeaturesPropagatorDouble(LocalOptions(), CPU))
    frame, [mask] = disc_frame(SECOND, (80, 120, 20, RED))
    tracker, red = learnt_then_lost(descriptor, frame, mask)
    picture = descriptor.look(frame)
    broken = FeatureMap(torch.full_like(picture.features, float("nan")), picture.shape)
    association = tracker.associate("c", [(80, 120, "a")], SIZE, 2 * SECOND, None, lambda _: broken)
    assert red not in association.ids and association.reattached == 0 and association.undescribed == 1
    assert association.ids[0] is not None, "a new track"


def test_returning_objects_keep_their_own_ids_by_propagator_features():
    """Two discs come back in each other's places: each takes its own LOST id by its features, not by position."""
    descriptor = PropagatorFeatureDescriptor(ColourFeaturesPropagatorDouble(LocalOptions(), CPU))
    tracker = TrackManager(TrackerConfig(confirm_frames=1), descriptor=descriptor)
    red, blue = tracker.associate("c", [(80, 120, "d"), (240, 120, "d")], SIZE, 0).ids
    frame, (red_mask, blue_mask) = disc_frame(0, (80, 120, 20, RED), (240, 120, 20, BLUE))
    tracker.update_from_masks("c", {red: (red_mask, 0.9), blue: (blue_mask, 0.9)}, 0, descriptor.look(frame))
    tracker.update_from_masks("c", {}, SECOND)
    swapped, _ = disc_frame(5 * SECOND, (80, 120, 20, BLUE), (240, 120, 20, RED))
    points = [(80, 120, "d"), (240, 120, "d")]
    association = tracker.associate("c", points, SIZE, 5 * SECOND, None, lambda _: descriptor.look(swapped))
    assert association.ids == [blue, red] and association.reattached == 2


def test_a_view_that_describes_nothing_is_not_learnt_and_is_counted():
    descriptor = PropagatorFeatureDescriptor(ColourFeaturesPropagatorDouble(LocalOptions(), CPU))
    tracker = TrackManager(TrackerConfig(confirm_frames=1), descriptor=descriptor)
    [track_id] = tracker.associate("c", [(80, 120, "a")], SIZE, 0).ids
    frame, [mask] = disc_frame(0, (80, 120, 20, RED))
    picture = descriptor.look(frame)
    broken = FeatureMap(torch.full_like(picture.features, float("nan")), picture.shape)
    tracker.update_from_masks("c", {track_id: (mask, 0.9)}, 0, broken)
    [track] = tracker.tracks("c")
    assert track.gallery is None and tracker.undescribed == 1


def test_the_descriptor_is_chosen_by_name_and_a_propagator_without_features_is_refused():
    with_features = ColourFeaturesPropagatorDouble(LocalOptions(), CPU)
    assert isinstance(descriptor_for("colour_texture", None), ColourTextureDescriptor)
    assert isinstance(descriptor_for("propagator_features", with_features), PropagatorFeatureDescriptor)
    with pytest.raises(ValueError, match="colour_texture or propagator_features"):
        descriptor_for("sift", with_features)
    config = PipelineConfig(tracker=TrackerConfig(descriptor="propagator_features"))
    for propagator in (LocalPropagatorDouble(LocalOptions(), CPU), None):
        with pytest.raises(ValueError, match=r"exposes its image features.*use colour_texture"):
            PerceptionPipeline(config, CPU, None, propagator, ListSinkDouble())


def test_frames_with_nothing_tracked_cost_no_encoder_pass_for_appearance(sam2):
    """Free means free: a command whose object is not in view steps no object, so no frame is encoded to learn from."""
    propagator = sam2.for_another_camera()
    encoded = []
    forward_image = propagator.model.forward_image
    propagator.model.forward_image = lambda image: encoded.append(1) or forward_image(image)
    config = PipelineConfig(tracker=TrackerConfig(descriptor="propagator_features"))
    pipeline = PerceptionPipeline(config, CPU, ScriptedPointerDouble(GroundingResult(())), propagator, ListSinkDouble())
    tracked = lambda: pipeline.counters.snapshot().get("frames_tracked", 0)  # noqa: E731
    pipeline.start()
    try:
        pipeline.submit_command(CommandRequest("", "the red cup", GroundingMode.TRACK))
        for k in range(5):
            frame, _ = disc_frame(SECOND + k * SECOND // 10, (80, 120, 20, RED))
            pipeline.submit_frame(frame.image.numpy(), frame.meta.stamp_ns, "cam")
            assert wait_for(lambda k=k: tracked() > k, 30), "each frame tracked (stepped, with no object)"
    finally:
        pipeline.close()
        propagator.model.forward_image = forward_image
    assert encoded == []
