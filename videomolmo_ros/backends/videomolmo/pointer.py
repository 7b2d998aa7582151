"""VideoMolmo grounding (ghazishazan/VideoMolmo): Molmo-7B-D with a temporal module, points per frame.

VideoMolmo points on one frame, the newest camera frame, conditioned on the previous 4 camera
frames (black frames at the start of a stream), as its reference inference does: its temporal
module was trained on consecutive video frames. So it reads the last 5 frames of the camera-rate
stream ring (`camera_rate_frames`), not the context window sampled at `context_fps`.

Every frame is encoded by the vision encoder once: its features are cached beside the frame in
the buffer, so a query encodes only frames no earlier query saw (the reference re-encodes the 4
previous frames at every query; the numbers are the same).
"""

import os
import re
from dataclasses import dataclass

import torch
from transformers import LogitsProcessorList

from videomolmo_ros.backends.constrained_decoding import grammar_logits_processor, molmo_v1_answer_regex
from videomolmo_ros.backends.model_loading import quantization_config, resolve_dtype
from videomolmo_ros.backends.point_grammar import parse_molmo_v1, to_grounding_result
from videomolmo_ros.backends.videomolmo.model import (
    CHECKPOINT_ID,
    PAST_FRAMES,
    CheckpointError,
    VideoMolmo,
    VideoMolmoConfig,
    load_videomolmo,
    padded_past,
)
from videomolmo_ros.backends.videomolmo.preprocessing import (
    MOLMO_V1,
    MolmoImageSettings,
    build_model_inputs,
    preprocess_frame,
)
from videomolmo_ros.contracts.frames import FrameWindow
from videomolmo_ros.contracts.grounding import GroundingMode, GroundingResult
from videomolmo_ros.contracts.interfaces import BackendError, Pointer, startup_only

_QUESTION = re.compile(r"^(what|which|who|whom|whose|where|when|why|how)\b|\?$", re.IGNORECASE)
_POINT = re.compile(r"^point (to|at)\b", re.IGNORECASE)


@dataclass(frozen=True)
class VideoMolmoOptions:
    model: str = startup_only(CHECKPOINT_ID)  # hub id (found in the Hugging Face cache) or a local checkpoint folder
    tokenizer: str = startup_only(
        "allenai/Molmo-7B-D-0924"
    )  # VideoMolmo uses Molmo-7B-D's tokenizer; empty: the model folder
    revision: str = startup_only("")  # hub revision of the tokenizer; empty: the default branch
    dtype: str = startup_only("auto")  # auto: bfloat16 on GPU, float32 on CPU; or float32, bfloat16, float16
    quantization: str = startup_only("none")  # none, 4bit or 8bit (bitsandbytes, GPU only)
    max_new_tokens: int = 512  # tokens an answer may take at most
    constrained: bool = True  # hold decoding to Molmo v1's point grammar
    max_points: int = 16  # points per answer at most (the grammar's limit; unconstrained answers are cut to it)
    feature_cache: bool = True  # keep each frame's vision features beside it in the buffer (off: re-encode)


def pointing_prompt(query: str) -> str:
    """What VideoMolmo was trained on: "Point to {query}"; questions ask for the answer's location."""
    query = query.strip()
    if _POINT.match(query):
        return query
    if _QUESTION.search(query):
        return f"Point to the answer to this question: {query}"
    return f"Point to {query}"


