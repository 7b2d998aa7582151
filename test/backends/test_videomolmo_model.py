"""VideoMolmo's architecture on a tiny random checkpoint: strict loading, the vision pipeline with its
temporal module, cached per-frame features, and greedy decoding with a KV cache."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from tiny_videomolmo import random_state, write_checkpoint, write_tiny_videomolmo

from videomolmo_ros.backends.videomolmo.model import (
    CHECKPOINT_ID,
    CLIP_MEAN,
    CLIP_STD,
    PAST_FRAMES,
    CheckpointError,
    VideoMolmo,
    VideoMolmoConfig,
    load_videomolmo,
    padded_past,
    tiny_config,
)

CROPS = 3

# allenai/Molmo-7B-D-0924's config.json, the base VideoMolmo was fine-tuned from.
MOLMO_7B_D_CONFIG = {
    "architectures": ["MolmoForCausalLM"],
    "attention_layer_norm": False,
    "auto_map": {"AutoConfig": "config_molmo.MolmoConfig", "AutoModelForCausalLM": "modeling_molmo.MolmoForCausalLM"},
    "clip_qkv": None,
    "embedding_size": 152064,
    "hidden_size": 3584,
    "initializer_range": 0.02,
    "intermediate_size": 37888,
    "layer_norm_eps": 1e-06,
    "layer_norm_type": "rms",
    "max_position_embeddings": 4096,
    "model_type": "molmo",
    "norm_after": False,
    "num_attention_heads": 28,
    "num_hidden_layers": 28,
    "num_key_value_heads": 4,
    "qkv_bias": True,
    "rope_theta": 1000000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "transformers_version": "4.43.3",
    "use_cache": True,
    "use_position_ids": True,
    "vocab_size": 152064,
    "weight_tying": False,
}
MOLMO_7B_D_FLOAT32_BYTES = 32084101120  # total_size in Molmo-7B-D's model.safetensors.index.json


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_tiny_videomolmo(tmp_path_factory.mktemp("videomolmo"))


@pytest.fixture(scope="module")
def model(checkpoint) -> VideoMolmo:
    return load_videomolmo(checkpoint, "cpu", torch.float32)


def crops(seed: int, count: int = CROPS) -> torch.Tensor:
    """Preprocessed-looking crops: (1, count, patches, pixels)."""
    config = tiny_config()
    patches = config.vision.patch_grid[0] * config.vision.patch_grid[1]
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, count, patches, config.vision.patch_pixels, generator=generator)


def image_positions(config: VideoMolmoConfig, start: int = 3) -> torch.Tensor:
    """image_input_idx for CROPS crops placed from `start`, the last crop's tokens skipped (-100)."""
    per_crop = config.tokens_per_crop
    index = torch.full((1, CROPS, per_crop), -100)
    index[0, : CROPS - 1] = torch.arange((CROPS - 1) * per_crop).reshape(CROPS - 1, per_crop) + start
    return index


def released_keys() -> set[str]:
    """The released checkpoint's keys: Molmo-7B-D's (its index.json) with VideoMolmo's adapter, no pad_embed."""
    attention = [f"{w}.{p}" for w in ("wq", "wk", "wv", "wo") for p in ("weight", "bias")]
    block = ["att_proj.bias", "att_proj.weight", "attn_norm.weight", "attn_out.weight"]
    block += ["ff_norm.weight", "ff_out.weight", "ff_proj.weight"]
    resblock = [f"attention.{name}" for name in attention]
    resblock += [f"{n}.{p}" for n in ("attention_norm", "ffn_norm") for p in ("weight", "bias")]
    resblock += [f"feed_forward.{n}.{p}" for n in ("w1", "w2") for p in ("weight", "bias")]
    text, vision = "model.transformer", "model.vision_backbone"
    vit = f"{vision}.image_vit"
    keys = {f"{text}.blocks.{i}.{name}" for i in range(28) for name in block}
    keys |= {f"{vit}.transformer.resblocks.{i}.{name}" for i in range(23) for name in resblock}
    keys |= {f"{text}.{name}" for name in ("ff_out.weight", "ln_f.weight", "wte.embedding", "wte.new_embedding")}
    keys |= {f"{vision}.image_pooling_2d.{name}" for name in attention}
    keys |= {f"{vision}.image_projector.{w}.weight" for w in ("w1", "w2", "w3")}
    keys |= {f"{vit}.{name}" for name in ("class_embedding", "patch_embedding.weight", "positional_embedding")}
    keys |= {f"{vit}.pre_ln.weight", f"{vit}.pre_ln.bias"}
    return keys | {f"{vision}.adapter.{w}.weight" for w in ("wq", "wk", "wv", "wo")}


