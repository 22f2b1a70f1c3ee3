"""detectron2's StandardROIHeads with Match R-CNN's landmark and match streams on the same features.

The streams are the torchvision engine's own branches (matchrcnn.modeling.roi_heads): the same
LandmarkHead, LandmarkPredictor, MatchHead and SimilarityHead modules and the same loss functions,
with detectron2's ROIPooler as their pooler. So the heads' weights carry the same names as in the
torchvision engine (``landmark_branch.head.*``, ``match_branch.similarity.*``, ...). Detectron2
decides which boxes each stream sees, as for its mask head: at training the foreground sampled
proposals (landmarks) and every ground-truth item, plus optionally some foreground proposals
(match); at inference the detections.

Inference adds to each image's Instances ``pred_keypoints`` (N, 294, 3): (x, y, score) in the
predicted category's slice, zeros elsewhere; under that name detectron2 rescales them to the input
image, as it does its own keypoints. It also adds ``pred_embeddings`` (N, EMBED_DIM). Training adds
``loss_landmark`` and ``loss_match``, and puts the match accuracies and pair counts of each step
in the event storage (``match_pos_acc``, ``match_neg_acc``, ``match_pos_pairs``,
``match_neg_pairs``).
"""

from __future__ import annotations

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import select_foreground_proposals
from detectron2.structures import Boxes, ImageList, Instances
from detectron2.utils.events import get_event_storage
from torch import Tensor

from matchrcnn.data.categories import NUM_CATEGORIES, NUM_LANDMARKS
from matchrcnn.modeling.heads.landmark import LandmarkHead, LandmarkPredictor
from matchrcnn.modeling.heads.match import MatchHead, SimilarityHead
from matchrcnn.modeling.losses import MATCH_BALANCES
from matchrcnn.modeling.roi_heads import LandmarkBranch, MatchBranch

_MATCH_LABELS = ("is_shop", "pair_ids", "styles")
"""MatchBranch.loss's label arguments, in order."""


@ROI_HEADS_REGISTRY.register()
class MatchRCNNROIHeads(StandardROIHeads):
    """Box and mask streams of detectron2, landmark and match streams of Match R-CNN."""

    @configurable
    def __init__(
        self,
        *,
        landmark_in_features: list[str] | None = None,
        landmark_branch: LandmarkBranch | None = None,
        match_in_features: list[str] | None = None,
        match_branch: MatchBranch | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.landmark_in_features = landmark_in_features
        self.landmark_branch = landmark_branch
        self.match_in_features = match_in_features
        self.match_branch = match_branch

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg, input_shape)
        if cfg.MODEL.LANDMARK_ON:
            ret.update(_init_landmark_branch(cfg, input_shape))
        if cfg.MODEL.MATCH_ON:
            ret.update(_init_match_branch(cfg, input_shape))
        return ret

    def forward(
        self,
        images: ImageList,
        features: dict[str, Tensor],
        proposals: list[Instances],
        targets: list[Instances] | None = None,
    ) -> tuple[list[Instances], dict[str, Tensor]]:
        instances, losses = super().forward(images, features, proposals, targets)
        if self.training:
            if self.landmark_branch is not None:
                losses["loss_landmark"] = self._landmark_loss(features, instances)
            if self.match_branch is not None:
                losses["loss_match"] = self._match_loss(features, instances, targets)
        return instances, losses

    def forward_with_given_boxes(
        self, features: dict[str, Tensor], instances: list[Instances]
    ) -> list[Instances]:
        """detectron2's streams, then landmarks and embeddings of the given detections."""
        instances = super().forward_with_given_boxes(features, instances)
        boxes = [x.pred_boxes for x in instances]
        counts = [len(x) for x in instances]
        if self.landmark_branch is not None:
            pooled = self._pool(self.landmark_branch, self.landmark_in_features, features, boxes)
            landmarks = self.landmark_branch.predict(
                pooled, Boxes.cat(boxes).tensor, torch.cat([x.pred_classes for x in instances]) + 1
            )
            for x, image_landmarks in zip(instances, landmarks.split(counts), strict=True):
                x.pred_keypoints = image_landmarks
        if self.match_branch is not None:
            embeddings = self.embed_boxes(features, boxes)
            for x, image_embeddings in zip(instances, embeddings.split(counts), strict=True):
                x.pred_embeddings = image_embeddings
        return instances

    def embed_boxes(self, features: dict[str, Tensor], boxes: list[Boxes]) -> Tensor:
        """Match embeddings (sum of N, EMBED_DIM) of boxes given per image in input coordinates."""
        return self.match_branch.head(
            self._pool(self.match_branch, self.match_in_features, features, boxes)
        )

    @staticmethod
    def _pool(branch: LandmarkBranch | MatchBranch, in_features: list[str],
              features: dict[str, Tensor], boxes: list[Boxes]) -> Tensor:
        return branch.roi_pool([features[name] for name in in_features], boxes)

    def _landmark_loss(self, features: dict[str, Tensor], proposals: list[Instances]) -> Tensor:
        """Landmark loss on the foreground sampled proposals, with their items' landmarks."""
        foreground, _ = select_foreground_proposals(proposals, self.num_classes)
        boxes = [x.proposal_boxes for x in foreground]
        pooled = self._pool(self.landmark_branch, self.landmark_in_features, features, boxes)
        # Only an image without items lacks gt_keypoints; it has no foreground proposals either.
        none = pooled.new_zeros(0, NUM_LANDMARKS, 3)
        keypoints = [x.gt_keypoints.tensor if x.has("gt_keypoints") else none for x in foreground]
        return self.landmark_branch.loss(
            pooled,
            Boxes.cat(boxes).tensor,
            torch.cat([x.gt_classes for x in foreground]) + 1,
            torch.cat(keypoints),
        )

    def _match_loss(
        self, features: dict[str, Tensor], proposals: list[Instances], targets: list[Instances]
    ) -> Tensor:
        """Embed every item (and some foreground proposals), pair consumer with shop items."""
        branch = self.match_branch
        items = [_match_items(target) for target in targets]
        if branch.proposals_per_image:
            foreground, _ = select_foreground_proposals(proposals, self.num_classes)
            for image_items, rois in zip(items, foreground, strict=True):
                if len(rois):
                    chosen = torch.randperm(len(rois), device=rois.proposal_boxes.device)
                    rois = rois[chosen[: branch.proposals_per_image]]
                    for key, value in _match_items(rois, "proposal_boxes").items():
                        image_items[key] = torch.cat([image_items[key], value])
        embeddings = self.embed_boxes(features, [Boxes(i["boxes"]) for i in items])
        output = branch.loss(
            embeddings, *(torch.cat([i[key] for i in items]) for key in _MATCH_LABELS)
        )
        storage = get_event_storage()
        storage.put_scalars(match_pos_pairs=output.num_pos, match_neg_pairs=output.num_neg)
        if output.num_pos:
            storage.put_scalar("match_pos_acc", float(output.pos_accuracy))
        if output.num_neg:
            storage.put_scalar("match_neg_acc", float(output.neg_accuracy))
        return output.loss


