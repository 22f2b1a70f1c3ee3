"""Gallery search at scale: build time, memory, latency, throughput and recall@20 against exact
search, for the flat index and the approximate ones, on synthetic 256-d embeddings.

The embeddings are clustered like garments of 13 categories and many styles (search_data.py says
how), generated in seeded chunks and streamed into each index, so that no size ever holds its
whole matrix: the exact top 20 of the recall queries comes from chunked brute force, and the exact
vectors for re-ranking approximate candidates live in a file on disk, read back per candidate
(the gallery keeps them in SQLite and does the same). Indexes come from the gallery's own code
(``matchrcnn.retrieval.index``: IndexIDMap2 over FAISS). The flat index is built only while it
fits --flat-limit-gib; above that its row reports the streamed exact scan.

Per index and search setting: build seconds (training + adding, generation excluded), memory (the
process's anonymous resident memory gained while building it), single-query latency (median of
--latency-queries, re-ranking included), queries per second for one batch of all --queries, and
recall@20 against exact: raw (the index's own top 20) and after exact re-ranking of --rerank
candidates, as the gallery search does.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import faiss
import numpy as np

from matchrcnn.benchmarks.search_data import (
    ClusteredEmbeddings,
    ExactTopK,
    VectorStore,
    recall,
    rerank,
)
from matchrcnn.retrieval.index import IndexConfig, new_index, search_parameters, train_index

K = 20


@dataclass
class Row:
    size: int
    index: str
    setting: str
    build_s: float | None
    memory_mib: float | None
    latency_ms: float | None
    qps: float
    recall_raw: float
    recall_reranked: float | None

    def line(self) -> str:
        def value(number: float | None, spec: str) -> str:
            return "-" if number is None else format(number, spec)

        return (f"| {self.size:,} | {self.index} | {self.setting} | {value(self.build_s, '.1f')} "
                f"| {value(self.memory_mib, ',.0f')} | {value(self.latency_ms, '.2f')} "
                f"| {self.qps:,.0f} | {self.recall_raw:.4f} "
                f"| {value(self.recall_reranked, '.4f')} |")


HEADER = ("| items | index | search setting | build s | memory MiB | latency ms (1 query) "
          "| queries/s (batch) | recall@20 raw | recall@20 re-ranked |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def _anonymous_rss_mib() -> float:
    """Resident anonymous memory now (heap, numpy arrays, FAISS indexes; not file pages)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no RssAnon line")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def auto_nlist(size: int) -> int:
    """Inverted lists: the largest power of two <= 4 sqrt(size), between 16 and 4096, and small
    enough to train on 39 vectors per list."""
    nlist = 16
    while nlist * 2 <= min(4 * size**0.5, 4096, size / 39):
        nlist *= 2
    return nlist


