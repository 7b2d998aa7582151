"""A tiny random-weight SAM2 video model, built from the real sam2.1 hiera-t config by hydra overrides.

Test material: the shipped propagator loads it through its real path (config name + overrides +
checkpoint file in sam2's `{"model": state_dict}` layout), so building, loading, preprocessing and
`track_step` are sam2's own code; only the sizes shrink (about 0.6M parameters, 128 px input, so a
frame costs milliseconds on one CPU thread). Its masks are meaningless.
"""

from pathlib import Path

import torch

CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"
IMAGE_SIZE = 128
FEATURES = IMAGE_SIZE // 16  # stride-16 feature map the memory attention's RoPE is sized for
_WIDTH = 32  # neck / memory-attention / mask-decoder width (hiera-t: 256)
_MEMORY = 16  # memory-encoder output width (hiera-t: 64)

# Hiera: 4 stages of [1, 2, 2, 1] blocks, so stages open at blocks 0, 1, 3, 5; the global-attention
# blocks (2, 4) close stages, never open one. Channels 8 -> 64 must match the neck's list.
OVERRIDES = [
    f"++model.image_size={IMAGE_SIZE}",
    "++model.image_encoder.trunk.embed_dim=8",
    "++model.image_encoder.trunk.stages=[1,2,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[2,4]",
    "++model.image_encoder.trunk.window_spec=[8,4,4,2]",
    "++model.image_encoder.neck.backbone_channel_list=[64,32,16,8]",
    f"++model.image_encoder.neck.d_model={_WIDTH}",
    f"++model.image_encoder.neck.position_encoding.num_pos_feats={_WIDTH}",
    f"++model.memory_attention.d_model={_WIDTH}",
    "++model.memory_attention.num_layers=1",
    f"++model.memory_attention.layer.d_model={_WIDTH}",
    "++model.memory_attention.layer.dim_feedforward=64",
    f"++model.memory_attention.layer.self_attention.embedding_dim={_WIDTH}",
    f"++model.memory_attention.layer.self_attention.feat_sizes=[{FEATURES},{FEATURES}]",
    f"++model.memory_attention.layer.cross_attention.embedding_dim={_WIDTH}",
    f"++model.memory_attention.layer.cross_attention.feat_sizes=[{FEATURES},{FEATURES}]",
    f"++model.memory_attention.layer.cross_attention.kv_in_dim={_MEMORY}",
    f"++model.memory_encoder.in_dim={_WIDTH}",
    f"++model.memory_encoder.out_dim={_MEMORY}",
    f"++model.memory_encoder.position_encoding.num_pos_feats={_MEMORY}",
    f"++model.memory_encoder.mask_downsampler.embed_dim={_WIDTH}",
    f"++model.memory_encoder.fuser.layer.dim={_WIDTH}",
    "++model.memory_encoder.fuser.num_layers=1",
]


def build_tiny_sam2(seed: int = 0):
    """The tiny model as sam2 builds the stock video predictor (SAM2VideoPredictor), random weights."""
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(seed)
    return build_sam2_video_predictor(CONFIG, None, device="cpu", hydra_overrides_extra=OVERRIDES)


def write_tiny_sam2(folder: Path, seed: int = 0) -> Path:
    """Save the tiny model's weights where sam2 (and the propagator) load them from; the .pt path."""
    path = Path(folder) / "tiny_sam2.pt"
    torch.save({"model": build_tiny_sam2(seed).state_dict()}, path)
    return path


def tiny_options(checkpoint: Path, **extra: object) -> dict[str, object]:
    """Propagator options that load the tiny checkpoint (the overrides as one space-separated string)."""
    return {"config": CONFIG, "config_overrides": " ".join(OVERRIDES), "checkpoint": str(checkpoint), **extra}
