"""Test double of an OpenAI-compatible server (vLLM) serving Molmo2: a colour oracle over HTTP.

It speaks the parts of the API the remote grounding client uses (`GET /v1/models`,
`POST /v1/chat/completions` with a `video/jpeg` video) and answers in Molmo2's point and
track grammar, placing points on the regions whose colour the prompt names (synthetic video
from synthetic_video.py). It binds 127.0.0.1 only. Run it in a thread (`OpenAIServerDouble`)
or as a process: `python test/openai_server_double.py --port-file PATH` writes its port to
PATH once it listens and serves until SIGTERM or SIGINT.

Like vLLM, it dates frame k of a request at frames_indices[k] / fps, with fps and frames_indices
(checked as vLLM checks them) from the request's `media_io_kwargs.video` when given, else k and
the server's own `fps`. Its `GET /version` answers with `version` (404 when None, as a server
that is not vLLM). It holds its answers to a request's `structured_outputs.regex` as vLLM does:
an answer outside it is a server error here, so a wrong grammar fails the test.
"""

import argparse
import base64
import contextlib
import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
from oracle_doubles import colour_components
from synthetic_video import COLOURS

DEFAULT_MODEL = "allenai/Molmo2-8B"
_VIDEO_PREFIX = "data:video/jpeg;base64,"


