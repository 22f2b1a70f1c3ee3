"""What goes into a gallery (a shop image with its detected items) and what comes out (an item).

``ShopImage`` checks its arrays when it is made, so that a gallery never starts a write it cannot
finish because of one malformed record; only the embedding size is left to the gallery to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from matchrcnn.data.categories import NUM_CATEGORIES


def _is_int(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


@dataclass(frozen=True, eq=False)
class ShopImage:
    """One shop image and its items: boxes (N, 4) XYXY pixels, categories (N,) in 1..13, detection
    scores (N,), embeddings (N, D); ``pair_id`` and per-item ``styles`` where known (DeepFashion2
    ground truth), else None. N may be 0: the image is then recorded as indexed with no items.
    """

    path: str
    image_id: int | None
    boxes: np.ndarray
    categories: np.ndarray
    scores: np.ndarray
    embeddings: np.ndarray
    pair_id: int | None = None
    styles: np.ndarray | None = None

    def __post_init__(self) -> None:
        where = f"shop image {self.path!r}"
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"{where}: path must be a non-empty string")
        if self.image_id is not None and not _is_int(self.image_id):
            raise ValueError(f"{where}: image_id must be an integer or None, got "
                             f"{self.image_id!r}")
        if self.pair_id is not None and not _is_int(self.pair_id):
            raise ValueError(f"{where}: pair_id must be an integer or None, got {self.pair_id!r}")
        boxes = np.asarray(self.boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{where}: boxes have shape {boxes.shape}, expected (N, 4)")
        count = len(boxes)
        embeddings = np.asarray(self.embeddings, dtype=np.float32)
        categories = np.asarray(self.categories).reshape(-1)
        scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
        if embeddings.ndim != 2 or len(embeddings) != count:
            raise ValueError(f"{where}: embeddings have shape {embeddings.shape}, expected "
                             f"({count}, D) for its {count} boxes")
        if len(categories) != count or len(scores) != count:
            raise ValueError(f"{where}: {count} boxes but {len(categories)} categories and "
                             f"{len(scores)} scores")
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all()
                and np.isfinite(embeddings).all()):
            raise ValueError(f"{where}: boxes, scores and embeddings must be finite")
        if (boxes[:, 2:] < boxes[:, :2]).any():
            raise ValueError(f"{where}: boxes must be [x1, y1, x2, y2] with x2 >= x1, y2 >= y1")
        if count and (categories.dtype.kind not in "iu" or categories.min() < 1
                      or categories.max() > NUM_CATEGORIES):
            raise ValueError(f"{where}: categories must be integers in 1..{NUM_CATEGORIES}, got "
                             f"{categories.tolist()}")
        styles = None
        if self.styles is not None:
            styles = np.asarray(self.styles).reshape(-1)
            if len(styles) != count or (count and (styles.dtype.kind not in "iu"
                                                   or styles.min() < 0)):
                raise ValueError(f"{where}: styles must be {count} integers >= 0")
        for name in ("image_id", "pair_id"):  # numpy integers do not bind as SQLite values
            if getattr(self, name) is not None:
                object.__setattr__(self, name, int(getattr(self, name)))
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "categories", categories.astype(np.int64))
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "embeddings", np.ascontiguousarray(embeddings))
        object.__setattr__(self, "styles", None if styles is None else styles.astype(np.int64))

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def from_prediction(cls, path: str, image_id: int | None,
                        prediction: Mapping[str, np.ndarray], min_score: float,
                        pair_id: int | None = None,
                        styles: np.ndarray | None = None) -> ShopImage:
        """The detections of a ``Predictor`` output scoring at least ``min_score``.

        ``styles``, when given, has one entry per detection of the prediction (before the cut).
        """
        missing = [key for key in ("boxes", "labels", "scores", "embeddings")
                   if key not in prediction]
        if missing:
            raise ValueError(f"prediction for {path!r} lacks {missing} (the match network must "
                             f"be on: MODEL.MATCH_ON True)")
        keep = np.asarray(prediction["scores"]) >= min_score
        return cls(path, image_id, np.asarray(prediction["boxes"])[keep],
                   np.asarray(prediction["labels"])[keep], np.asarray(prediction["scores"])[keep],
                   np.asarray(prediction["embeddings"])[keep], pair_id,
                   None if styles is None else np.asarray(styles)[keep])


@dataclass(frozen=True)
class GalleryItem:
    """A stored item: its row (also its FAISS id), image, box (XYXY), category and score."""

    row: int
    image_path: str
    image_id: int | None
    box: tuple[float, float, float, float]
    category: int
    score: float
    pair_id: int | None
    style: int | None


@dataclass(frozen=True)
class Hit(GalleryItem):
    """A retrieved item with the match network's margin (same minus different logit) and
    probability that it is the query's item."""

    match_logit: float
    match_probability: float
