"""Match R-CNN's config keys for detectron2, added to a detectron2 config as its projects do.

The keys and their meaning are those of the torchvision engine (matchrcnn/config/defaults.py);
the poolers follow detectron2's conventions instead (POOLER_TYPE, sampling ratio 0 = adaptive).
"""

from __future__ import annotations

from detectron2.config import CfgNode as CN

PAIR_SAMPLER = "PairTrainingSampler"
"""DATALOADER.SAMPLER_TRAIN value that trains on consumer/shop pair batches."""


def add_matchrcnn_config(cfg: CN) -> None:
    """Add the landmark head, match head and pair sampler keys to ``cfg``, with their defaults."""
    cfg.MODEL.LANDMARK_ON = True
    cfg.MODEL.MATCH_ON = True

    cfg.MODEL.ROI_LANDMARK_HEAD = CN()
    cfg.MODEL.ROI_LANDMARK_HEAD.POOLER_RESOLUTION = 14
    cfg.MODEL.ROI_LANDMARK_HEAD.POOLER_SAMPLING_RATIO = 0
    cfg.MODEL.ROI_LANDMARK_HEAD.POOLER_TYPE = "ROIAlignV2"
    cfg.MODEL.ROI_LANDMARK_HEAD.NUM_CONVS = 8
    cfg.MODEL.ROI_LANDMARK_HEAD.CONV_DIM = 512
    cfg.MODEL.ROI_LANDMARK_HEAD.LOSS_WEIGHT = 1.0
    # Compute heatmaps only for each RoI's own category slice (same values, far less work).
    cfg.MODEL.ROI_LANDMARK_HEAD.CATEGORY_SLICED = True

    cfg.MODEL.MATCH_HEAD = CN()
    cfg.MODEL.MATCH_HEAD.POOLER_RESOLUTION = 14
    cfg.MODEL.MATCH_HEAD.POOLER_SAMPLING_RATIO = 0
    cfg.MODEL.MATCH_HEAD.POOLER_TYPE = "ROIAlignV2"
    cfg.MODEL.MATCH_HEAD.NUM_CONVS = 4
    cfg.MODEL.MATCH_HEAD.CONV_DIM = 256
    cfg.MODEL.MATCH_HEAD.EMBED_DIM = 256
    cfg.MODEL.MATCH_HEAD.LOSS_WEIGHT = 1.0
    # "class_weights" or "hard_negatives" (see matchrcnn.modeling.losses.match_loss).
    cfg.MODEL.MATCH_HEAD.BALANCE = "class_weights"
    cfg.MODEL.MATCH_HEAD.NEG_POS_RATIO = 3.0
    # Besides ground-truth boxes, embed up to this many foreground proposals per image (0: none).
    cfg.MODEL.MATCH_HEAD.PROPOSALS_PER_IMAGE = 0

    # Used when DATALOADER.SAMPLER_TRAIN is "PairTrainingSampler".
    cfg.DATALOADER.PAIR_SAMPLER = CN()
    # Share of each batch drawn from images unrelated to the batch's pairs (extra negatives).
    cfg.DATALOADER.PAIR_SAMPLER.UNRELATED_FRACTION = 0.25
