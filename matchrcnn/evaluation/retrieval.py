"""DeepFashion2's consumer-to-shop retrieval protocol, exactly, in a few numpy passes.

For each query item (a ground-truth item of a user image with style > 0):
1. every detection submitted for the image goes to the image's ground-truth item (style 0
   included) of highest COCO box IoU, with no threshold; on ties the first item in ground-truth
   file order wins, so a detection that overlaps no item (a box with x2 < x1 or y2 < y1
   overlaps nothing) goes to the image's first item; detections of other images are not read;
2. the item takes, among the detections assigned to it whose class is its class, the one of
   highest score (on equal scores, the first in the results file); with none it counts as
   missed;
3. it is correct at top-k if one of the first k retrieved entries names a gallery image holding
   a ground-truth item of the same pair_id and style whose box has IoU >= 0.5 with the
   retrieved box.
Accuracy at k is correct / query items. Ground-truth-box mode (``gt_boxes=True``) replaces rules 1
and 2: each query item is scored with the entries of its image that carry exactly its own box
and class (the best-scoring one; items with identical box and class share them), every entry
must carry such a box, and an item without one counts as missed.

Detections are grouped by image with sorting, IoUs are computed for all pairs at once with
``box_iou.coco_box_iou`` (pycocotools' arithmetic), and the result equals, to the last digit,
the loop in tests/evaluation/reference_retrieval.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from matchrcnn.evaluation.box_iou import coco_box_iou
from matchrcnn.evaluation.entries import (
    EntriesError,
    Field,
    Problems,
    Source,
    check_categories,
    check_corners,
    load_columns,
)
from matchrcnn.evaluation.results import RETRIEVED, RetrievalSubmission, read_retrieval_results

TOP_K = (1, 5, 10, 15, 20)
MATCH_IOU = 0.5
_DENSE_RANGE = 1 << 24
"""Widest image-id range looked up through a dense table (128 MiB of int64 at most)."""

_QUERY_FIELDS: tuple[Field, ...] = (
    Field("query_image_id", (), True), Field("style", (), True), Field("cls", (), True),
    Field("pair_id", (), True), Field("bbox", (4,), False),
)
_GALLERY_FIELDS: tuple[Field, ...] = (
    Field("gallery_image_id", (), True), Field("style", (), True), Field("pair_id", (), True),
    Field("bbox", (4,), False),
)


@dataclass(frozen=True)
class QueryGroundTruth:
    """Every item of the query (user) images, in file order."""

    image_id: np.ndarray
    style: np.ndarray
    cls: np.ndarray
    pair_id: np.ndarray
    box: np.ndarray  # (n, 4) XYXY
    name: str = "<query ground truth>"


@dataclass(frozen=True)
class GalleryGroundTruth:
    """The paired (style > 0) items of the gallery (shop) images."""

    image_id: np.ndarray
    style: np.ndarray
    pair_id: np.ndarray
    box: np.ndarray  # (n, 4) XYXY
    name: str = "<gallery ground truth>"


@dataclass(frozen=True)
class RetrievalAccuracy:
    """Top-k accuracies (fractions), query items (style > 0) and missed ones.

    ``missed`` counts query items whose image has detections of which none was assigned to the
    item with its class; items of images without any detection are wrong but not ``missed``.
    ``warnings`` says what of the submission was scored as the official script scores it although
    it breaks the format (one line per kind, see ``read_retrieval_results``).
    """

    top_k: Mapping[int, float]
    queries: int
    missed: int
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def as_dict(self) -> dict:
        """``{"top1", "top5", "top10", "top15", "top20", "queries", "missed"}``."""
        return {**{f"top{k}": v for k, v in self.top_k.items()},
                "queries": self.queries, "missed": self.missed}


def read_query_gt(source: Source | QueryGroundTruth) -> QueryGroundTruth:
    """Load and validate a query ground-truth file (or list) into arrays."""
    if isinstance(source, QueryGroundTruth):
        return source
    arrays, problems = load_columns(source, _QUERY_FIELDS, "query ground truth")
    check_categories(arrays["cls"], "cls", problems)
    check_corners(arrays["bbox"], "bbox", problems)
    problems.raise_if_any()
    return QueryGroundTruth(arrays["query_image_id"], arrays["style"], arrays["cls"],
                            arrays["pair_id"], arrays["bbox"], problems.name)


def read_gallery_gt(source: Source | GalleryGroundTruth) -> GalleryGroundTruth:
    """Load and validate a gallery ground-truth file (or list) into arrays."""
    if isinstance(source, GalleryGroundTruth):
        return source
    arrays, problems = load_columns(source, _GALLERY_FIELDS, "gallery ground truth")
    check_corners(arrays["bbox"], "bbox", problems)
    problems.raise_if_any()
    return GalleryGroundTruth(arrays["gallery_image_id"], arrays["style"], arrays["pair_id"],
                              arrays["bbox"], problems.name)


class _Groups:
    """Indices grouped by key (an image id), in their original order, padded with -1.

    Lookups go through a dense table over the key range when it is small (image ids are six
    digits in DeepFashion2), which is several times faster than a binary search.
    """

    def __init__(self, keys: np.ndarray) -> None:
        order = np.argsort(keys, kind="stable")
        self.keys, start, count = np.unique(keys[order], return_index=True, return_counts=True)
        slot = np.arange(count.max() if len(count) else 0)
        members = order[np.minimum(start[:, None] + slot, max(len(keys) - 1, 0))]
        self.members = np.where(slot < count[:, None], members, -1)
        self.table = None
        if len(self.keys) and int(self.keys[-1]) - int(self.keys[0]) < _DENSE_RANGE:
            self.table = np.full(int(self.keys[-1]) - int(self.keys[0]) + 1, -1)
            self.table[self.keys - self.keys[0]] = np.arange(len(self.keys))

    def _position(self, keys: np.ndarray) -> np.ndarray:
        """Index of each key in ``self.keys``, -1 for keys not there."""
        if self.table is not None:
            inside = (keys >= self.keys[0]) & (keys <= self.keys[-1])
            return np.where(inside, self.table[np.where(inside, keys - self.keys[0], 0)], -1)
        position = np.minimum(np.searchsorted(self.keys, keys), len(self.keys) - 1)
        return np.where(self.keys[position] == keys, position, -1)

    def of(self, keys: np.ndarray) -> np.ndarray:
        """(len(keys), width) members of each key's group; rows of -1 for unknown keys."""
        if len(self.keys) == 0:
            return np.full((len(keys), 0), -1)
        position = self._position(keys)
        return np.where(position[:, None] >= 0, self.members[position], -1)


