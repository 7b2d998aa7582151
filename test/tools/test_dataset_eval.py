"""Offline dataset evaluation: the reader, COCO RLE, the lockstep evaluator and its CLI, on synthetic video."""

import json

import numpy as np
import pytest
import torch
from bad_inputs import memory_ceiling, png_claiming, truncate
from eval_datasets import FPS, FRAMES, make_davis_layout, make_mevis_layout, rendered, write_frames
from oracle_doubles import (
    ColorOraclePointerDouble,
    ColorOraclePropagatorDouble,
    OracleOptions,
    WrongColourPointerDouble,
)
from PIL import Image

from videomolmo_ros.contracts.interfaces import NoOptions
from videomolmo_ros.evaluation.dataset_evaluation import ExpressionEvaluator, LocalWorkers, evaluate
from videomolmo_ros.evaluation.lockstep_run import EvalConfig
from videomolmo_ros.evaluation.video_dataset import DatasetError, VideoDataset, rle_decode, rle_encode
from videomolmo_ros.tools.dataset_eval import main

CPU = torch.device("cpu")
ORACLE = ["--pointer", "oracle_doubles:ColorOraclePointerDouble"]
ORACLE += ["--propagator", "oracle_doubles:ColorOraclePropagatorDouble"]

# ---------------------------------------------------------------- COCO RLE


def test_rle_decodes_a_hand_encoded_mask():
    # 3 x 3, column-major runs 0 off, 3 on, 5 off, 1 on. The fourth count is stored as its
    # difference from the second, 1 - 3 = -2: 5-bit group 0b11110 (sign bit set, nothing more)
    # -> chr(48 + 30) = "N".
    mask = rle_decode({"size": [3, 3], "counts": "035N"})
    assert mask.tolist() == [[True, False, False], [True, False, False], [True, False, True]]


def test_rle_long_runs_take_several_characters():
    # 100 = 0b11_00100: low group 4 with the "more" bit (48 + 4 + 32 = "T"), then 3 ("3").
    assert rle_encode(np.zeros((10, 10), bool))["counts"] == "T3"
    assert not rle_decode({"size": [10, 10], "counts": "T3"}).any()


