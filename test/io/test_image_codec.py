"""image_codec: sensor_msgs/Image and CompressedImage fields <-> numpy, as a camera driver would send them."""

import io
from array import array
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from videomolmo_ros.io.image_codec import (
    ENCODINGS,
    ImageDecodeError,
    decode_compressed,
    decode_image,
    encode_image,
    to_rgb8,
)


def _image_arrays(encoding: str) -> st.SearchStrategy[np.ndarray]:
    fmt = ENCODINGS[encoding]
    shape = hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6).map(
        lambda hw: hw if fmt.channels == 1 else (*hw, fmt.channels)
    )
    return hnp.arrays(fmt.dtype, shape)


def _pad_rows(data: bytes, height: int, row_bytes: int, padding: int) -> bytes:
    """`data` with `padding` garbage bytes (0xAB) appended to every row, as some drivers send."""
    rows = np.frombuffer(data, np.uint8).reshape(height, row_bytes)
    garbage = np.full((height, padding), 0xAB, np.uint8)
    return np.hstack([rows, garbage]).tobytes()


def _assert_same_image(decoded: np.ndarray, expected: np.ndarray) -> None:
    assert decoded.dtype == expected.dtype
    assert decoded.shape == expected.shape
    assert decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, expected)  # NaN == NaN here, for 32FC1


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_round_trip_every_encoding(encoding: str, data: st.DataObject) -> None:
    image = data.draw(_image_arrays(encoding))
    height, width, step, raw = encode_image(image, encoding)
    assert (height, width) == image.shape[:2]
    assert len(raw) == step * height
    _assert_same_image(decode_image(encoding, height, width, step, raw), image)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@settings(max_examples=10, deadline=None)
@given(data=st.data(), padding=st.integers(1, 7))
def test_row_padding_is_skipped(encoding: str, data: st.DataObject, padding: int) -> None:
    image = data.draw(_image_arrays(encoding))
    height, width, step, raw = encode_image(image, encoding)
    padded = _pad_rows(raw, height, step, padding)
    decoded = decode_image(encoding, height, width, step + padding, padded)
    _assert_same_image(decoded, image)


@pytest.mark.parametrize("encoding", ["bgr8", "8UC3"])  # OpenCV's 8UC3 is BGR
def test_bgr_pixel_is_swapped_to_rgb(encoding: str) -> None:
    red_in_bgr = bytes([0, 0, 255, 0, 255, 0])  # 1x2: red, green
    image = decode_image(encoding, 1, 2, 6, red_in_bgr)
    assert image[0, 0].tolist() == [0, 0, 255]  # decode keeps the native channel order
    rgb = to_rgb8(image, encoding)
    assert rgb[0, 0].tolist() == [255, 0, 0]
    assert rgb[0, 1].tolist() == [0, 255, 0]


def test_rgb8_is_unchanged_by_to_rgb8() -> None:
    raw = bytes([255, 0, 0, 10, 20, 30])
    rgb = to_rgb8(decode_image("rgb8", 1, 2, 6, raw), "rgb8")
    assert rgb.tolist() == [[[255, 0, 0], [10, 20, 30]]]


@pytest.mark.parametrize("encoding", ["bgra8", "8UC4"])
def test_alpha_is_dropped(encoding: str) -> None:
    rgb = to_rgb8(decode_image(encoding, 1, 1, 4, bytes([1, 2, 3, 99])), encoding)
    assert rgb.tolist() == [[[3, 2, 1]]]


def test_rgba8_alpha_is_dropped() -> None:
    rgb = to_rgb8(decode_image("rgba8", 1, 1, 4, bytes([1, 2, 3, 99])), "rgba8")
    assert rgb.tolist() == [[[1, 2, 3]]]


@pytest.mark.parametrize("encoding", ["mono8", "8UC1"])
def test_mono8_is_replicated_to_three_channels(encoding: str) -> None:
    image = decode_image(encoding, 2, 2, 2, bytes([0, 50, 128, 255]))
    assert image.shape == (2, 2)
    rgb = to_rgb8(image, encoding)
    assert rgb.shape == (2, 2, 3)
    assert rgb[1, 0].tolist() == [128, 128, 128]
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


# BT.601 video-range YUV of a few colours (Y 16-235, U and V 16-240), as USB cameras send them.
YUV_OF = {
    (255, 0, 0): (81, 90, 240),
    (0, 255, 0): (145, 54, 34),
    (0, 0, 255): (41, 240, 110),
    (255, 255, 255): (235, 128, 128),
}


