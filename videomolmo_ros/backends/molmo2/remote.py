"""A client for a grounding model served behind an OpenAI-compatible chat API (e.g. vLLM).

For fleets, the grounding model can run on a shared inference server instead of on each
robot: the backend sends the context window as a video and the query as text, and parses
the model's text answer exactly as it would parse the in-process model's.

The video travels the way vLLM accepts pre-extracted frames: one `video_url` whose data URL
has the media type `video/jpeg` and holds the frames as comma-separated base64 JPEGs. Only
the standard library is used for HTTP, so the package gains no dependency.

vLLM versions matter (read from `GET /version` at start-up):
- before its JPEG-frame metadata fix (vllm-project/vllm#37301, March 2026) such a video has no
  metadata and Molmo2 requests fail with HTTP 400;
- with per-frame indices for JPEG frames (`frames_indices`, `total_num_frames` and `duration` in
  `media_io_kwargs`, vllm-project/vllm#40133, April 2026) the model sees the real timestamps,
  as in-process; before, it sees frame k at k / fps (the window's mean rate).
The answer grammar goes as `structured_outputs: {"regex": ...}` (vLLM 0.10.2 on); a server that
refuses it gets the request again without, and from then on none (said once). Its answers are then
unconstrained, so the pointer's parser holds them to the grammar's point limit (it reads no more
than that many points take), and a body is at most MAX_BODY_BYTES.
"""

import base64
import http.client
import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request

import cv2
import numpy as np

_SNIPPET_CHARS = 300
# First vLLM releases known to carry the fixes above (older ones still serve, with the notes below).
JPEG_METADATA_VLLM = (0, 19)
FRAME_INDICES_VLLM = (0, 21)
# An answer is a few kB of text; a body larger than this is refused, not read into memory.
MAX_BODY_BYTES = 8 * 1024 * 1024


class RemoteGroundingError(RuntimeError):
    """The grounding server could not be used; the message says why and what to check."""

    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status  # the HTTP status, when the server answered with an error


def parse_version(text: str) -> tuple[int, ...] | None:
    """(0, 21, 1) for "0.21.1", "0.21.1rc2" or "0.21.1+cu130"; None when it is not a version."""
    match = re.match(r"([0-9]+)\.([0-9]+)(?:\.([0-9]+))?", text)
    return None if match is None else tuple(int(part) for part in match.groups(default="0"))