def _match_items(instances: Instances, boxes: str = "gt_boxes") -> dict[str, Tensor]:
    return {
        "boxes": instances.get(boxes).tensor,
        "is_shop": instances.gt_is_shop,
        "pair_ids": instances.gt_pair_ids,
        "styles": instances.gt_styles,
    }


def _pooler(head_cfg: CfgNode, in_features: list[str], input_shape: dict[str, ShapeSpec],
            ) -> ROIPooler:
    return ROIPooler(
        output_size=head_cfg.POOLER_RESOLUTION,
        scales=tuple(1.0 / input_shape[name].stride for name in in_features),
        sampling_ratio=head_cfg.POOLER_SAMPLING_RATIO,
        pooler_type=head_cfg.POOLER_TYPE,
    )


def _init_landmark_branch(cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
    if cfg.MODEL.KEYPOINT_ON:
        raise ValueError(
            "MODEL.KEYPOINT_ON and MODEL.LANDMARK_ON both predict pred_keypoints; turn one off"
        )
    if cfg.MODEL.ROI_HEADS.NUM_CLASSES != NUM_CATEGORIES:
        raise ValueError(
            f"MODEL.ROI_HEADS.NUM_CLASSES is {cfg.MODEL.ROI_HEADS.NUM_CLASSES}, but the landmark "
            f"head lays out landmarks by DeepFashion2's {NUM_CATEGORIES} categories; set it to "
            f"{NUM_CATEGORIES} or MODEL.LANDMARK_ON False"
        )
    head_cfg = cfg.MODEL.ROI_LANDMARK_HEAD
    in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
    branch = LandmarkBranch(
        _pooler(head_cfg, in_features, input_shape),
        LandmarkHead(input_shape[in_features[0]].channels, head_cfg.NUM_CONVS, head_cfg.CONV_DIM),
        LandmarkPredictor(head_cfg.CONV_DIM),
        loss_weight=head_cfg.LOSS_WEIGHT,
        category_sliced=head_cfg.CATEGORY_SLICED,
    )
    return {"landmark_in_features": in_features, "landmark_branch": branch}


def _init_match_branch(cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
    head_cfg = cfg.MODEL.MATCH_HEAD
    if head_cfg.BALANCE not in MATCH_BALANCES:
        raise ValueError(
            f"MODEL.MATCH_HEAD.BALANCE must be one of {MATCH_BALANCES}, got {head_cfg.BALANCE!r}"
        )
    in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)
    channels = input_shape[in_features[0]].channels
    branch = MatchBranch(
        _pooler(head_cfg, in_features, input_shape),
        MatchHead(channels, head_cfg.NUM_CONVS, head_cfg.CONV_DIM, head_cfg.EMBED_DIM),
        SimilarityHead(head_cfg.EMBED_DIM),
        loss_weight=head_cfg.LOSS_WEIGHT,
        neg_pos_ratio=head_cfg.NEG_POS_RATIO,
        balance=head_cfg.BALANCE,
        proposals_per_image=head_cfg.PROPOSALS_PER_IMAGE,
    )
    return {"match_in_features": in_features, "match_branch": branch}
