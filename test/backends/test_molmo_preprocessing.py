"""Molmo v1 preprocessing: crop selection, crop contents, token layout and prompt, on synthetic frames.

The expected numbers are worked out by hand from Molmo's rules: crops are 336 px (24 patches of
14 px), inner windows 16 patches (224 px) with margins of 4 patches, pooled 2x2, so a crop has
12 x 12 tokens and the joined crops a grid of (rows * 8 + 4) x (cols * 8 + 4) tokens.
"""

import numpy as np
import pytest
import torch
from tiny_molmo2 import byte_level_tokenizer
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

from videomolmo_ros.backends.videomolmo.preprocessing import (
    IM_COL,
    IM_END,
    IM_PATCH,
    IM_START,
    MOLMO_V1,
    NO_TOKEN,
    build_model_inputs,
    crop_tiling,
    image_token_count,
    preprocess_frame,
    resize_and_pad,
    select_tiling,
    user_turn,
)

PROMPT = "Point to the red mug"
CROP, STRIDE, PATCH = 336, 224, 14


@pytest.fixture(scope="module")
def tokenizer():
    return byte_level_tokenizer(["<|endoftext|>", IM_START, IM_END, IM_PATCH, IM_COL], eos_token="<|endoftext|>")


def random_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def normalized(pixels: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(OPENAI_CLIP_MEAN)[:, None, None]
    std = torch.tensor(OPENAI_CLIP_STD)[:, None, None]
    return (pixels - mean) / std


def unpatchify(patches: torch.Tensor) -> torch.Tensor:
    """576 x 588 patches of one crop -> 3 x 336 x 336 pixels."""
    grid = patches.reshape(24, 24, PATCH, PATCH, 3)
    return grid.permute(4, 0, 2, 1, 3).reshape(3, CROP, CROP)


def letterboxed_crops_source(frame: np.ndarray, tiling: tuple[int, int]) -> torch.Tensor:
    """The normalised frame letterboxed to the size its crops are cut from."""
    pixels = torch.from_numpy(frame).permute(2, 0, 1).float() / 255
    size = (tiling[0] * STRIDE + 112, tiling[1] * STRIDE + 112)
    return normalized(resize_and_pad(pixels, size)[0])


def test_640x480_gives_seven_crops_and_740_image_tokens(tokenizer):
    # 480 - 112 = 368 rows need 2 windows of 224, 640 - 112 = 528 columns need 3; 2 x 3 upscales
    # least. Joined grid: (2 * 8 + 4) x (3 * 8 + 4) = 20 x 28 tokens, each row closed by <im_col>,
    # between <im_start> and <im_end>: 2 + 20 * 29 = 582; global view 2 + 12 * 13 = 158; 740 in all.
    frame = preprocess_frame(random_frame(480, 640))
    assert frame.tiling == (2, 3)
    assert frame.n_crops == 7
    assert image_token_count(frame.tiling) == 740
    inputs = build_model_inputs(tokenizer, PROMPT, frame)
    text = tokenizer.encode(user_turn(PROMPT), add_special_tokens=False)
    assert inputs["input_ids"].shape == (1 + 740 + len(text),)
    patch_id = tokenizer.convert_tokens_to_ids(IM_PATCH)
    assert int((inputs["input_ids"] == patch_id).sum()) == 144 + 20 * 28


@pytest.mark.parametrize("height,width", [(720, 1280), (1080, 1920)])
def test_large_frames_hit_the_13_crop_cap(height, width):
    # No grid of at most 12 crops covers these without shrinking; 3 x 4 shrinks least.
    # Joined grid 28 x 36: 158 + 2 + 28 * 37 = 1196 image tokens.
    frame = preprocess_frame(random_frame(height, width))
    assert frame.tiling == (3, 4)
    assert frame.images.shape == (13, 576, 588)
    assert image_token_count(frame.tiling) == 1196


def test_tiling_rule():
    assert select_tiling(224, 224, 224, 12) == (1, 1)  # exact fit
    assert select_tiling(225, 224, 224, 12) == (2, 1)  # a pixel more needs a second row
    assert select_tiling(200, 200, 224, 12) == (1, 1)  # the least upscaling
    assert select_tiling(224 * 20, 224, 224, 12) == (12, 1)  # all shrink: the least shrinking
    assert select_tiling(100, 100, 224, 1) == (1, 1)
    # equal scale for 2 x 3 and 2 x 4: fewer crops win
    assert crop_tiling(480, 640) == (2, 3)


def test_crops_are_the_overlapping_squares_of_the_letterboxed_frame():
    image = random_frame(480, 640)
    frame = preprocess_frame(image)
    source = letterboxed_crops_source(image, frame.tiling)
    for k, crop in enumerate(frame.images[1:]):
        i, j = divmod(k, frame.tiling[1])
        expected = source[:, i * STRIDE : i * STRIDE + CROP, j * STRIDE : j * STRIDE + CROP]
        torch.testing.assert_close(unpatchify(crop), expected, rtol=0, atol=0)
    # neighbours share 112 px (the two 4-patch margins)
    torch.testing.assert_close(unpatchify(frame.images[1])[:, :, STRIDE:], unpatchify(frame.images[2])[:, :, :112])
    pixels = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    global_view = normalized(resize_and_pad(pixels, (CROP, CROP))[0])
    torch.testing.assert_close(unpatchify(frame.images[0]), global_view, rtol=0, atol=0)


def patch_positions(input_ids: torch.Tensor, tokenizer) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the global view's 144 <im_patch> tokens, and of the joined grid's as a grid."""
    ids = input_ids.numpy()
    second_start = np.flatnonzero(ids == tokenizer.convert_tokens_to_ids(IM_START))[1]
    patches = np.flatnonzero(ids == tokenizer.convert_tokens_to_ids(IM_PATCH))
    cols = np.flatnonzero(ids == tokenizer.convert_tokens_to_ids(IM_COL))
    high_res = patches[patches > second_start]
    width = int(np.count_nonzero(high_res < cols[cols > second_start][0]))
    return patches[patches < second_start], high_res.reshape(-1, width)


@pytest.mark.parametrize("height,width", [(480, 640), (720, 1280), (300, 200)])
def test_image_input_idx_places_each_pooled_token_once_in_order(tokenizer, height, width):
    image = random_frame(height, width)
    frame = preprocess_frame(image)
    inputs = build_model_inputs(tokenizer, PROMPT, frame)
    idx = inputs["image_input_idx"]
    assert idx.shape == (frame.n_crops, 144) and idx.dtype == torch.int64
    global_positions, grid = patch_positions(inputs["input_ids"], tokenizer)
    assert np.array_equal(idx[0].numpy(), global_positions)  # global view: row-major, all used
    valid = idx[idx >= 0].numpy()
    assert sorted(valid) == sorted(np.concatenate([global_positions, grid.ravel()]))  # each patch once
    assert set(idx[idx < 0].tolist()) <= {NO_TOKEN}
    # what lands on joined-grid token (R, C) is the crop's pooled 2x2 patch at that place of the frame
    source = letterboxed_crops_source(image, frame.tiling)
    cell = 2 * PATCH
    where = {int(p): divmod(n, grid.shape[1]) for n, p in enumerate(grid.ravel())}
    for k, crop in enumerate(frame.images[1:], start=1):
        i, j = divmod(k - 1, frame.tiling[1])
        pixels = unpatchify(crop)
        for slot in np.flatnonzero(idx[k].numpy() >= 0):
            r, c = divmod(int(slot), 12)
            big_r, big_c = where[int(idx[k, slot])]
            assert (big_r, big_c) == (i * 8 + r, j * 8 + c)
            block = pixels[:, r * cell : (r + 1) * cell, c * cell : (c + 1) * cell]
            torch.testing.assert_close(
                block, source[:, big_r * cell : (big_r + 1) * cell, big_c * cell : (big_c + 1) * cell]
            )


def test_prompt_follows_the_image_tokens(tokenizer):
    inputs = build_model_inputs(tokenizer, PROMPT, preprocess_frame(random_frame(480, 640)))
    ids = inputs["input_ids"]
    assert ids[0] == tokenizer.eos_token_id  # no bos in the tokenizer: eos stands in, as in Qwen2
    assert ids[1] == tokenizer.convert_tokens_to_ids(IM_START)
    assert ids[740] == tokenizer.convert_tokens_to_ids(IM_END)
    assert tokenizer.decode(ids[741:]) == " User: Point to the red mug Assistant:"


def test_bos_token_is_used_when_the_tokenizer_has_one():
    tokenizer = byte_level_tokenizer(
        ["<s>", "</s>", IM_START, IM_END, IM_PATCH, IM_COL], bos_token="<s>", eos_token="</s>"
    )
    inputs = build_model_inputs(tokenizer, PROMPT, preprocess_frame(random_frame(100, 100)))
    assert inputs["input_ids"][0] == tokenizer.bos_token_id


def test_clip_normalisation_and_padding_values():
    assert MOLMO_V1.image_mean == pytest.approx(OPENAI_CLIP_MEAN)
    assert MOLMO_V1.image_std == pytest.approx(OPENAI_CLIP_STD)
    gray = np.full((168, 336, 3), 200, dtype=np.uint8)  # letterboxed into the global view: rows 84..251
    view = unpatchify(preprocess_frame(gray).images[0])
    mean, std = np.array(OPENAI_CLIP_MEAN), np.array(OPENAI_CLIP_STD)
    np.testing.assert_allclose(view[:, 168, 100].numpy(), (200 / 255 - mean) / std, rtol=1e-5)
    np.testing.assert_allclose(view[:, 10, 100].numpy(), (0 - mean) / std, rtol=1e-5)  # padding


def test_image_masks_follow_upstream_layout():
    # 640 x 480 -> letterboxed to 784 x 560: scaled to 746 x 560, 19 padding columns each side.
    frame = preprocess_frame(random_frame(480, 640))
    masks = frame.image_masks.reshape(7, 24, 24)
    assert torch.all(masks[-1] == -1)  # upstream appends a filler row after the crops' rows
    first_crop = masks[0]  # row 0 is crop (0, 0)'s
    assert torch.all(first_crop[:, 0] == 0)
    assert torch.allclose(first_crop[:, 1], torch.tensor(9 / 14))
    assert torch.all(first_crop[:, 2:] == 1)
    assert torch.all(masks[2][:, -1] == 0)  # crop (0, 2) ends in padding


def test_torch_input_matches_numpy():
    image = random_frame(300, 500, seed=3)
    from_numpy = preprocess_frame(image)
    from_torch = preprocess_frame(torch.from_numpy(image.copy()))
    assert from_torch.tiling == from_numpy.tiling
    assert torch.equal(from_torch.images, from_numpy.images)
    assert torch.equal(from_torch.image_masks, from_numpy.image_masks)


@pytest.mark.parametrize("height,width", [(17, 1000), (1000, 17), (1, 1), (1, 3000), (113, 4000), (112, 112)])
def test_odd_sizes(tokenizer, height, width):
    frame = preprocess_frame(random_frame(height, width))
    rows, cols = frame.tiling
    assert frame.images.shape == (1 + rows * cols, 576, 588)
    assert frame.image_masks.shape == (1 + rows * cols, 576)
    assert torch.isfinite(frame.images).all()
    inputs = build_model_inputs(tokenizer, PROMPT, frame)
    patches = int((inputs["input_ids"] == tokenizer.convert_tokens_to_ids(IM_PATCH)).sum())
    assert int((inputs["image_input_idx"] >= 0).sum()) == patches


def test_rejects_what_is_not_an_rgb_uint8_frame():
    with pytest.raises(ValueError, match="uint8"):
        preprocess_frame(np.zeros((10, 10, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="H x W x 3"):
        preprocess_frame(np.zeros((10, 10), dtype=np.uint8))


def test_tokenizer_without_image_tokens_is_refused():
    plain = byte_level_tokenizer(["<|endoftext|>"], eos_token="<|endoftext|>")
    with pytest.raises(ValueError, match="image tokens"):
        build_model_inputs(plain, PROMPT, preprocess_frame(random_frame(50, 50)))
