"""Consumer-to-shop retrieval from a model, end to end, as the official protocol scores it.

Every detection the model makes in a split's user images is a query (the protocol itself picks,
per ground-truth item, the best-scoring detection of its class among those its box overlaps most);
each is searched in a gallery of the split's shop items, and its 20 best entries become one
official retrieval result entry (``retrieval_entries``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from tqdm import tqdm

from matchrcnn.evaluation.results import RETRIEVED
from matchrcnn.retrieval.gallery import Gallery
from matchrcnn.retrieval.inference import InferenceSettings, predict_images
from matchrcnn.retrieval.model import RetrievalModel
from matchrcnn.retrieval.query import require_items
from matchrcnn.retrieval.search import retrieval_entries, search
from matchrcnn.retrieval.sources import SourceImage

SEARCH_GROUP = 64
"""Query images whose detections are searched together."""


def searched_entries(gallery: Gallery, predictions: list[dict],
                     same_category: bool = False) -> list[dict]:
    """Official retrieval entries of the detections of some query images (predictions with
    "image_id", "embeddings", "labels", boxes and scores), searched in one call."""
    embeddings = np.concatenate([p["embeddings"] for p in predictions]).reshape(
        -1, gallery.embed_dim)
    labels = [int(label) for p in predictions for label in p["labels"]]
    rankings = search(gallery, embeddings, RETRIEVED,
                      same_category=labels if same_category else None)
    return retrieval_entries(predictions, rankings)


def detected_retrieval_entries(model: RetrievalModel, gallery: Gallery,
                               queries: Sequence[SourceImage],
                               inference: InferenceSettings | None = None,
                               same_category: bool = False, progress: bool = True,
                               on_failure: Callable[[str, str], None] | None = None,
                               ) -> list[dict]:
    """Official retrieval result entries for every detection in ``queries`` (images with ids).

    An image that cannot be read is reported through ``on_failure(path, reason)`` and left out:
    its items count as wrong, as for an image without detections.
    """
    missing = [query.path for query in queries if query.image_id is None]
    if missing:
        raise ValueError(f"query image {missing[0]} has no image id: official retrieval results "
                         f"name query images by integer id")
    require_items(gallery)
    entries: list[dict] = []
    waiting: list[dict] = []

    def flush() -> None:
        entries.extend(searched_entries(gallery, waiting, same_category))
        waiting.clear()

    with tqdm(total=len(queries), desc="querying", unit="image", disable=not progress) as bar:
        for source, prediction, error in predict_images(model, queries,
                                                        inference or InferenceSettings()):
            bar.update(1)
            if error is not None:
                if on_failure is not None:
                    on_failure(source.path, str(error))
                continue
            waiting.append({**prediction, "image_id": source.image_id})
            if len(waiting) >= SEARCH_GROUP:
                flush()
        if waiting:
            flush()
    return entries
