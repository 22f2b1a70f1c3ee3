"""detectron2's StandardROIHeads running Match R-CNN's RoI branches (matchrcnn.modeling.branch).

The branches are the torchvision engine's, built by the same ``from_config`` with detectron2's
ROIPooler as their pooler, so their weights carry the same names in both engines
(``roi_heads.landmark_branch.head.*``, ``roi_heads.match_branch.similarity.*``, ...).
detectron2 decides which boxes each branch sees, as for its mask head: at training the foreground
sampled proposals, each with its item's ``gt_*`` fields, and every ground-truth item; at inference
the detections. MODEL.ROI_HEADS.CANONICAL_BOX_SIZE maps boxes to FPN levels in every stream, box
and mask heads included, as in the torchvision engine.

Inference adds each branch's outputs to each image's Instances under the branch's field names:
``pred_keypoints`` (N, K, 3) for the landmarks ((x, y, score) in the predicted category's slots,
zeros elsewhere; under that name detectron2 rescales them to the input image, as it does its own
keypoints) and ``pred_embeddings`` (N, EMBED_DIM). Training adds the branches' losses
(``loss_landmark``, ``loss_match``) and puts their metrics of each step in the event storage
(``match_pos_acc``, ``match_neg_acc``, ``match_pos_pairs``, ``match_neg_pairs``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from detectron2.config import CfgNode, configurable
from detectron2.layers import ShapeSpec
from detectron2.modeling import ROI_HEADS_REGISTRY, StandardROIHeads
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import select_foreground_proposals
from detectron2.structures import Boxes, ImageList, Instances, Keypoints
from detectron2.utils.events import get_event_storage
from torch import Tensor, nn
from torchvision.ops import nms

from matchrcnn.config import ConfigError
from matchrcnn.modeling.branch import (
    BranchInputs,
    BuildContext,
    FieldSpec,
    HoldsBranches,
    RoIBranch,
    enabled_branches,
)
from matchrcnn.modeling.pixels import PIXEL_CHANNELS, PIXELS


class FeaturePooler(nn.Module):
    """detectron2's ROIPooler over named maps, taking each image's boxes as an XYXY tensor."""

    def __init__(self, pooler: ROIPooler, in_features: Sequence[str]) -> None:
        super().__init__()
        self.pooler = pooler
        self.in_features = list(in_features)

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor]) -> Tensor:
        if any(name not in features for name in self.in_features):
            raise ValueError(f"pooling {self.in_features} needs those maps; given "
                             f"{sorted(features)} (the input pixels come with the images)")
        return self.pooler([features[name] for name in self.in_features],
                           [Boxes(b) for b in boxes])


@ROI_HEADS_REGISTRY.register()
class MatchRCNNROIHeads(HoldsBranches, StandardROIHeads):
    """Box and mask streams of detectron2, and Match R-CNN's RoI branches."""

    @configurable
    def __init__(
        self,
        *,
        branches: Sequence[RoIBranch] = (),
        class_agnostic_nms: float | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.attach_branches(branches)
        self.class_agnostic_nms = class_agnostic_nms

    @classmethod
    def from_config(cls, cfg: CfgNode, input_shape: dict[str, ShapeSpec]) -> dict:
        ret = super().from_config(cfg, input_shape)
        canonical = cfg.MODEL.ROI_HEADS.CANONICAL_BOX_SIZE
        for key in ("box_pooler", "mask_pooler", "keypoint_pooler"):
            if ret.get(key) is not None:
                ret[key].canonical_box_size = canonical
        branch_types = enabled_branches(cfg)
        if cfg.MODEL.KEYPOINT_ON and any("pred_keypoints" in branch.outputs.values()
                                         for branch in branch_types):
            raise ConfigError("MODEL.KEYPOINT_ON and MODEL.LANDMARK_ON both predict "
                              "pred_keypoints; turn one off")
        in_features = list(cfg.MODEL.ROI_HEADS.IN_FEATURES)

        def pooler(head_cfg: CfgNode, source: str = "features") -> FeaturePooler:
            names = [PIXELS] if source == PIXELS else in_features
            scales = ((1.0,) if source == PIXELS
                      else tuple(1.0 / input_shape[name].stride for name in in_features))
            return FeaturePooler(ROIPooler(
                output_size=head_cfg.POOLER_RESOLUTION, scales=scales,
                sampling_ratio=head_cfg.POOLER_SAMPLING_RATIO, pooler_type=head_cfg.POOLER_TYPE,
                canonical_box_size=canonical,
            ), names)

        context = BuildContext(
            pooler=pooler,
            channels=lambda source: (PIXEL_CHANNELS if source == PIXELS
                                     else input_shape[in_features[0]].channels),
        )
        ret["branches"] = [branch.from_config(cfg, context) for branch in branch_types]
        nms_cfg = cfg.TEST.CLASS_AGNOSTIC_NMS
        ret["class_agnostic_nms"] = nms_cfg.IOU_THRESH if nms_cfg.ENABLED else None
        return ret

    def forward(
        self,
        images: ImageList,
        features: dict[str, Tensor],
        proposals: list[Instances],
        targets: list[Instances] | None = None,
    ) -> tuple[list[Instances], dict[str, Tensor]]:
        if self.training:
            instances, losses = super().forward(images, features, proposals, targets)
            if self.branch_names:
                losses.update(self._branch_losses(images, features, instances, targets))
            return instances, losses
        instances = self._forward_box(features, proposals)
        if self.class_agnostic_nms is not None:
            instances = [x[nms(x.pred_boxes.tensor, x.scores, self.class_agnostic_nms)]
                         for x in instances]
        return self.forward_with_given_boxes(features, instances, images), {}

    def forward_with_given_boxes(
        self, features: dict[str, Tensor], instances: list[Instances],
        images: ImageList | None = None,
    ) -> list[Instances]:
        """detectron2's streams, then every branch's outputs for the given detections. A branch
        that pools the input pixels needs the ``images``."""
        instances = super().forward_with_given_boxes(features, instances)
        inputs = BranchInputs([x.pred_boxes.tensor for x in instances],
                              [x.pred_classes + 1 for x in instances], _Pool(features, images))
        counts = [len(x) for x in instances]
        for branch in self.branches:
            for key, value in branch.predict(inputs).items():
                for x, image_value in zip(instances, value.split(counts), strict=True):
                    x.set(branch.outputs[key], image_value)
        return instances

    def embed_boxes(self, features: dict[str, Tensor], boxes: list[Boxes],
                    images: ImageList | None = None) -> Tensor:
        """Match embeddings (sum of N, EMBED_DIM) of boxes given per image in input coordinates."""
        return self.match_branch.embed(_Pool(features, images), [b.tensor for b in boxes])

    def _branch_losses(self, images: ImageList, features: dict[str, Tensor],
                       proposals: list[Instances], targets: list[Instances]) -> dict[str, Tensor]:
        """The branches' losses on the foreground sampled proposals and every item."""
        foreground, _ = select_foreground_proposals(proposals, self.num_classes)
        specs, device = self.target_fields(), images.tensor.device
        inputs = BranchInputs(
            [x.proposal_boxes.tensor for x in foreground],
            [x.gt_classes + 1 for x in foreground],
            _Pool(features, images),
            fields=[_fields(x, specs, device) for x in foreground],
            items=[{"boxes": t.gt_boxes.tensor, "labels": t.gt_classes + 1,
                    **_fields(t, specs, device)} for t in targets],
        )
        losses = {}
        storage = get_event_storage()
        for branch in self.branches:
            losses.update(branch.losses(inputs))
            for name, value in branch.last_metrics.items():
                value = float(value)
                if math.isfinite(value):  # an accuracy is NaN in a step without such pairs
                    storage.put_scalar(name, value)
        return losses


def _fields(instances: Instances, specs: dict[str, FieldSpec],
            device: torch.device) -> dict[str, Tensor]:
    """The ``gt_<name>`` fields of Instances as plain tensors; an image without items has none
    (detectron2 copies no field onto its proposals), so they are empty of the field's shape."""
    fields = {}
    for key, spec in specs.items():
        name = f"gt_{key}"
        if instances.has(name):
            value = instances.get(name)
            fields[key] = value.tensor if isinstance(value, Keypoints) else value
        else:
            fields[key] = torch.zeros((0, *spec.shape), dtype=spec.dtype, device=device)
    return fields


class _Pool:
    """The branches' ``Pool`` over detectron2's features (and the normalised input pixels), once
    per pooler and set of boxes."""

    def __init__(self, features: dict[str, Tensor], images: ImageList | None) -> None:
        self.features = dict(features)
        if images is not None:
            self.features[PIXELS] = images.tensor
        self._cache: dict[tuple[int, int], tuple[list[Tensor], Tensor]] = {}

    def __call__(self, pooler: nn.Module, boxes: list[Tensor]) -> Tensor:
        key = (id(pooler), id(boxes))
        if key not in self._cache:
            self._cache[key] = (boxes, pooler(self.features, boxes))
        return self._cache[key][1]
