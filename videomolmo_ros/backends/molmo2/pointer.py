"""Molmo2 video grounding (allenai/Molmo2-4B, -8B, -O-7B) through the native transformers classes.

The context window's frames go to the model with their real timestamps (relative to the first
frame of the window), so the `t` of every answered point maps back to the exact buffered frame.
The model runs in-process, or on an OpenAI-compatible server (vLLM) for fleets.

The prompt prints each frame's time with one decimal (the processor prints frame index / fps).
Frame indices in tenths of a second at fps 10 make those strings our own rounding of each stamp,
known before the prompt is built: the answer grammar allows exactly them, and a frame whose
printed time equals an earlier frame's is not sent (the model could not say which one it meant).
"""

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from transformers import LogitsProcessorList

from videomolmo_ros.backends.constrained_decoding import grammar_logits_processor, molmo2_answer_regex
from videomolmo_ros.backends.hub import offline_reason
from videomolmo_ros.backends.model_loading import quantization_config, resolve_dtype
from videomolmo_ros.backends.point_grammar import parse_molmo2, to_grounding_result
from videomolmo_ros.contracts.frames import FrameWindow
from videomolmo_ros.contracts.grounding import GroundingMode, GroundingResult
from videomolmo_ros.contracts.interfaces import BackendError, Pointer, startup_only

# What the model was trained to answer, per mode; the query is the user's (already sanitised).
PROMPTS = {GroundingMode.POINT: "Point to {query}.", GroundingMode.TRACK: "Track {query}."}
# Frame indices in tenths of a second: the prompt prints index / 10 with one decimal, exactly.
_STEPS_PER_S = 10
TRAINED_FPS = 2.0  # Molmo2's video training sampled 2 frames a second
MAX_FPS = 10.0  # above this, one-decimal times of neighbouring frames collide


def printed_time(index: int, fps: float) -> str:
    """The time the processor prints for frame `index` of a video at `fps` (its own expression)."""
    return f"{index / fps:.1f}"


def time_steps(times_s: Sequence[float]) -> list[int]:
    """Each stamp in tenths of a second, rounded half up: the frame index the prompt is given."""
    return [math.floor(t * _STEPS_PER_S + 0.5) for t in times_s]


def first_of_each_time(printed: Sequence[str]) -> list[int]:
    """Indices of the frames to send: the first frame of each printed time (later ones are skipped)."""
    seen: set[str] = set()
    kept = []
    for index, text in enumerate(printed):
        if text not in seen:
            seen.add(text)
            kept.append(index)
    return kept


def context_warnings(context_frames: int, context_fps: float) -> list[str]:
    """What to say about a context rate Molmo2 was not trained on; raises BackendError where times collide."""
    if context_fps > MAX_FPS:
        raise BackendError(
            f"context_fps {context_fps:g} Hz is too fast for Molmo2: its prompt prints frame times with one "
            f"decimal, so frames closer than {1 / MAX_FPS:g} s share a time and points land on the wrong frame. "
            f"Use at most {MAX_FPS:g} Hz ({TRAINED_FPS:g} Hz is what Molmo2 was trained on)."
        )
    if context_fps > TRAINED_FPS:
        return [
            f"context_fps {context_fps:g} Hz: Molmo2 was trained on video sampled at {TRAINED_FPS:g} Hz; "
            f"{context_frames} frames at {context_fps:g} Hz span {(context_frames - 1) / context_fps:.1f} s, "
            f"at {TRAINED_FPS:g} Hz they would span {(context_frames - 1) / TRAINED_FPS:.1f} s"
        ]
    return []


