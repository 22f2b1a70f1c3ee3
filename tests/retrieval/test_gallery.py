"""Incremental builds, resuming, and recovery from a crash at each write step."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
import pytest

import matchrcnn.retrieval.gallery as gallery_module
from matchrcnn.retrieval import Gallery, GalleryBusyError, GalleryError, IndexConfig, search
from matchrcnn.retrieval.gallery import DATABASE_FILE, INDEX_FILE, MANIFEST_FILE
from matchrcnn.retrieval.index import describe
from matchrcnn.utils.atomic import atomic_open
from tests.retrieval.conftest import (
    DIM,
    FINGERPRINT,
    assert_consistent,
    make_head,
    make_images,
    new_gallery,
    stored_content,
)


class Crash(BaseException):
    """A simulated kill: a BaseException, so no ``except Exception`` in the code catches it."""


def build(directory: Path, images: list, batch: int = 4, config: IndexConfig | None = None,
          ) -> None:
    """What tools/build_gallery.py does: open or create, then add pending images in batches."""
    from matchrcnn.retrieval import MatchMetric

    metric = MatchMetric.from_head(make_head("negative"))
    with Gallery.open_or_create(directory, FINGERPRINT, metric, config) as gallery:
        todo = gallery.pending(images)
        for start in range(0, len(todo), batch):
            gallery.add_images(todo[start:start + batch])


def _reference(tmp_path: Path, images: list, config: IndexConfig | None = None) -> list[tuple]:
    build(tmp_path / "reference", images, config=config)
    with Gallery.open(tmp_path / "reference") as gallery:
        return stored_content(gallery)


def _content(directory: Path) -> list[tuple]:
    with Gallery.open(directory) as gallery:
        return stored_content(gallery)


def test_incremental_add_skips_known_images(tmp_path: Path) -> None:
    images = make_images(12)
    with new_gallery(tmp_path / "g") as gallery:
        assert gallery.add_images(images[:5]).images == 5
        again = [*images[3:8], images[7]]  # 3, 4 known; 7 twice in the batch
        result = gallery.add_images(again)
        assert (result.images, result.items, result.skipped) == (3, 9, 3)
        renamed = make_images(1, start=9)[0]
        moved = type(renamed)("elsewhere/000009.jpg", 10, renamed.boxes, renamed.categories,
                              renamed.scores, renamed.embeddings)
        gallery.add_images([moved])  # same image id, another path: known
        assert gallery.add_images([]).images == 0
        assert [image.path for image in gallery.pending(images)] == [
            image.path for image in images[8:] if image.image_id != 10]
        assert gallery.item_count == 3 * 9 and gallery.image_count == 9
    assert_consistent(tmp_path / "g")


def test_image_without_items_is_recorded(tmp_path: Path) -> None:
    empty = make_images(1, items=0)[0]
    with new_gallery(tmp_path / "g") as gallery:
        assert gallery.add_images([empty]).images == 1
        assert gallery.pending([empty]) == [] and gallery.item_count == 0


def test_failed_images_are_reported_and_retried(tmp_path: Path) -> None:
    images = make_images(2)
    with new_gallery(tmp_path / "g") as gallery:
        gallery.mark_failed(images[0].path, images[0].image_id, "cannot decode")
        assert gallery.failures() == {images[0].path: "cannot decode"}
        assert gallery.pending(images) == images
        gallery.add_images(images)
        assert gallery.failures() == {} and gallery.image_count == 2
        gallery.mark_failed(images[1].path, images[1].image_id, "late")  # indexed: left alone
        assert gallery.failures() == {}
    assert json.loads((tmp_path / "g" / MANIFEST_FILE).read_text())["images"] == 2


def test_resume_after_interrupted_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = make_images(21)
    expected = _reference(tmp_path, images)
    calls = []
    original = Gallery._save_index

    def interrupted(self: Gallery) -> None:
        calls.append(1)
        if len(calls) == 4:  # the third batch is committed, its index not saved
            raise KeyboardInterrupt
        original(self)

    monkeypatch.setattr(Gallery, "_save_index", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(tmp_path / "g", images)
    monkeypatch.setattr(Gallery, "_save_index", original)
    with Gallery.open(tmp_path / "g") as gallery:
        assert len(gallery.pending(images)) == 21 - 12
    build(tmp_path / "g", images)
    assert _content(tmp_path / "g") == expected
    assert_consistent(tmp_path / "g")


def crash(*args: object) -> None:
    raise Crash


def _half_written(path: Path, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data[: len(data) // 2])
        raise Crash


STEPS: dict[str, Callable[[pytest.MonkeyPatch], None]] = {}


def step(name: str) -> Callable:
    def register(function: Callable[[pytest.MonkeyPatch], None]) -> Callable:
        STEPS[name] = function
        return function
    return register


@step("inside the transaction")
def _(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Gallery._insert_items
    seen = []

    def crash_on_second(self: Gallery, image: object, row: int) -> list[int]:
        seen.append(row)
        if len(seen) == 2:
            raise Crash
        return original(self, image, row)

    monkeypatch.setattr(Gallery, "_insert_items", crash_on_second)


@step("after commit")
def _(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Gallery, "_extend_index", crash)


@step("after the in-memory index")
def _(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Gallery._extend_index

    def extend_then_crash(self: Gallery, *args: object) -> None:
        original(self, *args)
        raise Crash

    monkeypatch.setattr(Gallery, "_extend_index", extend_then_crash)


@step("while writing the index file")
def _(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gallery_module, "write_index", lambda index, path: _half_written(
        path, faiss.serialize_index(index).tobytes()))


@step("after the index file")
def _(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Gallery, "_save_manifest", crash)


@step("while writing the manifest")
def _(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gallery_module, "write_json_atomic",
                        lambda path, data: _half_written(path, json.dumps(data).encode()))


@pytest.mark.parametrize("config", [IndexConfig(),
                                    IndexConfig("ivfpq", nlist=4, m=4, nbits=4, train_size=40)],
                         ids=["flat", "ivfpq"])
@pytest.mark.parametrize("crash_step", list(STEPS))
def test_crash_at_each_write_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  crash_step: str, config: IndexConfig) -> None:
    """A crash in the batch that crosses the IVF-PQ training threshold, at every write step,
    leaves a gallery that reopens consistent; re-running the build loses and doubles nothing."""
    images = make_images(20)
    expected = _reference(tmp_path, images, config)
    directory = tmp_path / "g"
    build(directory, images[:12], config=config)  # 36 items, under the threshold of 40
    with Gallery.open(directory, writable=True) as gallery:
        before = stored_content(gallery)
        with monkeypatch.context() as patch:
            STEPS[crash_step](patch)
            with pytest.raises(Crash):
                gallery.add_images(images[12:16])
    assert_consistent(directory)
    after = _content(directory)
    assert after in (before, expected[: len(before) + 12])
    build(directory, images, config=config)
    assert _content(directory) == expected
    assert_consistent(directory)
    with Gallery.open(directory) as gallery:
        assert describe(gallery.index)["kind"] == config.kind


def test_crash_while_creating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = make_images(6)
    with monkeypatch.context() as patch:
        patch.setattr(Gallery, "_save_index", crash)
        with pytest.raises(Crash):
            build(tmp_path / "g", images)
    assert not (tmp_path / "g" / INDEX_FILE).exists()
    build(tmp_path / "g", images)
    assert _content(tmp_path / "g") == _reference(tmp_path, images)
    with monkeypatch.context() as patch:
        patch.setattr(gallery_module, "_SCHEMA", gallery_module._SCHEMA + "; CREATE TABLE x (")
        with pytest.raises(sqlite3.OperationalError):
            build(tmp_path / "h", images)
    build(tmp_path / "h", images)  # the aborted creation left an empty database: created anew
    assert_consistent(tmp_path / "h")


def test_damaged_or_foreign_index_files_are_rebuilt(tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    images = make_images(10)
    build(tmp_path / "g", images)
    build(tmp_path / "other", make_images(3, seed=7))
    expected = _content(tmp_path / "g")
    queries = np.random.default_rng(0).normal(size=(4, DIM))
    with Gallery.open(tmp_path / "g") as gallery:
        hits = search(gallery, queries, 10)
    index = tmp_path / "g" / INDEX_FILE
    foreign = (tmp_path / "other" / INDEX_FILE).read_bytes()  # ids 1..9: a prefix of 1..30
    for damage, problem in ((lambda: index.write_bytes(b"garbage"), "is unreadable"),
                            (index.unlink, "is missing"),
                            (lambda: index.write_bytes(foreign), "holds other vectors")):
        damage()
        (tmp_path / "g" / f".{INDEX_FILE}.abc.tmp").write_bytes(b"left by a killed writer")
        caplog.clear()
        with Gallery.open(tmp_path / "g") as gallery:  # read-only: repaired in memory only
            assert problem in caplog.text and "rebuilding it from gallery.sqlite" in caplog.text
            assert search(gallery, queries, 10) == hits
            vectors = gallery.metric.index_vectors(gallery.embeddings([1, 30]))
            assert np.array_equal(gallery.index.reconstruct(1), vectors[0])
        assert_consistent(tmp_path / "g")
        assert _content(tmp_path / "g") == expected


def test_ivfpq_gallery_trains_at_its_threshold(tmp_path: Path) -> None:
    config = IndexConfig("ivfpq", nlist=4, m=4, nbits=4, train_size=60, rerank=40)
    images = make_images(40, items=2)
    with new_gallery(tmp_path / "g", config=config) as gallery:
        gallery.add_images(images[:25])
        assert describe(gallery.index)["kind"] == "flat"
        gallery.add_images(images[25:])
        assert describe(gallery.index)["kind"] == "ivfpq"
        queries = np.random.default_rng(1).normal(size=(20, DIM))
        from matchrcnn.retrieval import search_recall

        assert search_recall(gallery, queries, 20) >= 0.9
        gallery.set_index_config(IndexConfig())
        assert describe(gallery.index)["kind"] == "flat"
        assert search_recall(gallery, queries, 20) == 1.0
    assert_consistent(tmp_path / "g")


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    with new_gallery(tmp_path / "g") as gallery:
        with pytest.raises(GalleryBusyError, match="being written by another process"):
            Gallery.open(tmp_path / "g", writable=True)
        with Gallery.open(tmp_path / "g") as reader, pytest.raises(GalleryError,
                                                                   match="opened read-only"):
            reader.add_images(make_images(1))
        gallery.add_images(make_images(1))
    with Gallery.open(tmp_path / "g", writable=True) as gallery:
        assert gallery.item_count == 3
    assert (tmp_path / "g" / DATABASE_FILE).is_file()
