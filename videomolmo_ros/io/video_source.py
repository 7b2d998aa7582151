"""Frames from a video file, a folder of images or a V4L2 camera, at the rate they were made at. No ROS.

One reader for every tool that turns video into camera frames (video_publisher, video_to_bag,
videomolmo_demo), so a clip, a DAVIS folder and a webcam all look the same to them: RGB frames
(H x W x 3 uint8) in order, with the source's frame rate.
"""

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from videomolmo_ros.io.image_files import MAX_IMAGE_SIDE, ImageFileError, image_size

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
FOLDER_FPS = 30.0  # an image folder carries no rate: this unless told (--fps)


class VideoSourceError(RuntimeError):
    """A source that cannot be opened or read; the message says which and why."""


class VideoSource:
    """A video file, an image folder or a camera (an int: /dev/videoN), opened for reading.

    `fps` is the file's rate (a folder's: `fps` or FOLDER_FPS; a camera's as it reports it, or
    `fps`); `frame_count` is None for a camera (endless); `frame_names` are a folder's file names
    without their suffix (None for a video or a camera).
    """

    def __init__(self, source: str | Path | int, fps: float = 0.0):
        if fps < 0:
            raise VideoSourceError(f"frame rate {fps} must be positive")
        self.name = f"camera {source}" if isinstance(source, int) else str(source)
        self._files: list[Path] = []
        self._capture: cv2.VideoCapture | None = None
        self.frame_names: list[str] | None = None
        if isinstance(source, int):
            self._open_capture(source, fps)
            self.frame_count = None
        elif Path(source).is_dir():
            self._files = sorted(p for p in Path(source).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._files:
                raise VideoSourceError(f"{source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
            self.fps = fps or FOLDER_FPS
            self.frame_count = len(self._files)
            self.frame_names = [p.stem for p in self._files]
            self.height, self.width = _read_image(self._files[0]).shape[:2]
        elif Path(source).is_file():
            self._open_capture(str(source), fps)
            count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
            self.frame_count = count if count > 0 else None
        else:
            raise VideoSourceError(f"no video, image folder or camera at {source}")

    def _open_capture(self, source: str | int, fps: float) -> None:
        capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            raise VideoSourceError(f"cannot open {self.name} (OpenCV could not read it)")
        self._capture = capture
        reported = capture.get(cv2.CAP_PROP_FPS)
        self.fps = fps or (reported if 0 < reported < 1000 else FOLDER_FPS)
        self.width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if max(self.width, self.height) > MAX_IMAGE_SIDE:
            capture.release()
            raise VideoSourceError(f"{self.name}: {self.width}x{self.height} frames, more than {MAX_IMAGE_SIDE} a side")

    def frames(self, loop: bool = False) -> Iterator[np.ndarray]:
        """RGB frames in order; with `loop`, from the start again at the end (not for a camera)."""
        while True:
            yield from self._files_once() if self._files else self._capture_once()
            if not loop or self.frame_count is None:
                return
            if self._capture is not None:
                self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)

    def _files_once(self) -> Iterator[np.ndarray]:
        for path in self._files:
            image = _read_image(path)
            if image.shape[:2] != (self.height, self.width):
                raise VideoSourceError(f"{path} is {image.shape[1]}x{image.shape[0]}, not {self.width}x{self.height}")
            yield image

    def _capture_once(self) -> Iterator[np.ndarray]:
        while True:
            ok, bgr = self._capture.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_image(path: Path) -> np.ndarray:
    """Decoded once its header's size is checked: OpenCV allocates whatever a header claims."""
    try:
        image_size(path)
    except ImageFileError as error:
        raise VideoSourceError(str(error)) from None
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise VideoSourceError(f"{path} is not an image OpenCV can read")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
