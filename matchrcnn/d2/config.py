"""Match R-CNN's config keys for detectron2, added to a detectron2 config as its projects do.

They are declared once for both engines: each RoI branch declares its own
(matchrcnn/modeling/branches/), and ``add_shared_config`` the rest (matchrcnn/config/defaults.py).
Only the poolers' defaults follow detectron2's conventions here: sampling ratio 0 (adaptive) and
POOLER_TYPE "ROIAlignV2".
"""

from __future__ import annotations

from detectron2.config import CfgNode

from matchrcnn.config.defaults import add_shared_config
from matchrcnn.modeling.branch import DETECTRON2_POOLERS, add_branch_configs

PAIR_SAMPLER = "PairTrainingSampler"
"""DATALOADER.SAMPLER_TRAIN value that trains on consumer/shop pair batches."""


def add_matchrcnn_config(cfg: CfgNode) -> None:
    """Add the keys of every registered RoI branch and of the pair sampler, with their defaults."""
    add_branch_configs(cfg, DETECTRON2_POOLERS)
    add_shared_config(cfg)
