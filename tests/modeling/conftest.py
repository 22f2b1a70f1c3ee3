"""Tiny models and a hand-made consumer/shop batch, small enough for one CPU thread."""

from __future__ import annotations

import pytest
import torch
from fvcore.common.config import CfgNode
from torch import Tensor

from matchrcnn.config import get_cfg
from matchrcnn.data.categories import NUM_LANDMARKS, landmark_slice

torch.set_num_threads(1)

TINY = [
    "MODEL.RESNETS.DEPTH", "18",
    "MODEL.RESNETS.NORM", "GN",
    "MODEL.BACKBONE.FREEZE_AT", "0",
    "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.ANCHOR_GENERATOR.SIZES", "((16,), (32,), (64,), (128,), (256,))",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50",
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "100",
    "MODEL.RPN.POST_NMS_TOPK_TEST", "30",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "64",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
    "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
    "MODEL.ROI_MASK_HEAD.NUM_CONV", "2",
    "MODEL.ROI_MASK_HEAD.CONV_DIM", "16",
    "MODEL.ROI_LANDMARK_HEAD.NUM_CONVS", "2",
    "MODEL.ROI_LANDMARK_HEAD.CONV_DIM", "16",
    "MODEL.MATCH_HEAD.NUM_CONVS", "2",
    "MODEL.MATCH_HEAD.CONV_DIM", "16",
    "MODEL.MATCH_HEAD.EMBED_DIM", "24",
    "INPUT.MIN_SIZE_TRAIN", "(96,)",
    "INPUT.MAX_SIZE_TRAIN", "128",
    "INPUT.MIN_SIZE_TEST", "96",
    "INPUT.MAX_SIZE_TEST", "128",
    "TEST.DETECTIONS_PER_IMAGE", "20",
    "MODEL.DEVICE", "cpu",
]
"""Overrides that shrink the default model to something a test can run in well under a second."""


@pytest.fixture
def tiny_cfg() -> CfgNode:
    cfg = get_cfg()
    cfg.merge_from_list(TINY)
    return cfg


ITEMS = (
    # image, category, box (x1, y1, x2, y2), pair_id, style
    (0, 1, (8.0, 10.0, 60.0, 70.0), 7, 1),
    (0, 8, (62.0, 20.0, 120.0, 90.0), 7, 0),
    (1, 1, (20.0, 16.0, 90.0, 100.0), 7, 1),
    (1, 9, (10.0, 70.0, 50.0, 110.0), 3, 2),
)
"""A user image (0) and a shop image (1). One positive pair: item 0 with item 2."""
IS_SHOP = (False, True)
SIZES = ((96, 128), (112, 96))


def make_batch(seed: int = 0) -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    """Two images with flat-coloured garments, full targets for every head."""
    generator = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for index, (height, width) in enumerate(SIZES):
        image = torch.full((3, height, width), 0.5) + 0.05 * torch.rand(
            3, height, width, generator=generator
        )
        items = [item for item in ITEMS if item[0] == index]
        masks = torch.zeros(len(items), height, width, dtype=torch.uint8)
        keypoints = torch.zeros(len(items), NUM_LANDMARKS, 3)
        for row, (_, category, (x1, y1, x2, y2), _, _) in enumerate(items):
            rows, cols = slice(int(y1), int(y2)), slice(int(x1), int(x2))
            image[:, rows, cols] = torch.rand(3, 1, 1, generator=generator)
            masks[row, rows, cols] = 1
            slots = landmark_slice(category)
            count = slots.stop - slots.start
            keypoints[row, slots, 0] = x1 + (x2 - x1) * torch.rand(count, generator=generator)
            keypoints[row, slots, 1] = y1 + (y2 - y1) * torch.rand(count, generator=generator)
            keypoints[row, slots, 2] = 2.0
        images.append(image.clamp(0, 1))
        targets.append(
            {
                "boxes": torch.tensor([item[2] for item in items]),
                "labels": torch.tensor([item[1] for item in items]),
                "masks": masks,
                "keypoints": keypoints,
                "pair_ids": torch.tensor([item[3] for item in items]),
                "styles": torch.tensor([item[4] for item in items]),
                "is_shop": torch.tensor(IS_SHOP[index]),
            }
        )
    return images, targets


@pytest.fixture
def batch() -> tuple[list[Tensor], list[dict[str, Tensor]]]:
    return make_batch()
