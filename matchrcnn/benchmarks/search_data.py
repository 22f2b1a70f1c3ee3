"""Synthetic gallery embeddings with the structure of real ones, generated in seeded chunks, and
the two things a benchmark at 10M items needs without holding them: a vector store on disk for
exact re-ranking, and exact top-k by streaming brute force.

Structure: items are garments of 13 categories and many styles. Each lives in a 32-d latent space
(a category centre, a style around it, the shop photo of the item around its style) mapped into
the embedding space by a fixed random orthonormal projection, plus a little isotropic noise in all
256 dimensions: low intrinsic dimension inside full-rank vectors, as trained embeddings have.
Queries are consumer photos of gallery styles, noisier than the shop photos. Each chunk has its
own styles (chunk ``c`` is a pure function of the seed and ``c``), so any chunk can be regenerated
alone; styles average 3 shop items each.
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

from matchrcnn.data.categories import NUM_CATEGORIES

LATENT = 32
CATEGORY_SPREAD = 2.0
STYLE_SPREAD = 1.0
SHOP_SPREAD = 0.3
CONSUMER_SPREAD = 0.45
NOISE = 0.05
ITEMS_PER_STYLE = 3


class ClusteredEmbeddings:
    """``size`` embeddings of ``dim`` float32 in chunks of ``chunk`` (see the module notes)."""

    def __init__(self, size: int, dim: int = 256, chunk: int = 100_000, seed: int = 0) -> None:
        if size < 1 or chunk < 1 or dim < LATENT:
            raise ValueError(f"need size >= 1, chunk >= 1 and dim >= {LATENT}")
        self.size, self.dim, self.chunk, self.seed = size, dim, min(chunk, size), seed
        rng = np.random.default_rng([seed, 0])
        basis, _ = np.linalg.qr(rng.standard_normal((dim, LATENT)))
        self.projection = np.ascontiguousarray(basis.T, dtype=np.float32)
        self.categories = rng.normal(0, CATEGORY_SPREAD, (NUM_CATEGORIES, LATENT))

    @property
    def chunks(self) -> int:
        return -(-self.size // self.chunk)

    def chunk_size(self, index: int) -> int:
        return min(self.chunk, self.size - index * self.chunk)

    def _styles(self, index: int) -> np.ndarray:
        """The style centres (latent) of chunk ``index``."""
        count = max(1, self.chunk_size(index) // ITEMS_PER_STYLE)
        rng = np.random.default_rng([self.seed, 1, index])
        category = rng.integers(0, NUM_CATEGORIES, count)
        return self.categories[category] + rng.normal(0, STYLE_SPREAD, (count, LATENT))

    def _embed(self, latent: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = rng.standard_normal((len(latent), self.dim), dtype=np.float32)
        noise *= NOISE
        noise += latent.astype(np.float32) @ self.projection
        return noise

    def vectors(self, index: int) -> np.ndarray:
        """Chunk ``index``: its shop items, (chunk_size, dim) float32; ids start at
        ``index * chunk``."""
        styles = self._styles(index)
        rng = np.random.default_rng([self.seed, 2, index])
        members = rng.integers(0, len(styles), self.chunk_size(index))
        latent = styles[members] + rng.normal(0, SHOP_SPREAD, (len(members), LATENT))
        return self._embed(latent, rng)

    def queries(self, count: int) -> np.ndarray:
        """Consumer photos of ``count`` gallery styles drawn across all chunks, (count, dim)."""
        rng = np.random.default_rng([self.seed, 3])
        chunks = rng.integers(0, self.chunks, count)
        latent = np.empty((count, LATENT))
        for position, index in enumerate(chunks):
            styles = self._styles(int(index))
            latent[position] = styles[rng.integers(0, len(styles))]
        latent += rng.normal(0, CONSUMER_SPREAD, latent.shape)
        return self._embed(latent, rng)


class ExactTopK:
    """Exact L2 top ``k`` of a fixed set of queries over vectors seen chunk by chunk."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        self.queries = np.ascontiguousarray(queries, dtype=np.float32)
        self.k = k
        self._heap = faiss.ResultHeap(len(queries), k)

    def add(self, vectors: np.ndarray, first_id: int) -> None:
        distances, ids = faiss.knn(self.queries, vectors, min(self.k, len(vectors)))
        if ids.shape[1] < self.k:
            pad = self.k - ids.shape[1]
            distances = np.pad(distances, ((0, 0), (0, pad)), constant_values=np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        self._heap.add_result(distances, np.where(ids >= 0, ids + first_id, -1))

    def result(self) -> np.ndarray:
        """(queries, k) ids, nearest first."""
        self._heap.finalize()
        return self._heap.I.copy()


class VectorStore:
    """float32 vectors appended to a file and read back by id with ``pread``: exact vectors for
    re-ranking without holding them in memory (nor mapping them: the pages stay the OS's cache,
    not the process's memory)."""

    def __init__(self, path: str | os.PathLike, dim: int) -> None:
        self.path = Path(path)
        self.dim = dim
        self._row = 4 * dim
        self._writer = open(self.path, "wb")  # noqa: SIM115 - closed by finish()
        self._reader: int | None = None

    def append(self, vectors: np.ndarray) -> None:
        self._writer.write(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())

    def finish(self) -> None:
        self._writer.close()
        self._reader = os.open(self.path, os.O_RDONLY)

    def read(self, ids: np.ndarray) -> np.ndarray:
        """Rows ``ids`` (any order), (len(ids), dim) float32."""
        buffer = bytearray(self._row * len(ids))
        for position, row in enumerate(ids.tolist()):
            buffer[position * self._row:(position + 1) * self._row] = os.pread(
                self._reader, self._row, row * self._row)
        return np.frombuffer(buffer, dtype=np.float32).reshape(len(ids), self.dim)

    def close(self) -> None:
        if not self._writer.closed:
            self._writer.close()
        if self._reader is not None:
            os.close(self._reader)
            self._reader = None

    @property
    def nbytes(self) -> int:
        return self.path.stat().st_size


def rerank(queries: np.ndarray, candidates: np.ndarray, store: VectorStore, k: int,
           ) -> np.ndarray:
    """The exact top ``k`` of each query among its distinct candidate ids (-1 = none), read from
    ``store``; (queries, k) ids, nearest first (lower id first on ties), -1 where fewer."""
    unique = np.unique(candidates[candidates >= 0])
    vectors = store.read(unique)
    result = np.full((len(queries), k), -1, dtype=np.int64)
    for position, (query, row) in enumerate(zip(queries, candidates, strict=True)):
        row = np.unique(row[row >= 0])
        found = vectors[np.searchsorted(unique, row)]
        distances = np.square(found - query.astype(np.float64)).sum(axis=1)
        best = row[np.argsort(distances, kind="stable")[:k]]
        result[position, :len(best)] = best
    return result


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each query's true top k found in its top k."""
    hits = sum(len(np.intersect1d(row[row >= 0], true)) for row, true in zip(found, truth,
                                                                              strict=True))
    return hits / truth.size
