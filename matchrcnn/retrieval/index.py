"""FAISS indexes for gallery embeddings: which kind, how it is built, saved, searched and measured.

Three kinds, chosen by ``IndexConfig``: ``flat`` (exact L2, the default), ``ivfpq`` (inverted lists
over product-quantised codes: memory and time for large galleries, approximate) and ``hnsw`` (a
graph over full vectors: fast, approximate). Every index is wrapped in ``IndexIDMap2`` so that
FAISS ids are the gallery's SQLite row ids. IVF-PQ must be trained; a gallery keeps a flat index
until it holds ``IndexConfig.training_threshold`` items and then trains on them (``active_kind``).
Approximate kinds hand ``rerank`` candidates per query to the exact match scoring.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from matchrcnn.utils.atomic import atomic_open
from matchrcnn.utils.errors import UsageError

INDEX_KINDS = ("flat", "ivfpq", "hnsw")
POINTS_PER_CENTROID = 39
"""Training vectors per centroid below which FAISS warns that k-means is unreliable."""


class FaissIndexError(RuntimeError):
    """An index that cannot be built, trained or read."""


@dataclass(frozen=True)
class IndexConfig:
    """Which FAISS index a gallery keeps and how it is searched.

    ivfpq: ``nlist`` inverted lists, ``m`` sub-quantisers (must divide the embedding size) of
    ``nbits`` bits, ``nprobe`` lists visited per query, trained once the gallery holds
    ``train_size`` items (default 39 per centroid). hnsw: ``hnsw_m`` links per node,
    ``ef_construction`` and ``ef_search`` beam widths. Both: ``rerank`` candidates per query
    scored exactly by the match network. The IVF-PQ defaults (PQ32, one list in 16 probed, 256
    candidates re-ranked) follow docs/benchmarks.md, where these proportions reached recall@20
    >= 0.985 against exact search with 512, 2,048 and 4,096 lists over 24k, 1M and 10M items:
    for millions of items raise ``nlist`` (about 4 sqrt(items)) and keep ``nprobe`` near
    ``nlist / 16``.
    """

    kind: str = "flat"
    nlist: int = 1024
    m: int = 32
    nbits: int = 8
    nprobe: int = 64
    train_size: int | None = None
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    rerank: int = 256

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise UsageError(f"index kind must be one of {INDEX_KINDS}, got {self.kind!r}")
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name != "kind" and value is not None and (
                    not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise UsageError(f"index setting {field.name} must be a positive integer, "
                                 f"got {value!r}")
        if self.nbits > 16:
            raise UsageError(f"index setting nbits must be at most 16, got {self.nbits}")
        if (self.kind == "ivfpq" and self.train_size is not None
                and self.train_size < self.min_training):
            raise UsageError(f"index setting train_size {self.train_size} is below the "
                             f"{self.min_training} vectors IVF{self.nlist},PQ{self.m}x{self.nbits}"
                             f" needs to train")

    @property
    def min_training(self) -> int:
        """Fewest vectors k-means accepts: one per IVF centroid and per PQ code."""
        return max(self.nlist, 2**self.nbits)

    @property
    def training_threshold(self) -> int:
        return self.train_size or POINTS_PER_CENTROID * self.min_training

    def check_dim(self, dim: int) -> None:
        if self.kind == "ivfpq" and dim % self.m:
            raise UsageError(f"IVF-PQ needs m ({self.m}) to divide the embedding size ({dim})")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> IndexConfig:
        unknown = sorted(set(data) - {field.name for field in fields(cls)})
        if unknown:
            raise UsageError(f"unknown index settings {unknown}; known: "
                             f"{[field.name for field in fields(cls)]}")
        return cls(**data)


def active_kind(config: IndexConfig, count: int) -> str:
    """The kind a gallery of ``count`` items holds: IVF-PQ waits for enough training vectors."""
    if config.kind == "ivfpq" and count < config.training_threshold:
        return "flat"
    return config.kind


def new_index(config: IndexConfig, dim: int, kind: str | None = None) -> faiss.IndexIDMap2:
    """An empty index of ``kind`` (default ``config.kind``); IVF-PQ still needs ``train_index``."""
    kind = kind or config.kind
    config.check_dim(dim)
    if kind == "flat":
        base = faiss.IndexFlatL2(dim)
    elif kind == "ivfpq":
        base = faiss.IndexIVFPQ(faiss.IndexFlatL2(dim), dim, config.nlist, config.m,
                                config.nbits)
        base.do_polysemous_training = False  # polysemous codes are not used, and slow to train
    elif kind == "hnsw":
        base = faiss.IndexHNSWFlat(dim, config.hnsw_m)
        base.hnsw.efConstruction = config.ef_construction
    else:
        raise ValueError(f"index kind must be one of {INDEX_KINDS}, got {kind!r}")
    return faiss.IndexIDMap2(base)


def train_index(index: faiss.Index, vectors: np.ndarray, config: IndexConfig) -> None:
    """Train an IVF-PQ index on ``vectors`` (index space); other kinds need no training."""
    if index.is_trained:
        return
    if len(vectors) < config.min_training:
        raise FaissIndexError(
            f"IVF{config.nlist},PQ{config.m}x{config.nbits} needs at least "
            f"{config.min_training} training vectors, got {len(vectors)}: lower nlist or nbits, "
            f"add more items, or use the flat index")
    index.train(np.ascontiguousarray(vectors, dtype=np.float32))


def describe(index: faiss.Index) -> dict[str, Any]:
    """Kind, dimension and shape parameters of an index, to compare with ``expected``."""
    base = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap2) else None
    if isinstance(base, faiss.IndexFlatL2):
        return {"kind": "flat", "dim": index.d}
    if isinstance(base, faiss.IndexIVFPQ):
        return {"kind": "ivfpq", "dim": index.d, "nlist": base.nlist, "m": base.pq.M,
                "nbits": base.pq.nbits}
    if isinstance(base, faiss.IndexHNSWFlat):
        return {"kind": "hnsw", "dim": index.d, "hnsw_m": base.hnsw.nb_neighbors(1)}
    return {"kind": type(base or index).__name__, "dim": index.d}


def expected(config: IndexConfig, dim: int, count: int) -> dict[str, Any]:
    """What ``describe`` should say of the index of a gallery of ``count`` items."""
    kind = active_kind(config, count)
    if kind == "ivfpq":
        return {"kind": kind, "dim": dim, "nlist": config.nlist, "m": config.m,
                "nbits": config.nbits}
    if kind == "hnsw":
        return {"kind": kind, "dim": dim, "hnsw_m": config.hnsw_m}
    return {"kind": kind, "dim": dim}


def is_exact(index: faiss.Index) -> bool:
    """Whether the index returns true L2 distances for every stored vector (flat)."""
    return describe(index)["kind"] == "flat"


def index_ids(index: faiss.Index) -> np.ndarray:
    """The ids an ``IndexIDMap2`` holds, in insertion order."""
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def search_parameters(config: IndexConfig, index: faiss.Index, k: int,
                      selector: faiss.IDSelector | None = None) -> faiss.SearchParameters:
    """Per-search settings of the index's kind (nprobe, efSearch), restricted by ``selector``."""
    kind = describe(index)["kind"]
    if kind == "ivfpq":
        params = faiss.SearchParametersIVF(nprobe=min(config.nprobe, config.nlist))
    elif kind == "hnsw":
        params = faiss.SearchParametersHNSW(efSearch=max(config.ef_search, k))
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    return params


