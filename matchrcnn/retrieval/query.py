"""Query by image: the garments detected in a photo, each with its best shop items in a gallery.

``query_photo`` runs the model on one photo and searches the gallery for every detection scoring at
least ``min_score``; ``results_document`` is what tools/query_gallery.py writes as results.json, and
``hits_table`` what it prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from matchrcnn.data.categories import NUM_CATEGORIES, category_name
from matchrcnn.retrieval.gallery import EmptyGalleryError, Gallery
from matchrcnn.retrieval.model import RetrievalModel
from matchrcnn.retrieval.records import Hit
from matchrcnn.retrieval.search import search


@dataclass(frozen=True, eq=False)
class QueryItem:
    """A detected garment: box (XYXY pixels), category, detection score, its mask (H, W) and
    landmarks (K, 3) when the model predicts them, and the retrieved shop items, best first."""

    box: tuple[float, float, float, float]
    category: int
    score: float
    mask: np.ndarray | None
    landmarks: np.ndarray | None
    hits: list[Hit]


def require_items(gallery: Gallery) -> None:
    """Raise EmptyGalleryError for a gallery without items, before any model runs."""
    if gallery.item_count == 0:
        raise EmptyGalleryError(f"gallery {gallery.directory} holds no items: add shop images "
                                f"(tools/build_gallery.py) before querying it")


def query_photo(model: RetrievalModel, gallery: Gallery, image: np.ndarray, topk: int = 20,
                same_category: bool = False, min_score: float = 0.5,
                max_items: int | None = None) -> list[QueryItem]:
    """The detections of ``image`` (RGB uint8) scoring at least ``min_score``, best first (at
    most ``max_items``), each with its ``topk`` gallery items (of its own category only with
    ``same_category``)."""
    require_items(gallery)
    return query_prediction(gallery, model.predict([image])[0], topk, same_category, min_score,
                            max_items)


def query_prediction(gallery: Gallery, prediction: dict[str, np.ndarray], topk: int = 20,
                     same_category: bool = False, min_score: float = 0.5,
                     max_items: int | None = None) -> list[QueryItem]:
    """``query_photo`` of a prediction already made (``RetrievalModel.predict``), so that the
    model and the gallery can be used by different threads."""
    keep = np.flatnonzero(prediction["scores"] >= min_score)
    keep = keep[np.argsort(-prediction["scores"][keep], kind="stable")][:max_items]
    labels = [int(label) for label in prediction["labels"][keep]]
    rankings = search(gallery, prediction["embeddings"][keep], topk,
                      same_category=labels if same_category else None)
    masks, landmarks = prediction.get("masks"), prediction.get("landmarks")
    return [QueryItem(tuple(float(v) for v in prediction["boxes"][index]), label,
                      float(prediction["scores"][index]),
                      None if masks is None else masks[index],
                      None if landmarks is None else landmarks[index], hits)
            for index, label, hits in zip(keep, labels, rankings, strict=True)]


def category_label(category: int) -> str:
    """The category's name (its id when it is none of the 13)."""
    return category_name(category) if 1 <= category <= NUM_CATEGORIES else str(category)


def results_document(photo: str | os.PathLike, gallery: Gallery, items: list[QueryItem],
                     topk: int, same_category: bool, min_score: float,
                     max_items: int | None = None) -> dict:
    """results.json: the query, then per detected item its box, category and score and its
    retrieved entries (rank, image path and id, box, category, match score and logit)."""
    return {
        "image": str(photo),
        "gallery": str(gallery.directory),
        "model_fingerprint": gallery.fingerprint,
        "topk": topk,
        "same_category": same_category,
        "min_score": min_score,
        "max_items": max_items,
        "items": [{
            "box": list(item.box),
            "category_id": item.category,
            "category": category_label(item.category),
            "score": item.score,
            "retrieved": [{
                "rank": rank,
                "image_path": hit.image_path,
                "image_id": hit.image_id,
                "box": list(hit.box),
                "category_id": hit.category,
                "category": category_label(hit.category),
                "detection_score": hit.score,
                "match_score": hit.match_probability,
                "match_logit": hit.match_logit,
                "pair_id": hit.pair_id,
                "style": hit.style,
            } for rank, hit in enumerate(item.hits, start=1)],
        } for item in items],
    }


def hits_table(items: list[QueryItem]) -> str:
    """A plain-text table: one block per detected item, one line per retrieved entry."""
    if not items:
        return "no garment detected"
    lines = []
    for number, item in enumerate(items, start=1):
        box = ", ".join(f"{value:.0f}" for value in item.box)
        lines.append(f"item {number}: {category_label(item.category)}, score {item.score:.3f}, "
                     f"box [{box}]")
        lines.append(f"  {'rank':>4}  {'match':>6}  {'category':<22} {'image id':>8}  image")
        for rank, hit in enumerate(item.hits, start=1):
            image_id = "-" if hit.image_id is None else str(hit.image_id)
            lines.append(f"  {rank:>4}  {hit.match_probability:6.3f}  "
                         f"{category_label(hit.category):<22} {image_id:>8}  {hit.image_path}")
    return "\n".join(lines)