def encode_video_url(frames: np.ndarray, jpeg_quality: int = 90) -> str:
    """T x H x W x 3 uint8 RGB frames -> a `data:video/jpeg;base64,<f1>,<f2>,...` URL."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be T x H x W x 3 uint8 RGB with T >= 1, got {frames.shape} {frames.dtype}")
    return "data:video/jpeg;base64," + ",".join(_jpeg_base64(frame, jpeg_quality) for frame in frames)


def _jpeg_base64(frame: np.ndarray, quality: int) -> str:
    # OpenCV encodes BGR; the frames are RGB.
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not JPEG-encode a {frame.shape} frame")
    return base64.b64encode(jpeg.tobytes()).decode("ascii")


def _snippet(body: bytes) -> str:
    return body[:_SNIPPET_CHARS].decode("utf-8", errors="replace")


class OpenAIVideoClient:
    """Sends frames + a prompt to `{url}/chat/completions` and returns the assistant's text.

    Requests are greedy (temperature 0) so the same window and query give the same answer.
    Calls are serialised by a lock: the grounding worker makes one call at a time anyway, and
    a lock keeps the client safe if another thread (a health check) shares it. Proxies from
    the environment are ignored: the inference server sits on the robot's or the fleet's own
    network, and an http_proxy meant for the internet would only misroute the frames.
    """

    def __init__(self, url: str, model: str, timeout_s: float, api_key: str = "", jpeg_quality: int = 90):
        if not 1 <= jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be 1-100, got {jpeg_quality}")
        self.url = url.rstrip("/")
        parts = urllib.parse.urlsplit(self.url)
        self.host = parts.netloc.rpartition("@")[2]  # what logs and errors name: never credentials in the URL
        self._shown_url = parts._replace(netloc=self.host).geturl()
        self.model = model
        self.timeout_s = timeout_s
        self.jpeg_quality = jpeg_quality
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._lock = threading.Lock()
        self.version: tuple[int, ...] | None = None  # the server's vLLM version, read by check()
        self.frame_indices = False  # whether the server dates frames by frames_indices (check() sets it)
        self.structured_outputs = True  # off once the server refused the answer grammar
        self.notes: list[str] = []  # what start-up learnt about the server, to be said once

    def complete(
        self,
        frames: np.ndarray,
        prompt: str,
        max_tokens: int,
        video: dict[str, object] | None = None,
        regex: str | None = None,
    ) -> tuple[str, tuple[str, ...]]:
        """The model's answer to `prompt` about `frames` (T x H x W x 3 uint8 RGB, oldest first), with notes.

        `video` goes as the request's `media_io_kwargs.video`: vLLM cannot know the frames' times
        from bare JPEGs; it dates frame k at frames_indices[k] / fps (at k / fps without indices,
        fps 1 by default) and Molmo2 answers in those seconds. Put num_frames in it too: vLLM keeps
        only the first num_frames JPEGs (32 unless configured). `regex` holds decoding to the
        answer grammar; the notes say (once) that the server refused it.
        """
        part = {"type": "video_url", "video_url": {"url": encode_video_url(frames, self.jpeg_quality)}}
        payload: dict[str, object] = {
            "model": self.model,
            "messages": [{"role": "user", "content": [part, {"type": "text", "text": prompt}]}],
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        if video is not None:
            payload["media_io_kwargs"] = {"video": video}
        if regex is None or not self.structured_outputs:
            return self._content(self._call("/chat/completions", payload)), ()
        try:
            constrained = {**payload, "structured_outputs": {"regex": regex}}
            return self._content(self._call("/chat/completions", constrained)), ()
        except RemoteGroundingError as error:
            if error.status != 400:
                raise
            refusal = str(error)
        answer = self._content(self._call("/chat/completions", payload))  # so the grammar was the problem
        self.structured_outputs = False
        return answer, (f"{self._who()} refused the answer grammar ({refusal}); its answers are unconstrained now on",)

    def list_models(self) -> list[str]:
        """The model names the server serves (`GET {url}/models`)."""
        answer = self._call("/models")
        try:
            return [str(entry["id"]) for entry in answer["data"]]
        except (KeyError, TypeError) as error:
            raise RemoteGroundingError(f"{self._who()} listed models without data[].id: {answer!r:.300}") from error

    def check(self) -> None:
        """Fail fast (at start-up) when the server is unreachable or does not serve the model; read its version."""
        models = self.list_models()
        if self.model not in models:
            raise RemoteGroundingError(f"{self._who()} does not serve model {self.model!r}; it serves {models}")
        self.version = self._server_version()
        self.frame_indices = self.version is not None and self.version >= FRAME_INDICES_VLLM
        shown = "of unknown version" if self.version is None else "vLLM " + ".".join(map(str, self.version))
        if self.version is not None and self.version < JPEG_METADATA_VLLM:
            self.notes.append(
                f"{self._who()} is {shown}: vLLM before {_dotted(JPEG_METADATA_VLLM)} (its JPEG-frame metadata fix) "
                "answers Molmo2 video requests with HTTP 400; upgrade the server"
            )
        if not self.frame_indices:
            self.notes.append(
                f"{self._who()} is {shown}, which takes no per-frame indices for JPEG frames (vLLM "
                f"{_dotted(FRAME_INDICES_VLLM)} on does): the model sees the frames evenly spaced at the window's "
                "mean rate, not at their real times"
            )

    def _server_version(self) -> tuple[int, ...] | None:
        """vLLM's `GET /version` (beside /v1), or None when the server has none."""
        root = self.url.removesuffix("/v1")
        try:
            with self._lock:
                body = self._exchange(urllib.request.Request(f"{root}/version", headers=self._headers))
            answer = json.loads(body)
            return parse_version(str(answer["version"]))
        except (RemoteGroundingError, ValueError, KeyError, TypeError):
            return None

    def _who(self) -> str:
        return f"the grounding server at {self._shown_url}"

    def _content(self, answer: object) -> str:
        try:
            content = answer["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as error:
            raise RemoteGroundingError(
                f"{self._who()} answered without choices[0].message.content: {answer!r:.300}"
            ) from error
        if not isinstance(content, str):
            raise RemoteGroundingError(f"{self._who()} answered with non-text content: {content!r:.300}")
        return content

    def _call(self, path: str, payload: dict | None = None) -> object:
        """One HTTP exchange; every way it can fail becomes a RemoteGroundingError."""
        data = None if payload is None else json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(f"{self.url}{path}", data=data, headers=self._headers)
        with self._lock:
            body = self._exchange(request)
        try:
            return json.loads(body)
        except ValueError as error:
            raise RemoteGroundingError(f"{self._who()} sent malformed JSON: {_snippet(body)!r}") from error

    def _exchange(self, request: urllib.request.Request) -> bytes:
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                body = response.read(MAX_BODY_BYTES + 1)
        except urllib.error.HTTPError as error:
            raise RemoteGroundingError(
                f"{self._who()} answered HTTP {error.code} {error.reason}: {_snippet(error.read(_SNIPPET_CHARS))}",
                error.code,
            ) from error
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError):
                raise self._timeout() from error
            raise RemoteGroundingError(
                f"cannot reach {self._who()} ({error.reason}); check molmo2.server_url and that the server is running"
            ) from error
        except TimeoutError as error:  # the answer started but did not finish in time
            raise self._timeout() from error
        except (ConnectionError, http.client.HTTPException) as error:
            raise RemoteGroundingError(f"{self._who()} dropped the connection: {error!r}") from error
        if len(body) > MAX_BODY_BYTES:
            raise RemoteGroundingError(f"{self._who()} sent an answer of more than {MAX_BODY_BYTES} bytes: refused")
        return body

    def _timeout(self) -> RemoteGroundingError:
        return RemoteGroundingError(f"{self._who()} did not answer within the timeout of {self.timeout_s:g} s")


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))
