"""Match R-CNN assembled from torchvision's detection stack and our landmark and match streams.

Inputs follow torchvision's convention: a list of CHW float RGB images in [0, 1] of any size (the
model resizes them by INPUT.*), and in training one target dict per image:
    "boxes" (N, 4) float XYXY, "labels" (N,) int64 in 1..13,
    "masks" (N, H, W) uint8 (MODEL.MASK_ON), "keypoints" (N, K, 3) float x, y, v (LANDMARK_ON;
    K is the landmark layout's slot count, MODEL.ROI_LANDMARK_HEAD.LAYOUT: 294 in DeepFashion2's),
    "pair_ids" (N,) int64, "styles" (N,) int64, "is_shop" bool scalar (MATCH_ON).
Training returns a dict of scalar losses (sum them all); the match accuracies of the step are in
``model.last_metrics``. Eval returns per image: "boxes" (N, 4) XYXY, "labels" (N,), "scores" (N,),
"masks" (N, 1, H, W) float probabilities at input size, "landmarks" (N, K, 3) with (x, y, score)
in the predicted category's slots and zeros elsewhere, "embeddings" (N, EMBED_DIM).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from fvcore.common.config import CfgNode
from torch import Tensor
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import (
    FastRCNNConvFCHead,
    FastRCNNPredictor,
    TwoMLPHead,
)
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import (
    GeneralizedRCNNTransform,
    resize_boxes,
    resize_keypoints,
)
from torchvision.ops import MultiScaleRoIAlign

from matchrcnn.config import ConfigError
from matchrcnn.modeling.backbone import build_backbone, head_norm
from matchrcnn.modeling.branch import BuildContext, FieldSpec, enabled_branches
from matchrcnn.modeling.pixels import PIXEL_CHANNELS, PIXELS
from matchrcnn.modeling.roi_heads import MatchRoIHeads
from matchrcnn.modeling.rpn import LevelsRPN

FEATURE_MAPS = ["0", "1", "2", "3"]
"""The FPN levels (P2..P5) that RoIAlign reads."""


class MatchRCNNTransform(GeneralizedRCNNTransform):
    """torchvision's normalise/resize/batch step, with separate train and test sizes.

    It also maps predicted "landmarks" back to input image coordinates, as torchvision does for
    its own "keypoints".
    """

    def __init__(
        self,
        train_sizes: tuple[Sequence[int], int],
        test_sizes: tuple[int, int],
        image_mean: Sequence[float],
        image_std: Sequence[float],
    ) -> None:
        super().__init__(tuple(train_sizes[0]), train_sizes[1], list(image_mean), list(image_std))
        self.train_sizes = (tuple(train_sizes[0]), train_sizes[1])
        self.test_sizes = ((test_sizes[0],), test_sizes[1])

    def train(self, mode: bool = True) -> MatchRCNNTransform:
        self.min_size, self.max_size = self.train_sizes if mode else self.test_sizes
        return super().train(mode)

    def postprocess(
        self,
        result: list[dict[str, Tensor]],
        image_shapes: list[tuple[int, int]],
        original_image_sizes: list[tuple[int, int]],
    ) -> list[dict[str, Tensor]]:
        result = super().postprocess(result, image_shapes, original_image_sizes)
        if not self.training:
            for r, size, original in zip(result, image_shapes, original_image_sizes, strict=True):
                if "landmarks" in r:
                    r["landmarks"] = resize_keypoints(r["landmarks"], size, original)
        return result


class MatchRCNN(GeneralizedRCNN):
    """Match R-CNN: ResNet-FPN, RPN, and box, mask, landmark and match streams."""

    def forward(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        if self.training:
            check_targets(
                images,
                targets,
                masks=self.roi_heads.has_mask(),
                fields=self.roi_heads.target_fields(),
                num_classes=self.roi_heads.box_predictor.cls_score.out_features - 1,
            )
        return super().forward(images, targets)

    @torch.no_grad()
    def inference(
        self, images: list[Tensor], boxes: list[Tensor] | None = None
    ) -> list[dict[str, Tensor]]:
        """The eval-mode predictions of ``images``; given ``boxes`` (XYXY, input-image pixels, one
        tensor per image, e.g. ground-truth items), each prediction also holds their match
        embeddings as "box_embeddings", from the same backbone pass.
        """
        if self.training:
            raise RuntimeError("inference runs in eval mode: call model.eval() first")
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        batch, _ = self.transform(images)
        features = self.backbone(batch.tensors)
        proposals, _ = self.rpn(batch, features)
        detections, _ = self.roi_heads(features, proposals, batch.image_sizes)
        detections = self.transform.postprocess(detections, batch.image_sizes, original_sizes)
        if boxes is not None:
            embeddings = self._embed(features, batch.image_sizes, boxes, original_sizes)
            for detection, embedding in zip(detections, embeddings, strict=True):
                detection["box_embeddings"] = embedding
        return detections

    @torch.no_grad()
    def embed_boxes(self, images: list[Tensor], boxes: list[Tensor]) -> list[Tensor]:
        """Match embeddings of given boxes (XYXY, input-image pixels), e.g. ground-truth items.

        The images are resized as at inference; one (len(boxes[i]), EMBED_DIM) tensor per image.
        """
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        batch, _ = self.transform(images)
        features = self.backbone(batch.tensors)
        return self._embed(features, batch.image_sizes, boxes, original_sizes)

    def _embed(self, features: dict[str, Tensor], image_sizes: list[tuple[int, int]],
               boxes: list[Tensor], original_sizes: list[tuple[int, int]]) -> list[Tensor]:
        branch = self.roi_heads.match_branch
        if branch is None:
            raise ConfigError("embedding boxes needs the match network (MODEL.MATCH_ON True)")
        scaled = [
            resize_boxes(b, original, size)
            for b, original, size in zip(boxes, original_sizes, image_sizes, strict=True)
        ]
        embeddings = branch.embed(lambda pool, b: pool(features, b, image_sizes), scaled)
        return list(embeddings.split([len(b) for b in boxes]))

    @property
    def last_metrics(self) -> dict[str, Tensor | float]:
        """The branches' metrics of the last step: match accuracies (positive and negative
        pairs) and pair counts."""
        return self.roi_heads.last_metrics


def check_targets(
    images: Sequence[Tensor],
    targets: Sequence[dict[str, Tensor]] | None,
    *,
    masks: bool,
    fields: dict[str, FieldSpec],
    num_classes: int,
) -> None:
    """Raise ValueError naming the image and the key when a training target is malformed.

    ``fields`` are the RoI branches' target fields (``MatchRoIHeads.target_fields``).
    """
    if targets is None or len(targets) != len(images):
        count = "none" if targets is None else len(targets)
        raise ValueError(f"training needs one target per image: {len(images)} images, {count}")
    for index, (image, target) in enumerate(zip(images, targets, strict=True)):
        where = f"target {index}"
        spec: dict[str, tuple[tuple[int, ...], torch.dtype | None]] = {
            "boxes": ((4,), None),
            "labels": ((), torch.int64),
        }
        if masks:
            spec["masks"] = (tuple(image.shape[-2:]), None)
        per_image = [key for key, field in fields.items() if field.per_image]
        spec.update((key, (field.shape, field.dtype)) for key, field in fields.items()
                    if not field.per_image)
        missing = [key for key in (*spec, *per_image) if key not in target]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        count = len(target["boxes"])
        for key, (trailing, dtype) in spec.items():
            shape = tuple(target[key].shape)
            if shape != (count, *trailing):
                raise ValueError(
                    f"{where}: {key!r} must have shape {('N', *trailing)} with N = {count} "
                    f"boxes, got {shape}"
                )
            if dtype is not None and target[key].dtype != dtype:
                raise ValueError(f"{where}: {key!r} must be {dtype}, got {target[key].dtype}")
        labels = target["labels"]
        if not bool(((labels >= 1) & (labels <= num_classes)).all()):
            raise ValueError(f"{where}: 'labels' must be in 1..{num_classes}: {labels.tolist()}")
        for key in per_image:
            if target[key].numel() != 1:
                raise ValueError(f"{where}: {key!r} must be one value per image")


def build_model(cfg: CfgNode, backbone_weights: bool = True) -> MatchRCNN:
    """The model the config describes, on CPU, in training mode.

    ``backbone_weights=False`` leaves out MODEL.BACKBONE.PRETRAINED, for a model whose weights a
    checkpoint or a MODEL.WEIGHTS file is about to replace (no ImageNet download for nothing).
    """
    model_cfg = cfg.MODEL
    if model_cfg.META_ARCHITECTURE != "MatchRCNN":
        raise ConfigError(
            f"MODEL.META_ARCHITECTURE {model_cfg.META_ARCHITECTURE!r} is not built by the "
            "torchvision engine, which builds 'MatchRCNN'"
        )
    num_classes = model_cfg.ROI_HEADS.NUM_CLASSES
    branch_types = enabled_branches(cfg)
    pixels = any(branch.reads_pixels(cfg) for branch in branch_types)
    backbone = build_backbone(cfg, pass_pixels=pixels, pretrained=backbone_weights)
    channels = backbone.out_channels
    roi_cfg = model_cfg.ROI_HEADS
    box_cfg = model_cfg.ROI_BOX_HEAD
    box_pool = roi_pooler(model_cfg, box_cfg)
    fg_iou, bg_iou = _roi_iou_thresholds(roi_cfg.IOU_THRESHOLDS)
    box_head = build_box_head(box_cfg, channels, box_pool.output_size)
    box_predictor = FastRCNNPredictor(box_cfg.FC_DIM, num_classes + 1)
    context = BuildContext(
        pooler=lambda head_cfg, source="features": branch_pooler(model_cfg, head_cfg, source),
        channels=lambda source: PIXEL_CHANNELS if source == PIXELS else channels,
    )
    branches = [branch.from_config(cfg, context) for branch in branch_types]
    roi_heads = MatchRoIHeads(
        box_pool,
        box_head,
        box_predictor,
        fg_iou_thresh=fg_iou,
        bg_iou_thresh=bg_iou,
        batch_size_per_image=roi_cfg.BATCH_SIZE_PER_IMAGE,
        positive_fraction=roi_cfg.POSITIVE_FRACTION,
        bbox_reg_weights=tuple(box_cfg.BBOX_REG_WEIGHTS),
        score_thresh=roi_cfg.SCORE_THRESH_TEST,
        nms_thresh=roi_cfg.NMS_THRESH_TEST,
        detections_per_img=cfg.TEST.DETECTIONS_PER_IMAGE,
        class_agnostic_nms=(cfg.TEST.CLASS_AGNOSTIC_NMS.IOU_THRESH
                            if cfg.TEST.CLASS_AGNOSTIC_NMS.ENABLED else None),
        branches=branches,
    )
    if model_cfg.MASK_ON:
        mask_cfg = model_cfg.ROI_MASK_HEAD
        roi_heads.mask_roi_pool = roi_pooler(model_cfg, mask_cfg)
        roi_heads.mask_head = build_mask_head(mask_cfg, channels)
        roi_heads.mask_predictor = MaskRCNNPredictor(
            mask_cfg.CONV_DIM if mask_cfg.NUM_CONV else channels, mask_cfg.CONV_DIM, num_classes + 1
        )
    transform = MatchRCNNTransform(
        train_sizes=(cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN),
        test_sizes=(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST),
        image_mean=model_cfg.PIXEL_MEAN,
        image_std=model_cfg.PIXEL_STD,
    )
    return MatchRCNN(backbone, _rpn(model_cfg, channels), roi_heads, transform)


def build_box_head(box_cfg: CfgNode, channels: int, pooled: Sequence[int]) -> torch.nn.Module:
    """NUM_CONV 3x3 convs (each followed by NORM) and NUM_FC fully connected layers, as
    detectron2's FastRCNNConvFCHead; torchvision's TwoMLPHead (its weight names) for 0 and 2."""
    if box_cfg.NUM_FC < 1:
        raise ConfigError(f"MODEL.ROI_BOX_HEAD.NUM_FC must be at least 1, got {box_cfg.NUM_FC}")
    norm = head_norm(box_cfg.NORM, "MODEL.ROI_BOX_HEAD.NORM")
    if box_cfg.NUM_CONV == 0 and box_cfg.NUM_FC == 2:
        return TwoMLPHead(channels * pooled[0] * pooled[1], box_cfg.FC_DIM)
    return FastRCNNConvFCHead(
        (channels, pooled[0], pooled[1]),
        [box_cfg.CONV_DIM] * box_cfg.NUM_CONV,
        [box_cfg.FC_DIM] * box_cfg.NUM_FC,
        norm_layer=norm,
    )


def build_mask_head(mask_cfg: CfgNode, channels: int) -> MaskRCNNHeads:
    """torchvision's mask head: NUM_CONV 3x3 convs of CONV_DIM channels, each followed by NORM."""
    return MaskRCNNHeads(
        channels, [mask_cfg.CONV_DIM] * mask_cfg.NUM_CONV, 1,
        norm_layer=head_norm(mask_cfg.NORM, "MODEL.ROI_MASK_HEAD.NORM"),
    )


