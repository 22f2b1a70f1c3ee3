"""The model and the gallery behind the HTTP service, each used by one thread of its own.

The model is loaded once and runs one photo at a time on its inference thread: the model's own
operators use every core, so running photos side by side would only make each of them slower,
and on a GPU they would compete for its memory. The gallery's SQLite connection may only be used
by the thread that opened it, so a second thread opens the gallery and does every search and item
lookup; a search of one photo overlaps the model's run on the next, and item lookups never wait
for the model.

A photo larger than the model's input (``INPUT.MAX_SIZE_TEST`` on its longer side) is scaled
down to it before the model sees it, which resizes it to that anyway: the model's masks are
pasted at the size of the image it is given, so a 16-megapixel photo would otherwise cost gigabytes
and seconds per photo for nothing. Boxes and landmarks come back in the photo's own pixels.

The gallery is read-only while it is served: it is opened without the write lock and a shared
lock on ``gallery.lock`` keeps builds out (tools/build_gallery.py then reports it busy), so its
counts are read once, not per request.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import cached_property, partial
from pathlib import Path
from typing import IO, TypeVar

import numpy as np
from PIL import Image

from matchrcnn.retrieval.gallery import (
    DATABASE_FILE,
    Gallery,
    GalleryError,
    acquire_lock,
)
from matchrcnn.retrieval.index import describe
from matchrcnn.retrieval.model import RetrievalModel
from matchrcnn.retrieval.query import QueryItem, query_prediction, require_items
from matchrcnn.retrieval.records import GalleryItem

T = TypeVar("T")


class ServedGallery(Gallery):
    """A gallery that nobody writes while it is open (``open_served``): its counts, which
    SQLite finds by scanning a table, are read once."""

    @cached_property
    def item_count(self) -> int:
        return Gallery.item_count.fget(self)

    @cached_property
    def image_count(self) -> int:
        return Gallery.image_count.fget(self)


def working_copy(photo: np.ndarray, longest: int) -> tuple[np.ndarray, float]:
    """The photo with its longer side scaled down to ``longest`` pixels (itself when it is not
    longer), and the photo's pixels per pixel of the copy."""
    height, width = photo.shape[:2]
    if max(height, width) <= longest:
        return photo, 1.0
    scale = max(height, width) / longest
    size = (max(1, round(width / scale)), max(1, round(height / scale)))
    return np.asarray(Image.fromarray(photo).resize(size, Image.Resampling.LANCZOS)), scale


def _in_photo_pixels(item: QueryItem, scale: float) -> QueryItem:
    """A garment found in a working copy, its box and landmarks in the photo's pixels (its mask
    stays the copy's)."""
    if scale == 1.0:
        return item
    landmarks = None
    if item.landmarks is not None:
        landmarks = item.landmarks.copy()
        landmarks[:, :2] *= scale
    return replace(item, box=tuple(value * scale for value in item.box), landmarks=landmarks)


class UnknownItemError(GalleryError):
    """An item id the gallery does not hold."""


@dataclass(frozen=True)
class GallerySummary:
    """What ``GET /api/gallery`` reports; fixed while the gallery is served."""

    items: int
    images: int
    index: dict
    embedding_size: int
    model_fingerprint: str


def _share_lock(directory: Path) -> IO | None:
    """A shared lock on the gallery's lock file: no build can write while it is held, and a
    build already writing keeps the gallery from being served. None where there is no gallery
    (``Gallery.open`` then says so)."""
    if not (directory / DATABASE_FILE).is_file():
        return None
    return acquire_lock(directory, shared=True,
                         hint=": serve it once that build has finished")


class SearchService:
    """A loaded model and its gallery, opened read-only; ``close`` releases both threads and
    the gallery. Raises GalleryMismatchError at once for a gallery another model built, and
    EmptyGalleryError for one without items."""

    def __init__(self, model: RetrievalModel, gallery_dir: str | os.PathLike) -> None:
        self.model = model
        self.input_side = int(model.predictor.cfg.INPUT.MAX_SIZE_TEST)
        directory = Path(gallery_dir)
        self._inference = ThreadPoolExecutor(1, thread_name_prefix="inference")
        self._store = ThreadPoolExecutor(1, thread_name_prefix="gallery")
        self._lock: IO | None = None
        self._gallery: ServedGallery | None = None
        try:
            self._lock = _share_lock(directory)
            self._gallery = self._store.submit(
                ServedGallery.open, directory, model.fingerprint, model.embed_dim).result()
            self.info = self._store.submit(self._describe).result()
        except BaseException:
            self.close()
            raise

    def _describe(self) -> GallerySummary:
        gallery = self._gallery
        require_items(gallery)
        return GallerySummary(gallery.item_count, gallery.image_count, describe(gallery.index),
                           gallery.embed_dim, gallery.fingerprint)

    @property
    def gallery(self) -> Gallery:
        """The served gallery, for what needs no database access (directory, fingerprint)."""
        return self._gallery

    def working_copy(self, photo: np.ndarray) -> tuple[np.ndarray, float]:
        """What ``search`` takes: the photo at most the model's input size, and its scale."""
        return working_copy(photo, self.input_side)

    async def search(self, copy: np.ndarray, scale: float, topk: int, same_category: bool,
                     min_score: float, max_items: int) -> list[QueryItem]:
        """``query_photo`` of a ``working_copy``: the model on its thread, the search on the
        gallery's; boxes and landmarks in the photo's pixels, masks in the copy's."""
        predictions = await _on(self._inference, self.model.predict, [copy])
        items = await _on(self._store, query_prediction, self._gallery, predictions[0], topk,
                          same_category, min_score, max_items)
        return [_in_photo_pixels(item, scale) for item in items]

    async def item(self, item_id: int) -> GalleryItem:
        """The stored item of ``item_id``; UnknownItemError when there is none."""
        return await _on(self._store, self._item, item_id)

    def _item(self, item_id: int) -> GalleryItem:
        try:
            return self._gallery.items([item_id])[0]
        except GalleryError:
            raise UnknownItemError(f"gallery holds no item {item_id}") from None

    def close(self) -> None:
        """Close the gallery on its own thread, stop both threads and release the lock."""
        if self._gallery is not None:
            self._store.submit(self._gallery.close).result()
            self._gallery = None
        self._inference.shutdown(wait=True, cancel_futures=True)
        self._store.shutdown(wait=True, cancel_futures=True)
        if self._lock is not None:
            self._lock.close()
            self._lock = None


async def _on(executor: ThreadPoolExecutor, function: Callable[..., T], *args: object) -> T:
    return await asyncio.get_running_loop().run_in_executor(executor, partial(function, *args))