class Run:
    """One gallery size: its data, queries, exact answers and the vector store."""

    def __init__(self, args: argparse.Namespace, size: int, work: Path) -> None:
        self.args, self.size = args, size
        self.data = ClusteredEmbeddings(size, args.dim, args.chunk, args.seed)
        self.queries = self.data.queries(args.queries)
        self.store = VectorStore(work / f"vectors_{size}.f32", args.dim)
        self.exact_s = 0.0
        self.truth: np.ndarray | None = None

    def chunks(self):
        for index in range(self.data.chunks):
            yield index * self.data.chunk, self.data.vectors(index)

    def reference(self, flat: faiss.Index | None) -> float | None:
        """One pass: exact top 20 by brute force, the store, and the flat index if any; returns
        the flat index's build seconds."""
        exact, build = ExactTopK(self.queries, K), 0.0
        for first, vectors in self.chunks():
            start = time.perf_counter()
            exact.add(vectors, first)
            self.exact_s += time.perf_counter() - start
            self.store.append(vectors)
            if flat is not None:
                start = time.perf_counter()
                flat.add_with_ids(vectors, np.arange(first, first + len(vectors), dtype=np.int64))
                build += time.perf_counter() - start
        self.truth = exact.result()
        self.store.finish()
        return build if flat is not None else None

    def training_sample(self, count: int) -> np.ndarray:
        """The first ``count`` vectors: chunks are drawn alike (each its own styles of the same
        categories), so the leading ones are a fair sample, and only those are generated."""
        needed = -(-count // self.data.chunk)
        return np.concatenate([self.data.vectors(index) for index in range(needed)])[:count]

    def measure(self, name: str, setting: str, index: faiss.Index, params: faiss.SearchParameters,
                width: int, build_s: float | None, memory_mib: float | None,
                exact_rerank: bool) -> Row:
        """Latency, throughput and recall of one search setting."""
        _, raw = index.search(self.queries, K, params=params)
        start = time.perf_counter()
        found = self._search(index, self.queries, params, width, exact_rerank)
        qps = len(self.queries) / (time.perf_counter() - start)
        latencies = []
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)  # one query, one core: as a server answers each request
        try:
            for query in self.queries[:self.args.latency_queries]:
                start = time.perf_counter()
                self._search(index, query[None], params, width, exact_rerank)
                latencies.append(time.perf_counter() - start)
        finally:
            faiss.omp_set_num_threads(threads)
        return Row(self.size, name, setting, build_s, memory_mib,
                   1000 * float(np.median(latencies)), qps, recall(raw, self.truth),
                   recall(found, self.truth) if exact_rerank else None)

    def _search(self, index: faiss.Index, queries: np.ndarray, params: faiss.SearchParameters,
                width: int, exact_rerank: bool) -> np.ndarray:
        _, candidates = index.search(queries, width, params=params)
        return rerank(queries, candidates, self.store, K) if exact_rerank else candidates[:, :K]


def _flat_rows(run: Run, args: argparse.Namespace) -> list[Row]:
    gib = run.size * args.dim * 4 / 2**30
    fits = "flat" in args.kinds and gib <= args.flat_limit_gib
    before = _anonymous_rss_mib()
    flat = new_index(IndexConfig("flat"), args.dim) if fits else None
    build_s = run.reference(flat)
    rows = []
    if flat is not None:
        memory = _anonymous_rss_mib() - before
        rows.append(run.measure("flat (exact)", "-", flat, faiss.SearchParameters(), K, build_s,
                                memory, exact_rerank=False))
        del flat
    elif "flat" in args.kinds:
        print(f"  flat index not built at {run.size:,} items: it would hold {gib:.1f} GiB "
              f"(limit --flat-limit-gib {args.flat_limit_gib}); exact top 20 by streamed "
              f"brute force instead")
        rows.append(Row(run.size, "exact scan, streamed (no index)", "-", None, None, None,
                        len(run.queries) / run.exact_s, 1.0, None))
    gc.collect()
    return rows


def _approximate_rows(run: Run, args: argparse.Namespace, kind: str) -> list[Row]:
    if kind == "ivfpq":
        nlist = args.nlist or auto_nlist(run.size)
        config = IndexConfig("ivfpq", nlist=nlist, m=args.m, nbits=args.nbits,
                             rerank=args.rerank)
        train_count = min(run.size, max(config.min_training * 39, args.train_per_list * nlist))
        name = f"IVF{nlist},PQ{args.m}x{args.nbits}"
    else:
        config = IndexConfig("hnsw", hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
                             rerank=args.rerank)
        train_count = 0
        name = f"HNSW{args.hnsw_m},Flat (efConstruction {args.ef_construction})"
    before = _anonymous_rss_mib()
    index = new_index(config, args.dim)
    train_s = add_s = 0.0
    if train_count:
        sample = run.training_sample(train_count)
        start = time.perf_counter()
        train_index(index, sample, config)
        train_s = time.perf_counter() - start
        del sample
        name += f", trained on {train_count:,}"
    for first, vectors in run.chunks():
        start = time.perf_counter()
        index.add_with_ids(vectors, np.arange(first, first + len(vectors), dtype=np.int64))
        add_s += time.perf_counter() - start
    del vectors
    gc.collect()
    memory = _anonymous_rss_mib() - before
    build_s = train_s + add_s
    print(f"  {name}: training {train_s:.1f} s, adding {add_s:.1f} s, {memory:,.0f} MiB",
          flush=True)
    rows = []
    for value in args.nprobe if kind == "ivfpq" else args.ef_search:
        if kind == "ivfpq":  # PQ distances are approximate: re-rank --rerank candidates exactly
            width, label = args.rerank, f"nprobe {value}, re-rank {args.rerank}"
            params = search_parameters(replace(config, nprobe=value), index, width)
        else:  # the gallery asks HNSW for its re-rank width, which sets efSearch
            width, label = value, f"efSearch {value}, re-rank {value}"
            params = search_parameters(replace(config, ef_search=value), index, width)
        rows.append(run.measure(name, label, index, params, width, build_s, memory,
                                exact_rerank=True))
        print(rows[-1].line(), flush=True)
        build_s = memory = None  # said once per index
    del index
    gc.collect()
    return rows


