"""Querying a gallery: the items the match network scores highest, best first.

Order is the match network's: descending margin (same minus different logit), ties broken by the
lower gallery row, computed exactly (float64) from the stored embeddings. FAISS only proposes
candidates. With the flat index the result is exact for every head: the candidate set widens
until no item outside it can reach the top k, by the bound in metric.py (index distances carry
float32 rounding, allowed for by a margin of ``2 (D + 8)`` units in the last place of the
norms). When every weight is <= 0 that takes one or two FAISS searches; a head with positive
weights may widen to the whole gallery, which is then scored in full. Approximate indexes
(IVF-PQ, HNSW) propose ``IndexConfig.rerank`` candidates, re-scored exactly; ``search_recall``
measures what they miss.

``same_category`` restricts each query to gallery items of one category inside FAISS (an id
selector over that category's rows), so k results come back whenever the category holds k items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict

import faiss
import numpy as np

from matchrcnn.data.categories import NUM_CATEGORIES
from matchrcnn.evaluation.results import RETRIEVED, retrieval_results
from matchrcnn.retrieval.gallery import EmptyGalleryError, Gallery, GalleryMismatchError
from matchrcnn.retrieval.index import is_exact, search_parameters
from matchrcnn.retrieval.metric import MatchMetric, match_probability
from matchrcnn.retrieval.records import Hit

Ranking = tuple[np.ndarray, np.ndarray]
"""Rows and their margins, best first."""

_ROUNDING = 2.0**-23
"""float32 machine epsilon: FAISS distances are float32 sums of ``D`` products."""
_EXACT_CHUNK = 8192


def search(gallery: Gallery, queries: np.ndarray, topk: int = 20,
           same_category: Sequence[int | None] | None = None) -> list[list[Hit]]:
    """The ``topk`` best gallery items of each query embedding (U, D), best first.

    ``same_category``: per query, a category id (1..13) its results must have, or None.
    Raises EmptyGalleryError for a gallery without items and GalleryMismatchError for
    embeddings of another size than the gallery's.
    """
    queries, groups = _check(gallery, queries, topk, same_category)
    rankings: list[Ranking | None] = [None] * len(queries)
    for category, members in groups.items():
        eligible = gallery.item_count if category is None else len(gallery.category_rows(category))
        if eligible == 0:
            for member in members:
                rankings[member] = _empty()
            continue
        selector = (None if category is None
                    else faiss.IDSelectorBatch(gallery.category_rows(category)))
        found = _rank(gallery, queries[members], topk, selector, eligible)
        for member, ranking in zip(members, found, strict=True):
            rankings[member] = ranking
    return _hits(gallery, rankings)


def exact_search(gallery: Gallery, queries: np.ndarray, topk: int = 20,
                 same_category: Sequence[int | None] | None = None) -> list[list[Hit]]:
    """``search`` by brute force: every stored item scored, same order and tie-break. The
    reference that approximate indexes are measured against; costs a full gallery scan."""
    queries, groups = _check(gallery, queries, topk, same_category)
    allowed = {category: None if category is None else gallery.category_rows(category)
               for category in groups}
    best: list[Ranking] = [_empty() for _ in queries]
    for rows, vectors in gallery.iter_embeddings(chunk_size=_EXACT_CHUNK):
        for category, members in groups.items():
            keep = (slice(None) if allowed[category] is None
                    else np.isin(rows, allowed[category]))
            for member in members:
                margins = gallery.metric.margins(queries[member], vectors[keep])
                best[member] = _top(np.concatenate([best[member][0], rows[keep]]),
                                    np.concatenate([best[member][1], margins]), topk)
    return _hits(gallery, best)


def search_recall(gallery: Gallery, queries: np.ndarray, topk: int = 20,
                  same_category: Sequence[int | None] | None = None) -> float:
    """Share of the exact top ``topk`` items that ``search`` returns (1.0 for the flat index)."""
    found = search(gallery, queries, topk, same_category)
    truth = exact_search(gallery, queries, topk, same_category)
    total = sum(len(hits) for hits in truth)
    common = sum(len({hit.row for hit in a} & {hit.row for hit in b})
                 for a, b in zip(found, truth, strict=True))
    return common / total if total else 1.0


def retrieval_entries(predictions: Sequence[Mapping], rankings: Sequence[Sequence[Hit]],
                      ) -> list[dict]:
    """Official retrieval result entries for detected query items.

    ``predictions``: one per query image, with "image_id", "boxes" (N, 4) XYXY, "labels" and
    "scores"; ``rankings``: the search results of every detection, image after image in that
    order. Each entry names 20 gallery images and boxes: a shorter ranking repeats its last hit
    (which changes no rank), and a detection without any hit is left out (there is nothing to
    name; the protocol scores its item as wrong either way). Gallery items need image ids.
    """
    total = sum(len(prediction["scores"]) for prediction in predictions)
    if len(rankings) != total:
        raise ValueError(f"{len(rankings)} rankings for {total} detections: search every "
                         f"detection of every prediction, in order")
    adapted, offset = [], 0
    for prediction in predictions:
        count = len(prediction["scores"])
        hits = rankings[offset:offset + count]
        offset += count
        keep = [index for index, ranked in enumerate(hits) if ranked]
        padded = [_padded(hits[index]) for index in keep]
        adapted.append({
            "image_id": prediction["image_id"],
            "boxes": np.asarray(prediction["boxes"]).reshape(-1, 4)[keep],
            "labels": np.asarray(prediction["labels"])[keep],
            "scores": np.asarray(prediction["scores"])[keep],
            "gallery_image_ids": np.array([[hit.image_id for hit in ranked] for ranked in padded],
                                          dtype=np.int64).reshape(-1, RETRIEVED),
            "gallery_boxes": np.array([[hit.box for hit in ranked] for ranked in padded],
                                      dtype=np.float64).reshape(-1, RETRIEVED, 4),
        })
    return retrieval_results(adapted)


def _padded(ranked: Sequence[Hit]) -> list[Hit]:
    missing = [hit for hit in ranked[:RETRIEVED] if hit.image_id is None]
    if missing:
        raise ValueError(f"gallery item {missing[0].row} ({missing[0].image_path}) has no image "
                         f"id: official retrieval results name gallery images by integer id")
    ranked = list(ranked[:RETRIEVED])
    return ranked + [ranked[-1]] * (RETRIEVED - len(ranked))


def _check(gallery: Gallery, queries: np.ndarray, topk: int,
           same_category: Sequence[int | None] | None,
           ) -> tuple[np.ndarray, dict[int | None, np.ndarray]]:
    """Validated queries (float32) and query positions grouped by required category."""
    queries = np.asarray(queries, dtype=np.float32)
    if queries.ndim != 2 or queries.shape[1] != gallery.embed_dim:
        raise GalleryMismatchError(
            f"query embeddings have shape {queries.shape}, gallery {gallery.directory} holds "
            f"{gallery.embed_dim}-d ones: expected (queries, {gallery.embed_dim}); were they "
            f"made by the model that built the gallery?")
    if not np.isfinite(queries).all():
        raise ValueError("query embeddings must be finite")
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ValueError(f"topk must be a positive integer, got {topk!r}")
    if gallery.item_count == 0:
        raise EmptyGalleryError(f"gallery {gallery.directory} holds no items: add shop images "
                                f"(tools/build_gallery.py) before searching it")
    categories = [None] * len(queries) if same_category is None else list(same_category)
    if len(categories) != len(queries):
        raise ValueError(f"same_category has {len(categories)} entries for {len(queries)} "
                         f"queries")
    bad = [c for c in categories if c is not None and not (
        isinstance(c, int | np.integer) and 1 <= c <= NUM_CATEGORIES)]
    if bad:
        raise ValueError(f"same_category entries must be category ids 1..{NUM_CATEGORIES} or "
                         f"None, got {bad[:5]}")
    groups: dict[int | None, list[int]] = {}
    for position, category in enumerate(categories):
        groups.setdefault(None if category is None else int(category), []).append(position)
    return np.ascontiguousarray(queries), {key: np.asarray(value) for key, value in
                                           groups.items()}


def _empty() -> Ranking:
    return np.zeros(0, dtype=np.int64), np.zeros(0)


def _top(rows: np.ndarray, margins: np.ndarray, k: int) -> Ranking:
    """The k best: highest margin first, lower row first among equal margins."""
    order = np.lexsort((rows, -margins))[:k]
    return rows[order], margins[order]


def _rank(gallery: Gallery, queries: np.ndarray, k: int, selector: faiss.IDSelector | None,
          eligible: int) -> list[Ranking]:
    """Exact top k per query from FAISS candidates (module notes); ``eligible`` items pass the
    selector, so a search of that width has seen all of them."""
    index, metric, config = gallery.index, gallery.metric, gallery.index_config
    exact = is_exact(index)
    scaled = metric.index_vectors(queries)
    index_norms = np.sqrt(np.square(scaled, dtype=np.float64).sum(axis=1))
    positive_norms = metric.positive_norms(queries)
    width = min(eligible, max(2 * k, k + 16) if exact else max(k, config.rerank))
    results: list[Ranking | None] = [None] * len(queries)
    pending = np.arange(len(queries))
    while len(pending):
        params = search_parameters(config, index, width, selector)
        distances, found = index.search(scaled[pending], width, params=params)
        candidates = np.unique(found[found >= 0])
        vectors = gallery.embeddings(candidates)
        unfinished = []
        for query, farthest, rows in zip(pending, distances[:, -1], found, strict=True):
            rows = rows[rows >= 0]
            margins = metric.margins(queries[query], vectors[np.searchsorted(candidates, rows)])
            ranking = _top(rows, margins, k)
            widen = exact and len(rows) == width < eligible and not _complete(
                metric, gallery.max_positive_norm, ranking[1][-1], float(farthest),
                index_norms[query], positive_norms[query])
            if widen:
                unfinished.append(query)
            else:
                results[query] = ranking
        pending = np.asarray(unfinished, dtype=np.int64)
        width = min(eligible, 4 * width)
    return results


def _complete(metric: MatchMetric, max_positive_norm: float, kth_margin: float,
              farthest: float, index_norm: float, positive_norm: float) -> bool:
    """Whether no item beyond the FAISS candidates can score ``kth_margin`` or more.

    Such an item has index distance ``||(a - g) sqrt(n)||^2 <= bias + P - kth_margin`` where
    ``P = (||a sqrt(p)|| + max_g ||g sqrt(p)||)^2`` bounds the positive part; FAISS saw it within
    its float32 rounding of that, so a farthest candidate beyond limit + rounding settles it.
    The float64 rounding of the margins themselves is covered by a relative 1e-12.
    """
    positive = (positive_norm + max_positive_norm) ** 2
    limit = metric.bias + positive - kth_margin
    reach = index_norm + np.sqrt(max(limit, 0.0))
    rounding = 2 * (metric.dim + 8) * _ROUNDING * (index_norm**2 + reach**2)
    rounding += 1e-12 * (abs(metric.bias) + positive + abs(kth_margin))
    return farthest > limit + rounding


def _hits(gallery: Gallery, rankings: Sequence[Ranking]) -> list[list[Hit]]:
    rows = np.unique(np.concatenate([ranking[0] for ranking in rankings] or [_empty()[0]]))
    items = dict(zip(rows.tolist(), gallery.items(rows), strict=True))
    return [[Hit(**asdict(items[row]), match_logit=margin,
                 match_probability=float(match_probability(margin)))
             for row, margin in zip(ranking[0].tolist(), ranking[1].tolist(), strict=True)]
            for ranking in rankings]
