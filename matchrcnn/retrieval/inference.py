"""The model over many image files: decoded by threads ahead of it, run in same-size batches.

Predictions come back as soon as their batch has run, so not in input order; an image that cannot
be read comes back with its error instead, and the stream goes on. Why batches hold one image size
only: see modeling/predictor.py.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from matchrcnn.data.images import DEFAULT_MAX_PIXELS, ImageInputError, read_image
from matchrcnn.retrieval.model import RetrievalModel
from matchrcnn.retrieval.sources import SourceImage
from matchrcnn.utils.errors import UsageError

Outcome = tuple[SourceImage, dict[str, np.ndarray] | None, ImageInputError | None]
"""An image with its prediction, or with the error that kept it from the model."""


@dataclass(frozen=True)
class InferenceSettings:
    """``batch_size``: images per model call; ``workers``: decoding threads; ``max_pixels``:
    larger images fail."""

    batch_size: int = 4
    workers: int = 2
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        for name in ("batch_size", "workers", "max_pixels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be a positive integer, "
                                 f"got {value!r}")


def predict_images(model: RetrievalModel, images: Sequence[SourceImage],
                   settings: InferenceSettings, with_masks: bool = False) -> Iterator[Outcome]:
    """Every image once, with its prediction or its error (masks only if ``with_masks``).

    At most about two batches of decoded images wait for the model: a bucket that fills runs at
    once, and when too many images of mixed sizes wait, the fullest bucket runs as it is.
    """
    buckets: dict[tuple[int, ...], list[tuple[SourceImage, np.ndarray]]] = {}

    def run(shape: tuple[int, ...]) -> Iterator[Outcome]:
        batch = buckets.pop(shape)
        predictions = model.predict([image for _, image in batch], with_masks=with_masks)
        for (source, _), prediction in zip(batch, predictions, strict=True):
            yield source, prediction, None

    pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="decode")
    try:
        for source, image, error in _decode_ahead(pool, images, settings):
            if error is not None:
                yield source, None, error
                continue
            buckets.setdefault(image.shape, []).append((source, image))
            if len(buckets[image.shape]) >= settings.batch_size:
                yield from run(image.shape)
            elif sum(map(len, buckets.values())) > 2 * settings.batch_size:
                yield from run(max(buckets, key=lambda shape: len(buckets[shape])))
        while buckets:
            yield from run(next(iter(buckets)))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _decode_ahead(pool: ThreadPoolExecutor, images: Sequence[SourceImage],
                  settings: InferenceSettings,
                  ) -> Iterator[tuple[SourceImage, np.ndarray | None, ImageInputError | None]]:
    """The images in order, decoded by the pool a bounded number ahead of the consumer."""
    ahead: deque[tuple[SourceImage, Future]] = deque()
    upcoming = iter(images)

    def submit() -> None:
        source = next(upcoming, None)
        if source is not None:
            ahead.append((source, pool.submit(read_image, source.path, settings.max_pixels)))

    for _ in range(2 * settings.batch_size + settings.workers):
        submit()
    while ahead:
        source, future = ahead.popleft()
        submit()
        try:
            yield source, future.result(), None
        except ImageInputError as error:
            yield source, None, error
