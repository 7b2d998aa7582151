"""A tiny random-weight Molmo2 checkpoint, built offline from a config and an in-code tokenizer.

Test material: it exercises the real transformers Molmo2 classes, processor and `generate` path
(so loading, preprocessing, timestamps and decoding are real) without downloading weights.
Its answers are meaningless. The layout mirrors the released checkpoints: the chat and frame
special tokens sit in the tokenizer, the image tokens beyond the model's output layer.
"""

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    Molmo2Config,
    Molmo2ForConditionalGeneration,
    Molmo2ImageProcessor,
    Molmo2Processor,
    Molmo2VideoProcessor,
    PreTrainedTokenizerFast,
)
from transformers.models.molmo2.configuration_molmo2 import (
    Molmo2AdapterConfig,
    Molmo2TextConfig,
    Molmo2VisionConfig,
)

CHAT_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # inside the output layer, as in Qwen
IMAGE_TOKENS = [
    "<im_patch>",
    "<im_col>",
    "<im_start>",
    "<low_res_im_start>",
    "<frame_start>",
    "<im_end>",
    "<frame_end>",
    "<im_low>",
    "<|image|>",
    "<|video|>",
]  # beyond the output layer, as in the released Molmo2 checkpoints

# The released checkpoints' layout (their chat_template.jinja): every video / image placeholder
# first, then the Qwen-style turns with their text only; the processor prepends BOS.
CHAT_TEMPLATE = (
    "{%- set media = namespace(videos=0, images=0) -%}"
    "{%- for message in messages if message['content'] is not string -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'video' -%}{%- set media.videos = media.videos + 1 -%}"
    "{%- elif item['type'] == 'image' -%}{%- set media.images = media.images + 1 -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- endfor -%}"
    "{{ '<|image|>' * media.images }}{{ '<|video|>' * media.videos }}"
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}{{ message['content'] }}"
    "{%- else -%}{{ message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text') | join(' ') }}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' if message['role'] == 'user' else '' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n' }}{%- endif -%}"
)


def byte_level_tokenizer(special_tokens: list[str], **roles: str) -> PreTrainedTokenizerFast:
    """Byte-level BPE with no merges (every byte a token, so any text round-trips), then the
    special tokens in order from id 256; `roles` names eos_token, pad_token, ... among them."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={symbol: i for i, symbol in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=core, additional_special_tokens=special_tokens, **roles)


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """Molmo2's special tokens on a byte-level vocabulary."""
    tokenizer = byte_level_tokenizer(
        CHAT_TOKENS + IMAGE_TOKENS, bos_token="<|im_end|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.image_token, tokenizer.video_token = "<|image|>", "<|video|>"
    return tokenizer


def tiny_config(tokenizer: PreTrainedTokenizerFast, hidden: int = 32, layers: int = 2, image_size: int = 56):
    """A Molmo2 config small enough for CPU tests; `hidden`/`layers` scale it for benchmarks."""
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in CHAT_TOKENS + IMAGE_TOKENS}
    head_size = max(ids[token] for token in CHAT_TOKENS) + 1  # the image tokens fall outside the output layer
    text = Molmo2TextConfig(
        hidden_size=hidden,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=hidden // 4,
        vocab_size=head_size,
        additional_vocab_size=len(IMAGE_TOKENS) + 6,
        num_hidden_layers=layers,
        intermediate_size=2 * hidden,
        max_position_embeddings=8192,
        bos_token_id=ids["<|im_end|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    vision = Molmo2VisionConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=hidden // 4,
        image_size=[image_size, image_size],
        patch_size=14,
    )
    adapter = Molmo2AdapterConfig(
        vision_feature_layer=[-1],
        hidden_size=hidden,
        num_attention_heads=4,
        num_key_value_heads=4,
        head_dim=hidden // 4,
        intermediate_size=2 * hidden,
        text_hidden_size=hidden,
    )
    return Molmo2Config(
        text_config=text,
        vision_config=vision,
        adapter_config=adapter,
        image_start_token_id=ids["<im_start>"],
        low_res_image_start_token_id=ids["<low_res_im_start>"],
        image_end_token_id=ids["<im_end>"],
        image_patch_id=ids["<im_patch>"],
        frame_start_token_id=ids["<frame_start>"],
        frame_end_token_id=ids["<frame_end>"],
    )


def write_tiny_molmo2(folder: Path, hidden: int = 32, layers: int = 2, image_size: int = 56, seed: int = 0) -> Path:
    """Save a random-weight Molmo2 with its processor to `folder`, as a downloaded checkpoint is laid out."""
    import torch

    torch.manual_seed(seed)
    tokenizer = byte_tokenizer()
    model = Molmo2ForConditionalGeneration(tiny_config(tokenizer, hidden, layers, image_size)).eval()
    size = {"height": image_size, "width": image_size}
    processor = Molmo2Processor(
        image_processor=Molmo2ImageProcessor(size=size, max_crops=1, overlap_margins=[1, 1]),
        video_processor=Molmo2VideoProcessor(size=size),
        tokenizer=tokenizer,
        chat_template=CHAT_TEMPLATE,
    )
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
