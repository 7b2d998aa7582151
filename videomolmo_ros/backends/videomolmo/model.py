"""VideoMolmo (arXiv 2506.05336): Molmo-7B-D with a temporal module, written for this package.

The released weights (`ghazishazan/VideoMolmo`) ship no loadable code: the reference runs a patched
copy of Molmo's remote code, which breaks on transformers 5. This module is the same network in
plain torch, with parameter names that match the checkpoint's state-dict keys one for one, so the
weights load strictly (nothing missing, nothing unexpected, every shape checked).

The pipeline is split where a live stream wants to cache: `encode_frame` gives a frame's per-crop
ViT features once; `temporal` mixes the current frame's features with the mean of the previous
frames' (cross-attention inside 2x2 windows, plus a residual); `pool_and_project` turns them into
LLM embeddings; `generate` decodes greedily with a preallocated KV cache. Reusing cached features
of the previous frames gives the reference's result with one ViT pass per frame instead of five.
"""

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812 (the usual torch alias)
from torch import nn

CHECKPOINT_ID = "ghazishazan/VideoMolmo"
PAST_FRAMES = 4  # l: previous frames averaged by the temporal module; black frames pad a stream's start
# CLIP normalisation of Molmo's preprocessing ("openai"): a black pixel becomes -mean / std.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# Present in Molmo-7B-D's weights but unused by VideoMolmo, whose code builds Molmo with no image
# padding embedding: its reference loader drops the tensor if a checkpoint carries it, so do we.
UNUSED_CHECKPOINT_KEYS = frozenset({"model.vision_backbone.pad_embed"})
# config.json settings this implementation has no code for, with the only value it supports.
_FIXED_SETTINGS = {
    "layer_norm_type": "rms",
    "norm_after": False,
    "attention_layer_norm": False,
    "clip_qkv": None,
    "weight_tying": False,
    "use_position_ids": True,
}
# config.json name (transformers-style, as the checkpoint has it) -> field here (Molmo's own name).
_JSON_FIELDS = {
    "hidden_size": "d_model",
    "num_attention_heads": "n_heads",
    "num_key_value_heads": "n_kv_heads",
    "num_hidden_layers": "n_layers",
    "intermediate_size": "mlp_hidden_size",
    "vocab_size": "vocab_size",
    "embedding_size": "embedding_size",
    "rope_theta": "rope_theta",
    "layer_norm_eps": "layer_norm_eps",
    "qkv_bias": "qkv_bias",
}


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete or not VideoMolmo; the message says what to fix."""


@dataclass(frozen=True)
class VisionConfig:
    """The CLIP ViT-L/14-336 tower as Molmo uses it (23 of CLIP's 24 layers)."""

    image_default_input_size: tuple[int, int] = (336, 336)
    image_patch_size: int = 14
    image_emb_dim: int = 1024
    image_num_heads: int = 16
    image_head_dim: int = 64
    image_num_layers: int = 23
    image_mlp_dim: int = 4096
    image_num_pos: int = 577  # class token + 24 x 24 patches
    image_norm_eps: float = 1e-5

    @property
    def patch_grid(self) -> tuple[int, int]:
        height, width = self.image_default_input_size
        return height // self.image_patch_size, width // self.image_patch_size

    @property
    def patch_pixels(self) -> int:
        return self.image_patch_size * self.image_patch_size * 3


@dataclass(frozen=True)
class VideoMolmoConfig:
    """Molmo-7B-D (Qwen2-7B decoder) plus VideoMolmo's temporal module.

    config.json holds only the decoder sizes (transformers names); the vision tower, the ViT layers
    and the extra vocabulary are fixed in the reference code, so their defaults here are those values.
    """

    d_model: int = 3584
    n_heads: int = 28
    n_kv_heads: int = 4
    n_layers: int = 28
    mlp_hidden_size: int = 37888  # ff_proj width: two halves (value, gate) of a SwiGLU
    vocab_size: int = 152064
    embedding_size: int = 152064  # rows of wte.embedding and of the output layer
    additional_vocab_size: int = 128  # wte.new_embedding: Molmo's image tokens
    rope_theta: float = 1e6
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    vit_layers: tuple[int, ...] = (-2, -9)  # their outputs are concatenated: 2 x 1024 = 2048 wide
    image_pooling_h: int = 2
    image_pooling_w: int = 2
    image_pooling_2d: str = "attention-meanq"  # the only pooling VideoMolmo uses
    image_projector: str = "mlp"  # the only projector VideoMolmo uses
    vision: VisionConfig = field(default_factory=VisionConfig)

    def __post_init__(self):
        grid_h, grid_w = self.vision.patch_grid
        problems = [
            f"image_pooling_2d {self.image_pooling_2d!r} (only 'attention-meanq')"
            if self.image_pooling_2d != "attention-meanq"
            else "",
            f"image_projector {self.image_projector!r} (only 'mlp')" if self.image_projector != "mlp" else "",
            "a patch grid not divisible by the 2-D pooling"
            if grid_h % self.image_pooling_h or grid_w % self.image_pooling_w
            else "",
            "image_num_pos != 1 + patches per crop" if self.vision.image_num_pos != 1 + grid_h * grid_w else "",
            "vit_layers outside the ViT"
            if any(not -self.vision.image_num_layers <= i < self.vision.image_num_layers for i in self.vit_layers)
            else "",
            "n_heads not a multiple of n_kv_heads" if self.n_heads % self.n_kv_heads else "",
        ]
        if any(problems):
            raise CheckpointError(f"unsupported VideoMolmo config: {'; '.join(p for p in problems if p)}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def feature_dim(self) -> int:
        """Width of a patch feature: the chosen ViT layers side by side (2048 for Molmo-7B-D)."""
        return len(self.vit_layers) * self.vision.image_emb_dim

    @property
    def tokens_per_crop(self) -> int:
        """LLM tokens per crop after 2-D pooling (144 for Molmo-7B-D)."""
        grid_h, grid_w = self.vision.patch_grid
        return (grid_h // self.image_pooling_h) * (grid_w // self.image_pooling_w)

    @classmethod
    def from_json(cls, data: dict) -> "VideoMolmoConfig":
        """From a checkpoint's config.json; keys this package adds for tiny test models are optional."""
        unsupported = [
            f"{key}={data[key]!r}" for key, value in _FIXED_SETTINGS.items() if data.get(key, value) != value
        ]
        if unsupported:
            raise CheckpointError(f"config.json: not VideoMolmo's architecture ({', '.join(unsupported)})")
        values = {name: data[key] for key, name in _JSON_FIELDS.items() if key in data}
        for name in ("additional_vocab_size", "image_pooling_h", "image_pooling_w"):
            if name in data:
                values[name] = data[name]
        if "vit_layers" in data:
            values["vit_layers"] = tuple(data["vit_layers"])
        if "vision_backbone" in data:
            vision = dict(data["vision_backbone"])
            vision["image_default_input_size"] = tuple(vision["image_default_input_size"])
            values["vision"] = VisionConfig(**vision)
        return cls(**values)

    def to_json(self) -> dict:
        """config.json in the checkpoint's layout, plus the fixed settings spelled out (for tiny models)."""
        data = {key: getattr(self, name) for key, name in _JSON_FIELDS.items()}
        data.update(_FIXED_SETTINGS, architectures=["MolmoForCausalLM"], model_type="molmo")
        data.update(
            additional_vocab_size=self.additional_vocab_size,
            vit_layers=list(self.vit_layers),
            image_pooling_h=self.image_pooling_h,
            image_pooling_w=self.image_pooling_w,
            vision_backbone=asdict(self.vision),
        )
        return data


def tiny_config(vocab_size: int = 320, additional_vocab_size: int = 16, image_size: int = 56) -> VideoMolmoConfig:
    """The whole architecture at toy sizes, for CPU tests: 4x4 patches per crop, 4 LLM tokens per crop."""
    vision = VisionConfig(
        image_default_input_size=(image_size, image_size),
        image_emb_dim=32,
        image_num_heads=4,
        image_head_dim=8,
        image_num_layers=9,  # enough for the real feature layers -2 and -9
        image_mlp_dim=64,
        image_num_pos=1 + (image_size // 14) ** 2,
    )
    return VideoMolmoConfig(
        d_model=32,
        n_heads=4,
        n_kv_heads=2,
        n_layers=2,
        mlp_hidden_size=64,
        vocab_size=vocab_size,
        embedding_size=vocab_size,
        additional_vocab_size=additional_vocab_size,
        vision=vision,
    )


# ---------------------------------------------------------------------------------------------
# Building blocks


class RMSNorm(nn.Module):
    """Normalised in float32, scaled in the input dtype (Molmo's RMSLayerNorm: weight, no bias)."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.float()
        normed = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


class LayerNormFp32(nn.LayerNorm):
    """The ViT's pre-LayerNorm, computed in float32 whatever the weights' dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight.float(), self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class MultiHeadAttention(nn.Module):
    """Non-causal attention with separate wq/wk/wv/wo, scores in float32 (ViT, pooling, temporal module)."""

    def __init__(self, in_dim: int, heads: int, head_dim: int, out_dim: int, bias: bool):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.wq = nn.Linear(in_dim, heads * head_dim, bias=bias)
        self.wk = nn.Linear(in_dim, heads * head_dim, bias=bias)
        self.wv = nn.Linear(in_dim, heads * head_dim, bias=bias)
        self.wo = nn.Linear(heads * head_dim, out_dim, bias=bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2).float()

    def forward(self, inputs_q: torch.Tensor, inputs_kv: torch.Tensor) -> torch.Tensor:
        """(N, Lq, in) attending to (N, Lk, in) -> (N, Lq, out)."""
        q, k, v = self._split(self.wq(inputs_q)), self._split(self.wk(inputs_kv)), self._split(self.wv(inputs_kv))
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)
        return self.wo(out.to(inputs_q.dtype))


class ViTMLP(nn.Module):
    def __init__(self, vision: VisionConfig):
        super().__init__()
        self.w1 = nn.Linear(vision.image_emb_dim, vision.image_mlp_dim)
        self.w2 = nn.Linear(vision.image_mlp_dim, vision.image_emb_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.w1(x)
        return self.w2(hidden * torch.sigmoid(1.702 * hidden))  # quick GELU, as in OpenAI CLIP


class ResidualAttentionBlock(nn.Module):
    def __init__(self, vision: VisionConfig):
        super().__init__()
        width = vision.image_emb_dim
        self.attention = MultiHeadAttention(width, vision.image_num_heads, vision.image_head_dim, width, bias=True)
        self.feed_forward = ViTMLP(vision)
        self.attention_norm = nn.LayerNorm(width, eps=vision.image_norm_eps)
        self.ffn_norm = nn.LayerNorm(width, eps=vision.image_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.attention_norm(x)
        x = x + self.attention(normed, normed)
        return x + self.feed_forward(self.ffn_norm(x))


class BlockCollection(nn.Module):
    def __init__(self, vision: VisionConfig):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(vision) for _ in range(vision.image_num_layers))


class VisionTransformer(nn.Module):
    def __init__(self, vision: VisionConfig):
        super().__init__()
        self.class_embedding = nn.Parameter(torch.zeros(vision.image_emb_dim))
        self.positional_embedding = nn.Parameter(torch.zeros(vision.image_num_pos, vision.image_emb_dim))
        self.patch_embedding = nn.Linear(vision.patch_pixels, vision.image_emb_dim, bias=False)
        self.pre_ln = LayerNormFp32(vision.image_emb_dim, eps=vision.image_norm_eps)
        self.transformer = BlockCollection(vision)

    def forward(self, patches: torch.Tensor, layers: Sequence[int]) -> list[torch.Tensor]:
        """(crops, patches, pixels) -> the outputs of `layers` (class token first), in that order.

        Runs only as deep as the deepest layer asked for: Molmo never reads the last block.
        """
        blocks = self.transformer.resblocks
        wanted = [i % len(blocks) for i in layers]
        x = self.patch_embedding(patches)
        x = torch.cat([self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        x = self.pre_ln(x + self.positional_embedding.to(x.dtype))
        outputs = {}
        for index, block in enumerate(blocks[: max(wanted) + 1]):
            x = block(x)
            outputs[index] = x
        return [outputs[i] for i in wanted]


class ImageProjector(nn.Module):
    """Pooled features -> LLM width: w2(silu(w1 x) * w3 x)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.w1 = nn.Linear(in_dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, out_dim, bias=False)
        self.w3 = nn.Linear(in_dim, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class VisionBackbone(nn.Module):
    """ViT, 2x2 attention pooling, the temporal module (`adapter`) and the projector to the LLM."""

    def __init__(self, config: VideoMolmoConfig):
        super().__init__()
        vision = config.vision
        self.image_vit = VisionTransformer(vision)
        self.image_pooling_2d = MultiHeadAttention(
            config.feature_dim, vision.image_num_heads, vision.image_head_dim, vision.image_emb_dim, bias=True
        )
        # VideoMolmo's temporal cross-attention: 2048 -> 16 x 64 -> 2048, no biases.
        self.adapter = MultiHeadAttention(
            config.feature_dim, vision.image_num_heads, vision.image_head_dim, config.feature_dim, bias=False
        )
        self.image_projector = ImageProjector(vision.image_emb_dim, config.mlp_hidden_size // 2, config.d_model)


class Embedding(nn.Module):
    """The text vocabulary plus Molmo's extra (image) tokens, looked up as one table."""

    def __init__(self, rows: int, new_rows: int, width: int):
        super().__init__()
        self.embedding = nn.Parameter(torch.zeros(rows, width))
        self.new_embedding = nn.Parameter(torch.zeros(new_rows, width))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # Two lookups instead of concatenating the tables: no copy of a 152k-row matrix per step.
        rows = self.embedding.shape[0]
        is_new = ids >= rows
        old = F.embedding(ids.clamp(max=rows - 1), self.embedding)
        new = F.embedding((ids - rows).clamp(min=0), self.new_embedding)
        return torch.where(is_new[..., None], new, old)


class KVCache:
    """Keys and values of every decoder layer, allocated once for the prompt and all new tokens."""

    def __init__(self, config: VideoMolmoConfig, batch: int, max_length: int, dtype: torch.dtype, device):
        shape = (batch, config.n_kv_heads, max_length, config.head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layers)]
        self.length = 0  # tokens stored; the model advances it after all layers have stored theirs

    def store(self, layer: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append this step's keys/values of `layer`; all of that layer's so far."""
        end = self.length + keys.shape[2]
        if end > self.keys[layer].shape[2]:
            raise ValueError(f"KV cache full: {end} tokens, room for {self.keys[layer].shape[2]}")
        self.keys[layer][:, :, self.length : end] = keys
        self.values[layer][:, :, self.length : end] = values
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]


def rotary(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of RoPE (halves layout, as Llama/Qwen2) at `positions`, in float32: (L, head_dim)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float) / head_dim)
    angles = positions.float()[:, None] * inv_freq[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, heads, L, head_dim) in float32 (Molmo's rope_full_precision), back to x's dtype."""
    first, second = x.float().chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    return (x.float() * cos + rotated * sin).to(x.dtype)


class MolmoBlock(nn.Module):
    """Pre-norm decoder block: fused qkv (att_proj), GQA with RoPE, SwiGLU feed-forward."""

    def __init__(self, config: VideoMolmoConfig):
        super().__init__()
        self.config = config
        kv_width = config.n_kv_heads * config.head_dim
        self.fused_dims = (config.d_model, kv_width, kv_width)
        self.att_proj = nn.Linear(config.d_model, sum(self.fused_dims), bias=config.qkv_bias)
        self.attn_out = nn.Linear(config.d_model, config.d_model, bias=False)
        self.ff_proj = nn.Linear(config.d_model, config.mlp_hidden_size, bias=False)
        self.ff_out = nn.Linear(config.mlp_hidden_size // 2, config.d_model, bias=False)
        self.attn_norm = RMSNorm(config.d_model, config.layer_norm_eps)
        self.ff_norm = RMSNorm(config.d_model, config.layer_norm_eps)

    def forward(self, x, rope: tuple[torch.Tensor, torch.Tensor], layer: int, cache: KVCache | None) -> torch.Tensor:
        x = x + self.attn_out(self._attention(self.attn_norm(x), rope, layer, cache))
        value, gate = self.ff_proj(self.ff_norm(x)).chunk(2, dim=-1)  # Molmo's SwiGLU: second half gates
        return x + self.ff_out(F.silu(gate) * value)

    def _attention(self, x, rope, layer: int, cache: KVCache | None) -> torch.Tensor:
        batch, length, _ = x.shape
        head_dim = self.config.head_dim
        q, k, v = (
            part.unflatten(-1, (-1, head_dim)).transpose(1, 2) for part in self.att_proj(x).split(self.fused_dims, -1)
        )
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.store(layer, k, v)
        mask = None
        if length > 1:  # causal over the new tokens, everything cached before them visible
            mask = torch.ones(length, past + length, dtype=torch.bool, device=x.device).tril(diagonal=past)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
        return out.transpose(1, 2).reshape(batch, length, -1)


class Transformer(nn.Module):
    """The decoder, named as Molmo's `transformer` ModuleDict (wte, blocks, ln_f, ff_out)."""

    def __init__(self, config: VideoMolmoConfig):
        super().__init__()
        self.wte = Embedding(config.embedding_size, config.additional_vocab_size, config.d_model)
        self.blocks = nn.ModuleList(MolmoBlock(config) for _ in range(config.n_layers))
        self.ln_f = RMSNorm(config.d_model, config.layer_norm_eps)
        self.ff_out = nn.Linear(config.d_model, config.embedding_size, bias=False)


class Molmo(nn.Module):
    def __init__(self, config: VideoMolmoConfig):
        super().__init__()
        self.transformer = Transformer(config)
        self.vision_backbone = VisionBackbone(config)


# ---------------------------------------------------------------------------------------------
# The model


def _windows(features: torch.Tensor, pool_h: int, pool_w: int, grid: tuple[int, int]) -> torch.Tensor:
    """(B, crops, H*W, C) -> (B*crops*H/ph*W/pw, ph*pw, C): the pooling windows, row-major."""
    batch, crops, _, width = features.shape
    x = features.reshape(batch, crops, grid[0] // pool_h, pool_h, grid[1] // pool_w, pool_w, width)
    return x.permute(0, 1, 2, 4, 3, 5, 6).reshape(-1, pool_h * pool_w, width)


def _unwindow(windows: torch.Tensor, like: torch.Tensor, pool_h: int, pool_w: int, grid: tuple[int, int]):
    """The inverse of `_windows`, back to `like`'s (B, crops, H*W, C) layout."""
    batch, crops, patches, width = like.shape
    x = windows.reshape(batch, crops, grid[0] // pool_h, grid[1] // pool_w, pool_h, pool_w, width)
    return x.permute(0, 1, 2, 4, 3, 5, 6).reshape(batch, crops, patches, width)


def padded_past(past: Sequence[torch.Tensor], black: torch.Tensor, count: int = PAST_FRAMES) -> list[torch.Tensor]:
    """The `count` most recent past features, black-frame features in front when the stream is younger.

    As the reference does at a video's start; the mean makes their order irrelevant.
    """
    recent = list(past)[max(0, len(past) - count) :]
    return [black] * (count - len(recent)) + recent


class VideoMolmo(nn.Module):
    """VideoMolmo for inference. Submodule names are the checkpoint's keys under `model.`."""

    def __init__(self, config: VideoMolmoConfig):
        super().__init__()
        self.config = config
        self.model = Molmo(config)

    @property
    def dtype(self) -> torch.dtype:
        return self.model.transformer.ff_out.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.model.transformer.ff_out.weight.device

    # -- vision -------------------------------------------------------------------------------

    @torch.inference_mode()
    def encode_frame(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed crops (B, crops, patches, 14*14*3) -> per-patch features (B, crops, patches, 2048).

        The features of the ViT layers `vit_layers` side by side, before pooling: what a frame
        buffer caches. Crops that are all -1 (batch padding) give zeros. VideoMolmo uses no image
        padding embedding, so the preprocessor's image masks are not needed here.
        """
        batch, crops, patches, pixels = images.shape
        flat = images.reshape(batch * crops, patches, pixels).to(self.device, self.dtype)
        layers = self.model.vision_backbone.image_vit(flat, self.config.vit_layers)
        features = torch.cat(layers, dim=-1)[:, 1:]  # drop the class token
        real = ~(flat == -1).all(dim=-1).all(dim=-1)
        return (features * real[:, None, None].to(features.dtype)).reshape(batch, crops, patches, -1)

    def black_crops(self, crops: int) -> torch.Tensor:
        """Preprocessed crops of an all-black frame: (1, crops, patches, pixels).

        Black pixels and the resize padding (0) both normalise to -mean/std, so a black frame of
        any size gives the same crop everywhere; `crops` must be the current frame's crop count.
        """
        black = -torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD)
        grid_h, grid_w = self.config.vision.patch_grid
        size = self.config.vision.image_patch_size
        return black.repeat(size * size).expand(1, crops, grid_h * grid_w, -1).clone()

    @torch.inference_mode()
    def black_frame_features(self, crops: int) -> torch.Tensor:
        """Features of the black frames that pad the past at a stream's start: (1, crops, patches, 2048)."""
        one = self.encode_frame(self.black_crops(1))
        return one.expand(-1, crops, -1, -1).clone()

    @torch.inference_mode()
    def temporal(self, current: torch.Tensor, past: Sequence[torch.Tensor]) -> torch.Tensor:
        """VideoMolmo's temporal module: current features enriched by the previous frames.

        The past frames' features are averaged (running mean, in the order given) into one map per
        crop; inside each 2x2 window the 4 current patches cross-attend to the 4 averaged patches at
        the same place, and the result is added to the current features. Same shape as `current`.
        """
        if not past:
            raise ValueError("temporal needs at least one past frame (pad with black_frame_features)")
        if any(p.shape != current.shape for p in past):
            raise ValueError(f"past features must be shaped like the current frame's {tuple(current.shape)}")
        mean = past[0]
        for count, frame in enumerate(past[1:], start=2):
            mean = mean + (frame - mean) / count
        cfg = self.config
        grid = cfg.vision.patch_grid
        now = _windows(current, cfg.image_pooling_h, cfg.image_pooling_w, grid)
        before = _windows(mean, cfg.image_pooling_h, cfg.image_pooling_w, grid)
        mixed = now + self.model.vision_backbone.adapter(now, before)
        return _unwindow(mixed, current, cfg.image_pooling_h, cfg.image_pooling_w, grid)

    @torch.inference_mode()
    def pool_and_project(self, features: torch.Tensor) -> torch.Tensor:
        """(B, crops, patches, 2048) -> LLM image embeddings (B, crops, tokens_per_crop, d_model).

        2x2 attention pooling whose query is the mean of the window, then the projector.
        """
        cfg = self.config
        windows = _windows(features, cfg.image_pooling_h, cfg.image_pooling_w, cfg.vision.patch_grid)
        backbone = self.model.vision_backbone
        pooled = backbone.image_pooling_2d(windows.mean(dim=1, keepdim=True), windows)
        pooled = pooled.reshape(*features.shape[:2], cfg.tokens_per_crop, -1)
        return backbone.image_projector(pooled)

    def embed_images(self, current: torch.Tensor, past: Sequence[torch.Tensor]) -> torch.Tensor:
        """Image embeddings of the current frame given its and the past frames' features."""
        return self.pool_and_project(self.temporal(current, past))

    # -- language -----------------------------------------------------------------------------

    def embed_tokens(self, input_ids, image_embeddings=None, image_input_idx=None) -> torch.Tensor:
        """Token embeddings with the image embeddings ADDED at `image_input_idx` (Molmo's convention).

        `image_input_idx` (B, crops, tokens_per_crop) holds each image token's position in the
        sequence; negative entries are skipped.
        """
        x = self.model.transformer.wte(input_ids)
        if image_embeddings is None:
            return x
        batch = input_ids.shape[0]
        positions = image_input_idx.reshape(batch, -1).to(x.device)
        embeddings = image_embeddings.reshape(batch, positions.shape[1], -1).to(x.dtype)
        valid = positions >= 0
        rows = torch.arange(batch, device=x.device)[:, None].expand_as(positions)
        x[rows[valid], positions[valid]] += embeddings[valid]
        return x

    def forward(
        self,
        input_ids: torch.Tensor,
        image_embeddings: torch.Tensor | None = None,
        image_input_idx: torch.Tensor | None = None,
        cache: KVCache | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Logits (B, L or 1, embedding_size) for unpadded `input_ids` (B, L).

        With a cache, the tokens continue the cached sequence (positions follow on) and are stored.
        """
        x = self.embed_tokens(input_ids.to(self.device), image_embeddings, image_input_idx)
        past = cache.length if cache is not None else 0
        positions = torch.arange(past, past + input_ids.shape[1], device=x.device)
        rope = rotary(positions, self.config.head_dim, self.config.rope_theta)
        transformer = self.model.transformer
        for layer, block in enumerate(transformer.blocks):
            x = block(x, rope, layer, cache)
        if cache is not None:
            cache.length += input_ids.shape[1]
        if last_only:
            x = x[:, -1:]
        return transformer.ff_out(transformer.ln_f(x))

    @torch.inference_mode()
    def generate(
        self,
        input_ids: torch.Tensor,
        image_embeddings: torch.Tensor | None = None,
        image_input_idx: torch.Tensor | None = None,
        max_new_tokens: int = 256,
        logits_processor: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        eos_token_id: int | Sequence[int] | None = None,
    ) -> torch.Tensor:
        """Greedy decoding of one sequence; the new tokens (1, n), ending with eos if one was produced.

        `logits_processor` is called like a transformers LogitsProcessor: (all ids so far, float
        scores of the next token) -> scores.
        """
        if input_ids.shape[0] != 1:
            raise ValueError(f"generate decodes one sequence at a time, not {input_ids.shape[0]}")
        if max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        stop = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or ())
        sequence = input_ids.to(self.device)
        cache = KVCache(self.config, 1, sequence.shape[1] + max_new_tokens, self.dtype, self.device)
        logits = self.forward(sequence, image_embeddings, image_input_idx, cache, last_only=True)
        start = sequence.shape[1]
        for step in range(max_new_tokens):
            scores = logits[:, -1].float()
            if logits_processor is not None:
                scores = logits_processor(sequence, scores)
            token = scores.argmax(dim=-1, keepdim=True)
            sequence = torch.cat([sequence, token], dim=1)
            if int(token) in stop or step == max_new_tokens - 1:
                break
            logits = self.forward(token, cache=cache, last_only=True)
        return sequence[:, start:]


# ---------------------------------------------------------------------------------------------
# Loading


def _download_hint(folder: Path, problem: str) -> CheckpointError:
    return CheckpointError(
        f"VideoMolmo checkpoint folder {str(folder)!r} {problem}. Download {CHECKPOINT_ID} on a machine with "
        f"internet (`hf download {CHECKPOINT_ID} --local-dir <folder>`), copy the folder here and point the "
        "backend at it: it must hold config.json and the *.safetensors weights (sharded with "
        "model.safetensors.index.json, or one file)."
    )


def weight_files(folder: Path) -> list[Path]:
    """The checkpoint's safetensors files: those the index names, else every *.safetensors."""
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        absent = [name for name in names if not (folder / name).is_file()]
        if absent:
            raise _download_hint(folder, f"lacks {', '.join(absent)} (listed in {index.name})")
        return [folder / name for name in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise _download_hint(folder, "has no *.safetensors weights")
    return files


def _listing(keys: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)}: {shown}" + (", ..." if len(keys) > limit else "")


def check_keys(expected: dict[str, torch.Size], found: dict[str, tuple[int, ...]]) -> None:
    """Refuse a checkpoint whose tensors are not exactly the model's: names every difference."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected) - UNUSED_CHECKPOINT_KEYS)
    wrong = sorted(
        f"{key} {tuple(found[key])} (model {tuple(expected[key])})"
        for key in set(expected) & set(found)
        if tuple(found[key]) != tuple(expected[key])
    )
    problems = [
        f"missing keys {_listing(missing)}" if missing else "",
        f"unexpected keys {_listing(unexpected)}" if unexpected else "",
        f"wrong shapes {_listing(wrong)}" if wrong else "",
    ]
    if any(problems):
        raise CheckpointError(f"not a VideoMolmo checkpoint for this config: {'; '.join(p for p in problems if p)}")


def load_videomolmo(folder: str | Path, device: torch.device | str, dtype: torch.dtype) -> VideoMolmo:
    """The model from a checkpoint folder (config.json + safetensors), strictly, in eval mode, no grads.

    Weights go straight to `device` in `dtype`, tensor by tensor: no random initialisation and no
    second copy of the model in memory.
    """
    from safetensors import safe_open

    folder = Path(folder).expanduser()
    if not (folder / "config.json").is_file():
        raise _download_hint(folder, "does not exist" if not folder.exists() else "has no config.json")
    config = VideoMolmoConfig.from_json(json.loads((folder / "config.json").read_text()))
    with torch.device("meta"):
        model = VideoMolmo(config)
    expected = {key: value.shape for key, value in model.state_dict().items()}
    files = weight_files(folder)
    found: dict[str, tuple[int, ...]] = {}
    for path in files:
        with safe_open(path, framework="pt") as reader:
            found.update({key: tuple(reader.get_slice(key).get_shape()) for key in reader.keys()})  # noqa: SIM118
    check_keys(expected, found)
    state = {}
    for path in files:
        with safe_open(path, framework="pt", device=str(torch.device(device))) as reader:
            state.update({key: reader.get_tensor(key).to(dtype) for key in reader.keys() if key in expected})  # noqa: SIM118
    model.load_state_dict(state, strict=True, assign=True)
    return model.requires_grad_(False).eval()
