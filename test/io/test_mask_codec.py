"""mask_codec: the PNG label image carried by ObjectMasks."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from videomolmo_ros.io.mask_codec import (
    FORMAT,
    decode_label_image,
    decode_masks,
    encode_masks,
    label_image,
)


def _box(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


def _disc(shape: tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    rows, cols = np.ogrid[: shape[0], : shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2


def test_format_is_png() -> None:
    assert FORMAT == "png"


def test_later_mask_wins_where_masks_overlap() -> None:
    first = _box((4, 6), slice(0, 4), slice(0, 4))
    second = _box((4, 6), slice(1, 3), slice(2, 6))
    height, width, png = encode_masks([first, second])
    assert (height, width) == (4, 6)
    labels = decode_label_image(png, height, width)
    assert labels[1, 3] == 2  # overlap
    assert labels[0, 0] == 1
    assert labels[1, 5] == 2
    assert labels[0, 5] == 0
    decoded_first, decoded_second = decode_masks(png, height, width, 2)
    np.testing.assert_array_equal(decoded_second, second)
    np.testing.assert_array_equal(decoded_first, first & ~second)


@settings(max_examples=30, deadline=None)
@given(labels=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, max_side=12), elements=st.integers(0, 5)))
def test_disjoint_masks_round_trip(labels: np.ndarray) -> None:
    masks = [labels == k for k in range(1, 6)]
    height, width, png = encode_masks(masks)
    np.testing.assert_array_equal(decode_label_image(png, height, width), labels)
    for decoded, mask in zip(decode_masks(png, height, width, 5), masks, strict=True):
        assert decoded.dtype == bool
        np.testing.assert_array_equal(decoded, mask)


def test_png_is_readable_by_plain_opencv() -> None:
    masks = [_box((5, 7), slice(0, 2), slice(0, 7)), _box((5, 7), slice(3, 5), slice(1, 3))]
    _, _, png = encode_masks(masks)
    decoded = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(decoded, label_image(masks))


def test_255_objects_stay_8_bit() -> None:
    shape = (255, 1)
    masks = [_box(shape, slice(k, k + 1), slice(None)) for k in range(255)]
    labels = label_image(masks)
    assert labels.dtype == np.uint8
    assert labels[254, 0] == 255


def test_more_than_255_objects_switch_to_16_bit_and_round_trip() -> None:
    shape = (20, 16)
    masks = [_box(shape, slice(k // 16, k // 16 + 1), slice(k % 16, k % 16 + 1)) for k in range(300)]
    height, width, png = encode_masks(masks)
    labels = decode_label_image(png, height, width)
    assert labels.dtype == np.uint16
    assert labels[18, 11] == 300
    for decoded, mask in zip(decode_masks(png, height, width, 300), masks, strict=True):
        np.testing.assert_array_equal(decoded, mask)


def test_more_than_65535_objects_are_refused() -> None:
    with pytest.raises(ValueError, match="65536 masks"):
        encode_masks([np.zeros((1, 1), bool)] * 65536)


def test_no_masks_with_shape_is_all_background() -> None:
    height, width, png = encode_masks([], shape=(3, 5))
    assert (height, width) == (3, 5)
    np.testing.assert_array_equal(decode_label_image(png, 3, 5), np.zeros((3, 5), np.uint8))
    assert decode_masks(png, 3, 5, 0) == []


def test_no_masks_without_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="shape"):
        encode_masks([])


def test_mismatched_shapes_are_named() -> None:
    masks = [np.zeros((4, 6), bool), np.zeros((4, 6), bool), np.zeros((3, 6), bool)]
    with pytest.raises(ValueError, match=r"mask 2 is \(3, 6\), not \(4, 6\)"):
        encode_masks(masks)


def test_shape_argument_must_match_the_masks() -> None:
    with pytest.raises(ValueError, match=r"\(4, 6\), not \(6, 4\)"):
        encode_masks([np.zeros((4, 6), bool)], shape=(6, 4))


def test_zero_one_integer_masks_are_accepted() -> None:
    mask = np.array([[0, 1], [1, 0]], np.uint8)
    _, _, png = encode_masks([mask])
    np.testing.assert_array_equal(decode_masks(png, 2, 2, 1)[0], mask.astype(bool))


def test_png_is_much_smaller_than_raw_masks() -> None:
    shape = (480, 640)
    masks = [_disc(shape, (200, 250), 80), _disc(shape, (300, 420), 120)]
    _, _, png = encode_masks(masks)
    assert len(png) < shape[0] * shape[1] / 20


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_torch_tensors_are_accepted(device: str) -> None:
    torch = pytest.importorskip("torch")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    first = torch.zeros((4, 5), dtype=torch.bool, device=device)
    first[1:3, 1:4] = True
    second = torch.zeros((4, 5), dtype=torch.float32, device=device)
    second[2, :] = 1.0
    height, width, png = encode_masks([first, second])
    labels = decode_label_image(png, height, width)
    expected = np.zeros((4, 5), np.uint8)
    expected[1:3, 1:4] = 1
    expected[2, :] = 2
    np.testing.assert_array_equal(labels, expected)


def test_torch_tensor_attached_to_a_graph_is_accepted() -> None:
    torch = pytest.importorskip("torch")
    logits = torch.tensor([[-3.0, 2.0], [1.0, -1.0]], requires_grad=True)
    mask = torch.sigmoid(logits) > 0.5
    scores = torch.sigmoid(logits) * (torch.sigmoid(logits) > 0.5)  # still requires grad
    _, _, png = encode_masks([mask, scores])
    np.testing.assert_array_equal(decode_label_image(png, 2, 2), [[0, 2], [2, 0]])


def test_decoded_size_must_match_the_message() -> None:
    _, _, png = encode_masks([np.ones((4, 6), bool)])
    with pytest.raises(ValueError, match="6x4, but the message says 4x6"):
        decode_label_image(png, 6, 4)


def test_garbage_data_is_refused() -> None:
    with pytest.raises(ValueError, match="not a valid PNG"):
        decode_label_image(b"not a png", 4, 6)


def test_labels_beyond_count_are_refused() -> None:
    _, _, png = encode_masks([np.ones((2, 2), bool), np.ones((2, 2), bool)])
    with pytest.raises(ValueError, match="label 2"):
        decode_masks(png, 2, 2, 1)


def test_label_images_are_smaller_than_with_pngs_default_filters_and_read_back_by_any_decoder():
    rows, cols = np.ogrid[:480, :640]
    discs = [(cols - 100 - 60 * k) ** 2 + (rows - 240) ** 2 <= 40**2 for k in range(8)]
    *_, data = encode_masks(discs, compression=1)
    labels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(labels, label_image(discs))
    _, default = cv2.imencode(".png", labels, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    assert len(data) < 0.7 * len(default), "no row filters, run-length zlib: runs of labels compress well"
