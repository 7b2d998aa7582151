"""sensor_msgs/Image and CompressedImage fields <-> numpy arrays, without cv_bridge.

ROS's cv_bridge is built against numpy 1 and breaks under numpy 2; this module replaces the
part of it the package needs. It takes the message's plain fields, so it never imports ROS.
"""

import array
import io
import warnings
from collections.abc import Callable
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image as PilImage

from videomolmo_ros.io.text import clip


class Encoding(NamedTuple):
    """How one ROS image encoding lays out a pixel."""

    dtype: np.dtype
    channels: int
    # Indices of the R, G and B channels; None for data that is not RGB channels.
    rgb: tuple[int, int, int] | None
    # An OpenCV cvtColor code to RGB for packed or mosaicked colour (YUV 4:2:2, Bayer); None otherwise.
    to_rgb_code: int | None = None


_U8, _U16, _F32 = np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)

# The single source of truth for what the codec supports. 8UC3/8UC4 are BGR(A), as OpenCV reads them.
ENCODINGS: dict[str, Encoding] = {
    "rgb8": Encoding(_U8, 3, (0, 1, 2)),
    "bgr8": Encoding(_U8, 3, (2, 1, 0)),
    "rgba8": Encoding(_U8, 4, (0, 1, 2)),
    "bgra8": Encoding(_U8, 4, (2, 1, 0)),
    "mono8": Encoding(_U8, 1, (0, 0, 0)),
    "8UC1": Encoding(_U8, 1, (0, 0, 0)),
    "8UC3": Encoding(_U8, 3, (2, 1, 0)),
    "8UC4": Encoding(_U8, 4, (2, 1, 0)),
    "mono16": Encoding(_U16, 1, None),
    "16UC1": Encoding(_U16, 1, None),
    "32FC1": Encoding(_F32, 1, None),
    # YUV 4:2:2 (USB cameras): two bytes a pixel. ROS's yuv422 is UYVY byte order, yuv422_yuy2 is YUYV.
    "yuv422": Encoding(_U8, 2, None, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": Encoding(_U8, 2, None, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": Encoding(_U8, 2, None, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": Encoding(_U8, 2, None, cv2.COLOR_YUV2RGB_YUY2),
}
# Bayer mosaics (industrial cameras), named by their top-left 2x2 block. OpenCV names a pattern by
# the second row's middle pixels, so ROS's rggb is OpenCV's BG (as cv_bridge maps them).
_BAYER = {
    "rggb": cv2.COLOR_BayerBG2RGB,
    "bggr": cv2.COLOR_BayerRG2RGB,
    "gbrg": cv2.COLOR_BayerGR2RGB,
    "grbg": cv2.COLOR_BayerGB2RGB,
}
ENCODINGS.update({f"bayer_{name}8": Encoding(_U8, 1, None, code) for name, code in _BAYER.items()})
ENCODINGS.update({f"bayer_{name}16": Encoding(_U16, 1, None, code) for name, code in _BAYER.items()})


# (channels, R G B channel indices) -> OpenCV's conversion to RGB (one vectorised pass; rgb8 is a plain copy).
_TO_RGB = {
    (3, (2, 1, 0)): cv2.COLOR_BGR2RGB,
    (4, (0, 1, 2)): cv2.COLOR_RGBA2RGB,
    (4, (2, 1, 0)): cv2.COLOR_BGRA2RGB,
    (1, (0, 0, 0)): cv2.COLOR_GRAY2RGB,
}


class ImageDecodeError(ValueError):
    """An image message (or array) the codec cannot interpret; the message says what is wrong.

    `reason` is a short stable code (unsupported_encoding, bad_size, bad_step, truncated,
    not_colour, bad_array, unsupported_format, corrupt) under which the node counts the frames it drops.
    """

    def __init__(self, message: str, reason: str = "bad_array"):
        super().__init__(message)
        self.reason = reason


def _lookup(encoding: str) -> Encoding:
    try:
        return ENCODINGS[encoding]
    except KeyError:
        supported = ", ".join(ENCODINGS)
        raise ImageDecodeError(
            f"unsupported encoding {clip(encoding)!r} (supported: {supported})", "unsupported_encoding"
        ) from None


def _shape(height: int, width: int, fmt: Encoding) -> tuple[int, ...]:
    return (height, width) if fmt.channels == 1 else (height, width, fmt.channels)


def _check_array(array: np.ndarray, encoding: str) -> Encoding:
    """Reject arrays whose dtype or shape does not match `encoding`, rather than mislabel them."""
    fmt = _lookup(encoding)
    if array.dtype.kind != fmt.dtype.kind or array.dtype.itemsize != fmt.dtype.itemsize:
        raise ImageDecodeError(f"{encoding} needs dtype {fmt.dtype}, got {array.dtype}")
    if array.ndim < 2 or array.shape != _shape(*array.shape[:2], fmt):
        layout = "H x W" if fmt.channels == 1 else f"H x W x {fmt.channels}"
        raise ImageDecodeError(f"{encoding} needs an array of shape {layout}, got {array.shape}")
    return fmt


def decode_image(
    encoding: str,
    height: int,
    width: int,
    step: int,
    data: bytes | bytearray | memoryview | array.array,
    is_bigendian: bool = False,
) -> np.ndarray:
    """The image in its native dtype: H x W for one channel, H x W x C otherwise.

    The result is C-contiguous. Without row padding or byte swapping it is a zero-copy view of
    `data` (numpy holds a reference, so it outlives the message); otherwise a copy. It is
    read-only either way, so code that writes into it fails on every camera rather than only
    on those whose images happen to be zero-copy; `.copy()` it to write.
    """
    fmt = _lookup(encoding)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"image size {width}x{height} (width x height) must be positive", "bad_size")
    row_bytes = width * fmt.channels * fmt.dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError(
            f"step {step} is smaller than width*bytes_per_pixel = {row_bytes} for {width}x{height} {encoding}",
            "bad_step",
        )
    nbytes = memoryview(data).nbytes
    if nbytes < step * height:
        raise ImageDecodeError(
            f"data has {nbytes} bytes, expected at least step*height = {step * height} for {width}x{height} {encoding}",
            "truncated",
        )
    rows = np.frombuffer(data, np.uint8, count=step * height).reshape(height, step)[:, :row_bytes]
    pixels = rows.view(fmt.dtype.newbyteorder(">" if is_bigendian else "<"))
    if not pixels.dtype.isnative:
        pixels = pixels.astype(fmt.dtype)
    image = np.ascontiguousarray(pixels.reshape(_shape(height, width, fmt)))
    image.flags.writeable = False
    return image


def to_rgb8(array: np.ndarray, encoding: str) -> np.ndarray:
    """A new H x W x 3 uint8 RGB array (C-contiguous, writable) from a decoded colour or mono8 image.

    Always a copy, so the result is independent of the message buffer and safe to hand to torch.
    """
    fmt = _check_array(array, encoding)
    if fmt.to_rgb_code is not None:
        return _convert_to_rgb8(array, encoding, fmt)
    if fmt.rgb is None:
        raise ImageDecodeError(
            f"{encoding} is depth/16-bit or float data and cannot feed a colour model; "
            f"publish a colour image (e.g. rgb8 or bgr8)",
            "not_colour",
        )
    height, width = array.shape[:2]
    pixels = np.ascontiguousarray(array).reshape(height, width, fmt.channels)
    conversion = _TO_RGB.get((fmt.channels, fmt.rgb))
    return pixels.copy() if conversion is None else cv2.cvtColor(pixels, conversion)


def _convert_to_rgb8(array: np.ndarray, encoding: str, fmt: Encoding) -> np.ndarray:
    """YUV 4:2:2 and Bayer frames through OpenCV's conversions; 16-bit Bayer keeps its top 8 bits."""
    if fmt.channels == 2 and array.shape[1] % 2:
        raise ImageDecodeError(
            f"{encoding} packs two pixels in 4 bytes: width {array.shape[1]} must be even", "bad_size"
        )
    if fmt.channels == 1 and min(array.shape) < 2:
        raise ImageDecodeError(
            f"{encoding} needs at least one 2x2 block, got {array.shape[1]}x{array.shape[0]}", "bad_size"
        )
    rgb = cv2.cvtColor(np.ascontiguousarray(array), fmt.to_rgb_code)
    return (rgb >> 8).astype(np.uint8) if rgb.dtype == np.uint16 else rgb


def encode_image(array: np.ndarray, encoding: str) -> tuple[int, int, int, bytes]:
    """(height, width, step, data) of `array` for a sensor_msgs/Image with is_bigendian = False.

    The inverse of decode_image: rows are unpadded (step = width * bytes per pixel).
    """
    fmt = _check_array(array, encoding)
    height, width = array.shape[:2]
    data = np.ascontiguousarray(array, dtype=fmt.dtype.newbyteorder("<")).tobytes()
    return height, width, width * fmt.channels * fmt.dtype.itemsize, data


# CompressedImage formats: compressed_image_transport writes "jpeg"/"png", optionally after the
# source encoding ("bgr8; jpeg compressed bgr8"); the payload is a standard JPEG or PNG file.
def _decoded(what: str, step: Callable):
    """`step()` of PIL decoding, its failures as ImageDecodeError ("corrupt"); a decompression bomb is one too."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PilImage.DecompressionBombWarning)
            return step()
    except PilImage.UnidentifiedImageError:
        raise ImageDecodeError(f"{what}: not a JPEG or PNG file", "corrupt") from None
    except (OSError, SyntaxError, ValueError, PilImage.DecompressionBombWarning) as error:
        raise ImageDecodeError(f"{what}: {error}", "corrupt") from error


_COMPRESSED = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}


def decode_compressed(fmt: str, data: bytes, too_large: Callable[[int, int], str] | None = None) -> np.ndarray:
    """An H x W x 3 uint8 RGB array from a sensor_msgs/CompressedImage's `format` and `data`.

    Strict: a truncated or damaged payload is an error (ImageDecodeError, reason "corrupt"),
    never a half-grey frame handed to the models. `too_large(height, width)` says why a size is
    refused ("" if not): it is asked with the size the JPEG / PNG header claims, before decoding.
    """
    words = fmt.lower().replace(";", " ").split()
    if "compresseddepth" in words:
        raise ImageDecodeError(f"format {clip(fmt)!r} is compressed depth, not a colour image", "unsupported_format")
    expected = {_COMPRESSED[w] for w in words if w in _COMPRESSED}
    if not expected and words:
        known = ", ".join(sorted(_COMPRESSED))
        raise ImageDecodeError(
            f"unsupported compressed format {clip(fmt)!r} (supported: {known})", "unsupported_format"
        )
    what = f"corrupt {fmt or 'compressed'} payload of {len(data)} bytes"
    image = _decoded(what, lambda: PilImage.open(io.BytesIO(bytes(data))))  # reads the header only
    if too_large is not None and (refused := too_large(image.height, image.width)):
        raise ImageDecodeError(refused, "too_large")
    _decoded(what, image.load)
    if expected and image.format not in expected:
        raise ImageDecodeError(f"format says {clip(fmt)!r} but the payload is {image.format}", "corrupt")
    if image.mode not in ("RGB", "RGBA", "L", "P", "LA", "CMYK", "YCbCr"):
        raise ImageDecodeError(f"{image.format} of mode {image.mode} is not an 8-bit colour image", "not_colour")
    return np.asarray(image.convert("RGB")).copy()


# What compressed_image_transport writes in `format` for a JPEG of a colour image.
JPEG_FORMAT = "rgb8; jpeg compressed bgr8"


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """A JPEG file of an H x W x 3 uint8 RGB image: a CompressedImage's data (format JPEG_FORMAT)."""
    _check_array(rgb, "rgb8")
    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {rgb.shape[1]}x{rgb.shape[0]} JPEG")
    return data.tobytes()
