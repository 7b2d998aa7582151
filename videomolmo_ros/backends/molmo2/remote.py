"""A client for a grounding model served behind an OpenAI-compatible chat API (e.g. vLLM).

For fleets, the grounding model can run on a shared inference server instead of on each
robot: the backend sends the context window as a video and the query as text, and parses
the model's text answer exactly as it would parse the in-process model's.

The video travels the way vLLM accepts pre-extracted frames: one `video_url` whose data URL
has the media type `video/jpeg` and holds the frames as comma-separated base64 JPEGs. Only
the standard library is used for HTTP, so the package gains no dependency.
"""

import base64
import http.client
import json
import threading
import urllib.error
import urllib.parse
import urllib.request

import cv2
import numpy as np

_SNIPPET_CHARS = 300
# An answer is a few kB of text; a body larger than this is refused, not read into memory.
MAX_BODY_BYTES = 8 * 1024 * 1024


class RemoteGroundingError(RuntimeError):
    """The grounding server could not be used; the message says why and what to check."""


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

    def complete(self, frames: np.ndarray, prompt: str, max_tokens: int, fps: float | None = None) -> str:
        """The model's answer to `prompt` about `frames` (T x H x W x 3 uint8 RGB, oldest first).

        `fps` is the rate the frames were sampled at. vLLM cannot know it from bare JPEGs: it
        dates frame k at k / fps with fps from the request's `media_io_kwargs` (or the server's
        --media-io-kwargs), else 1, and Molmo2 answers in those seconds. Given, it is sent so
        the answer's times are the window's; None leaves the dating to the server.
        """
        video = {"type": "video_url", "video_url": {"url": encode_video_url(frames, self.jpeg_quality)}}
        payload: dict[str, object] = {
            "model": self.model,
            "messages": [{"role": "user", "content": [video, {"type": "text", "text": prompt}]}],
            "temperature": 0,
            "max_tokens": max_tokens,
        }
        if fps is not None:
            # num_frames too: vLLM keeps only the first num_frames JPEGs (32 unless configured).
            payload["media_io_kwargs"] = {"video": {"fps": fps, "num_frames": len(frames)}}
        return self._content(self._call("/chat/completions", payload))

    def list_models(self) -> list[str]:
        """The model names the server serves (`GET {url}/models`)."""
        answer = self._call("/models")
        try:
            return [str(entry["id"]) for entry in answer["data"]]
        except (KeyError, TypeError) as error:
            raise RemoteGroundingError(f"{self._who()} listed models without data[].id: {answer!r:.300}") from error

    def check(self) -> None:
        """Fail fast (at start-up) when the server is unreachable or does not serve the model."""
        models = self.list_models()
        if self.model not in models:
            raise RemoteGroundingError(f"{self._who()} does not serve model {self.model!r}; it serves {models}")

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
                f"{self._who()} answered HTTP {error.code} {error.reason}: {_snippet(error.read(_SNIPPET_CHARS))}"
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