@pytest.mark.parametrize(
    ("encoding", "order"), [("yuv422", "UYVY"), ("uyvy", "UYVY"), ("yuv422_yuy2", "YUYV"), ("yuyv", "YUYV")]
)
def test_yuv422_frames_decode_to_their_colours(encoding: str, order: str) -> None:
    """Each pair of pixels shares U and V; a wrong byte order would show other colours."""
    colours = list(YUV_OF)
    packed = bytearray()
    for y, u, v in YUV_OF.values():  # one 2-pixel pair per colour, then the row again
        packed += bytes([u, y, v, y] if order == "UYVY" else [y, u, y, v])
    height, width = 2, 2 * len(colours)
    rgb = to_rgb8(decode_image(encoding, height, width, len(packed) // height * 2, packed * 2), encoding)
    assert rgb.shape == (height, width, 3) and rgb.dtype == np.uint8
    for k, colour in enumerate(colours):
        np.testing.assert_allclose(rgb[:, 2 * k : 2 * k + 2].reshape(-1, 3), [colour] * 4, atol=4)


def test_yuv422_of_odd_width_is_rejected_with_a_reason() -> None:
    with pytest.raises(ImageDecodeError, match="must be even") as error:
        to_rgb8(decode_image("yuv422", 1, 3, 6, bytes(6)), "yuv422")
    assert error.value.reason == "bad_size"


def _mosaic(rgb: np.ndarray, pattern: str) -> np.ndarray:
    """The raw frame a Bayer sensor with `pattern` (top-left 2x2 block, row by row) records of `rgb`."""
    channel = {"r": 0, "g": 1, "b": 2}
    raw = np.empty(rgb.shape[:2], rgb.dtype)
    for k, colour in enumerate(pattern):
        row, col = divmod(k, 2)
        raw[row::2, col::2] = rgb[row::2, col::2, channel[colour]]
    return raw


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
@pytest.mark.parametrize("bits", [8, 16])
def test_bayer_frames_are_demosaicked_to_their_colours(pattern: str, bits: int) -> None:
    """Flat colour patches come back as those colours: R and B are not swapped for any pattern."""
    patches = [(200, 30, 10), (20, 180, 40), (10, 40, 220), (120, 120, 120)]
    rgb = np.zeros((16, 32, 3), np.uint8)
    for k, colour in enumerate(patches):
        rgb[:, 8 * k : 8 * k + 8] = colour
    raw = _mosaic(rgb, pattern)
    encoding = f"bayer_{pattern}{bits}"
    if bits == 16:
        raw = raw.astype(np.uint16) << 8 | 0x5A  # the low byte is below 8-bit precision
    height, width, step, data = encode_image(raw, encoding)
    decoded = to_rgb8(decode_image(encoding, height, width, step, data), encoding)
    assert decoded.shape == (16, 32, 3) and decoded.dtype == np.uint8
    for k, colour in enumerate(patches):
        inner = decoded[2:-2, 8 * k + 2 : 8 * k + 6].reshape(-1, 3)  # away from patch borders
        np.testing.assert_allclose(inner, [colour] * len(inner), atol=2)


DAVIS_FRAMES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "davis2016" / "JPEGImages" / "480p"


def _psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def _uyvy(rgb: np.ndarray) -> np.ndarray:
    """What a UYVY camera sends for this image: BT.601 video-range Y per pixel, U and V per pair of pixels."""
    x = rgb.astype(np.float64) / 255
    y = 16 + x @ [65.481, 128.553, 24.966]
    u = 128 + x @ [-37.797, -74.203, 112.0]
    v = 128 + x @ [112.0, -93.786, -18.214]
    packed = np.stack([(u[:, 0::2] + u[:, 1::2]) / 2, y[:, 0::2], (v[:, 0::2] + v[:, 1::2]) / 2, y[:, 1::2]], axis=-1)
    return np.round(packed).astype(np.uint8).reshape(rgb.shape[0], rgb.shape[1], 2)


@pytest.mark.skipif(not DAVIS_FRAMES.is_dir(), reason="real footage (../shared/data/davis2016) is not here")
@pytest.mark.parametrize("sequence", ["dog", "car-shadow"])
def test_real_frames_sent_as_bayer_or_uyvy_come_back_close_to_the_original(sequence: str) -> None:
    """Natural images, not flat patches: demosaicking keeps ~30 dB, UYVY ~45 dB; a wrong pattern or order would not."""
    rgb = np.asarray(Image.open(DAVIS_FRAMES / sequence / "00000.jpg").convert("RGB"))
    for pattern in ("rggb", "bggr", "gbrg", "grbg"):
        decoded = to_rgb8(_mosaic(rgb, pattern), f"bayer_{pattern}8")
        assert _psnr_db(decoded, rgb) > 26 and _psnr_db(decoded, rgb) > _psnr_db(decoded[..., ::-1], rgb) + 5
    assert _psnr_db(to_rgb8(_uyvy(rgb), "uyvy"), rgb) > 40
    assert _psnr_db(to_rgb8(_uyvy(rgb), "yuyv"), rgb) < 20, "the byte order matters"


@pytest.mark.parametrize("encoding", [name for name, fmt in ENCODINGS.items() if fmt.rgb is not None])
def test_to_rgb8_output_is_a_new_contiguous_uint8_array(encoding: str) -> None:
    fmt = ENCODINGS[encoding]
    raw = bytearray(range(2 * 3 * fmt.channels))
    image = decode_image(encoding, 2, 3, 3 * fmt.channels, raw)
    rgb = to_rgb8(image, encoding)
    assert rgb.shape == (2, 3, 3)
    assert rgb.dtype == np.uint8
    assert rgb.flags.c_contiguous
    rgb[:] = 0  # writable, and writing must not reach the message buffer
    assert raw == bytearray(range(2 * 3 * fmt.channels))


def test_16uc1_keeps_values_above_255() -> None:
    depth_mm = np.array([[0, 255], [1234, 65535]], np.uint16)
    height, width, step, raw = encode_image(depth_mm, "16UC1")
    assert step == 4
    image = decode_image("16UC1", height, width, step, raw)
    assert image.dtype == np.uint16
    assert image[1, 0] == 1234
    assert image[1, 1] == 65535


def test_big_endian_16uc1_is_converted_to_native() -> None:
    raw = (1234).to_bytes(2, "big") + (258).to_bytes(2, "big")
    image = decode_image("16UC1", 1, 2, 4, raw, is_bigendian=True)
    assert image.tolist() == [[1234, 258]]
    assert image.dtype.isnative
    assert decode_image("16UC1", 1, 2, 4, raw, is_bigendian=False).tolist() == [[53764, 513]]


def test_big_endian_with_odd_padding() -> None:
    rows = [(1234).to_bytes(2, "big") + b"\xab", (4321).to_bytes(2, "big") + b"\xab"]
    image = decode_image("16UC1", 2, 1, 3, b"".join(rows), is_bigendian=True)
    assert image.tolist() == [[1234], [4321]]


def test_32fc1_values_are_exact() -> None:
    depth_m = np.array([[0.5, np.nan], [np.inf, 1e-3]], np.float32)
    image = decode_image("32FC1", 2, 2, 8, encode_image(depth_m, "32FC1")[3])
    _assert_same_image(image, depth_m)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview, lambda raw: array("B", raw)])
