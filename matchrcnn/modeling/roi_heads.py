"""torchvision's RoIHeads (box and mask streams) with Match R-CNN's landmark and match streams.

The new streams are grouped as branches (a pooler, the plain heads of ``heads/``, their settings)
so that RoIHeads only decides which boxes each stream sees: at training, the positive sampled
proposals (landmarks, masks) and the ground-truth items (match); at inference, the detections.
Streams whose poolers agree share one RoIAlign over the same boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import (
    RoIHeads,
    fastrcnn_loss,
    maskrcnn_inference,
    maskrcnn_loss,
)
from torchvision.ops import MultiScaleRoIAlign, nms

from matchrcnn.data.layouts import LandmarkLayout
from matchrcnn.modeling.heads.landmark import (
    LandmarkHead,
    LandmarkPredictor,
    heatmaps_to_landmarks,
    pack_slices,
)
from matchrcnn.modeling.heads.match import MatchHead, SimilarityHead
from matchrcnn.modeling.losses import (
    MatchLossOutput,
    landmark_loss,
    match_loss,
    match_pair_labels,
)


class LandmarkBranch(nn.Module):
    """Category-aware landmark stream: loss on each RoI's own slice, landmarks per detection.

    ``roi_pool`` is the engine's pooler: torchvision's MultiScaleRoIAlign here, detectron2's
    ROIPooler in ``matchrcnn.d2``.
    """

    def __init__(
        self,
        roi_pool: nn.Module,
        head: LandmarkHead,
        predictor: LandmarkPredictor,
        loss_weight: float = 1.0,
        category_sliced: bool = True,
    ) -> None:
        super().__init__()
        self.roi_pool = roi_pool
        self.head = head
        self.predictor = predictor
        self.loss_weight = loss_weight
        self.category_sliced = category_sliced

    @property
    def layout(self) -> LandmarkLayout:
        """The landmark layout of the predictor (DeepFashion2's 294 slots by default)."""
        return self.predictor.layout

    def packed_logits(self, pooled: Tensor, categories: Tensor) -> Tensor:
        """Heatmap logits of each RoI's category slots, packed (N, M, 56, 56); M = 39 in DF2."""
        x = self.head(pooled)
        if self.category_sliced:
            return self.predictor(x, categories)
        return pack_slices(self.predictor(x), categories, self.layout)

    def loss(self, pooled: Tensor, boxes: Tensor, categories: Tensor, keypoints: Tensor) -> Tensor:
        """Weighted landmark loss of RoIs with ground-truth categories and keypoints (N, K, 3)."""
        logits = self.packed_logits(pooled, categories)
        targets = pack_slices(keypoints, categories, self.layout)
        return self.loss_weight * landmark_loss(logits, boxes, targets)

    def predict(self, pooled: Tensor, boxes: Tensor, categories: Tensor) -> Tensor:
        """Landmarks (N, K, 3) of detections, zero outside each predicted category's slots."""
        logits = self.packed_logits(pooled, categories)
        return heatmaps_to_landmarks(logits, categories, boxes, self.layout)


class MatchBranch(nn.Module):
    """Match network: embeddings of items and the consumer x shop pair loss (``roi_pool`` as in
    LandmarkBranch)."""

    def __init__(
        self,
        roi_pool: nn.Module,
        head: MatchHead,
        similarity: SimilarityHead,
        loss_weight: float = 1.0,
        neg_pos_ratio: float = 3.0,
        balance: str = "class_weights",
        proposals_per_image: int = 0,
    ) -> None:
        super().__init__()
        self.roi_pool = roi_pool
        self.head = head
        self.similarity = similarity
        self.loss_weight = loss_weight
        self.neg_pos_ratio = neg_pos_ratio
        self.balance = balance
        self.proposals_per_image = proposals_per_image

    def loss(
        self, embeddings: Tensor, is_shop: Tensor, pair_ids: Tensor, styles: Tensor
    ) -> MatchLossOutput:
        user, shop, labels = match_pair_labels(is_shop, pair_ids, styles)
        logits = self.similarity.pairwise(embeddings[user], embeddings[shop])
        output = match_loss(logits, labels, self.neg_pos_ratio, self.balance)
        return output._replace(loss=self.loss_weight * output.loss)


class MatchRoIHeads(RoIHeads):
    """RoIHeads whose forward also runs the landmark and match branches (either may be None).

    Inference adds "landmarks" (N, 294, 3) and "embeddings" (N, D) to each image's detections.
    Training adds "loss_landmark" and "loss_match" and leaves the match accuracies of the last
    step in ``last_metrics``.
    """

    def __init__(
        self,
        *args,
        landmark_branch: LandmarkBranch | None = None,
        match_branch: MatchBranch | None = None,
        class_agnostic_nms: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.landmark_branch = landmark_branch
        self.match_branch = match_branch
        self.class_agnostic_nms = class_agnostic_nms
        self.last_metrics: dict[str, float] = {}

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
            pooled = _PooledFeatures(features, rois, image_shapes)
            losses.update(self._stream_losses(pooled, targets, roi_gt, roi_labels))
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
        self._stream_predictions(_PooledFeatures(features, boxes, image_shapes), labels, result)
        return result, {}

    def _stream_losses(
        self,
        pooled: _PooledFeatures,
        targets: list[dict[str, Tensor]],
        roi_gt: list[Tensor],
        roi_labels: list[Tensor],
    ) -> dict[str, Tensor]:
        losses = {}
        rois = pooled.boxes
        if self.has_mask():
            mask_logits = self.mask_predictor(self.mask_head(pooled(self.mask_roi_pool)))
            losses["loss_mask"] = maskrcnn_loss(
                mask_logits,
                rois,
                [t["masks"] for t in targets],
                [t["labels"] for t in targets],
                roi_gt,
            )
        if self.landmark_branch is not None:
            keypoints = [t["keypoints"][g] for t, g in zip(targets, roi_gt, strict=True)]
            losses["loss_landmark"] = self.landmark_branch.loss(
                pooled(self.landmark_branch.roi_pool),
                torch.cat(rois),
                torch.cat(roi_labels),
                torch.cat(keypoints),
            )
        if self.match_branch is not None:
            output = self._match_loss(pooled, targets, roi_gt)
            losses["loss_match"] = output.loss
            self.last_metrics = {
                "match_pos_acc": float(output.pos_accuracy),
                "match_neg_acc": float(output.neg_accuracy),
                "match_pos_pairs": float(output.num_pos),
                "match_neg_pairs": float(output.num_neg),
            }
        return losses

    def _match_loss(
        self,
        pooled: _PooledFeatures,
        targets: list[dict[str, Tensor]],
        roi_gt: list[Tensor],
    ) -> MatchLossOutput:
        """Embed every ground-truth item (and some foreground proposals), then pair them up."""
        branch = self.match_branch
        boxes, items = [], []
        for target, image_rois, image_gt in zip(targets, pooled.boxes, roi_gt, strict=True):
            gt_boxes = target["boxes"]
            boxes.append(gt_boxes)
            items.append(torch.arange(gt_boxes.shape[0], device=gt_boxes.device))
            if branch.proposals_per_image and image_rois.shape[0]:
                chosen = torch.randperm(image_rois.shape[0], device=image_rois.device)
                chosen = chosen[: branch.proposals_per_image]
                boxes[-1] = torch.cat([gt_boxes, image_rois[chosen]])
                items[-1] = torch.cat([items[-1], image_gt[chosen]])
        embeddings = branch.head(branch.roi_pool(pooled.features, boxes, pooled.image_shapes))
        is_shop = torch.cat(
            [t["is_shop"].reshape(()).expand(len(i)) for t, i in zip(targets, items, strict=True)]
        ).bool()
        pair_ids = torch.cat([t["pair_ids"][i] for t, i in zip(targets, items, strict=True)])
        styles = torch.cat([t["styles"][i] for t, i in zip(targets, items, strict=True)])
        return branch.loss(embeddings, is_shop, pair_ids, styles)

    def _stream_predictions(
        self,
        pooled: _PooledFeatures,
        labels: list[Tensor],
        result: list[dict[str, Tensor]],
    ) -> None:
        boxes = pooled.boxes
        counts = [b.shape[0] for b in boxes]
        if self.has_mask():
            mask_logits = self.mask_predictor(self.mask_head(pooled(self.mask_roi_pool)))
            for r, masks in zip(result, maskrcnn_inference(mask_logits, labels), strict=True):
                r["masks"] = masks
        if self.landmark_branch is not None:
            landmarks = self.landmark_branch.predict(
                pooled(self.landmark_branch.roi_pool), torch.cat(boxes), torch.cat(labels)
            )
            for r, image_landmarks in zip(result, landmarks.split(counts), strict=True):
                r["landmarks"] = image_landmarks
        if self.match_branch is not None:
            embeddings = self.match_branch.head(pooled(self.match_branch.roi_pool))
            for r, image_embeddings in zip(result, embeddings.split(counts), strict=True):
                r["embeddings"] = image_embeddings


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
    """RoIAlign of one set of boxes (per image), computed once per distinct pooler setting."""

    def __init__(
        self,
        features: dict[str, Tensor],
        boxes: list[Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> None:
        self.features = features
        self.boxes = boxes
        self.image_shapes = image_shapes
        self._cache: dict[tuple, Tensor] = {}

    def __call__(self, pool: MultiScaleRoIAlign) -> Tensor:
        key = (tuple(pool.featmap_names), tuple(pool.output_size), pool.sampling_ratio,
               pool.canonical_scale, pool.canonical_level)
        if key not in self._cache:
            self._cache[key] = pool(self.features, self.boxes, self.image_shapes)
        return self._cache[key]
