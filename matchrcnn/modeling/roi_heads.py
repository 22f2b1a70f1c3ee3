"""torchvision's RoIHeads (box and mask streams) running Match R-CNN's RoI branches.

RoIHeads only decides which boxes each branch sees (matchrcnn.modeling.branch): at training, the
positive sampled proposals with their items' target fields and every ground-truth item; at
inference, the detections. Streams whose poolers agree share one RoIAlign over the same boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.models.detection.roi_heads import (
    RoIHeads,
    fastrcnn_loss,
    maskrcnn_inference,
    maskrcnn_loss,
)
from torchvision.ops import MultiScaleRoIAlign, nms

from matchrcnn.modeling.branch import BranchInputs, HoldsBranches, RoIBranch


class MatchRoIHeads(HoldsBranches, RoIHeads):
    """RoIHeads whose forward also runs the RoI branches (attributes ``<name>_branch``, None for a
    registered branch that is off).

    Inference adds each branch's outputs ("landmarks" (N, K, 3), "embeddings" (N, D), ...) to each
    image's detections. Training adds each branch's losses and leaves their metrics of the last
    step in ``last_metrics``.
    """

    def __init__(
        self,
        *args,
        branches: Sequence[RoIBranch] = (),
        class_agnostic_nms: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.attach_branches(branches)
        self.class_agnostic_nms = class_agnostic_nms

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if self.training:
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(
                proposals, targets
            )
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        if self.training:
            loss_classifier, loss_box_reg = fastrcnn_loss(
                class_logits, box_regression, labels, regression_targets
            )
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
            positive = [torch.nonzero(image_labels > 0).squeeze(1) for image_labels in labels]
            rois = [p[i] for p, i in zip(proposals, positive, strict=True)]
            roi_gt = [m[i] for m, i in zip(matched_idxs, positive, strict=True)]
            roi_labels = [image_labels[i] for image_labels, i in zip(labels, positive, strict=True)]
            pool = _PooledFeatures(features, image_shapes)
            if self.has_mask():
                mask_logits = self.mask_predictor(self.mask_head(pool(self.mask_roi_pool, rois)))
                losses["loss_mask"] = maskrcnn_loss(
                    mask_logits, rois, [t["masks"] for t in targets],
                    [t["labels"] for t in targets], roi_gt,
                )
            items = [self._items(target) for target in targets]
            inputs = BranchInputs(
                rois, roi_labels, pool,
                fields=[{key: value[g] for key, value in image_items.items()}
                        for image_items, g in zip(items, roi_gt, strict=True)],
                items=items,
            )
            for branch in self.branches:
                losses.update(branch.losses(inputs))
            return [], losses
        boxes, scores, labels = self.postprocess_detections(
            class_logits, box_regression, proposals, image_shapes
        )
        if self.class_agnostic_nms is not None:
            boxes, scores, labels = one_per_object(boxes, scores, labels, self.class_agnostic_nms)
        result = [
            {"boxes": b, "labels": c, "scores": s}
            for b, c, s in zip(boxes, labels, scores, strict=True)
        ]
        pool = _PooledFeatures(features, image_shapes)
        if self.has_mask():
            mask_logits = self.mask_predictor(self.mask_head(pool(self.mask_roi_pool, boxes)))
            for r, masks in zip(result, maskrcnn_inference(mask_logits, labels), strict=True):
                r["masks"] = masks
        inputs = BranchInputs(boxes, labels, pool)
        counts = [b.shape[0] for b in boxes]
        for branch in self.branches:
            for key, value in branch.predict(inputs).items():
                for r, image_value in zip(result, value.split(counts), strict=True):
                    r[key] = image_value
        return result, {}

    def _items(self, target: dict[str, Tensor]) -> dict[str, Tensor]:
        """An image's ground-truth items with the branches' fields, per-image ones repeated."""
        count = target["boxes"].shape[0]
        items = {"boxes": target["boxes"], "labels": target["labels"]}
        for key, spec in self.target_fields().items():
            value = target[key]
            items[key] = value.reshape(()).expand(count) if spec.per_image else value
        return items


def one_per_object(
    boxes: list[Tensor], scores: list[Tensor], labels: list[Tensor], iou_threshold: float
) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Per image, drop each detection overlapping a higher-scoring one of any class by more than
    ``iou_threshold`` (TEST.CLASS_AGNOSTIC_NMS): one garment, one detection. Kept in score order."""
    kept = [nms(b, s, iou_threshold) for b, s in zip(boxes, scores, strict=True)]
    return ([b[k] for b, k in zip(boxes, kept, strict=True)],
            [s[k] for s, k in zip(scores, kept, strict=True)],
            [c[k] for c, k in zip(labels, kept, strict=True)])


class _PooledFeatures:
    """The engine's ``Pool``: RoIAlign of a set of boxes, once per distinct pooler setting."""

    def __init__(self, features: dict[str, Tensor], image_shapes: list[tuple[int, int]]) -> None:
        self.features = features
        self.image_shapes = image_shapes
        self._cache: dict[tuple, tuple[list[Tensor], Tensor]] = {}

    def __call__(self, pool: MultiScaleRoIAlign, boxes: list[Tensor]) -> Tensor:
        # The boxes are kept with their result, so that their id is not reused within a step.
        key = (id(boxes), tuple(pool.featmap_names), tuple(pool.output_size), pool.sampling_ratio,
               pool.canonical_scale, pool.canonical_level)
        if key not in self._cache:
            self._cache[key] = (boxes, pool(self.features, boxes, self.image_shapes))
        return self._cache[key][1]
