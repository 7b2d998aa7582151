"""A tiny random-weight VideoMolmo checkpoint folder, laid out like the released one.

Test material: config.json (the checkpoint's transformers-style keys plus the vision settings the
reference code hard-wires, spelled out at toy sizes) and model.safetensors with exactly the
released key names, so tests go through the real `load_videomolmo` path. Its outputs are
meaningless.
"""

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from videomolmo_ros.backends.videomolmo.model import VideoMolmo, VideoMolmoConfig, tiny_config

_NORMS = ("attn_norm.weight", "ff_norm.weight", "ln_f.weight", "_norm.weight", "pre_ln.weight")


def random_state(config: VideoMolmoConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights for every parameter, norms near 1, so activations neither vanish nor blow up."""
    generator = torch.Generator().manual_seed(seed)
    model = VideoMolmo(config)
    state = {}
    for key, value in model.state_dict().items():
        noise = torch.randn(value.shape, generator=generator)
        state[key] = 1 + 0.1 * noise if key.endswith(_NORMS) else 0.15 * noise
    return state


def write_checkpoint(folder: Path, config: VideoMolmoConfig, state: dict[str, torch.Tensor]) -> Path:
    """config.json + model.safetensors, as a downloaded single-file checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config.to_json(), indent=2))
    save_file({key: value.contiguous() for key, value in state.items()}, folder / "model.safetensors")
    return folder


def write_tiny_videomolmo(folder: Path, seed: int = 0, **sizes) -> Path:
    """A random tiny VideoMolmo in `folder`; `sizes` go to `tiny_config` (vocab_size, image_size, ...)."""
    config = tiny_config(**sizes)
    return write_checkpoint(folder, config, random_state(config, seed))


MOLMO_TOKENS = ["<|endoftext|>", "<im_start>", "<im_end>", "<im_patch>", "<im_col>", "<|image|>"]


def write_tiny_videomolmo_with_tokenizer(folder: Path, seed: int = 0, image_size: int = 112) -> Path:
    """A tiny VideoMolmo plus a byte-level tokenizer with Molmo's special tokens, in one folder.

    Qwen-style: no bos, `<|endoftext|>` ends answers, the image tokens inside the vocabulary.
    """
    from tiny_molmo2 import byte_level_tokenizer

    write_tiny_videomolmo(folder, seed, image_size=image_size)
    tokenizer = byte_level_tokenizer(MOLMO_TOKENS, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    return folder
