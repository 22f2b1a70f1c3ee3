"""Consumer/shop pair batches in detectron2's training data loader.

detectron2's loader takes a stream of indices and cuts it into per-process batches of
IMS_PER_BATCH / world size images (data loader workers take whole batches in turn). The sampler
streams the project's PairBatchSampler batches of that size back to back, so every batch the model
sees holds consumer and shop images of the same pairs. Aspect-ratio grouping would regroup the
images across batches, so the pair loader turns it off.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from detectron2.config import CfgNode
from detectron2.data import build_detection_train_loader, get_detection_dataset_dicts
from detectron2.utils import comm
from torch.utils.data import DataLoader, Sampler

from matchrcnn.d2.mapper import MatchRCNNDatasetMapper
from matchrcnn.data.samplers import PairBatchSampler


class PairTrainingSampler(Sampler[int]):
    """An endless index stream, one PairBatchSampler batch of this process after another."""

    def __init__(
        self,
        records: Sequence[dict],
        images_per_batch: int,
        unrelated_fraction: float = 0.25,
        seed: int | None = None,
    ) -> None:
        seed = comm.shared_random_seed() if seed is None or seed < 0 else seed
        self.batches = PairBatchSampler(
            records, images_per_batch, unrelated_fraction, seed=seed, rank=comm.get_rank()
        )

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches.iterate():
            yield from batch


def build_pair_train_loader(cfg: CfgNode) -> DataLoader:
    """detectron2's train loader over DATASETS.TRAIN: pair batches, the Match R-CNN mapper."""
    if len(cfg.DATASETS.TRAIN) != 1:
        raise ValueError(
            "pair batches need a single training dataset (pair_ids of different datasets would "
            f"collide), got DATASETS.TRAIN {tuple(cfg.DATASETS.TRAIN)}"
        )
    world_size = comm.get_world_size()
    if cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} is not a multiple of the number of "
            f"processes ({world_size})"
        )
    records = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
    )
    sampler = PairTrainingSampler(
        records,
        cfg.SOLVER.IMS_PER_BATCH // world_size,
        cfg.DATALOADER.PAIR_SAMPLER.UNRELATED_FRACTION,
        seed=cfg.SEED,
    )
    return build_detection_train_loader(
        cfg,
        dataset=records,
        sampler=sampler,
        mapper=MatchRCNNDatasetMapper(cfg, True),
        aspect_ratio_grouping=False,
    )