def _assign_by_iou(submission: RetrievalSubmission, query: QueryGroundTruth,
                   candidates: np.ndarray) -> np.ndarray:
    """Rule 1: the item of each detection, highest IoU first, then first in file order."""
    iou = coco_box_iou(submission.query_box[:, None, :], query.box[candidates])
    iou = np.where(candidates >= 0, iou, -1.0)
    return candidates[np.arange(len(candidates)), iou.argmax(axis=1)]


def _same_box_and_class(boxes: np.ndarray, classes: np.ndarray, query: QueryGroundTruth,
                        candidates: np.ndarray) -> np.ndarray:
    same_box = (query.box[candidates] == boxes[:, None, :]).all(axis=-1)
    return (candidates >= 0) & same_box & (query.cls[candidates] == classes[:, None])


def _assign_by_gt_box(submission: RetrievalSubmission, query: QueryGroundTruth,
                      candidates: np.ndarray) -> np.ndarray:
    """Ground-truth-box mode: the first item of the image with the entry's exact box and class."""
    same = _same_box_and_class(submission.query_box, submission.query_cls, query, candidates)
    problems = Problems(submission.name)
    problems.add_rows(~same.any(axis=1), "query_bbox and query_cls match no ground-truth item "
                      "of the image (ground-truth-box mode needs an item's exact box and class)")
    problems.raise_if_any()
    return candidates[np.arange(len(candidates)), same.argmax(axis=1)]


def _best_detection(owner: np.ndarray, eligible: np.ndarray, scores: np.ndarray,
                    num_items: int) -> np.ndarray:
    """Rule 2: per item, its eligible detection of highest score, first in file on ties; or -1."""
    index = np.flatnonzero(eligible)
    order = np.lexsort((index, -scores[index], owner[index]))
    owners, detections = owner[index][order], index[order]
    first = np.ones(len(owners), dtype=bool)
    first[1:] = owners[1:] != owners[:-1]
    chosen = np.full(num_items, -1)
    chosen[owners[first]] = detections[first]
    return chosen


