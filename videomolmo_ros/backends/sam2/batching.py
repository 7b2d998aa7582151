"""Several objects on one frame as one batch through SAM2's memory attention, mask decoder and memory encoder.

sam2's predictor runs each object as a batch of one over the frame's shared image features, so
the per-object part of a step (memory attention, mask decoder, memory encoder: about a third of
a one-object step on hiera-t) is paid once per object, with one set of small kernels each. Here
each object's memory is gathered by sam2's own `_prepare_memory_conditioned_features` (its
memory attention replaced by a recorder of its inputs, so which frames are read and how they are
encoded stays sam2's), then objects whose memories have the same length and the same number of
object-pointer tokens run through the rest as one batch. Per-object memories stay separate:
only the image features are shared (expanded, not copied). The masks equal the per-object path
within float tolerance (batched matrix products round differently).

Not batched (run as a batch of one): models that make the objects' memory masks non-overlapping
(`non_overlap_masks_for_mem_enc`, which would couple the objects), and models without memory.
"""

from collections import defaultdict
from collections.abc import Sequence

import torch

Features = tuple[list[torch.Tensor], list[torch.Tensor], list[tuple[int, int]]]


class _MemoryRecorder:
    """The model as `_prepare_memory_conditioned_features` sees it, with memory attention recording its inputs."""

    def __init__(self, model):
        self._model = model
        self.recorded: tuple[torch.Tensor, torch.Tensor, int] | None = None

    def __getattr__(self, name: str):
        return getattr(self._model, name)

    def memory_attention(self, curr, curr_pos, memory, memory_pos, num_obj_ptr_tokens=0):
        self.recorded = (memory, memory_pos, num_obj_ptr_tokens)
        return curr[0]  # shaped like the real output; the caller's result is not used


def memory_of(model, index: int, features: Features, output_dict: dict, num_frames: int, reverse: bool):
    """(memory tokens, their position encodings, object-pointer tokens) an object's step on frame `index` reads.

    None when the model reads no memory (then the object runs alone through `track_step`).
    """
    vision_feats, vision_pos, sizes = features
    recorder = _MemoryRecorder(model)
    type(model)._prepare_memory_conditioned_features(
        recorder,
        frame_idx=index,
        is_init_cond_frame=False,
        current_vision_feats=vision_feats[-1:],
        current_vision_pos_embeds=vision_pos[-1:],
        feat_sizes=sizes[-1:],
        output_dict=output_dict,
        num_frames=num_frames,
        track_in_reverse=reverse,
    )
    return recorder.recorded


def batches(memories: dict[int, tuple | None], model) -> list[list[int]]:
    """Object ids grouped so each group runs as one batch: same memory length and pointer tokens."""
    if model.non_overlap_masks_for_mem_enc:
        return [[i] for i in memories]
    groups: dict[tuple, list[int]] = defaultdict(list)
    for object_id, memory in memories.items():
        key = ("alone", object_id) if memory is None else (memory[0].shape[0], memory[2])
        groups[key].append(object_id)
    return list(groups.values())


def track_batch(model, features: Features, memories: Sequence[tuple]) -> dict[str, torch.Tensor]:
    """One tracking step of len(memories) objects on one frame, from their recorded memories.

    Returns sam2's per-frame outputs batched along dim 0: pred_masks (low-res logits),
    pred_masks_high_res, obj_ptr, object_score_logits, maskmem_features, maskmem_pos_enc.
    """
    vision_feats, vision_pos, sizes = features
    count = len(memories)
    memory = torch.cat([m[0] for m in memories], dim=1)
    memory_pos = torch.cat([m[1] for m in memories], dim=1)
    current = vision_feats[-1].expand(-1, count, -1)
    attended = model.memory_attention(
        curr=[current],
        curr_pos=[vision_pos[-1].expand(-1, count, -1)],
        memory=memory,
        memory_pos=memory_pos,
        num_obj_ptr_tokens=memories[0][2],
    )
    height, width = sizes[-1]
    pix_feat = attended.permute(1, 2, 0).view(count, model.hidden_dim, height, width)
    high_res = [
        x.permute(1, 2, 0).view(1, x.size(2), *size).expand(count, -1, -1, -1)
        for x, size in zip(vision_feats[:-1], sizes[:-1], strict=True)
    ]
    _, _, _, low_res, high_res_masks, obj_ptr, scores = model._forward_sam_heads(
        backbone_features=pix_feat,
        point_inputs=None,
        mask_inputs=None,
        high_res_features=high_res or None,
        multimask_output=model._use_multimask(False, None),
    )
    maskmem, maskmem_pos = model._encode_new_memory(
        current_vision_feats=[current],
        feat_sizes=sizes,
        pred_masks_high_res=high_res_masks,
        object_score_logits=scores,
        is_mask_from_pts=False,
    )
    return {
        "pred_masks": low_res,
        "pred_masks_high_res": high_res_masks,
        "obj_ptr": obj_ptr,
        "object_score_logits": scores,
        "maskmem_features": maskmem,
        "maskmem_pos_enc": maskmem_pos,
    }
