"""Molmo2 video grounding (allenai/Molmo2-4B, -8B, -O-7B) through the native transformers classes.

The context window's frames go to the model with their real timestamps (relative to the first
frame of the window), so the `t` of every answered point maps back to the exact buffered frame.
The model runs in-process, or on an OpenAI-compatible server (vLLM) for fleets.
"""

import os
from dataclasses import dataclass

import torch
from transformers import LogitsProcessorList

from videomolmo_ros.backends.constrained_decoding import grammar_logits_processor, molmo2_answer_regex
from videomolmo_ros.backends.interfaces import GroundingResult, Pointer, startup_only
from videomolmo_ros.backends.model_loading import quantization_config, resolve_dtype
from videomolmo_ros.backends.point_grammar import parse_molmo2, to_grounding_result
from videomolmo_ros.backends.registry import BackendError
from videomolmo_ros.pipeline.commands import GroundingMode
from videomolmo_ros.pipeline.frame_buffer import FrameWindow

# What the model was trained to answer, per mode; the query is the user's (already sanitised).
PROMPTS = {GroundingMode.POINT: "Point to {query}.", GroundingMode.TRACK: "Track {query}."}
# Molmo2 prints timestamps with one decimal; metadata in milliseconds keeps them exact.
_TIME_UNITS_PER_S = 1000


@dataclass(frozen=True)
class Molmo2Options:
    model: str = startup_only("allenai/Molmo2-4B")  # hub id (-4B, -8B, -O-7B) or a local checkpoint folder
    revision: str = startup_only("")  # hub revision to pin; empty: the default branch
    dtype: str = startup_only("auto")  # auto: bfloat16 on GPU, float32 on CPU; or float32, bfloat16, float16
    quantization: str = startup_only("none")  # none, 4bit or 8bit (bitsandbytes, GPU only)
    trust_remote_code: bool = startup_only(False)  # never needed for Molmo2; only for checkpoints that ship code
    max_new_tokens: int = 2048
    constrained: bool = True  # force the output grammar during decoding
    max_points_per_frame: int = 16  # under the grammar: at most this many points (or objects) per frame
    server_url: str = startup_only("")  # OpenAI-compatible server (e.g. http://gpu-host:8000/v1); empty: run in-process
    server_model: str = startup_only("")  # model name on the server; empty: `model`
    server_timeout_s: float = 30.0


def missing_checkpoint(model: str, error: Exception) -> BackendError:
    """Say what to download and where to put it, instead of a stack trace from the hub client."""
    from huggingface_hub import constants

    offline = " (offline: HF_HUB_OFFLINE is set)" if constants.HF_HUB_OFFLINE else ""
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
    common = {"revision": options.revision or None, "trust_remote_code": options.trust_remote_code}
    if os.path.exists(options.model) and not os.path.isfile(os.path.join(options.model, "config.json")):
        raise BackendError(
            f"molmo2.model {options.model!r} is not a checkpoint folder (no config.json in it); give a folder "
            "holding config.json, the *.safetensors weights and the processor files, or a hub id"
        )
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
        raise missing_checkpoint(options.model, error) from error
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

    def describe(self) -> str:
        if self.remote is None:
            return f"Molmo2Pointer ({self.options.model})"
        return f"Molmo2Pointer (server {self.remote.host}, model {self.remote.model})"

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        prompt = PROMPTS[mode].format(query=query)
        if self.remote is not None:
            # A server takes evenly spaced frames at one rate: send the window's mean rate, and
            # read its times back on that grid.
            times = window.seconds_since_first()
            fps = (len(times) - 1) / times[-1] if times[-1] > 0 else 1.0
            frames = window.images.cpu().numpy()
            text = self.remote.complete(frames, prompt, self.options.max_new_tokens, fps=fps)
            times = [k / fps for k in range(len(window))]
        else:
            times = window.seconds_since_first()
            text = self.generate(self.prepare(window, prompt), self.answer_regex(mode, times))
        return to_grounding_result(parse_molmo2(text), times, window.images.shape[2], window.images.shape[1], text)

    def prepare(self, window: FrameWindow, prompt: str):
        """Processor inputs for the window's frames with their real timestamps, on the model's device."""
        from transformers.video_utils import VideoMetadata

        times = window.seconds_since_first()
        metadata = VideoMetadata(
            total_num_frames=len(window),
            fps=_TIME_UNITS_PER_S,
            frames_indices=[round(t * _TIME_UNITS_PER_S) for t in times],
            duration=times[-1],
        )
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(
            text=text,
            videos=[window.images],
            video_metadata=[metadata],
            do_sample_frames=False,
            device=str(self.device),
            return_tensors="pt",
        )
        return inputs.to(self.device, dtype=self.dtype)

    def answer_regex(self, mode: GroundingMode, frame_times_s: list[float]) -> str | None:
        """The grammar decoding is held to (None when unconstrained): timestamps of the frames shown."""
        if not self.options.constrained:
            return None
        return molmo2_answer_regex(
            mode.name.lower(),
            max_groups=len(frame_times_s),
            max_points=self.options.max_points_per_frame,
            frame_times=frame_times_s,
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
