"""Index kinds: settings checks, training, files, and recall@20 of the approximate kinds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matchrcnn.retrieval import FaissIndexError, IndexConfig, MatchMetric, recall_at_k
from matchrcnn.retrieval.index import (
    describe,
    index_ids,
    new_index,
    read_index,
    train_index,
    write_index,
)
from tests.retrieval.conftest import make_head


def _clustered(seed: int = 0, count: int = 3000, dim: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(30, dim)) * 3
    vectors = centers[rng.integers(0, 30, count)] + rng.normal(size=(count, dim))
    queries = centers[rng.integers(0, 30, 100)] + rng.normal(size=(100, dim))
    return vectors.astype(np.float32), queries.astype(np.float32)


# Measured with these seeds: IVF-PQ 0.678 raw, 1.0 re-ranked; HNSW 1.0 and 1.0.
@pytest.mark.parametrize(("config", "raw", "reranked"), [
    (IndexConfig("ivfpq", nlist=32, m=8, nbits=6, nprobe=8, rerank=100), 0.6, 0.95),
    (IndexConfig("hnsw", hnsw_m=16, ef_search=64, rerank=100), 0.95, 0.95),
])
def test_approximate_recall_at_20(config: IndexConfig, raw: float, reranked: float) -> None:
    vectors, queries = _clustered()
    assert recall_at_k(config, vectors, queries, 20, rerank=False) >= raw
    assert recall_at_k(config, vectors, queries, 20) >= reranked


def test_flat_recall_is_exact() -> None:
    vectors, queries = _clustered(count=500)
    assert recall_at_k(IndexConfig(), vectors, queries, 20, rerank=False) == 1.0


def test_ivfpq_with_too_few_training_vectors_is_a_clear_error() -> None:
    config = IndexConfig("ivfpq", nlist=64, m=8, nbits=6)
    index = new_index(config, 32)
    with pytest.raises(FaissIndexError, match=r"needs at least 64 training vectors, got 10"):
        train_index(index, np.zeros((10, 32), np.float32), config)


@pytest.mark.parametrize(("settings", "message"), [
    ({"kind": "lsh"}, "index kind must be one of"),
    ({"nlist": 0}, "nlist must be a positive integer"),
    ({"nprobe": 2.5}, "nprobe must be a positive integer"),
    ({"nbits": 20}, "nbits must be at most 16"),
    ({"kind": "ivfpq", "nlist": 100, "train_size": 50}, "train_size 50 is below the 256"),
])
def test_bad_settings_are_refused(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IndexConfig(**settings)


def test_settings_round_trip_and_unknown_keys() -> None:
    config = IndexConfig("hnsw", hnsw_m=8)
    assert IndexConfig.from_json(config.to_json()) == config
    with pytest.raises(ValueError, match=r"unknown index settings \['efsearch'\]"):
        IndexConfig.from_json({"efsearch": 3})
    with pytest.raises(ValueError, match="m \\(5\\) to divide the embedding size \\(32\\)"):
        new_index(IndexConfig("ivfpq", m=5), 32)


def test_index_file_round_trip_and_unreadable_file(tmp_path: Path) -> None:
    index = new_index(IndexConfig("hnsw", hnsw_m=8), 16)
    index.add_with_ids(np.eye(16, dtype=np.float32), np.arange(5, 21))
    write_index(index, tmp_path / "index.faiss")
    loaded = read_index(tmp_path / "index.faiss")
    assert describe(loaded) == {"kind": "hnsw", "dim": 16, "hnsw_m": 8}
    assert index_ids(loaded).tolist() == list(range(5, 21))
    (tmp_path / "bad.faiss").write_bytes(b"not an index")
    with pytest.raises(FaissIndexError, match=r"bad\.faiss: not a readable FAISS index"):
        read_index(tmp_path / "bad.faiss")


def test_metric_from_head_and_scaling() -> None:
    head = make_head("mixed")
    metric = MatchMetric.from_head(head)
    weight = (head.fc.weight[1] - head.fc.weight[0]).double().detach().numpy()
    assert np.array_equal(metric.weight, weight) and metric.signs == "mixed"
    assert MatchMetric.from_json(metric.to_json()) == metric
    rng = np.random.default_rng(0)
    a, g = rng.normal(size=24), rng.normal(size=(5, 24))
    negative = np.square(metric.index_vectors(a[None]) - metric.index_vectors(g)).sum(axis=1)
    positive = np.square((a - g) * metric.positive_scale).sum(axis=1)
    assert np.allclose(metric.margins(a, g), metric.bias - negative + positive)
    assert MatchMetric.from_head(make_head("negative")).signs == "negative"
