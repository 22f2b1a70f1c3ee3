"""The landmark branch: category-aware heatmaps, a loss on each RoI's own slots, landmarks per
detection. Its config node is MODEL.ROI_LANDMARK_HEAD, turned on by MODEL.LANDMARK_ON."""

from __future__ import annotations

from typing import ClassVar

import torch
from fvcore.common.config import CfgNode
from torch import Tensor, nn

from matchrcnn.config import ConfigError
from matchrcnn.data.layouts import LandmarkLayout, get_layout
from matchrcnn.modeling.backbone import head_norm
from matchrcnn.modeling.branch import (
    BranchInputs,
    BuildContext,
    FieldSpec,
    PoolerDefaults,
    RoIBranch,
    add_pooler_config,
    register_branch,
)
from matchrcnn.modeling.heads.landmark import (
    LandmarkHead,
    LandmarkPredictor,
    heatmaps_to_landmarks,
    pack_slices,
)
from matchrcnn.modeling.losses import landmark_loss


def landmark_layout(cfg: CfgNode) -> LandmarkLayout:
    """The layout MODEL.ROI_LANDMARK_HEAD.LAYOUT names; a ConfigError listing them otherwise."""
    try:
        return get_layout(cfg.MODEL.ROI_LANDMARK_HEAD.LAYOUT)
    except ValueError as error:
        raise ConfigError(f"MODEL.ROI_LANDMARK_HEAD.LAYOUT: {error}") from error


@register_branch
class LandmarkBranch(RoIBranch):
    """Landmarks of a layout's slots (DeepFashion2's 294 by default) from RoI features.

    ``roi_pool`` is the engine's pooler: torchvision's MultiScaleRoIAlign, or detectron2's
    ROIPooler in ``matchrcnn.d2``.
    """

    name: ClassVar[str] = "landmark"
    enable_key: ClassVar[str] = "LANDMARK_ON"
    outputs: ClassVar[dict[str, str]] = {"landmarks": "pred_keypoints"}

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

    @staticmethod
    def add_config(cfg: CfgNode, poolers: PoolerDefaults) -> None:
        # The category-aware landmark head (294 DeepFashion2 slots).
        cfg.MODEL.LANDMARK_ON = True
        node = cfg.MODEL.ROI_LANDMARK_HEAD = type(cfg)()
        add_pooler_config(node, poolers)
        node.NUM_CONVS = 8
        node.CONV_DIM = 512
        # Normalisation after each conv: "" (none), "GN" or "BN" (as MODEL.FPN.NORM).
        node.NORM = ""
        node.LOSS_WEIGHT = 1.0
        # Compute heatmaps only for each RoI's own category slice (same values as the full
        # 294-channel output in that slice; far less time and memory). False computes all 294 and
        # then slices.
        node.CATEGORY_SLICED = True
        # The landmark layout (matchrcnn/data/layouts.py): "deepfashion2" (13 categories, 294
        # slots), "fashionai" (5 categories over 24 named slots) or "salhg" (1 category, 32 shared
        # slots). MODEL.ROI_HEADS.NUM_CLASSES must equal the layout's category count.
        node.LAYOUT = "deepfashion2"

    @classmethod
    def from_config(cls, cfg: CfgNode, context: BuildContext) -> LandmarkBranch:
        layout = landmark_layout(cfg)
        num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
        if num_classes != layout.num_categories:
            raise ConfigError(
                f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes}, but the landmark head lays out "
                f"landmarks by the {layout.num_categories} categories of the {layout.name!r} "
                f"layout (MODEL.ROI_LANDMARK_HEAD.LAYOUT); set it to {layout.num_categories}, "
                "choose another layout, or set MODEL.LANDMARK_ON False"
            )
        head_cfg = cfg.MODEL.ROI_LANDMARK_HEAD
        pooler = context.pooler(head_cfg)
        head = LandmarkHead(context.channels("features"), head_cfg.NUM_CONVS, head_cfg.CONV_DIM,
                            norm_layer=head_norm(head_cfg.NORM, "MODEL.ROI_LANDMARK_HEAD.NORM"))
        return cls(pooler, head, LandmarkPredictor(head_cfg.CONV_DIM, layout),
                   loss_weight=head_cfg.LOSS_WEIGHT, category_sliced=head_cfg.CATEGORY_SLICED)

    @property
    def layout(self) -> LandmarkLayout:
        """The landmark layout of the predictor (DeepFashion2's 294 slots by default)."""
        return self.predictor.layout

    def target_fields(self) -> dict[str, FieldSpec]:
        return {"keypoints": FieldSpec((self.layout.num_slots, 3), torch.float32)}

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

    def losses(self, inputs: BranchInputs) -> dict[str, Tensor]:
        pooled = inputs.pool(self.roi_pool, inputs.boxes)
        return {"loss_landmark": self.loss(pooled, torch.cat(inputs.boxes),
                                           torch.cat(inputs.classes), inputs.cat("keypoints"))}

    def predict(self, inputs: BranchInputs) -> dict[str, Tensor]:
        """"landmarks" (N, K, 3): zero outside each detection's predicted category's slots."""
        categories = torch.cat(inputs.classes)
        logits = self.packed_logits(inputs.pool(self.roi_pool, inputs.boxes), categories)
        return {"landmarks": heatmaps_to_landmarks(logits, categories, torch.cat(inputs.boxes),
                                                   self.layout)}