@pytest.mark.parametrize("seed", range(5))
def test_rle_round_trip(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(1, 60, size=2)
    mask = rng.random((height, width)) < rng.random()
    mask[: rng.integers(0, height), : rng.integers(0, width)] = True  # long runs: multi-character counts
    assert np.array_equal(rle_decode(rle_encode(mask)), mask)


@pytest.mark.parametrize("mask", [np.ones((4, 5), bool), np.zeros((4, 5), bool), np.eye(6, dtype=bool)])
def test_rle_round_trip_of_edge_cases(mask):
    assert np.array_equal(rle_decode(rle_encode(mask)), mask)


def test_rle_that_does_not_cover_its_size_is_refused():
    with pytest.raises(DatasetError, match="cover"):
        rle_decode({"size": [3, 3], "counts": "035"})


# ---------------------------------------------------------------- synthetic datasets


@pytest.fixture(scope="module")
def davis_root(tmp_path_factory):
    return make_davis_layout(tmp_path_factory.mktemp("ref_davis"))


@pytest.fixture(scope="module")
def mevis_root(tmp_path_factory):
    return make_mevis_layout(tmp_path_factory.mktemp("mevis"))


def test_reader_gives_the_rendered_masks_in_the_davis_layout(davis_root):
    dataset = VideoDataset(davis_root)
    assert dataset.layout == "annotations"
    refs = dataset.expressions()
    assert [(r.name, r.text) for r in refs] == [("discs__0", "the red ball"), ("discs__1", "the blue ball")]
    sample = dataset.load(refs[1])
    assert [p.name for p in sample.frame_paths] == [f"{k:05d}.jpg" for k in range(FRAMES)]
    assert list(sample.object_masks) == ["2"]
    for mask, (_, truth) in zip(sample.masks, rendered(), strict=True):
        assert np.array_equal(mask, truth["blue"])


def test_reader_gives_unions_and_absent_objects_in_the_mevis_layout(mevis_root):
    dataset = VideoDataset(mevis_root)
    assert dataset.layout == "mevis"
    sample = dataset.load(dataset.expressions()[2])
    assert list(sample.object_masks) == ["1", "2"]
    truth = rendered()
    assert np.array_equal(sample.masks[0], truth[0][1]["red"] | truth[0][1]["blue"])
    assert not sample.object_masks["2"][-1].any(), "a null RLE is an object absent from the frame"
    assert np.array_equal(sample.masks[-1], truth[-1][1]["red"])


def test_a_frame_without_an_annotation_png_is_not_scored(tmp_path):
    root = make_davis_layout(tmp_path)
    (root / "Annotations" / "discs" / "00003.png").unlink()
    sample = VideoDataset(root).load(VideoDataset(root).expressions()[0])
    assert sample.masks[3] is None and sample.masks[2] is not None


def test_a_split_without_masks_is_refused_with_the_reason(tmp_path):
    write_frames(tmp_path)
    (tmp_path / "meta_expressions.json").write_text(json.dumps({"videos": {}}))
    with pytest.raises(DatasetError, match="no ground truth"):
        VideoDataset(tmp_path)


def test_unknown_videos_are_named(davis_root):
    with pytest.raises(DatasetError, match="nope"):
        VideoDataset(davis_root).expressions(["discs", "nope"])


# ---------------------------------------------------------------- the evaluator


def run_eval(root, out, pointer_class=ColorOraclePointerDouble, **config):
    dataset = VideoDataset(root)
    pointer = pointer_class(OracleOptions(), CPU)
    propagator = ColorOraclePropagatorDouble(NoOptions(), CPU)
    config = EvalConfig(fps=FPS, frame_timeout_s=10.0, **config)
    workers = LocalWorkers(ExpressionEvaluator(dataset, pointer, propagator, CPU, config))
    return evaluate(dataset.expressions(), workers, config, out)


@pytest.fixture(scope="module")
def davis_run(davis_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("davis_out")
    return run_eval(davis_root, out), out


def test_the_oracle_scores_near_one_with_every_frame_tracked(davis_run):
    report, _ = davis_run
    assert [r.name for r in report.sequences] == ["discs__0", "discs__1"]
    for result in report.sequences:
        # The first frame is tracked while its grounding runs: it alone may have no mask.
        assert min(result.frame_j[1:]) > 0.98, result.frame_j
        assert result.jf >= 0.89 and result.j >= 0.89
        assert (result.pointing.precision, result.pointing.recall) == (1.0, 1.0)
        assert result.frame_count.exact == 1.0 and result.frame_count_pairs == [
            (1, 1),
            (1, 1),
        ]  # frames 0 and 5 at 2 Hz
        assert result.id_switches == 0 and result.track_ids == 1 and result.idf1 >= 0.9  # the first frame: no mask
        assert result.timeouts == 0 and result.counters["frames_tracked"] == FRAMES
        assert "frames_skipped_tracking_busy" not in result.counters
        assert result.tracking_latency is not None and result.grounding_latency is not None
    assert report.overall.jf == pytest.approx(np.mean([r.jf for r in report.sequences]))


def test_report_table_gifs_and_plots_are_written(davis_run):
    report, out = davis_run
    written = json.loads((out / "report.json").read_text())
    assert written["overall"]["jf"] == pytest.approx(report.overall.jf)
    assert [s["name"] for s in written["sequences"]] == ["discs__0", "discs__1"]
    assert written["sequences"][0]["pointing"]["f1"] == 1.0 and written["config"]["fps"] == FPS
    table = (out / "table.md").read_text()
    assert "| discs__0 | the red ball |" in table and "| discs__1 | the blue ball |" in table
    assert "**mean** (2)" in table
    for name in ("discs__0", "discs__1"):
        with Image.open(out / f"{name}.gif") as gif:
            assert gif.n_frames == FRAMES and max(gif.size) <= 320
    with Image.open(out / "plots.png") as plots:
        assert plots.size[0] > 300 and plots.size[1] > 300


def test_pointing_at_the_wrong_object_scores_near_zero(mevis_root, tmp_path):
    report = run_eval(mevis_root, tmp_path, WrongColourPointerDouble, gif_frames=4)
    red, blue, both = report.sequences
    for result in (red, blue):
        assert result.jf < 0.1 and result.pointing.f1 == 0.0
    assert both.frame_count.exact == 0.0, "the wrong double names no object when every colour is asked for"
    assert report.overall.jf < 0.1
    with Image.open(tmp_path / "discs__0.gif") as gif:
        assert gif.n_frames == 4, "10 frames capped at 4: every third"


def test_the_oracle_finds_both_objects_of_a_mevis_expression(mevis_root, tmp_path):
    report = run_eval(mevis_root, tmp_path)
    both = report.sequences[2]
    assert both.text == "the red and the blue ball"
    assert min(both.frame_j[1:-1]) > 0.98 and both.frame_count.exact == 1.0 and both.track_ids == 2
    assert both.frame_j[-1] < 0.9, "the truth has blue gone (a null RLE) from the last frame"
    assert report.sequences[0].jf >= 0.89


# ---------------------------------------------------------------- command line


def test_cli_evaluates_the_synthetic_set(davis_root, tmp_path, capsys):
    out = tmp_path / "out"
    code = main([str(davis_root), "-o", str(out), *ORACLE, "--max-expressions", "1", "--device", "cpu"])
    printed = capsys.readouterr().out
    assert code == 0
    assert "| discs__0 | the red ball |" in printed and "discs__1" not in printed
    assert {p.name for p in out.iterdir()} == {"report.json", "table.md", "plots.png", "results.jsonl", "discs__0.gif"}
    config = json.loads((out / "report.json").read_text())["config"]
    assert config["pointer"] == "oracle_doubles:ColorOraclePointerDouble" and config["layout"] == "annotations"


def test_cli_params_are_typed_as_their_defaults(davis_root, tmp_path):
    params = [
        "--param",
        "ColorOraclePointerDouble.delay_s=0",
        "--param",
        "context_fps=5",
        "--param",
        "tracker.confirm_frames=1",
    ]
    assert (
        main([str(davis_root), "-o", str(tmp_path), *ORACLE, "--videos", "discs", "--max-expressions", "1", *params])
        == 0
    )
    config = json.loads((tmp_path / "report.json").read_text())["config"]
    assert config["pipeline"]["context_fps"] == 5.0 and config["pipeline"]["tracker"]["confirm_frames"] == 1
    assert config["params"]["ColorOraclePointerDouble.delay_s"] == 0.0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pointer", "no_such_model"], "unknown Pointer backend 'no_such_model'"),
        (["--propagator", "sam2"], "SAM2 checkpoint not found (offline: HF_HUB_OFFLINE is set"),
        (["--param", "context_frames=many"], "context_frames=many: expected a value of type int"),
        (["--param", "sam2.checkpoint=x"], "--param sam2.checkpoint: unknown"),
    ],
)
def test_cli_exits_1_with_the_reason(davis_root, tmp_path, capsys, extra, message):
    args = [str(davis_root), "-o", str(tmp_path), *ORACLE, *extra]
    assert main(args) == 1
    assert message in capsys.readouterr().err