@dataclass(frozen=True)
class Molmo2Options:
    model: str = startup_only("allenai/Molmo2-4B")  # hub id (-4B, -8B, -O-7B) or a local checkpoint folder
    revision: str = startup_only("")  # hub revision to pin; empty: the default branch
    dtype: str = startup_only("auto")  # auto: bfloat16 on GPU, float32 on CPU; or float32, bfloat16, float16
    quantization: str = startup_only("none")  # none, 4bit or 8bit (bitsandbytes, GPU only)
    trust_remote_code: bool = startup_only(False)  # never needed for Molmo2; only for checkpoints that ship code
    max_new_tokens: int = 2048  # tokens an answer may take at most
    constrained: bool = True  # force the output grammar during decoding
    max_points_per_frame: int = 16  # points (or objects) per frame at most; an answer: this x frames shown, at most
    server_url: str = startup_only("")  # OpenAI-compatible server (e.g. http://gpu-host:8000/v1); empty: run in-process
    server_model: str = startup_only("")  # model name on the server; empty: `model`
    server_timeout_s: float = 30.0  # seconds to wait for the server's answer (a timeout: a counted failure)


def missing_checkpoint(model: str, error: Exception, offline: str = "") -> BackendError:
    """Say what to download and where to put it, instead of a stack trace from the hub client."""
    from huggingface_hub import constants

    offline = f" ({offline})" if offline else ""
    return BackendError(
        f"Molmo2 checkpoint {model!r} could not be loaded{offline}. It is not a local folder with a "
        f"checkpoint, and not in the Hugging Face cache {constants.HF_HUB_CACHE}. Download it on a machine with "
        f"internet (`hf download {model}`, then copy the cache folder), or put config.json, the *.safetensors "
        f"weights and the tokenizer/processor files in a folder and set molmo2.model to it. ({error})"
    )