def _rpn(model_cfg: CfgNode, channels: int) -> LevelsRPN:
    sizes = tuple(tuple(level) for level in model_cfg.ANCHOR_GENERATOR.SIZES)
    ratios = tuple(tuple(level) for level in model_cfg.ANCHOR_GENERATOR.ASPECT_RATIOS)
    levels = len(FEATURE_MAPS) + 1
    if len(sizes) != levels:
        raise ConfigError(
            f"MODEL.ANCHOR_GENERATOR.SIZES needs one tuple per FPN level ({levels}: P2..P6), "
            f"got {len(sizes)}"
        )
    if len(ratios) == 1:
        ratios = ratios * levels
    anchors = AnchorGenerator(sizes, ratios)
    per_location = set(anchors.num_anchors_per_location())
    if len(ratios) != levels or len(per_location) != 1:
        raise ConfigError(
            "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS must be one tuple, or one per FPN level, giving "
            "the same number of anchors at every level"
        )
    rpn_cfg = model_cfg.RPN
    conv_dims = tuple(rpn_cfg.CONV_DIMS)
    if not conv_dims or any(dim not in (-1, channels) for dim in conv_dims):
        raise ConfigError(
            f"MODEL.RPN.CONV_DIMS must list one -1 (the FPN's width, {channels}) per conv of the "
            f"RPN head, at least one; torchvision's RPNHead has no other width: got {conv_dims}"
        )
    bg_iou, fg_iou = rpn_cfg.IOU_THRESHOLDS
    return LevelsRPN(
        anchors,
        RPNHead(channels, per_location.pop(), conv_depth=len(conv_dims)),
        fg_iou_thresh=fg_iou,
        bg_iou_thresh=bg_iou,
        batch_size_per_image=rpn_cfg.BATCH_SIZE_PER_IMAGE,
        positive_fraction=rpn_cfg.POSITIVE_FRACTION,
        pre_nms_top_n={
            "training": rpn_cfg.PRE_NMS_TOPK_TRAIN,
            "testing": rpn_cfg.PRE_NMS_TOPK_TEST,
        },
        post_nms_top_n={
            "training": rpn_cfg.POST_NMS_TOPK_TRAIN,
            "testing": rpn_cfg.POST_NMS_TOPK_TEST,
        },
        nms_thresh=rpn_cfg.NMS_THRESH,
    )


