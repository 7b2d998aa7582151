"""docs/parameters.md is what the node's declarations generate, so the reference cannot drift from the code."""

from parameter_reference import REFERENCE, documented_parameters

from videomolmo_ros.node import parameter_docs


def test_the_committed_parameter_reference_is_the_one_the_declarations_generate():
    stale = f"docs/parameters.md differs from the node's declarations: regenerate it with `{parameter_docs.COMMAND}`"
    assert REFERENCE.read_text() == parameter_docs.markdown(), stale


def test_the_reference_gives_each_parameter_its_range_and_who_may_change_it():
    lines = REFERENCE.read_text().splitlines()
    rows = {row.split(" | ")[0].strip("| `"): row for row in lines if row.startswith("| `")}
    assert " | 0 to 9 | unconfigured | " in rows["mask_png_compression"]
    assert " | any time | " in rows["tracker.confirm_frames"]
    assert " | read-only | " in rows["molmo2.server_url"] and " | read-only | " in rows["cameras.<name>.image_topic"]
    assert "`image`; another camera: `<name>/image`" in rows["cameras.<name>.image_topic"]
    assert {"videomolmo.feature_cache", "sam2.memory_frames"} <= documented_parameters("main"), "every backend's"
