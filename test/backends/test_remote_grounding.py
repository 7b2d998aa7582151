"""The remote grounding client against an OpenAI-compatible server double, in-thread and as a process."""

import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import openai_server_double
import pytest
from openai_server_double import OpenAIServerDouble, decode_video_url
from polling import wait_for
from synthetic_video import default_scene, render

from videomolmo_ros.backends.molmo2.remote import OpenAIVideoClient, RemoteGroundingError, encode_video_url

WIDTH, HEIGHT = 320, 240
TIMES = [0.0, 0.5, 1.0, 1.5]  # frames sampled at 2 Hz, as the node's context window
MODEL = "allenai/Molmo2-8B"
ELEMENT = re.compile(r'<(points|tracks) coords="([^"]*)">(\w+)</\1>')


@pytest.fixture
def server():
    with OpenAIServerDouble(MODEL) as double:
        yield double


def _video():
    """The frames and each frame's true masks."""
    rendered = [render(default_scene(WIDTH, HEIGHT), t, WIDTH, HEIGHT) for t in TIMES]
    return np.stack([image for image, _ in rendered]), [masks for _, masks in rendered]


def _parse(answer: str) -> list[tuple[str, str, float, int, int, int]]:
    """(tag, label, t, i, x, y) for every point of a Molmo2 answer."""
    points = []
    for tag, coords, label in ELEMENT.findall(answer):
        for group in coords.split(";"):
            t, *rest = group.split(" ")
            for i, x, y in zip(rest[0::3], rest[1::3], rest[2::3], strict=True):
                assert all(re.fullmatch(r"\d{3}|1000", v) for v in (x, y)), f"not zero-padded: {group!r}"
                points.append((tag, label, float(t), int(i), int(x), int(y)))
    return points


def _client(server: OpenAIServerDouble, **kwargs) -> OpenAIVideoClient:
    return OpenAIVideoClient(server.url, MODEL, **{"timeout_s": 10.0, **kwargs})


def test_points_fall_on_the_named_disc_of_each_frame(server):
    frames, masks = _video()
    answer, notes = _client(server).complete(frames, "Point to the red disc.", max_tokens=256)
    points = _parse(answer)
    assert notes == ()
    assert [(tag, label, t) for tag, label, t, *_ in points] == [("points", "red", t) for t in TIMES]
    assert [i for *_, i, _, _ in points] == [1, 2, 3, 4]  # the running point number
    # By hand at t = 0: the red disc is centred at (0.3 * 320 + 0.1 * 320, 0.5 * 240) = (128, 120)
    # pixels, i.e. (400, 500) per mille of the width and height.
    assert points[0][4:] == pytest.approx((400, 500), abs=3)
    red = default_scene(WIDTH, HEIGHT)[0]
    for (*_, t, _, x, y), frame_masks in zip(points, masks, strict=True):
        cx, cy = red.centre(t)
        assert (x, y) == pytest.approx((1000 * cx / WIDTH, 1000 * cy / HEIGHT), abs=3)
        assert frame_masks["red"][int(y / 1000 * HEIGHT), int(x / 1000 * WIDTH)]


def test_tracks_carry_object_ids_and_absence_has_its_own_words(server):
    frames, _ = _video()
    client = _client(server)
    tracks = _parse(client.complete(frames, "Track the blue disc.", max_tokens=256)[0])
    assert [(tag, label, t, i) for tag, label, t, i, _, _ in tracks] == [("tracks", "blue", t, 1) for t in TIMES]
    assert client.complete(frames, "Point to the green disc.", max_tokens=64)[0] == "There are none."
    assert client.complete(frames, "Track the green disc.", max_tokens=64)[0] == "No tracks available."


def test_request_is_what_vllm_expects(server):
    frames, _ = _video()
    _client(server, api_key="secret").complete(frames, "Point to the red disc.", max_tokens=77)
    request = server.last_request
    assert request["model"] == MODEL
    assert request["temperature"] == 0
    assert request["max_tokens"] == 77
    assert "media_io_kwargs" not in request  # no fps given: the server's default applies
    assert "structured_outputs" not in request  # no grammar given
    assert server.last_headers["Authorization"] == "Bearer secret"
    [message] = request["messages"]
    assert message["role"] == "user"
    video, text = message["content"]
    assert text == {"type": "text", "text": "Point to the red disc."}
    assert video["type"] == "video_url"
    assert video["video_url"]["url"].startswith("data:video/jpeg;base64,")
    decoded = np.stack(decode_video_url(video["video_url"]["url"]))
    assert decoded.shape == frames.shape
    error = np.abs(decoded.astype(np.int16) - frames.astype(np.int16))
    assert error.mean() < 2.0  # JPEG at quality 90: small errors, largest along the disc edges


def test_fps_travels_as_media_io_kwargs_and_dates_the_answer(server):
    frames, _ = _video()
    video = {"fps": 4.0, "num_frames": len(TIMES)}
    answer, _ = _client(server).complete(frames, "Point to the red disc.", max_tokens=256, video=video)
    assert server.last_request["media_io_kwargs"] == {"video": video}
    assert [t for _, _, t, *_ in _parse(answer)] == [0.0, 0.2, 0.5, 0.8]  # k / 4, one decimal


def test_frame_indices_date_each_frame_at_its_own_time(server):
    frames, _ = _video()
    video = {"fps": 10, "num_frames": 4, "frames_indices": [0, 4, 11, 15], "total_num_frames": 16, "duration": 1.5}
    answer, _ = _client(server).complete(frames, "Point to the red disc.", max_tokens=256, video=video)
    assert [t for _, _, t, *_ in _parse(answer)] == [0.0, 0.4, 1.1, 1.5]
    with pytest.raises(RemoteGroundingError, match=r"HTTP 400 .*frames_indices length"):
        _client(server).complete(frames, "red", 16, video={**video, "frames_indices": [0, 4]})