def test_cli_exits_1_for_a_missing_dataset_root(tmp_path, capsys):
    assert main([str(tmp_path / "missing"), "-o", str(tmp_path / "out"), *ORACLE]) == 1
    assert "missing is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- bad input: one line, exit 1, nothing allocated


def one_error_line(capsys) -> str:
    """The only line the tool wrote to stderr (no traceback)."""
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err.strip()


def test_an_rle_claiming_a_huge_size_is_refused_before_anything_is_allocated():
    # Eight characters: a background run of 0 and a foreground run of 10^10 pixels, which covers the
    # 100,000 x 100,000 it claims exactly; decoding it would take 9.3 GiB.
    with memory_ceiling(), pytest.raises(DatasetError, match=r"100000x100000 .* more than the 67108864 allowed"):
        rle_decode({"size": [100_000, 100_000], "counts": "0PPigPZ9"})


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ({"size": [20, 20], "counts": "T3"}, r"RLE of 20x20 .* for a frame of 10x10"),
        ({"size": [10], "counts": "T3"}, "without a size"),
        ({"size": [10, 10], "counts": {"a": 1}}, "neither a string nor a list"),
        ("T3", "without a size"),
    ],
)
def test_a_malformed_rle_or_one_of_another_size_than_its_frame_is_refused(rle, message):
    with pytest.raises(DatasetError, match=message):
        rle_decode(rle, (10, 10))


def test_cli_refuses_a_mask_dict_rle_claiming_a_huge_size(tmp_path, capsys):
    root = make_mevis_layout(tmp_path / "mevis")
    mask_dict = json.loads((root / "mask_dict.json").read_text())
    mask_dict["10"][3] = {"size": [100_000, 100_000], "counts": "0PPigPZ9"}
    (root / "mask_dict.json").write_text(json.dumps(mask_dict))
    out = tmp_path / "out"
    with memory_ceiling():
        assert main([str(root), "-o", str(out), *ORACLE, "--max-expressions", "1", "--device", "cpu"]) == 1
    line = one_error_line(capsys)
    assert line.startswith("evaluate_dataset: error: 1 video(s) failed") and "100000x100000" in line
    assert f"discs: DatasetError: {root / 'mask_dict.json'}: anno_id 10, mask 3: " in line
    assert_failed_without_gif(out, "discs")


@pytest.mark.parametrize(
    ("damaged", "spoil", "problem"),
    [
        ("JPEGImages/discs/00004.jpg", truncate, "truncated"),
        ("Annotations/discs/00004.png", truncate, ""),
        ("JPEGImages/discs/00004.jpg", lambda p: p.write_bytes(png_claiming(100_000, 100_000)), "more than 8192"),
        ("JPEGImages/discs/00000.jpg", lambda p: p.write_bytes(b"not a jpeg"), "not an image file"),
    ],
    ids=["truncated-jpeg", "truncated-png", "jpeg-claiming-10^10-pixels", "not-an-image"],
)
def test_cli_names_a_damaged_image_file_and_exits_1(tmp_path, capsys, damaged, spoil, problem):
    root = make_davis_layout(tmp_path / "davis")
    spoil(root / damaged)
    out = tmp_path / "out"
    with memory_ceiling():
        assert main([str(root), "-o", str(out), *ORACLE, "--max-expressions", "1", "--device", "cpu"]) == 1
    line = one_error_line(capsys)
    assert line.startswith("evaluate_dataset: error: 1 video(s) failed") and problem in line
    assert "): discs: " in line and f"Error: {root / damaged}: " in line
    assert_failed_without_gif(out, "discs")


def assert_failed_without_gif(out, video):
    """The report counts the video failed (after its retry), and no GIF or partial file of it is left."""
    report = json.loads((out / "report.json").read_text())
    assert report["failed_videos"] == 1 and report["failed"][0]["video"] == video
    assert report["failed"][0]["attempts"] == 2 and report["sequences"] == []
    assert {p.name for p in out.iterdir()} == {"report.json", "table.md", "plots.png", "results.jsonl"}
