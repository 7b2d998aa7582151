"""Reading video files, image folders and calibrations for the video tools; JPEG frames for CompressedImage."""

import cv2
import numpy as np
import pytest
import yaml
from bad_inputs import memory_ceiling, png_claiming
from real_footage import clip, davis_sequence
from synthetic_video import default_scene, render

from videomolmo_ros.io.camera_calibration import CalibrationError, from_intrinsics, read_calibration
from videomolmo_ros.io.image_codec import JPEG_FORMAT, decode_compressed, encode_jpeg
from videomolmo_ros.io.video_source import FOLDER_FPS, VideoSource, VideoSourceError

FRAMES = 12


def write_video(path, frames=FRAMES, fps=12.5):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (320, 240))
    for k in range(frames):
        writer.write(render(default_scene(), k / fps)[0][:, :, ::-1])
    writer.release()
    return path


def write_folder(folder, frames=FRAMES):
    folder.mkdir()
    for k in range(frames):
        cv2.imwrite(str(folder / f"{k:05d}.png"), render(default_scene(), k / 10)[0][:, :, ::-1])
    (folder / "notes.txt").write_text("not a frame")
    return folder


def test_a_video_file_gives_its_rgb_frames_at_its_rate(tmp_path):
    with VideoSource(write_video(tmp_path / "v.mp4")) as source:
        assert (source.fps, source.frame_count, source.width, source.height) == (12.5, FRAMES, 320, 240)
        frames = list(source.frames())
    assert len(frames) == FRAMES and frames[0].shape == (240, 320, 3)
    red = render(default_scene(), 0.0)[1]["red"]
    assert np.abs(frames[0][red].mean(axis=0) - (220, 30, 30)).max() < 25, "RGB order, not OpenCV's BGR"


def test_looping_starts_again_at_the_first_frame(tmp_path):
    with VideoSource(write_video(tmp_path / "v.mp4")) as source:
        frames = [f for _, f in zip(range(2 * FRAMES + 1), source.frames(loop=True), strict=False)]
    assert len(frames) == 2 * FRAMES + 1
    assert np.array_equal(frames[FRAMES], frames[0]) and np.array_equal(frames[2 * FRAMES], frames[0])


def test_an_image_folder_is_read_in_name_order_at_the_rate_given(tmp_path):
    folder = write_folder(tmp_path / "frames")
    assert VideoSource(folder).fps == FOLDER_FPS
    source = VideoSource(folder, fps=24.0)
    assert (source.fps, source.frame_count) == (24.0, FRAMES)
    frames = list(source.frames())
    assert np.array_equal(frames[3], render(default_scene(), 0.3)[0]), "PNG frames come back exactly"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p / "nothing_here", "no video, image folder or camera"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "holds no images"),
        (lambda p: (p / "bad.mp4").write_text("not a video") and p / "bad.mp4", "cannot open"),
    ],
)
def test_a_source_that_cannot_be_read_is_refused_with_the_reason(tmp_path, setup, message):
    with pytest.raises(VideoSourceError, match=message):
        VideoSource(setup(tmp_path))


def test_an_image_claiming_a_huge_size_is_refused_before_it_is_decoded(tmp_path):
    (tmp_path / "0.png").write_bytes(png_claiming(12_000, 12_000))  # 432 MB of RGB if decoded
    with memory_ceiling(), pytest.raises(VideoSourceError, match=r"0\.png: 12000x12000 pixels, more than 8192 a side"):
        VideoSource(tmp_path)


def test_a_folder_of_mixed_sizes_stops_at_the_odd_frame(tmp_path):
    folder = write_folder(tmp_path / "frames", frames=3)
    cv2.imwrite(str(folder / "00002.png"), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(VideoSourceError, match=r"00002\.png is 10x10, not 320x240"):
        list(VideoSource(folder).frames())


def test_the_real_clips_and_davis_sequences_read_as_their_readme_says():
    with VideoSource(clip("02_cups.mp4")) as cups:
        assert (cups.width, cups.height, cups.frame_count) == (1280, 720, 300)
        assert cups.fps == pytest.approx(29.97, abs=0.01)
        assert sum(1 for _ in cups.frames()) == 300
    frames, _ = davis_sequence("dog")
    dog = VideoSource(frames, fps=24)
    assert (dog.width, dog.height) == (854, 480) and dog.frame_count == len(list(frames.glob("*.jpg")))


# ---------------------------------------------------------------- calibration


def test_intrinsics_make_a_pinhole_camera_centred_by_default():
    calibration = from_intrinsics(640, 480, 500.0)
    assert calibration.k == (500.0, 0.0, 319.5, 0.0, 500.0, 239.5, 0.0, 0.0, 1.0)
    assert calibration.p[:3] == (500.0, 0.0, 319.5) and calibration.d == (0.0,) * 5
    assert from_intrinsics(640, 480, 500.0, 510.0, 300.0, 200.0).k[:6] == (500.0, 0.0, 300.0, 0.0, 510.0, 200.0)
    with pytest.raises(CalibrationError, match="positive"):
        from_intrinsics(640, 480, 0.0)


def test_a_ros_camera_info_yaml_is_read_and_checked_against_the_video(tmp_path):
    k = [610.1, 0.0, 318.2, 0.0, 611.3, 241.7, 0.0, 0.0, 1.0]
    data = {
        "image_width": 640,
        "image_height": 480,
        "camera_name": "head",
        "camera_matrix": {"rows": 3, "cols": 3, "data": k},
        "distortion_model": "plumb_bob",
        "distortion_coefficients": {"rows": 1, "cols": 5, "data": [0.1, -0.2, 0.0, 0.0, 0.05]},
        "rectification_matrix": {"rows": 3, "cols": 3, "data": [1, 0, 0, 0, 1, 0, 0, 0, 1]},
        "projection_matrix": {"rows": 3, "cols": 4, "data": [610.1, 0, 318.2, 0, 0, 611.3, 241.7, 0, 0, 0, 1, 0]},
    }
    path = tmp_path / "head.yaml"
    path.write_text(yaml.safe_dump(data))
    calibration = read_calibration(path)
    assert calibration.k == tuple(k) and calibration.d == (0.1, -0.2, 0.0, 0.0, 0.05)
    calibration.check_size(640, 480, "clip.mp4")
    with pytest.raises(CalibrationError, match=r"for 640x480 images, clip\.mp4 is 1280x720"):
        calibration.check_size(1280, 720, "clip.mp4")
    data["camera_matrix"]["data"] = k[:8]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(CalibrationError, match="camera_matrix has 8 values, not 9"):
        read_calibration(path)


# ---------------------------------------------------------------- JPEG frames


def test_a_jpeg_frame_decodes_as_the_node_decodes_compressed_images():
    image = render(default_scene(1280, 720), 0.0, 1280, 720)[0]
    data = encode_jpeg(image, quality=95)
    assert len(data) < image.nbytes / 10
    decoded = decode_compressed(JPEG_FORMAT, data)
    assert decoded.shape == image.shape
    assert np.abs(decoded.astype(int) - image).mean() < 2.0
