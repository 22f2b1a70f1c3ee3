"""Index batches for training, each a pure function of (seed, rank, iteration).

A run resumed at iteration k therefore sees exactly the batches it would have seen. Datasets with
consumer/shop pairs (DeepFashion2) train the match network with ``PairBatchSampler``: each batch
holds pair groups (one user and one shop image of the same pair_id) plus a share of unrelated
images, whose items only make negatives. Datasets without pairs (FashionAI, SAL-HG) draw distinct
images at random with ``ImageBatchSampler``; ``has_pairs`` says which one a dataset takes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

import numpy as np

from matchrcnn.data.records import column


class SeededBatchSampler(ABC):
    """Batches of ``images_per_batch`` indices; ``batch(i)`` draws from (seed, rank, i) only."""

    def __init__(self, num_images: int, images_per_batch: int, seed: int, rank: int) -> None:
        if images_per_batch < 1:
            raise ValueError(f"images_per_batch must be >= 1, got {images_per_batch}")
        if num_images < images_per_batch:
            raise ValueError(f"{num_images} images cannot fill batches of {images_per_batch} "
                             "images")
        self.images_per_batch = images_per_batch
        self.seed, self.rank = seed, rank

    def rng(self, iteration: int) -> np.random.Generator:
        """The generator of batch ``iteration``."""
        return np.random.default_rng([self.seed, self.rank, iteration])

    @abstractmethod
    def batch(self, iteration: int) -> list[int]:
        """The record indices of batch ``iteration``."""

    def iterate(self, start_iter: int = 0) -> Iterator[list[int]]:
        """Endless batches from ``start_iter`` on (a DataLoader ``batch_sampler``)."""
        iteration = start_iter
        while True:
            yield self.batch(iteration)
            iteration += 1


class PairBatchSampler(SeededBatchSampler):
    """Index batches over detectron2-style records (with ``source`` and ``pair_id`` keys)."""

    def __init__(
        self,
        records: Sequence[dict],
        images_per_batch: int,
        unrelated_fraction: float = 0.25,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        super().__init__(len(records), images_per_batch, seed, rank)
        if not 0.0 <= unrelated_fraction <= 1.0:
            raise ValueError(f"unrelated_fraction must be in [0, 1], got {unrelated_fraction}")
        sources, pairs = column(records, "source"), column(records, "pair_id")
        users: dict[int, list[int]] = {}
        shops: dict[int, list[int]] = {}
        for index, (source, pair_id) in enumerate(zip(sources, pairs, strict=True)):
            side = shops if source == "shop" else users
            side.setdefault(pair_id, []).append(index)
        self.pair_ids = np.array(sorted(set(users) & set(shops)), dtype=np.int64)
        if len(self.pair_ids) == 0 and unrelated_fraction < 1.0:
            raise ValueError("no pair_id has both a user and a shop image: no pairs to sample")
        self._users = {pid: np.array(users[pid]) for pid in self.pair_ids.tolist()}
        self._shops = {pid: np.array(shops[pid]) for pid in self.pair_ids.tolist()}
        self._pair_of = np.array(pairs, dtype=np.int64)
        self.groups = min(
            round(images_per_batch * (1.0 - unrelated_fraction)) // 2, len(self.pair_ids)
        )

    def batch(self, iteration: int) -> list[int]:
        rng = self.rng(iteration)
        chosen = rng.choice(self.pair_ids, size=self.groups, replace=False)
        batch = []
        for pid in chosen.tolist():
            batch.append(int(rng.choice(self._users[pid])))
            batch.append(int(rng.choice(self._shops[pid])))
        unrelated = self.images_per_batch - len(batch)
        if unrelated:
            candidates = np.flatnonzero(~np.isin(self._pair_of, chosen))
            if len(candidates) < unrelated:
                candidates = np.setdiff1d(np.arange(len(self._pair_of)), batch)
            batch.extend(int(i) for i in rng.choice(candidates, size=unrelated, replace=False))
        return batch


class ImageBatchSampler(SeededBatchSampler):
    """Index batches of ``images_per_batch`` distinct images out of ``num_images``."""

    def __init__(self, num_images: int, images_per_batch: int, seed: int = 0,
                 rank: int = 0) -> None:
        super().__init__(num_images, images_per_batch, seed, rank)
        self.num_images = num_images

    def batch(self, iteration: int) -> list[int]:
        return self.rng(iteration).choice(self.num_images, size=self.images_per_batch,
                                          replace=False).tolist()


def has_pairs(records: Sequence[dict]) -> bool:
    """True when every record says its source (user/shop) and pair_id, as DeepFashion2's do."""
    return len(records) > 0 and all(
        value is not None for key in ("source", "pair_id") for value in column(records, key))