def settings_for(config: VideoMolmoConfig) -> MolmoImageSettings:
    """The preprocessing that fits the checkpoint: Molmo-7B-D's, or the same rules at its crop size."""
    size = config.vision.image_default_input_size[0]
    patch, pooling = config.vision.image_patch_size, config.image_pooling_h
    if (size, patch, pooling) == (MOLMO_V1.base_image_size, MOLMO_V1.patch_size, MOLMO_V1.pooling):
        return MOLMO_V1
    # Keep the margins' share of a crop (4 of 24 patches), in whole pooling windows.
    margin = pooling * round(size // patch * MOLMO_V1.overlap_margins[0] / MOLMO_V1.crop_patches / pooling)
    return MolmoImageSettings(base_image_size=size, patch_size=patch, pooling=pooling, overlap_margins=(margin, margin))


def load_tokenizer(options: VideoMolmoOptions):
    from transformers import AutoTokenizer

    source = options.tokenizer or options.model
    try:
        return AutoTokenizer.from_pretrained(source, revision=options.revision or None)
    except OSError as error:
        raise BackendError(
            f"VideoMolmo tokenizer {source!r} could not be loaded (VideoMolmo uses Molmo-7B-D's): download it "
            f"on a machine with internet (`hf download {source}`, then copy the Hugging Face cache) or set "
            f"videomolmo.tokenizer to a folder holding tokenizer.json. ({error})"
        ) from error


def checkpoint_folder(model: str) -> str:
    """A local folder as is; a hub id resolved in the Hugging Face cache (no download at start-up)."""
    if os.path.isdir(model):
        return model
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(model, local_files_only=True)
    except Exception as error:  # the hub client raises several kinds for "not in the cache"
        raise BackendError(
            f"VideoMolmo checkpoint {model!r} is neither a local folder nor in the Hugging Face cache. Download "
            f"it on a machine with internet (`hf download {model} --local-dir <folder>`) and set videomolmo.model "
            f"to that folder (config.json and *.safetensors). ({type(error).__name__})"
        ) from error


class VideoMolmoPointer(Pointer):
    """Points at what a query names on the newest frame, with VideoMolmo's temporal context."""

    Options = VideoMolmoOptions
    FEATURE_KEY = "videomolmo/vit"
    camera_rate_frames = PAST_FRAMES + 1  # the newest frame and the 4 before it, consecutive

    def check_context(self, context_frames: int, context_fps: float) -> list[str]:
        return [
            f"reads the last {self.camera_rate_frames} consecutive camera frames (its temporal module was trained "
            f"on consecutive frames); context_frames ({context_frames}) and context_fps ({context_fps:g} Hz) are "
            "not used"
        ]

    def __init__(self, options: VideoMolmoOptions, device: torch.device):
        super().__init__(options, device)
        self.dtype = resolve_dtype(options.dtype, device, "videomolmo.dtype")
        quantization = quantization_config(options.quantization, device, "videomolmo.quantization")
        try:
            self.model: VideoMolmo = load_videomolmo(checkpoint_folder(options.model), device, self.dtype)
        except CheckpointError as error:
            raise BackendError(str(error)) from error
        if quantization is not None:
            quantize_linears(self.model, options.quantization)
        self.tokenizer = load_tokenizer(options)
        self.settings = settings_for(self.model.config)
        self.stop_ids = [i for i in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id) if i is not None]
        self.encoder_calls = 0  # vision-encoder passes, for benchmarks and diagnostics
        self._black: dict[int, torch.Tensor] = {}

    def ground(self, window: FrameWindow, query: str, mode: GroundingMode) -> GroundingResult:
        """Mode does not change the prompt: VideoMolmo points; the node's tracker keeps identities."""
        newest = len(window) - 1
        frame = preprocess_frame(window.images[newest].to(self.device), self.settings)
        inputs = build_model_inputs(self.tokenizer, pointing_prompt(query), frame, self.settings)
        current = self.features(window, newest, frame.images)
        past = [self.features(window, i) for i in range(max(0, newest - PAST_FRAMES), newest)]
        with torch.inference_mode():
            embeddings = self.model.embed_images(current, padded_past(past, self.black(frame.n_crops), PAST_FRAMES))
            tokens = self.model.generate(
                inputs["input_ids"][None],
                embeddings,
                inputs["image_input_idx"][None],
                max_new_tokens=self.options.max_new_tokens,
                logits_processor=self.constraint(),
                eos_token_id=self.stop_ids,
            )
        text = self.tokenizer.decode(tokens[0], skip_special_tokens=True)
        height, width = window.images.shape[1:3]
        parsed = parse_molmo_v1(text, self.options.max_points)  # the grammar's limit, constrained or not
        return to_grounding_result(parsed, window.seconds_since_first(), width, height, text)

    def features(self, window: FrameWindow, index: int, crops: torch.Tensor | None = None) -> torch.Tensor:
        """Frame `index`'s vision features: from the buffer's cache, or encoded once and cached there."""
        cached = window.features[index].get(self.FEATURE_KEY) if self.options.feature_cache else None
        if cached is not None:
            return cached
        if crops is None:
            crops = preprocess_frame(window.images[index], self.settings).images
        self.encoder_calls += 1
        with torch.inference_mode():
            features = self.model.encode_frame(crops[None].to(self.device, self.dtype))
        if self.options.feature_cache:
            window.put_feature(index, self.FEATURE_KEY, features)
        return features

    def black(self, crops: int) -> torch.Tensor:
        """Features of a black frame (the padding before a stream's 4th frame), computed once."""
        if crops not in self._black:
            with torch.inference_mode():
                self._black[crops] = self.model.black_frame_features(crops)
        return self._black[crops]

    def constraint(self) -> LogitsProcessorList | None:
        if not self.options.constrained:
            return None
        head_size = self.model.config.embedding_size
        regex = molmo_v1_answer_regex(self.options.max_points)
        return LogitsProcessorList([grammar_logits_processor(self.tokenizer, regex, head_size)])


def quantize_linears(model: torch.nn.Module, kind: str) -> None:
    """Swap every linear layer for a bitsandbytes 4-bit (NF4) or 8-bit one, as the paper's runs used.

    bitsandbytes quantizes a layer's weights when it moves to the GPU, so the weights loaded in
    `dtype` are handed over as they are and the layer is moved to the model's device.
    """
    import bitsandbytes as bnb

    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, torch.nn.Linear):
                continue
            device, has_bias = child.weight.device, child.bias is not None
            if kind == "4bit":
                layer = bnb.nn.Linear4bit(
                    child.in_features, child.out_features, has_bias, compute_dtype=torch.bfloat16, quant_type="nf4"
                )
                layer.weight = bnb.nn.Params4bit(child.weight.data.cpu(), requires_grad=False, quant_type="nf4")
            else:
                layer = bnb.nn.Linear8bitLt(child.in_features, child.out_features, has_bias, has_fp16_weights=False)
                layer.weight = bnb.nn.Int8Params(child.weight.data.cpu(), requires_grad=False, has_fp16_weights=False)
            if has_bias:
                layer.bias = torch.nn.Parameter(child.bias.data.cpu(), requires_grad=False)
            setattr(module, child_name, layer.to(device))