def decode_video_url(url: str) -> list[np.ndarray]:
    """The RGB frames of a `data:video/jpeg;base64,<f1>,<f2>,...` URL, as vLLM splits them."""
    if not url.startswith(_VIDEO_PREFIX):
        raise ValueError(f"not a video/jpeg data URL: {url[:40]!r}")
    frames = []
    for part in url[len(_VIDEO_PREFIX) :].split(","):
        bgr = cv2.imdecode(np.frombuffer(base64.b64decode(part, validate=True), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("a frame is not a JPEG")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return frames


def video_and_prompt(request: dict) -> tuple[str, str]:
    """The video URL and the prompt text of the request's (single) user message."""
    content = request["messages"][-1]["content"]
    videos = [part["video_url"]["url"] for part in content if part.get("type") == "video_url"]
    texts = [part["text"] for part in content if part.get("type") == "text"]
    if len(videos) != 1 or len(texts) != 1:
        raise ValueError(f"expected one video_url and one text part, got {len(videos)} and {len(texts)}")
    return videos[0], texts[0]


def _centroid_per_mille(mask: np.ndarray) -> tuple[int, int]:
    """The region's centroid as Molmo2 writes it: 0-1000 of the frame's width and height."""
    rows, cols = np.nonzero(mask)
    height, width = mask.shape
    return round(1000 * cols.mean() / width), round(1000 * rows.mean() / height)


def frame_times(video: dict, count: int, default_fps: float) -> list[float]:
    """Each frame's time as vLLM dates JPEG frames: frames_indices[k] / fps (k / fps without indices)."""
    fps = float(video.get("fps", default_fps))
    indices = video.get("frames_indices", list(range(count)))
    if not (isinstance(indices, list) and all(isinstance(i, int) for i in indices)):
        raise ValueError("frames_indices must be a list of integers")
    if len(indices) != count:
        raise ValueError(f"frames_indices length ({len(indices)}) must match number of frames sent ({count})")
    total = video.get("total_num_frames", count)
    if not isinstance(total, int) or total < count:
        raise ValueError(f"total_num_frames ({total}) must be an integer >= number of frames sent ({count})")
    return [i / fps for i in indices]


def molmo2_answer(frames: list[np.ndarray], prompt: str, times: list[float]) -> str:
    """What Molmo2 would say if it were a perfect colour oracle.

    Pointing: `<points coords="t i x y;t i x y">label</points>`, i numbering the points.
    Tracking (prompts starting "Track"): `<tracks ...>` where i is the object id, stable across
    frames (the j-th region of a colour, left to right, is the same object on every frame).
    """
    tracking = prompt.strip().lower().startswith("track")
    colours = [name for name in COLOURS if name in prompt.lower()]
    elements, object_ids = [], {}
    for name in colours:
        groups, count = [], 0
        for index, frame in enumerate(frames):
            regions = sorted(_centroid_per_mille(mask) for mask in colour_components(frame, COLOURS[name]))
            points = []
            for j, (x, y) in enumerate(regions):
                count += 1
                number = object_ids.setdefault((name, j), len(object_ids) + 1) if tracking else count
                points.append(f"{number} {x:03d} {y:03d}")
            if points:
                groups.append(f"{times[index]:.1f} " + " ".join(points))
        if groups:
            tag = "tracks" if tracking else "points"
            elements.append(f'<{tag} coords="{";".join(groups)}">{name}</{tag}>')
    if elements:
        return " ".join(elements)
    return "No tracks available." if tracking else "There are none."


class OpenAIServerDouble:
    """The server: attributes are the knobs, settable at any time.

    fps: the frame rate assumed for frames sent without media_io_kwargs.
    version: what GET /version answers (None: 404, a server that is not vLLM).
    refuse_structured_outputs: answer a request with structured_outputs with HTTP 400.
    delay_s: how long to think before answering (timeout tests).
    fail_status: answer chat completions with this HTTP status instead (0: don't).
    malformed: answer chat completions with a body that is not JSON.
    answer: answer chat completions with this text instead of looking at the frames (None: look).
    last_request, last_headers: the last chat completion request, parsed, for assertions.
    """

    def __init__(self, model: str = DEFAULT_MODEL, fps: float = 2.0, port: int = 0):
        self.model = model
        self.fps = fps
        self.version: str | None = None
        self.refuse_structured_outputs = False
        self.delay_s = 0.0
        self.fail_status = 0
        self.malformed = False
        self.answer: str | None = None
        self.last_request: dict | None = None
        self.last_headers: dict[str, str] = {}
        self.stopping = threading.Event()  # cuts a delay short so stop() is quick
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.double = self
        # A short poll interval: stop() waits for the serving loop to notice, once per test.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "OpenAIServerDouble":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> "OpenAIServerDouble":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "vllm"}]}

    def chat_completion(self, request: dict) -> tuple[int, dict]:
        """(status, JSON body) for a parsed request, as vLLM would answer."""
        if request.get("model") != self.model:
            return 404, _error(f"The model `{request.get('model')}` does not exist.", "NotFoundError", 404)
        try:
            url, prompt = video_and_prompt(request)
            frames = decode_video_url(url)
            times = frame_times(request.get("media_io_kwargs", {}).get("video", {}), len(frames), self.fps)
        except (KeyError, TypeError, ValueError) as error:
            return 400, _error(f"bad request: {error}", "BadRequestError", 400)
        grammar = request.get("structured_outputs", {}).get("regex")
        if grammar is not None and self.refuse_structured_outputs:
            return 400, _error("structured outputs are not supported", "BadRequestError", 400)
        text = molmo2_answer(frames, prompt, times) if self.answer is None else self.answer
        if grammar is not None and not re.fullmatch(grammar, text):
            return 500, _error(f"answer {text!r} is outside the requested grammar", "InternalServerError", 500)
        return 200, {
            "id": "chatcmpl-double",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }


def _error(message: str, kind: str, code: int) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


class _Server(ThreadingHTTPServer):
    double: OpenAIServerDouble

    def handle_error(self, request, client_address) -> None:
        """Stay quiet about clients that gave up (timeout tests); report anything else."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        version = self.server.double.version
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, json.dumps(self.server.double.models()).encode())
        elif self.path == "/version" and version is not None:
            self._send(200, json.dumps({"version": version}).encode())
        else:
            self._send(404, json.dumps(_error(f"no route {self.path}", "NotFoundError", 404)).encode())

    def do_POST(self) -> None:
        double = self.server.double
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, json.dumps(_error(f"no route {self.path}", "NotFoundError", 404)).encode())
            return
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        except ValueError as error:
            self._send(400, json.dumps(_error(f"invalid JSON: {error}", "BadRequestError", 400)).encode())
            return
        double.last_request, double.last_headers = request, dict(self.headers)
        if double.stopping.wait(double.delay_s):
            return
        if double.fail_status:
            status = double.fail_status
            self._send(status, json.dumps(_error("double told to fail", "InternalServerError", status)).encode())
        elif double.malformed:
            self._send(200, b'{"choices": [{"message": ')
        else:
            status, body = double.chat_completion(request)
            self._send(status, json.dumps(body).encode())

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: tests read what the client got, not an access log."""


def _write_port(path: Path, port: int) -> None:
    """Atomically, so a reader never sees a half-written port."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(str(port))
    os.replace(partial, path)


def _exit(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port-file", type=Path, required=True, help="where to write the port once listening")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--delay-s", type=float, default=0.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _exit)
    with OpenAIServerDouble(args.model, args.fps, args.port) as double:
        double.delay_s = args.delay_s
        _write_port(args.port_file, double.port)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()


if __name__ == "__main__":
    main()
