"""detectron2's DefaultTrainer with Match R-CNN's data loading and evaluation.

Everything else (model building through the registries, optimizer, schedule, checkpoints, hooks,
DDP, AMP) is detectron2's own.
"""

from __future__ import annotations

from pathlib import Path

from detectron2.config import CfgNode
from detectron2.data import MetadataCatalog, build_detection_train_loader
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import DatasetEvaluator
from torch import nn
from torch.utils.data import DataLoader

from matchrcnn.config import ConfigError
from matchrcnn.d2.config import PAIR_SAMPLER
from matchrcnn.d2.evaluator import DeepFashion2Evaluator
from matchrcnn.d2.mapper import MatchRCNNDatasetMapper
from matchrcnn.d2.sampler import build_pair_train_loader


class MatchRCNNTrainer(DefaultTrainer):
    """Pair batches (DATALOADER.SAMPLER_TRAIN "PairTrainingSampler"), DeepFashion2 evaluation."""

    @classmethod
    def build_train_loader(cls, cfg: CfgNode) -> DataLoader:
        if cfg.DATALOADER.SAMPLER_TRAIN == PAIR_SAMPLER:
            return build_pair_train_loader(cfg)
        return build_detection_train_loader(cfg, mapper=MatchRCNNDatasetMapper(cfg, True))

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str,
                        model: nn.Module | None = None) -> DatasetEvaluator:
        """AP of the split; retrieval too when given the model (``test`` gives it)."""
        if not hasattr(MetadataCatalog.get(dataset_name), "split_files"):
            raise ConfigError(
                f"DATASETS.TEST {dataset_name!r}: the detectron2 engine evaluates DeepFashion2-"
                "layout splits only; evaluate this split's checkpoint with the torchvision engine "
                "(tools/train_net.py --eval-only) or leave DATASETS.TEST empty"
            )
        output_dir = Path(cfg.OUTPUT_DIR) / "inference" / dataset_name
        return DeepFashion2Evaluator(dataset_name, model=model, output_dir=str(output_dir))

    @classmethod
    def test(cls, cfg: CfgNode, model: nn.Module,
             evaluators: list[DatasetEvaluator] | None = None) -> dict:
        if evaluators is None:
            evaluators = [cls.build_evaluator(cfg, name, model) for name in cfg.DATASETS.TEST]
        return super().test(cfg, model, evaluators)