@pytest.mark.parametrize(
    ("version", "frame_indices", "words"),
    [
        ("0.21.0", True, []),
        ("0.22.1rc1+cu130", True, []),
        ("0.20.2", False, ["vLLM 0.20.2", "0.21", "evenly spaced"]),
        ("0.17.1", False, ["vLLM 0.17.1", "HTTP 400", "upgrade", "evenly spaced"]),
        (None, False, ["unknown version", "evenly spaced"]),
    ],
)
def test_start_up_reads_the_servers_version_to_know_how_it_dates_frames(server, version, frame_indices, words):
    server.version = version
    client = _client(server)
    client.check()
    assert client.frame_indices is frame_indices
    said = " ".join(client.notes)
    assert all(word in said for word in words), said
    assert bool(client.notes) == bool(words)


def test_the_answer_grammar_travels_as_structured_outputs(server):
    frames, _ = _video()
    grammar = r'<points coords="[^"]*">red</points>'
    answer, notes = _client(server).complete(frames, "Point to the red disc.", 256, regex=grammar)
    assert server.last_request["structured_outputs"] == {"regex": grammar}
    assert re.fullmatch(grammar, answer) and notes == ()
    with pytest.raises(RemoteGroundingError, match="outside the requested grammar"):  # the double enforces it
        _client(server).complete(frames, "Point to the red disc.", 256, regex="There are none\\.")


def test_a_server_refusing_the_grammar_is_asked_again_without_it_and_told_once(server):
    frames, _ = _video()
    server.refuse_structured_outputs = True
    client = _client(server)
    answer, notes = client.complete(frames, "Point to the red disc.", 256, regex=r"<points.*")
    assert _parse(answer) and "structured_outputs" not in server.last_request
    (note,) = notes
    assert "refused the answer grammar" in note and "HTTP 400" in note
    answer, notes = client.complete(frames, "Point to the red disc.", 256, regex=r"<points.*")
    assert _parse(answer) and notes == () and "structured_outputs" not in server.last_request


def test_jpeg_quality_is_the_clients_choice():
    frame = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), np.uint8)
    assert len(encode_video_url(frame, jpeg_quality=30)) < len(encode_video_url(frame, jpeg_quality=95))
    with pytest.raises(ValueError, match="T x H x W x 3 uint8"):
        encode_video_url(frame[..., 0])


def test_check_lists_the_models_and_names_a_missing_one(server):
    _client(server).check()
    assert _client(server).list_models() == [MODEL]
    with pytest.raises(RemoteGroundingError, match="does not serve model 'other/model'"):
        OpenAIVideoClient(server.url, "other/model", timeout_s=5.0).check()


def test_remote_client_against_a_server_process_started_by_the_test(tmp_path: Path):
    port_file = tmp_path / "port"
    script = Path(openai_server_double.__file__)
    process = subprocess.Popen([sys.executable, str(script), "--port-file", str(port_file)])
    try:
        assert wait_for(port_file.exists, timeout_s=30.0), "the server process never wrote its port"
        client = OpenAIVideoClient(f"http://127.0.0.1:{port_file.read_text()}/v1", MODEL, timeout_s=10.0)
        client.check()
        frames, _ = _video()
        points = _parse(client.complete(frames, "Point to the red disc.", max_tokens=256)[0])
        assert [(label, t) for _, label, t, *_ in points] == [("red", t) for t in TIMES]
    finally:
        process.terminate()
        returncode = process.wait(10)
    assert returncode == 0


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_unreachable_server_fails_fast_naming_the_url():
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    client = OpenAIVideoClient(url, MODEL, timeout_s=5.0)
    with pytest.raises(RemoteGroundingError) as raised:
        client.complete(_video()[0], "Point to the red disc.", max_tokens=16)
    assert "refused" in str(raised.value).lower(), "the refusal itself, not a timeout after retries"
    assert url in str(raised.value)
    assert "molmo2.server_url" in str(raised.value)
    with pytest.raises(RemoteGroundingError, match=re.escape(url)):
        client.check()


def test_slow_server_times_out_naming_the_timeout(server):
    server.delay_s = 5.0  # the client gives up at its own timeout, long before the answer comes
    with pytest.raises(RemoteGroundingError, match=r"timeout of 0\.3 s"):
        _client(server, timeout_s=0.3).complete(_video()[0], "Point to the red disc.", max_tokens=16)


def test_http_error_carries_status_and_body(server):
    server.fail_status = 500
    with pytest.raises(RemoteGroundingError, match=r"HTTP 500 .*double told to fail"):
        _client(server).complete(_video()[0], "Point to the red disc.", max_tokens=16)


def test_wrong_model_is_vllms_404(server):
    with pytest.raises(RemoteGroundingError, match=r"HTTP 404 .*`other/model` does not exist"):
        OpenAIVideoClient(server.url, "other/model", timeout_s=5.0).complete(_video()[0], "red", 16)


def test_malformed_json_is_reported(server):
    server.malformed = True
    with pytest.raises(RemoteGroundingError, match="malformed JSON"):
        _client(server).complete(_video()[0], "Point to the red disc.", max_tokens=16)


def test_an_answer_larger_than_the_bound_is_refused_not_read(server, monkeypatch):
    from videomolmo_ros.backends.molmo2 import remote

    monkeypatch.setattr(remote, "MAX_BODY_BYTES", 16)
    with pytest.raises(RemoteGroundingError, match="more than 16 bytes"):
        _client(server).list_models()
