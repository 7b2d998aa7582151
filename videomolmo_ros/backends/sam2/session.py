"""SAM2's per-object memories over one numbering of frames, driven through the model's `track_step`.

What sam2's predictor keeps per frame, minus what later frames never read: each object keeps its
prompted frames (at most `max_conditioning_frames`, the first never pruned) and its last
`memory_frames` tracked frames. `track_many` steps the objects of a frame in batches
(batching.py); `track` is sam2's own per-object step, the reference it is tested against.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from videomolmo_ros.backends.sam2.batching import Features, batches, memory_of, track_batch
from videomolmo_ros.backends.sam2.loading import Sam2Options


@dataclass
class ObjectMemory:
    """One object's memory: frame number -> sam2's compact per-frame output (what later frames read)."""

    cond: dict[int, dict]  # prompted frames
    recent: dict[int, dict]  # last tracked frames
    first: int  # the first prompted frame, never pruned

    def output_dict(self) -> dict[str, dict[int, dict]]:
        return {"cond_frame_outputs": self.cond, "non_cond_frame_outputs": self.recent}


class Session:
    """Objects and their bounded memories over one numbering of frames (the live stream, or one clip)."""

    def __init__(self, model, num_frames: int, options: Sam2Options, hole_area: int):
        self.model = model
        self.num_frames = num_frames
        self.options = options
        self.hole_area = hole_area
        self.objects: dict[int, ObjectMemory] = {}
        self._pos_enc: list[torch.Tensor] | None = None  # the same for every memory: one copy

    def prompt(self, object_id: int, index: int, features: Features, points: torch.Tensor) -> dict:
        """Condition `object_id` on positive clicks (model pixels, P x 2) on frame `index`."""
        inputs = {
            "point_coords": points[None],
            "point_labels": torch.ones((1, len(points)), dtype=torch.int32, device=points.device),
        }
        obj = self.objects.setdefault(object_id, ObjectMemory({}, {}, index))
        out = self._run(index, features, obj, inputs, init=True, reverse=False)
        out["pred_masks"] = self._fill_holes(out["pred_masks"])  # kept: a step may land on this frame
        obj.cond[index] = out
        # What was tracked from here on came before these clicks: catch-up tracks it again.
        obj.recent = {i: kept for i, kept in obj.recent.items() if i < index}
        self._prune_cond(obj)
        return out

    def track(self, object_id: int, index: int, features: Features, reverse: bool) -> dict:
        """The object on frame `index` from its memory (alone, as sam2's predictor steps it); a prompted
        frame returns its prompt's output."""
        obj = self.objects[object_id]
        if index in obj.cond:
            return obj.cond[index]
        return self._remember(obj, index, self._run(index, features, obj, None, init=False, reverse=reverse), reverse)

    def track_many(self, object_ids: Sequence[int], index: int, features: Features, reverse: bool) -> dict[int, dict]:
        """`track` for several objects on one frame, in batches of objects whose memories line up."""
        outs = {i: self.objects[i].cond[index] for i in object_ids if index in self.objects[i].cond}
        stepped = [i for i in object_ids if i not in outs]
        memories = {
            i: memory_of(self.model, index, features, self.objects[i].output_dict(), self.num_frames, reverse)
            for i in stepped
        }
        for group in batches(memories, self.model):
            if memories[group[0]] is None:
                outs[group[0]] = self.track(group[0], index, features, reverse)
                continue
            batch = self._kept(track_batch(self.model, features, [memories[i] for i in group]))
            for k, object_id in enumerate(group):
                out = {key: value[k : k + 1] for key, value in batch.items() if key != "maskmem_pos_enc"}
                out["maskmem_pos_enc"] = batch["maskmem_pos_enc"]
                outs[object_id] = self._remember(self.objects[object_id], index, out, reverse)
        return {i: outs[i] for i in object_ids}

    def _remember(self, obj: ObjectMemory, index: int, out: dict, reverse: bool) -> dict:
        """Keep a tracked frame's output as the object's memory (its newest `memory_frames`); return it, with masks."""
        masks = self._fill_holes(out.pop("pred_masks"))
        obj.recent[index] = out
        for old in sorted(obj.recent, reverse=reverse)[: -self.options.memory_frames]:
            del obj.recent[old]
        return {**out, "pred_masks": masks}

    def _run(self, index: int, features: Features, obj: ObjectMemory, points, init: bool, reverse: bool) -> dict:
        vision_feats, vision_pos, sizes = features
        out = self.model.track_step(
            frame_idx=index,
            is_init_cond_frame=init,
            current_vision_feats=vision_feats,
            current_vision_pos_embeds=vision_pos,
            feat_sizes=sizes,
            point_inputs=points,
            mask_inputs=None,
            output_dict=obj.output_dict(),
            num_frames=self.num_frames,
            track_in_reverse=reverse,
        )
        return self._kept(out)

    def _kept(self, out: dict) -> dict:
        """What sam2's predictor keeps per frame (features in bf16 as it does), with one shared position encoding."""
        if self._pos_enc is None:
            self._pos_enc = [x[:1].clone() for x in out["maskmem_pos_enc"]]  # the same for every object and frame
        return {
            "maskmem_features": out["maskmem_features"].to(torch.bfloat16),
            "maskmem_pos_enc": self._pos_enc,
            "obj_ptr": out["obj_ptr"],
            "object_score_logits": out["object_score_logits"],
            "pred_masks": out["pred_masks"],
        }

    def _fill_holes(self, low_res: torch.Tensor) -> torch.Tensor:
        """sam2's output hole filling, as its predictor does it (0: off, as sam2 is without its CUDA extension)."""
        if not self.hole_area:
            return low_res
        from sam2.utils.misc import fill_holes_in_mask_scores

        return fill_holes_in_mask_scores(low_res, self.hole_area)

    def _prune_cond(self, obj: ObjectMemory) -> None:
        while len(obj.cond) > self.options.max_conditioning_frames:
            del obj.cond[min(i for i in obj.cond if i != obj.first)]