def load_molmo2(options: Molmo2Options, device: torch.device):
    """The processor and the model in eval mode on `device`, as the options ask."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    dtype = resolve_dtype(options.dtype, device, "molmo2.dtype")
    quantization = quantization_config(options.quantization, device, "molmo2.quantization")
    if os.path.exists(options.model) and not os.path.isfile(os.path.join(options.model, "config.json")):
        raise BackendError(
            f"molmo2.model {options.model!r} is not a checkpoint folder (no config.json in it); give a folder "
            "holding config.json, the *.safetensors weights and the processor files, or a hub id"
        )
    # Without a network the hub client retries for minutes: look only in the cache then.
    offline = "" if os.path.exists(options.model) else offline_reason()
    common = {
        "revision": options.revision or None,
        "trust_remote_code": options.trust_remote_code,
        "local_files_only": bool(offline),
    }
    try:
        processor = AutoProcessor.from_pretrained(options.model, **common)
        model = AutoModelForImageTextToText.from_pretrained(
            options.model,
            dtype=dtype,
            quantization_config=quantization,
            device_map={"": device} if quantization else None,
            **common,
        )
    except OSError as error:
        raise missing_checkpoint(options.model, error, offline) from error
    if quantization is None:
        model.to(device)
    return processor, model.eval()


class Molmo2Pointer(Pointer):
    """Points at / tracks what a query names in the context window, with Molmo2."""

    Options = Molmo2Options

    def __init__(self, options: Molmo2Options, device: torch.device):
        super().__init__(options, device)
        self.remote = None
        if options.server_url:
            from videomolmo_ros.backends.molmo2.remote import OpenAIVideoClient, RemoteGroundingError

            name = options.server_model or options.model
            # The key comes from the environment, not a parameter anyone can read off the graph.
            key = os.environ.get("VIDEOMOLMO_SERVER_API_KEY", "")
            self.remote = OpenAIVideoClient(options.server_url, name, options.server_timeout_s, api_key=key)
            try:
                self.remote.check()  # a wrong URL or model name fails at start-up, not at the first query
            except RemoteGroundingError as error:
                raise BackendError(str(error)) from error
            return
        self.processor, self.model = load_molmo2(options, device)
        self.dtype = (
            resolve_dtype(options.dtype, device, "molmo2.dtype") if options.quantization == "none" else torch.bfloat16
        )

    def check_context(self, context_frames: int, context_fps: float) -> list[str]:
        notes = [] if self.remote is None else list(self.remote.notes)
        return notes + context_warnings(context_frames, context_fps)

    def describe(self) -> str:
        if self.remote is None:
            return f"Molmo2Pointer ({self.options.model})"
        return f"Molmo2Pointer (server {self.remote.host}, model {self.remote.model})"

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        prompt = PROMPTS[mode].format(query=query)
        fps, steps = self.frame_steps(window.seconds_since_first())
        printed = [printed_time(k, fps) for k in steps]
        kept = first_of_each_time(printed)
        steps, printed = [steps[i] for i in kept], [printed[i] for i in kept]
        images = window.images if len(kept) == len(window) else window.images[kept]
        regex = self.answer_regex(mode, printed)
        problems: tuple[str, ...] = ()
        if self.remote is not None:
            text, problems = self.remote.complete(
                images.cpu().numpy(), prompt, self.options.max_new_tokens, self.server_video(fps, steps), regex
            )
        else:
            text = self.generate(self.prepare(images, steps, prompt), regex)
        height, width = window.images.shape[1:3]
        shown = [float(t) for t in printed]
        parsed = parse_molmo2(text, self.options.max_points_per_frame * len(kept))  # the grammar's limit, on every path
        result = to_grounding_result(parsed, shown, width, height, text, kept)
        return replace(result, problems=problems + result.problems, skipped_frames=len(window) - len(kept))

    def frame_steps(self, times_s: list[float]) -> tuple[float, list[int]]:
        """The rate and frame indices the frames are dated with (the prompt prints index / rate).

        Tenths of a second at 10 fps: each frame's real time. A server that takes no frame
        indices dates frame k at k / fps: the window's mean rate, then.
        """
        if self.remote is not None and not self.remote.frame_indices:
            return (len(times_s) - 1) / times_s[-1] if times_s[-1] > 0 else 1.0, list(range(len(times_s)))
        return _STEPS_PER_S, time_steps(times_s)

    def server_video(self, fps: float, steps: list[int]) -> dict[str, object]:
        """How the server is told to date the frames (vLLM's media_io_kwargs for a video)."""
        video: dict[str, object] = {"fps": fps, "num_frames": len(steps)}
        if self.remote.frame_indices:
            video |= {"frames_indices": steps, "total_num_frames": steps[-1] + 1, "duration": steps[-1] / fps}
        return video

    def prepare(self, images: torch.Tensor, steps: Sequence[int], prompt: str):
        """Processor inputs for frames (T x H x W x 3) at `steps` tenths of a second, on the model's device."""
        from transformers.video_utils import VideoMetadata

        metadata = VideoMetadata(
            total_num_frames=steps[-1] + 1,
            fps=_STEPS_PER_S,
            frames_indices=list(steps),
            duration=steps[-1] / _STEPS_PER_S,
        )
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(
            text=text,
            videos=[images],
            video_metadata=[metadata],
            do_sample_frames=False,
            device=str(self.device),
            return_tensors="pt",
        )
        return inputs.to(self.device, dtype=self.dtype)

    def answer_regex(self, mode: GroundingMode, printed_times: Sequence[str]) -> str | None:
        """The grammar decoding is held to (None when unconstrained): the times the prompt printed."""
        if not self.options.constrained:
            return None
        return molmo2_answer_regex(
            mode.name.lower(),
            max_groups=len(printed_times),
            max_points=self.options.max_points_per_frame,
            frame_times=printed_times,
        )

    def generate(self, inputs, regex: str | None) -> str:
        """Greedy decoding, held to `regex` when given; the answer text."""
        extra = {}
        if regex is not None:
            head_size = self.model.get_output_embeddings().weight.shape[0]
            processor = grammar_logits_processor(self.processor.tokenizer, regex, head_size)
            extra["logits_processor"] = LogitsProcessorList([processor])
        with torch.inference_mode():
            output = self.model.generate(**inputs, max_new_tokens=self.options.max_new_tokens, do_sample=False, **extra)
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        return self.processor.tokenizer.decode(new_tokens, skip_special_tokens=True)