def _roi_iou_thresholds(thresholds: Sequence[float]) -> tuple[float, float]:
    """(foreground, background) IoU from detectron2's list: [t] or [background, foreground]."""
    if len(thresholds) == 1:
        return thresholds[0], thresholds[0]
    if len(thresholds) == 2:
        return thresholds[1], thresholds[0]
    raise ConfigError(f"MODEL.ROI_HEADS.IOU_THRESHOLDS takes 1 or 2 values, got {thresholds}")


def roi_pooler(model_cfg: CfgNode, head_cfg: CfgNode) -> MultiScaleRoIAlign:
    """RoIAlign over P2..P5 at the head's resolution; a box of MODEL.ROI_HEADS.CANONICAL_BOX_SIZE
    pixels reads P4, one of half that size P3, and so on."""
    return MultiScaleRoIAlign(
        FEATURE_MAPS, head_cfg.POOLER_RESOLUTION, head_cfg.POOLER_SAMPLING_RATIO,
        canonical_scale=model_cfg.ROI_HEADS.CANONICAL_BOX_SIZE,
    )


def branch_pooler(model_cfg: CfgNode, head_cfg: CfgNode, source: str = "features",
                  ) -> MultiScaleRoIAlign:
    """A branch's RoIAlign: over P2..P5 (``roi_pooler``), or over the input pixels at their own
    scale (source "pixels": MultiScaleRoIAlign infers spatial scale 1 from the one map)."""
    if head_cfg.POOLER_TYPE != "ROIAlign":
        raise ConfigError(
            f"POOLER_TYPE {head_cfg.POOLER_TYPE!r}: the torchvision engine pools with "
            "MultiScaleRoIAlign, which is 'ROIAlign' (detectron2's ROIAlignV2 is its engine's)"
        )
    if source == PIXELS:
        return MultiScaleRoIAlign([PIXELS], head_cfg.POOLER_RESOLUTION,
                                  head_cfg.POOLER_SAMPLING_RATIO)
    return roi_pooler(model_cfg, head_cfg)
