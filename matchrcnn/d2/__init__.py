"""Match R-CNN as a detectron2 extension: the only part of matchrcnn that imports detectron2.

Importing it registers ``MatchRCNNROIHeads`` in detectron2's ROI_HEADS_REGISTRY and the splits
deepfashion2_{train,validation} and synthetic_{train,validation} in its DatasetCatalog and
MetadataCatalog. Use it as detectron2's projects are used::

    cfg = get_cfg()
    add_matchrcnn_config(cfg)
    cfg.merge_from_file("configs/d2/matchrcnn_R50_FPN_1x.yaml")
    trainer = MatchRCNNTrainer(cfg)

detectron2 is on no package index; README.md ("Use with detectron2") says how to install it.
"""

try:
    import detectron2  # noqa: F401
except ModuleNotFoundError as error:
    if error.name != "detectron2":
        raise
    raise ModuleNotFoundError(
        "matchrcnn.d2 needs detectron2, which is installed from its repository: see the section "
        "'Use with detectron2' of matchrcnn's README.md",
        name=error.name,
    ) from error

from matchrcnn.d2.config import PAIR_SAMPLER, add_matchrcnn_config
from matchrcnn.d2.datasets import register_builtin_splits, register_split, to_d2_record
from matchrcnn.d2.evaluator import DeepFashion2Evaluator
from matchrcnn.d2.mapper import MatchRCNNDatasetMapper
from matchrcnn.d2.roi_heads import MatchRCNNROIHeads
from matchrcnn.d2.sampler import PairTrainingSampler, build_pair_train_loader
from matchrcnn.d2.trainer import MatchRCNNTrainer

register_builtin_splits()

__all__ = [
    "PAIR_SAMPLER",
    "DeepFashion2Evaluator",
    "MatchRCNNDatasetMapper",
    "MatchRCNNROIHeads",
    "MatchRCNNTrainer",
    "PairTrainingSampler",
    "add_matchrcnn_config",
    "build_pair_train_loader",
    "register_split",
    "to_d2_record",
]