def test_data_types_rclpy_may_hand_over(wrap) -> None:
    raw = bytes([1, 2, 3, 4, 5, 6])
    image = decode_image("rgb8", 1, 2, 6, wrap(raw))
    assert image.tolist() == [[[1, 2, 3], [4, 5, 6]]]


def test_extra_trailing_bytes_are_ignored() -> None:
    image = decode_image("mono8", 1, 2, 2, bytes([7, 8, 9, 9]))
    assert image.tolist() == [[7, 8]]


@pytest.mark.parametrize("step, padding", [(6, 0), (8, 2)])
def test_result_is_read_only_with_or_without_padding(step: int, padding: int) -> None:
    raw = bytearray(_pad_rows(bytes(range(12)), 2, 6, padding))
    image = decode_image("rgb8", 2, 2, step, raw)
    with pytest.raises(ValueError, match="read-only"):
        image[0, 0, 0] = 42
    assert raw[0] == 0


def test_result_outlives_the_message_buffer() -> None:
    raw = bytearray(range(12))
    image = decode_image("rgb8", 2, 2, 6, raw)
    del raw
    assert image.tolist() == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]


def test_unknown_encoding_lists_supported_ones() -> None:
    with pytest.raises(ImageDecodeError, match="unsupported encoding 'nv21'") as info:
        decode_image("nv21", 2, 2, 4, bytes(8))
    assert "bgr8" in str(info.value)
    assert "16UC1" in str(info.value)


def test_truncated_data_says_how_much_was_expected() -> None:
    with pytest.raises(ImageDecodeError) as info:
        decode_image("rgb8", 480, 640, 1920, bytes(1000))
    message = str(info.value)
    assert "1000 bytes" in message
    assert "921600" in message
    assert "640x480 rgb8" in message


def test_step_smaller_than_a_row_is_rejected() -> None:
    with pytest.raises(ImageDecodeError, match=r"step 100 is smaller than width\*bytes_per_pixel = 1920"):
        decode_image("rgb8", 480, 640, 100, bytes(921600))