# -- configuration and key layout ----------------------------------------------------------------


def test_molmo_7b_d_config_json_gives_the_default_sizes():
    assert VideoMolmoConfig.from_json(MOLMO_7B_D_CONFIG) == VideoMolmoConfig()
    config = VideoMolmoConfig()
    assert (config.feature_dim, config.tokens_per_crop, config.head_dim) == (2048, 144, 128)


def test_an_architecture_this_code_does_not_implement_is_refused():
    with pytest.raises(CheckpointError, match="norm_after"):
        VideoMolmoConfig.from_json({**MOLMO_7B_D_CONFIG, "norm_after": True})


def test_full_size_model_has_the_released_keys_and_parameter_count():
    with torch.device("meta"):
        state = VideoMolmo(VideoMolmoConfig()).state_dict()
    assert set(state) == released_keys()
    adapter = 4 * 2048 * 1024
    pad_embed = 2 * 2048  # in Molmo-7B-D, not in VideoMolmo
    assert sum(t.numel() for t in state.values()) == MOLMO_7B_D_FLOAT32_BYTES // 4 + adapter - pad_embed


# -- loading -----------------------------------------------------------------------------------------


def test_tiny_checkpoint_loads_strictly_for_inference(checkpoint, model):
    stored = load_file(checkpoint / "model.safetensors")
    state = model.state_dict()
    assert set(state) == set(stored)
    assert all(torch.equal(state[key], stored[key]) for key in stored)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("extra", "model.vision_backbone.adapter.bias"),
        ("missing", "model.vision_backbone.adapter.wq.weight"),
        ("shape", "model.transformer.wte.new_embedding"),
    ],
)
def test_a_checkpoint_that_differs_by_one_key_is_refused_naming_it(tmp_path, change, named):
    config = tiny_config()
    state = random_state(config)
    if change == "extra":
        state[named] = torch.zeros(3)
    elif change == "missing":
        del state[named]
    else:
        state[named] = state[named][:-1]
    write_checkpoint(tmp_path, config, state)
    with pytest.raises(CheckpointError, match=named.replace(".", r"\.")):
        load_videomolmo(tmp_path, "cpu", torch.float32)


def test_molmo_pad_embed_in_a_checkpoint_is_ignored_as_the_reference_does(tmp_path, checkpoint):
    config = tiny_config()
    state = random_state(config)
    write_checkpoint(tmp_path, config, {**state, "model.vision_backbone.pad_embed": torch.zeros(2, config.feature_dim)})
    assert "pad_embed" not in str(list(load_videomolmo(tmp_path, "cpu", torch.float32).state_dict()))


