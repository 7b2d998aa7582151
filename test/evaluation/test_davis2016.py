"""DAVIS 2016 (real footage): reading its layout, and evaluate_dataset's scores checked by hand on it.

The doubles answer with the ground truth (truth_doubles.py): the propagator's box of the true mask
makes every frame's J a ratio computed here by hand, |mask| / |box|; its true mask makes J = F = 1.
"""

import json

import cv2
import numpy as np
import pytest
import torch
from real_footage import davis_root, davis_sequence
from truth_doubles import TruthOptions, TruthPointerDouble, TruthPropagatorDouble, box_of

from videomolmo_ros.evaluation.dataset_evaluation import ExpressionEvaluator, LocalWorkers, evaluate
from videomolmo_ros.evaluation.lockstep_run import EvalConfig
from videomolmo_ros.evaluation.video_dataset import DatasetError, VideoDataset
from videomolmo_ros.tools.dataset_eval import main

CPU = torch.device("cpu")
SEQUENCES = {"dog": "the dog", "blackswan": "the swan"}


def truth(sequence: str) -> list[np.ndarray]:
    _, annotations = davis_sequence(sequence)
    return [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 0 for p in sorted(annotations.glob("*.png"))]


def test_the_layout_is_read_with_a_query_per_video():
    dataset = VideoDataset(davis_root(), SEQUENCES)
    assert dataset.layout == "davis2016"
    refs = dataset.expressions()
    assert [(r.video, r.text) for r in refs] == [("blackswan", "the swan"), ("dog", "the dog")]
    sample = dataset.load(refs[1])
    frames, _ = davis_sequence("dog")
    assert [p.name for p in sample.frame_paths] == sorted(p.name for p in frames.glob("*.jpg"))
    expected = truth("dog")
    assert len(sample.masks) == len(expected) == 60
    assert all(np.array_equal(m, t) for m, t in zip(sample.masks, expected, strict=True)), "255 is the object"


def test_without_queries_it_says_how_to_give_them_and_names_the_videos():
    with pytest.raises(DatasetError, match=r'--query dog="the dog".*blackswan, breakdance, car-shadow, dog, libby'):
        VideoDataset(davis_root())
    with pytest.raises(DatasetError, match="no video cat in"):
        VideoDataset(davis_root(), {"cat": "the cat"})


@pytest.fixture(scope="module")
def box_report(tmp_path_factory):
    options = TruthOptions(str(davis_root()), ",".join(SEQUENCES), box=True)
    dataset = VideoDataset(davis_root(), SEQUENCES)
    pointer, propagator = TruthPointerDouble(options, CPU), TruthPropagatorDouble(options, CPU)
    config = EvalConfig(fps=24.0, frame_timeout_s=60.0, gif_frames=4)
    workers = LocalWorkers(ExpressionEvaluator(dataset, pointer, propagator, CPU, config))
    return evaluate(dataset.expressions(), workers, config, tmp_path_factory.mktemp("out"))


def test_the_report_j_matches_a_hand_check_of_the_frames(box_report):
    for result in box_report.sequences:
        masks = truth(result.name.split("__")[0])
        assert result.timeouts == 0 and len(result.frame_j) == len(masks)
        for k in (1, 10, len(masks) // 2, len(masks) - 1):  # tracked after the first grounding
            hand = masks[k].sum() / box_of(masks[k]).sum()  # the mask lies inside its box: IoU = area ratio
            assert result.frame_j[k] == pytest.approx(hand, abs=1e-9), (result.name, k)
        answered = [j for j in result.frame_j if j is not None]
        assert result.j == pytest.approx(np.mean(answered), abs=1e-9)
        assert result.jf == pytest.approx((result.j + result.f) / 2, abs=1e-9)
        assert 0.3 < result.j < 0.95, "a box is a poor mask of a dog or a swan"
        assert (result.pointing.precision, result.pointing.recall) == (1.0, 1.0), "the points lie on the object"
        assert result.id_switches == 0
    assert box_report.overall.jf == pytest.approx(np.mean([r.jf for r in box_report.sequences]))


def test_the_cli_scores_the_true_masks_perfectly_on_every_frame_it_answered(tmp_path, capsys):
    root, out = str(davis_root()), tmp_path / "out"
    queries = tmp_path / "queries.json"
    queries.write_text(json.dumps({"blackswan": "the swan"}))
    args = [root, "-o", str(out), "--queries", str(queries), "--query", "dog=the dog", "--device", "cpu"]
    args += ["--pointer", "truth_doubles:TruthPointerDouble", "--propagator", "truth_doubles:TruthPropagatorDouble"]
    for double in ("TruthPointerDouble", "TruthPropagatorDouble"):
        args += ["--param", f"{double}.davis_root={root}", "--param", f"{double}.sequences=dog,blackswan"]
    assert main(args) == 0
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["sequences"]] == ["blackswan__0", "dog__0"]
    for sequence in report["sequences"]:
        frames = len(sequence["frame_j"])
        unanswered = sum(j == 0 for j in sequence["frame_j"])
        assert unanswered <= 1, "only the first frame is tracked before its grounding returns"
        assert set(sequence["frame_j"]) <= {0.0, 1.0}
        assert sequence["jf"] == pytest.approx((frames - unanswered) / frames)
    assert report["config"]["layout"] == "davis2016" and "| dog__0 | the dog |" in capsys.readouterr().out
