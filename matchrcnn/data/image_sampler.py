"""Batches of images drawn at random, for datasets without consumer/shop pairs (FashionAI, SAL-HG).

Batch ``i`` is a pure function of (seed, rank, i), as with PairBatchSampler, so a run resumed at
iteration k sees exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from matchrcnn.data.records import column


class ImageBatchSampler:
    """Index batches of ``images_per_batch`` distinct images out of ``num_images``."""

    def __init__(self, num_images: int, images_per_batch: int, seed: int = 0,
                 rank: int = 0) -> None:
        if images_per_batch < 1:
            raise ValueError(f"images_per_batch must be >= 1, got {images_per_batch}")
        if num_images < images_per_batch:
            raise ValueError(f"{num_images} images cannot fill batches of {images_per_batch} "
                             "images")
        self.num_images, self.images_per_batch = num_images, images_per_batch
        self.seed, self.rank = seed, rank

    def batch(self, iteration: int) -> list[int]:
        rng = np.random.default_rng([self.seed, self.rank, iteration])
        return rng.choice(self.num_images, size=self.images_per_batch, replace=False).tolist()

    def iterate(self, start_iter: int = 0) -> Iterator[list[int]]:
        """Endless batches from ``start_iter`` on (a DataLoader ``batch_sampler``)."""
        iteration = start_iter
        while True:
            yield self.batch(iteration)
            iteration += 1


def has_pairs(records: Sequence[dict]) -> bool:
    """True when every record says its source (user/shop) and pair_id, as DeepFashion2's do."""
    return len(records) > 0 and all(
        value is not None for key in ("source", "pair_id") for value in column(records, key))