@pytest.mark.parametrize("height, width", [(0, 640), (480, 0), (-1, 640)])
def test_empty_or_negative_size_is_rejected(height: int, width: int) -> None:
    with pytest.raises(ImageDecodeError, match="must be positive"):
        decode_image("rgb8", height, width, 1920, bytes(1920 * 480))


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1"])
def test_to_rgb8_refuses_depth(encoding: str) -> None:
    fmt = ENCODINGS[encoding]
    image = np.zeros((2, 2), fmt.dtype)
    with pytest.raises(ImageDecodeError, match="depth"):
        to_rgb8(image, encoding)


def test_to_rgb8_rejects_an_array_of_the_wrong_layout() -> None:
    with pytest.raises(ImageDecodeError, match=r"H x W x 3"):
        to_rgb8(np.zeros((2, 2, 4), np.uint8), "bgr8")


def test_encode_rejects_wrong_dtype_instead_of_truncating() -> None:
    with pytest.raises(ImageDecodeError, match="uint16"):
        encode_image(np.full((2, 2), 1234, np.int64), "16UC1")


def test_encode_writes_little_endian_from_a_big_endian_array() -> None:
    big = np.array([[1234]], ">u2")
    assert encode_image(big, "16UC1") == (1, 1, 2, (1234).to_bytes(2, "little"))


# ----------------------------------------------------------------- CompressedImage


def _compressed(image: np.ndarray, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, fmt, **options)
    return buffer.getvalue()


SCENE = np.zeros((48, 64, 3), np.uint8)
SCENE[10:30, 5:25] = (220, 30, 30)
SCENE[20:40, 35:60] = (30, 60, 220)


@pytest.mark.parametrize("fmt", ["png", "rgb8; png compressed rgb8", ""])
def test_png_decodes_exactly_to_rgb(fmt: str) -> None:
    decoded = decode_compressed(fmt, _compressed(SCENE, "PNG"))
    assert decoded.dtype == np.uint8 and decoded.flags.writeable and np.array_equal(decoded, SCENE)


@pytest.mark.parametrize("fmt", ["jpeg", "bgr8; jpeg compressed bgr8"])
def test_jpeg_decodes_to_rgb_not_bgr(fmt: str) -> None:
    decoded = decode_compressed(fmt, array("B", _compressed(SCENE, "JPEG", quality=95)))  # as rclpy hands it
    assert decoded.shape == SCENE.shape
    assert np.abs(decoded.astype(int) - SCENE).mean() < 8  # lossy, but close
    assert decoded[15, 10, 0] > 150 and decoded[30, 50, 2] > 150, "red stays red, blue stays blue"


def test_mono_png_becomes_grey_rgb() -> None:
    grey = np.arange(48 * 64, dtype=np.uint32).reshape(48, 64).astype(np.uint8)
    decoded = decode_compressed("png", _compressed(grey, "PNG"))
    assert decoded.shape == (48, 64, 3) and np.array_equal(decoded[:, :, 1], grey)


@pytest.mark.parametrize(
    "fmt, data, message",
    [
        ("jpeg", _compressed(SCENE, "JPEG")[:300], "(?i)truncated"),
        ("png", _compressed(SCENE, "PNG")[:-40], "truncated"),
        ("jpeg", b"\xff\xd8\xff" + bytes(200), "not a JPEG or PNG file"),
        ("jpeg", b"", "payload of 0 bytes"),
        ("jpeg", _compressed(SCENE, "PNG"), "format says 'jpeg' but the payload is PNG"),
    ],
)
def test_a_corrupt_payload_is_an_error_not_a_grey_frame(fmt: str, data: bytes, message: str) -> None:
    with pytest.raises(ImageDecodeError, match=message) as error:
        decode_compressed(fmt, data)
    assert error.value.reason == "corrupt"


@pytest.mark.parametrize("fmt", ["16UC1; compressedDepth png", "theora", "bmp"])
def test_formats_that_are_not_colour_jpeg_or_png_are_refused(fmt: str) -> None:
    with pytest.raises(ImageDecodeError) as error:
        decode_compressed(fmt, _compressed(SCENE, "PNG"))
    assert error.value.reason == "unsupported_format"


def test_a_compressed_frame_over_the_size_limit_is_refused_from_its_header_before_decoding() -> None:
    wide = _compressed(np.zeros((10, 2000, 3), np.uint8), "PNG")
    refuse = lambda height, width: f"{width}x{height} is too large" if width > 640 else ""  # noqa: E731
    with pytest.raises(ImageDecodeError) as raised:
        decode_compressed("png", wide[:100], refuse)  # truncated: decoding would say corrupt
    assert raised.value.reason == "too_large" and "2000x10" in str(raised.value)
    assert decode_compressed("png", _compressed(SCENE, "PNG"), refuse).shape == SCENE.shape
