"""Indexing images into a gallery: detect, embed, keep the confident items, commit in groups.

Images already indexed are left out before anything runs (``Gallery.pending``), so running the
build again appends only what is new, and a build that was stopped continues where it stopped:
every committed group is durable (see gallery.py), and a group cut short is done again. Groups of
``commit_every`` images, not every batch, because each commit rewrites the index file. An image
that cannot be read is recorded as failed and reported; the build goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from tqdm import tqdm

from matchrcnn.retrieval.gallery import Gallery
from matchrcnn.retrieval.inference import InferenceSettings, predict_images
from matchrcnn.retrieval.model import RetrievalModel
from matchrcnn.retrieval.records import ShopImage
from matchrcnn.retrieval.sources import SourceImage
from matchrcnn.utils.errors import UsageError


@dataclass
class BuildReport:
    """What one build did: images named, those indexed before it, those it indexed (with their
    items), and those that failed (path -> reason)."""

    requested: int
    already_indexed: int
    indexed: int = 0
    items: int = 0
    failed: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildSettings:
    """``min_score``: detections kept as items; ``commit_every``: images per gallery
    transaction; ``inference``: batching, decoding threads and the pixel limit."""

    min_score: float = 0.5
    commit_every: int = 64
    inference: InferenceSettings = field(default_factory=InferenceSettings)
    progress: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_score <= 1.0:
            raise UsageError(f"--min-score must be in [0, 1], got {self.min_score}")
        if (isinstance(self.commit_every, bool) or not isinstance(self.commit_every, int)
                or self.commit_every < 1):
            raise UsageError(f"--commit-every must be a positive integer, got "
                             f"{self.commit_every!r}")


def build_gallery(gallery: Gallery, model: RetrievalModel, images: Sequence[SourceImage],
                  settings: BuildSettings | None = None,
                  on_failure: Callable[[str, str], None] | None = None) -> BuildReport:
    """Index those of ``images`` that ``gallery`` (open for writing) does not hold yet.
    ``on_failure(path, reason)`` is called for each image that cannot be read, as it happens."""
    settings = settings or BuildSettings()
    pending = gallery.pending(images)
    report = BuildReport(requested=len(images), already_indexed=len(images) - len(pending))
    ready: list[ShopImage] = []

    def commit() -> None:
        result = gallery.add_images(ready)
        report.indexed += result.images
        report.items += result.items
        ready.clear()

    with tqdm(total=len(pending), desc="indexing", unit="image",
              disable=not settings.progress) as bar:
        for source, prediction, error in predict_images(model, pending, settings.inference):
            bar.update(1)
            if error is not None:
                gallery.mark_failed(source.path, source.image_id, str(error))
                report.failed[source.path] = str(error)
                if on_failure is not None:
                    on_failure(source.path, str(error))
                continue
            ready.append(ShopImage.from_prediction(
                source.path, source.image_id, prediction, settings.min_score, source.pair_id,
                source.styles_of(prediction["boxes"])))
            if len(ready) >= settings.commit_every:
                commit()
                bar.set_postfix(items=report.items)
        if ready:
            commit()
    return report
