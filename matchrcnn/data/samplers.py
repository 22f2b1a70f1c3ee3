"""Batches of consumer and shop images that share pair_ids, for training the match network.

Each batch holds ``groups`` pair groups (one user and one shop image of the same pair_id) plus a
share of unrelated images, whose items only make negatives. Batch ``i`` is a pure function of
(seed, rank, i), so a run resumed at iteration k sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from matchrcnn.data.records import column


class PairBatchSampler:
    """Index batches over detectron2-style records (with ``source`` and ``pair_id`` keys)."""

    def __init__(
        self,
        records: Sequence[dict],
        images_per_batch: int,
        unrelated_fraction: float = 0.25,
        seed: int = 0,
        rank: int = 0,
    ) -> None:
        if images_per_batch < 1:
            raise ValueError(f"images_per_batch must be >= 1, got {images_per_batch}")
        if len(records) < images_per_batch:
            raise ValueError(
                f"{len(records)} images cannot fill batches of {images_per_batch} images"
            )
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
        self.images_per_batch = images_per_batch
        self.groups = min(
            round(images_per_batch * (1.0 - unrelated_fraction)) // 2, len(self.pair_ids)
        )
        self.seed, self.rank = seed, rank

    def batch(self, iteration: int) -> list[int]:
        rng = np.random.default_rng([self.seed, self.rank, iteration])
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

    def iterate(self, start_iter: int = 0) -> Iterator[list[int]]:
        """Endless batches from ``start_iter`` on (a DataLoader ``batch_sampler``)."""
        iteration = start_iter
        while True:
            yield self.batch(iteration)
            iteration += 1
