"""Small galleries of random embeddings and similarity heads with chosen weight signs."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from pathlib import Path

import faiss
import numpy as np
import pytest
import torch

from matchrcnn.modeling.heads.match import SimilarityHead
from matchrcnn.retrieval import Gallery, IndexConfig, MatchMetric, ShopImage
from matchrcnn.retrieval.gallery import DATABASE_FILE, INDEX_FILE, MANIFEST_FILE
from matchrcnn.retrieval.index import index_ids, read_index

DIM = 24
FINGERPRINT = "f" * 64


@pytest.fixture(autouse=True)
def one_faiss_thread() -> Iterator[None]:
    """FAISS's OpenMP threads only cost time on these tiny inputs (and spin on a busy machine)."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(threads)


def make_head(signs: str, seed: int = 0, dim: int = DIM) -> SimilarityHead:
    """A SimilarityHead whose same-minus-different weights are all "negative", all "positive"
    or "mixed" (a third positive)."""
    generator = torch.Generator().manual_seed(seed)
    base = torch.rand(dim, generator=generator)
    delta = 0.1 + torch.rand(dim, generator=generator)
    sign = {"negative": -torch.ones(dim), "positive": torch.ones(dim),
            "mixed": torch.where(torch.arange(dim) % 3 == 0, 0.3, -1.0)}[signs]
    head = SimilarityHead(dim)
    with torch.no_grad():
        head.fc.weight[0] = base
        head.fc.weight[1] = base + sign * delta
        head.fc.bias[:] = torch.tensor([0.25, 1.5])
    return head


def head_ranking(head: SimilarityHead, queries: np.ndarray, vectors: np.ndarray,
                 rows: np.ndarray, k: int, allowed: Sequence[np.ndarray | None] | None = None,
                 ) -> list[list[int]]:
    """Brute force with the head itself (float64) over every item: descending same-minus-
    different logit, lower row first on ties."""
    double = copy.deepcopy(head).double()
    with torch.no_grad():
        logits = double.pairwise(torch.from_numpy(queries.astype(np.float64)),
                                 torch.from_numpy(vectors.astype(np.float64)))
    margins = (logits[..., 1] - logits[..., 0]).numpy()
    ranked = []
    for position, margin in enumerate(margins):
        keep = np.ones(len(rows), bool) if allowed is None or allowed[position] is None else (
            np.isin(rows, allowed[position]))
        order = np.lexsort((rows[keep], -margin[keep]))[:k]
        ranked.append(rows[keep][order].tolist())
    return ranked


def make_images(count: int, items: int = 3, seed: int = 0, pool: np.ndarray | None = None,
                start: int = 0, dim: int = DIM) -> list[ShopImage]:
    """Shop images start..start+count-1 with ``items`` items each; embeddings drawn from
    ``pool`` (to make exact ties) or fresh normal vectors; categories cycle through 1..13."""
    rng = np.random.default_rng(seed)
    images = []
    for number in range(start, start + count):
        if pool is not None:
            embeddings = pool[rng.integers(0, len(pool), items)]
        else:
            embeddings = rng.normal(size=(items, dim)).astype(np.float32)
        corner = rng.uniform(0, 50, (items, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(5, 50, (items, 2))], axis=1)
        categories = (number * items + np.arange(items)) % 13 + 1
        images.append(ShopImage(f"shop/{number:06d}.jpg", number + 1, boxes, categories,
                                rng.uniform(0.5, 1, items), embeddings, pair_id=number // 2,
                                styles=np.arange(items) % 3))
    return images


def new_gallery(directory: Path, signs: str = "negative", config: IndexConfig | None = None,
                ) -> Gallery:
    return Gallery.create(directory, FINGERPRINT, MatchMetric.from_head(make_head(signs)), config)


def snapshot(directory: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())
            if path.is_file()}


def stored_content(gallery: Gallery) -> list[tuple]:
    """Every item as (row, path, image id, box, category, score, pair id, style, embedding)."""
    rows = [int(row) for chunk, _ in gallery.iter_embeddings() for row in chunk]
    embeddings = gallery.embeddings(rows)
    return [(item.row, item.image_path, item.image_id, item.box, item.category, item.score,
             item.pair_id, item.style, vector.tobytes())
            for item, vector in zip(gallery.items(rows), embeddings, strict=True)]


def assert_consistent(directory: Path) -> None:
    """Reopened for writing (as a build would), the index, the index file and the manifest
    all agree with the database, and no item is stored twice."""
    with Gallery.open(directory, FINGERPRINT, DIM, writable=True) as gallery:
        content = stored_content(gallery)
        rows = np.array([row for row, *_ in content], dtype=np.int64)
        assert len({entry[1:] for entry in content}) == len(content)
        assert np.array_equal(index_ids(gallery.index), rows)
        assert np.array_equal(index_ids(read_index(directory / INDEX_FILE)), rows)
        assert gallery.index.ntotal == len(rows) == gallery.item_count
        manifest = (directory / MANIFEST_FILE).read_text()
        assert f'"items": {len(rows)}' in manifest
        assert f'"images": {gallery.image_count}' in manifest
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    assert (directory / DATABASE_FILE).is_file()