def _integers(text: str) -> list[int]:
    return [int(float(value)) for value in text.split(",") if value]


def parse_args(argv: list[str] | None, prog: str | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=_integers, default=[24_000, 1_000_000, 10_000_000],
                        help="gallery sizes, comma-separated (default 24000,1000000,10000000)")
    parser.add_argument("--kinds", type=lambda s: s.split(","), default=["flat", "ivfpq"],
                        help="indexes: flat, ivfpq, hnsw (default flat,ivfpq)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--queries", type=int, default=1000, help="recall and batch queries")
    parser.add_argument("--latency-queries", type=int, default=100)
    parser.add_argument("--chunk", type=int, default=100_000, help="vectors generated at a time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--flat-limit-gib", type=float, default=4.0,
                        help="largest flat index held in memory")
    parser.add_argument("--nlist", type=int, default=0, help="IVF lists (0: auto per size)")
    parser.add_argument("--m", type=int, default=32, help="PQ sub-quantisers")
    parser.add_argument("--nbits", type=int, default=8)
    parser.add_argument("--nprobe", type=_integers, default=[16, 32, 64, 128, 256],
                        help="IVF lists visited, comma-separated sweep")
    parser.add_argument("--train-per-list", type=int, default=64,
                        help="IVF-PQ training vectors per list")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", type=_integers, default=[64, 128, 256])
    parser.add_argument("--rerank", type=int, default=256,
                        help="candidates re-ranked exactly per query")
    parser.add_argument("--threads", type=int, default=0, help="FAISS threads (0: all cores)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where the vector store files go (default: a temporary directory)")
    args = parser.parse_args(argv)
    unknown = set(args.kinds) - {"flat", "ivfpq", "hnsw"}
    if unknown:
        parser.error(f"unknown --kinds {sorted(unknown)}")
    if min(args.sizes, default=0) < 1 or args.queries < 1 or args.rerank < K:
        parser.error(f"sizes and --queries must be positive and --rerank at least {K}")
    return args


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    print(f"date {date.today()}  machine {platform.machine()}, {os.cpu_count()} cores, "
          f"{memory_gib:.1f} GiB, faiss {faiss.__version__} with {faiss.omp_get_max_threads()} "
          f"threads, python {platform.python_version()}")
    print(f"synthetic clustered embeddings, {args.dim}-d, seed {args.seed}; {args.queries} "
          f"queries; k = {K}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="matchrcnn-search-bench-",
                                     dir=args.work_dir) as work:
        for size in args.sizes:
            print(f"{size:,} items:", flush=True)
            run = Run(args, size, Path(work))
            try:
                size_rows = _flat_rows(run, args)
                for row in size_rows:
                    print(row.line(), flush=True)
                for kind in (k for k in args.kinds if k != "flat"):
                    size_rows += _approximate_rows(run, args, kind)
                print(f"  vector store for re-ranking: {run.store.nbytes / 2**30:.2f} GiB on "
                      f"disk; exact reference {run.exact_s:.1f} s; peak RSS so far "
                      f"{_peak_rss_mib():,.0f} MiB", flush=True)
            finally:
                run.store.close()
                run.store.path.unlink(missing_ok=True)
            rows += size_rows
    print(HEADER)
    for row in rows:
        print(row.line())
    print(f"peak resident memory of the process: {_peak_rss_mib():,.0f} MiB")
    return 0