def write_index(index: faiss.Index, path: str | os.PathLike) -> None:
    """Save atomically: a reader or a crash sees the previous file or the whole new one."""
    with atomic_open(path, "wb") as handle:
        faiss.write_index(index, faiss.PyCallbackIOWriter(handle.write))


def read_index(path: str | os.PathLike) -> faiss.Index:
    """Load an index file; an unreadable one raises FaissIndexError naming it."""
    path = Path(path)
    try:
        return faiss.read_index(str(path))
    except RuntimeError as error:
        raise FaissIndexError(f"{path}: not a readable FAISS index: {error}") from error


def recall_at_k(config: IndexConfig, vectors: np.ndarray, queries: np.ndarray, k: int = 20,
                rerank: bool = True) -> float:
    """Mean share of each query's exact L2 top k that an index of ``config`` over ``vectors``
    returns in its top k: raw (``rerank=False``) or after exact re-ranking of ``config.rerank``
    candidates, as the gallery search does. Trains IVF-PQ on ``vectors`` themselves.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(vectors))
    exact = faiss.IndexFlatL2(vectors.shape[1])
    exact.add(vectors)
    _, truth = exact.search(queries, k)
    index = new_index(config, vectors.shape[1])
    train_index(index, vectors, config)
    index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    width = max(k, config.rerank) if rerank else k
    _, found = index.search(queries, width, params=search_parameters(config, index, width))
    hits = 0
    for query, truth_row, found_row in zip(queries, truth, found, strict=True):
        candidates = found_row[found_row >= 0]
        if rerank:
            distances = np.square(vectors[candidates] - query, dtype=np.float64).sum(axis=1)
            candidates = candidates[np.argsort(distances, kind="stable")]
        hits += len(np.intersect1d(candidates[:k], truth_row))
    return hits / (k * len(queries))
