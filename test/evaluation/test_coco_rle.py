"""The in-project COCO RLE codec (video_dataset, no compiled dependency at run time) equals pycocotools."""

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from videomolmo_ros.evaluation.video_dataset import rle_decode, rle_encode

# pycocotools 2.0.11 warns on numpy 2 about its own array conversion: noise from the reference.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def coco_encode(mask: np.ndarray) -> dict:
    """pycocotools's compressed RLE of a bool mask, counts as text (as mask_dict.json stores it)."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def random_masks(seed: int, count: int) -> list[np.ndarray]:
    """Noise, blobs with long runs, thin lines, empty and full masks, in sizes from 1 x 1 to 720p."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(count):
        height, width = rng.integers(1, [90, 90]) if rng.random() < 0.8 else rng.choice([(720, 1280), (480, 854)])
        kind = rng.integers(4)
        if kind == 0:
            mask = rng.random((height, width)) < rng.random()
        elif kind == 1:
            mask = np.zeros((height, width), bool)
            for _ in range(rng.integers(1, 4)):
                top, left = rng.integers(0, height), rng.integers(0, width)
                mask[top : top + rng.integers(1, height + 1), left : left + rng.integers(1, width + 1)] ^= True
        elif kind == 2:
            mask = np.zeros((height, width), bool)
            mask[:, rng.integers(0, width)] = True
        else:
            mask = np.full((height, width), bool(rng.integers(2)))
        masks.append(mask)
    return masks


@pytest.mark.parametrize("seed", range(4))
def test_decoding_pycocotools_rle_gives_its_masks(seed):
    for mask in random_masks(seed, 60):
        rle = coco_encode(mask)
        assert np.array_equal(rle_decode(rle), coco_mask.decode({**rle, "counts": rle["counts"].encode()}))
        assert np.array_equal(rle_decode(rle), mask)


@pytest.mark.parametrize("seed", range(4))
def test_encoding_gives_pycocotools_counts_string(seed):
    for mask in random_masks(seed + 100, 60):
        assert rle_encode(mask) == coco_encode(mask)


def test_uncompressed_counts_decode_as_pycocotools_decodes_them():
    rng = np.random.default_rng(7)
    for _ in range(40):
        height, width = (int(v) for v in rng.integers(1, 40, 2))
        runs = rng.multinomial(height * width, rng.dirichlet(np.ones(rng.integers(1, 12)))).tolist()
        expected = coco_mask.decode(coco_mask.frPyObjects({"size": [height, width], "counts": runs}, height, width))
        assert np.array_equal(rle_decode({"size": [height, width], "counts": runs}), expected)