def _first_match_rank(submission: RetrievalSubmission, detections: np.ndarray,
                      query: QueryGroundTruth, items: np.ndarray,
                      gallery: GalleryGroundTruth) -> np.ndarray:
    """Rule 3: rank of the first retrieved entry that is a match, RETRIEVED when none is."""
    image_ids = submission.gallery_image_id[detections]
    found = _Groups(gallery.image_id).of(image_ids.ravel())
    shop = found.reshape(*image_ids.shape, found.shape[1])
    same_pair = ((shop >= 0)
                 & (gallery.pair_id[shop] == query.pair_id[items][:, None, None])
                 & (gallery.style[shop] == query.style[items][:, None, None]))
    row, rank, slot = np.nonzero(same_pair)
    iou = coco_box_iou(submission.gallery_box[detections[row], rank],
                       gallery.box[shop[row, rank, slot]])
    hit = np.zeros(image_ids.shape, dtype=bool)
    hit[row[iou >= MATCH_IOU], rank[iou >= MATCH_IOU]] = True
    return np.where(hit.any(axis=1), hit.argmax(axis=1), RETRIEVED)


def evaluate_retrieval(
    results: Source | RetrievalSubmission,
    query_gt: Source | QueryGroundTruth,
    gallery_gt: Source | GalleryGroundTruth,
    *,
    gt_boxes: bool = False,
    strict: bool = False,
) -> RetrievalAccuracy:
    """Top-1/5/10/15/20 accuracy of a retrieval submission by the official protocol.

    Each argument is a path, an already-loaded list, or the arrays from the readers. With
    ``gt_boxes`` the ground-truth-box mode (module docstring) is used instead of rules 1 and 2.
    What the official script scores although the format forbids it (boxes with x2 < x1, classes
    outside 1..13, more than 20 retrieved entries, detections of images outside the query ground
    truth) is scored as it scores it, and counted in ``warnings``; ``strict`` refuses it instead.
    """
    query = read_query_gt(query_gt)
    gallery = read_gallery_gt(gallery_gt)
    submission = read_retrieval_results(results, query.image_id, strict=strict)
    is_query = query.style > 0
    queries = int(is_query.sum())
    if queries == 0:
        raise EntriesError(f"{query.name}: no query items (items with style > 0)", query.name)

    images = _Groups(query.image_id)
    candidates = images.of(submission.query_image_id)
    if gt_boxes:
        owner = _assign_by_gt_box(submission, query, candidates)
        chosen = _best_detection(owner, np.ones(len(owner), dtype=bool),
                                 submission.query_score, len(query.image_id))
        peers = images.of(query.image_id)
        twins = _same_box_and_class(query.box, query.cls, query, peers)
        chosen = chosen[peers[np.arange(len(peers)), twins.argmax(axis=1)]]
    else:
        owner = _assign_by_iou(submission, query, candidates)
        eligible = submission.query_cls == query.cls[owner]
        chosen = _best_detection(owner, eligible, submission.query_score, len(query.image_id))

    has_detections = np.isin(query.image_id, submission.query_image_id)
    missed = int((is_query & (chosen < 0) & has_detections).sum())
    items = np.flatnonzero(is_query & (chosen >= 0))
    rank = _first_match_rank(submission, chosen[items], query, items, gallery)
    top_k = {k: int((rank < k).sum()) / queries for k in TOP_K}
    return RetrievalAccuracy(top_k=top_k, queries=queries, missed=missed,
                             warnings=submission.warnings)


def format_table(accuracy: RetrievalAccuracy, title: str) -> str:
    """A plain-text table of the accuracies, for people (``as_dict`` keeps every digit)."""
    header = "  ".join(f"{f'top-{k}':>7}" for k in accuracy.top_k)
    values = "  ".join(f"{v:7.4f}" for v in accuracy.top_k.values())
    return (f"{title}\n{header}\n{values}\n"
            f"query items (style > 0): {accuracy.queries}, missed: {accuracy.missed}")
