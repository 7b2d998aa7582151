"""Image files opened with their size checked before anything is decoded. No ROS.

A PNG or JPEG header states the image's size in a few bytes, and decoding allocates what it states:
a 40-byte header can ask for gigabytes. The tools read frames, annotations and image-folder videos
through `image_file`, which checks the claimed size against a limit first and turns a damaged file
into one ImageFileError naming it, never a traceback.
"""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

# Larger than any camera or dataset frame the package is for (8K UHD is 7680 x 4320); an RGB image
# of 8192 x 8192 is 192 MiB. Below PIL's own bomb warning (89 M pixels) by construction.
MAX_IMAGE_SIDE = 8192


class ImageFileError(RuntimeError):
    """An image file that cannot be read or is larger than allowed; the message names it."""


@contextmanager
def image_file(path: Path, max_side: int = MAX_IMAGE_SIDE) -> Iterator[Image.Image]:
    """The image at `path`, opened lazily (only its header is read) and its size checked.

    Decoding happens in the body (`load`, `convert`, `np.asarray`): its failures, as the file's
    unreadable or truncated data, become ImageFileError too.
    """
    try:
        with warnings.catch_warnings():
            # PIL warns from 89 M pixels: every such image has a side over max_side and is refused below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if max(image.size) > max_side:
                    width, height = image.size
                    raise ImageFileError(f"{path}: {width}x{height} pixels, more than {max_side} a side")
                yield image
    except Image.DecompressionBombError as error:  # PIL refuses from 179 M pixels, before the size is known
        raise ImageFileError(f"{path}: more than {max_side} pixels a side ({error})") from None
    except Image.UnidentifiedImageError:
        raise ImageFileError(f"{path}: not an image file (PNG, JPEG, ...) or damaged") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageFileError(f"{path}: {error}") from None


def image_size(path: Path, max_side: int = MAX_IMAGE_SIDE) -> tuple[int, int]:
    """(width, height) as the file's header claims them, checked against `max_side`; nothing decoded."""
    with image_file(path, max_side) as image:
        return image.size
