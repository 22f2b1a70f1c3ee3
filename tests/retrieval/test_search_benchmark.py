"""The search benchmark's parts (seeded chunks, streamed exact top-k, re-ranking from the store)
and a small run of tools/benchmark.py --what search."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from matchrcnn.benchmarks import search as search_benchmark
from matchrcnn.benchmarks.search_data import (
    ClusteredEmbeddings,
    ExactTopK,
    VectorStore,
    recall,
    rerank,
)


def test_chunks_are_seeded_and_streamed_exact_top_k_is_exact(tmp_path: Path) -> None:
    data = ClusteredEmbeddings(2500, dim=64, chunk=1000, seed=3)
    assert [data.chunk_size(c) for c in range(data.chunks)] == [1000, 1000, 500]
    assert np.array_equal(data.vectors(1), ClusteredEmbeddings(2500, 64, 1000, 3).vectors(1))
    assert not np.array_equal(data.vectors(1), data.vectors(2)[:1])
    everything = np.concatenate([data.vectors(c) for c in range(data.chunks)])
    assert everything.shape == (2500, 64) and everything.dtype == np.float32
    queries = data.queries(15)
    exact = ExactTopK(queries, 20)
    store = VectorStore(tmp_path / "store.f32", 64)
    for c in range(data.chunks):
        exact.add(data.vectors(c), c * 1000)
        store.append(data.vectors(c))
    store.finish()
    truth = exact.result()
    _, expected = faiss.knn(queries, everything, 20)
    assert recall(truth, expected) == 1.0
    assert np.array_equal(store.read(np.array([2499, 0, 1234])), everything[[2499, 0, 1234]])
    # re-ranking any candidate superset of the truth gives the truth back, in order
    candidates = np.concatenate([np.full((15, 5), -1), expected[:, ::-1],
                                 np.random.default_rng(0).integers(0, 2500, (15, 30))], axis=1)
    assert np.array_equal(rerank(queries, candidates, store, 20), expected)
    assert recall(candidates[:, 5:25], expected) == 1.0 and recall(candidates[:, 25:], expected) < 1
    store.close()


def test_a_small_run_prints_every_index(capsys) -> None:
    assert search_benchmark.main(
        ["--sizes", "3000", "--dim", "64", "--queries", "40", "--latency-queries", "3",
         "--chunk", "1000", "--kinds", "flat,ivfpq,hnsw", "--nlist", "16", "--m", "8",
         "--nprobe", "4,16", "--ef-search", "64", "--rerank", "100"],
        prog="benchmark") == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index(search_benchmark.HEADER.splitlines()[0]) + 2:-1]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in table]
    assert [row[1].split(",")[0] for row in rows] == ["flat (exact)", "IVF16", "IVF16", "HNSW32"]
    assert rows[0][7] == "1.0000"
    raw = [float(row[7]) for row in rows]
    reranked = [float(row[8]) for row in rows[1:]]
    assert all(0 < value <= 1 for value in raw + reranked)
    assert reranked[1] >= reranked[0] and reranked[1] >= raw[2]  # more lists, exact re-ranking
    assert lines[-1].startswith("peak resident memory of the process: ")
