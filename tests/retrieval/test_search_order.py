"""The returned order is the match head's own order over the whole gallery, ties included."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from matchrcnn.retrieval import Gallery, MatchMetric, exact_search, search
from tests.retrieval.conftest import (
    DIM,
    FINGERPRINT,
    head_ranking,
    make_head,
    make_images,
    stored_content,
)


def _tied_gallery(directory: Path, signs: str) -> tuple[Gallery, np.ndarray]:
    """300 items drawn from 40 vectors and their negations: many exact ties at every rank."""
    rng = np.random.default_rng(1)
    base = rng.normal(size=(20, DIM)).astype(np.float32)
    pool = np.concatenate([base, -base])
    gallery = Gallery.create(directory, FINGERPRINT, MatchMetric.from_head(make_head(signs)))
    gallery.add_images(make_images(100, items=3, pool=pool))
    return gallery, pool


def _queries(pool: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(2)
    fresh = rng.normal(size=(12, DIM)).astype(np.float32)
    # the zero vector is equidistant from each vector and its negation; pool members tie with
    # their own copies
    return np.concatenate([fresh, np.zeros((1, DIM), np.float32), pool[:5]])


@pytest.mark.parametrize("signs", ["negative", "mixed", "positive"])
def test_order_equals_brute_force_head_scoring(tmp_path: Path, signs: str) -> None:
    gallery, pool = _tied_gallery(tmp_path / "gallery", signs)
    queries = _queries(pool)
    content = stored_content(gallery)
    rows = np.array([entry[0] for entry in content])
    vectors = np.stack([np.frombuffer(entry[-1], np.float32) for entry in content])
    head = make_head(signs)
    for topk in (1, 20, 45):
        hits = search(gallery, queries, topk)
        assert [[hit.row for hit in ranked] for ranked in hits] == head_ranking(
            head, queries, vectors, rows, topk)
    with torch.no_grad():
        logits = head(torch.from_numpy(queries[:1]).expand(len(hits[0]), -1),
                      torch.from_numpy(vectors[[hit.row - 1 for hit in hits[0]]]))
    assert np.allclose([hit.match_logit for hit in hits[0]],
                       (logits[:, 1] - logits[:, 0]).numpy(), rtol=1e-5, atol=1e-5)
    assert np.allclose([hit.match_probability for hit in hits[0]],
                       logits.softmax(dim=1)[:, 1].numpy(), atol=1e-6)
    gallery.close()


@pytest.mark.parametrize("signs", ["negative", "mixed"])
def test_category_restricted_order_and_count(tmp_path: Path, signs: str) -> None:
    gallery, pool = _tied_gallery(tmp_path / "gallery", signs)
    queries = _queries(pool)
    categories = [int(c) for c in np.arange(len(queries)) % 13 + 1]
    categories[3] = None
    content = stored_content(gallery)
    rows = np.array([entry[0] for entry in content])
    vectors = np.stack([np.frombuffer(entry[-1], np.float32) for entry in content])
    allowed = [None if c is None else gallery.category_rows(c) for c in categories]
    hits = search(gallery, queries, 20, same_category=categories)
    assert [[hit.row for hit in ranked] for ranked in hits] == head_ranking(
        make_head(signs), queries, vectors, rows, 20, allowed)
    for ranked, category in zip(hits, categories, strict=True):
        assert len(ranked) == 20  # every category holds 23 items here
        assert category is None or {hit.category for hit in ranked} == {category}
    gallery.close()


def test_negative_weights_rank_from_faiss_candidates(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """All weights <= 0: a few dozen FAISS candidates settle the exact order, not a full scan."""
    gallery, pool = _tied_gallery(tmp_path / "gallery", "negative")
    fetched = []
    embeddings = Gallery.embeddings
    monkeypatch.setattr(Gallery, "embeddings",
                        lambda self, rows: fetched.append(len(rows)) or embeddings(self, rows))
    for query in _queries(pool)[:12]:
        search(gallery, query[None], 5)
    assert max(fetched) < gallery.item_count / 2
    gallery.close()


def test_search_equals_exact_search_on_fresh_vectors(tmp_path: Path) -> None:
    with Gallery.create(tmp_path / "g", FINGERPRINT,
                        MatchMetric.from_head(make_head("mixed", seed=3))) as gallery:
        gallery.add_images(make_images(80, items=2, seed=4))
        queries = np.random.default_rng(5).normal(size=(10, DIM))
        assert search(gallery, queries, 20) == exact_search(gallery, queries, 20)