def test_sharded_checkpoint_loads(tmp_path, checkpoint, model):
    stored = load_file(checkpoint / "model.safetensors")
    keys = sorted(stored)
    shards = {"model-00001-of-00002.safetensors": keys[::2], "model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in shards.items():
        save_file({key: stored[key] for key in part}, tmp_path / name)
    weight_map = {key: name for name, part in shards.items() for key in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (tmp_path / "config.json").write_text((checkpoint / "config.json").read_text())
    loaded = load_videomolmo(tmp_path, "cpu", torch.float32)
    assert all(torch.equal(loaded.state_dict()[key], model.state_dict()[key]) for key in keys)


def test_missing_checkpoint_says_what_to_download_and_where(tmp_path, checkpoint):
    with pytest.raises(CheckpointError, match=f"does not exist.*hf download {CHECKPOINT_ID}"):
        load_videomolmo(tmp_path / "absent", "cpu", torch.float32)
    (tmp_path / "config.json").write_text((checkpoint / "config.json").read_text())
    with pytest.raises(CheckpointError, match=f"no \\*\\.safetensors weights.*{CHECKPOINT_ID}"):
        load_videomolmo(tmp_path, "cpu", torch.float32)
    index = {"weight_map": {"model.transformer.ln_f.weight": "model-00001-of-00001.safetensors"}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=r"lacks model-00001-of-00001\.safetensors"):
        load_videomolmo(tmp_path, "cpu", torch.float32)


def test_loads_in_bfloat16(checkpoint):
    half = load_videomolmo(checkpoint, "cpu", torch.bfloat16)
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    features = half.encode_frame(crops(0))
    assert features.dtype == torch.bfloat16
    assert half.embed_images(features, [features]).isfinite().all()


# -- vision pipeline -------------------------------------------------------------------------------


def test_shapes_through_the_pipeline(model):
    config = model.config
    features = model.encode_frame(crops(0))
    assert features.shape == (1, CROPS, 16, 2 * config.vision.image_emb_dim)  # 576 x 2048 at full size
    mixed = model.temporal(features, [model.encode_frame(crops(1))])
    assert mixed.shape == features.shape
    embeddings = model.pool_and_project(mixed)
    assert embeddings.shape == (1, CROPS, config.tokens_per_crop, config.d_model)  # 144 x 3584 at full size
    assert config.tokens_per_crop == 4


def test_padding_crops_give_zero_features(model):
    images = crops(0)
    images[0, 1] = -1
    features = model.encode_frame(images)
    assert features[0, 1].abs().max() == 0
    assert features[0, 0].abs().max() > 0


def test_temporal_runs_when_the_past_equals_the_current_frame(model):
    features = model.encode_frame(crops(0))
    mixed = model.temporal(features, [features] * PAST_FRAMES)
    assert mixed.isfinite().all()
    assert not torch.allclose(mixed, features), "the residual adds the cross-attention's output"
    torch.testing.assert_close(mixed, model.temporal(features, [features]))  # the mean of equal maps


def test_temporal_is_local_to_2x2_windows(model):
    """Changing the past in one window changes the result in that window only."""
    current, before = model.encode_frame(crops(0)), model.encode_frame(crops(1))
    changed = before.clone()
    changed[0, 0, 0] += 1.0  # patch (0, 0): window (0, 0) = patches 0, 1, 4, 5 of the 4x4 grid
    delta = (model.temporal(current, [changed]) - model.temporal(current, [before])).abs().amax(dim=-1)[0, 0]
    assert set(delta.nonzero().flatten().tolist()) == {0, 1, 4, 5}


def test_a_stream_start_is_padded_with_black_frames(model):
    black = model.black_frame_features(CROPS)
    frames = [model.encode_frame(crops(seed)) for seed in range(6)]
    assert padded_past([], black) == [black] * PAST_FRAMES
    start = padded_past(frames[:1], black)
    assert start[:3] == [black] * 3 and start[3] is frames[0]
    assert padded_past(frames, black) == frames[-PAST_FRAMES:]
    # The black frame goes through the same preprocessing: every pixel is -mean/std, crops alike.
    pixels = model.black_crops(CROPS).reshape(CROPS, 16, 14 * 14, 3)
    expected = -torch.tensor(CLIP_MEAN) / torch.tensor(CLIP_STD)
    assert torch.equal(pixels, expected.expand_as(pixels))
    torch.testing.assert_close(black, model.encode_frame(model.black_crops(CROPS)))


def test_black_crops_are_what_the_preprocessing_makes_of_a_black_frame():
    """Any frame size: the letterbox fill and black pixels normalise alike, so only the crop count matters."""
    import numpy as np

    from videomolmo_ros.backends.videomolmo.preprocessing import preprocess_frame

    with torch.device("meta"):
        full_size = VideoMolmo(VideoMolmoConfig())
    for height, width in [(480, 640), (720, 1280)]:
        frame = preprocess_frame(np.zeros((height, width, 3), dtype=np.uint8))
        assert torch.equal(full_size.black_crops(frame.n_crops), frame.images[None])


def test_cached_past_features_give_the_recomputed_embeddings(model):
    """A frame buffer encodes each frame once; the reference re-encodes the 4 previous frames per query."""
    stream = [crops(seed) for seed in range(7)]
    black_pixels = model.black_crops(CROPS)
    cache: list[torch.Tensor] = []
    black = model.black_frame_features(CROPS)
    for t, frame in enumerate(stream):
        current = model.encode_frame(frame)
        cached = model.embed_images(current, padded_past(cache, black))
        cache.append(current)
        # Recompute from pixels, as the reference does: black frames in front, all past frames in one batch.
        past_pixels = [black_pixels] * max(0, PAST_FRAMES - t) + stream[max(0, t - PAST_FRAMES) : t]
        encoded = model.encode_frame(torch.cat(past_pixels, dim=0))
        recomputed = model.embed_images(model.encode_frame(frame), list(encoded.split(1)))
        torch.testing.assert_close(cached, recomputed, rtol=1e-5, atol=1e-5)


# -- language model ----------------------------------------------------------------------------------


def prompt(model: VideoMolmo, seed: int = 0):
    """Token ids, image embeddings and their positions for one frame."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (1, 24), generator=generator)
    features = model.encode_frame(crops(seed))
    return ids, model.embed_images(features, [model.black_frame_features(CROPS)]), image_positions(model.config)


def test_image_embeddings_are_added_at_image_input_idx(model):
    ids, embeddings, positions = prompt(model)
    with torch.inference_mode():
        delta = model.embed_tokens(ids, embeddings, positions) - model.embed_tokens(ids)
    placed = positions[0, : CROPS - 1].flatten()
    torch.testing.assert_close(delta[0, placed], embeddings[0, : CROPS - 1].reshape(len(placed), -1))
    untouched = torch.ones(ids.shape[1], dtype=torch.bool)
    untouched[placed] = False
    assert delta[0, untouched].abs().max() == 0, "skipped (-100) tokens and text are left alone"


def test_extra_vocabulary_tokens_embed_from_new_embedding(model):
    rows = model.config.embedding_size
    with torch.inference_mode():
        embedded = model.embed_tokens(torch.tensor([[rows + 2, 5]]))
    wte = model.model.transformer.wte
    assert torch.equal(embedded[0, 0], wte.new_embedding[2]) and torch.equal(embedded[0, 1], wte.embedding[5])


def test_cached_decoding_matches_recomputing_the_whole_sequence(model):
    ids, embeddings, positions = prompt(model)
    tokens = model.generate(ids, embeddings, positions, max_new_tokens=10)
    sequence = ids
    with torch.inference_mode():
        for _ in range(10):
            logits = model(sequence, embeddings, positions)
            sequence = torch.cat([sequence, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert tokens.tolist() == sequence[:, ids.shape[1] :].tolist()
    assert len(set(tokens[0].tolist())) > 1, "random weights still vary their output"


def test_generate_stops_at_max_new_tokens_and_at_eos(model):
    ids, embeddings, positions = prompt(model)
    tokens = model.generate(ids, embeddings, positions, max_new_tokens=6)
    assert tokens.shape == (1, 6)
    third = int(tokens[0, 2])
    stopped = model.generate(ids, embeddings, positions, max_new_tokens=6, eos_token_id=[999, third])
    assert stopped.tolist() == tokens[:, : tokens[0].tolist().index(third) + 1].tolist()


def test_generate_applies_the_logits_processor_to_all_ids_so_far(model):
    ids, embeddings, positions = prompt(model)
    seen = []

    def force_seven(input_ids, scores):
        seen.append(input_ids.shape[1])
        forced = torch.full_like(scores, float("-inf"))
        forced[:, 7] = 0
        return forced

    tokens = model.generate(ids, embeddings, positions, max_new_tokens=4, logits_processor=force_seven)
    assert tokens.tolist() == [[7, 7, 7, 7]]
    assert seen == [24, 25, 26, 27]


def test_inference_runs_under_inference_mode(model):
    ids, embeddings, positions = prompt(model)
    assert embeddings.is_inference()
    with torch.inference_mode():
        features = model.encode_frame(crops(3))
        tokens = model.generate(ids, model.embed_images(features, [features]), positions, max_new_tokens=3)
    assert features.is_inference() and tokens.is_inference()
    assert tokens.shape == (1, 3)
