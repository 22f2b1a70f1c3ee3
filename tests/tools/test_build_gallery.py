"""tools/build_gallery.py as a user runs it: from a split or a folder, incremental, resumable,
refusing another model's gallery, going on past unreadable images."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from matchrcnn.config import setup_cfg
from matchrcnn.data.catalog import DatasetCatalog
from matchrcnn.retrieval import Gallery
from matchrcnn.retrieval.gallery import DATABASE_FILE, INDEX_FILE, MANIFEST_FILE
from matchrcnn.retrieval.index import index_ids, read_index
from matchrcnn.retrieval.model import RetrievalModel
from tests.modeling.conftest import TINY
from tests.retrieval.conftest import snapshot, stored_content
from tests.tools.conftest import (
    CONFIG,
    REPO,
    copy_images,
    model_args,
    tool_main,
    train_images,
)

build_main = tool_main("build_gallery")


def build(weights: Path, images: str | Path, out: Path, *extra: str) -> int:
    return build_main([*model_args(weights), "--images", str(images), "--out", str(out),
                       "--min-score", "0", "--no-progress", *extra, *TINY])


def check_consistent(directory: Path) -> list[tuple]:
    """The gallery's content, after checking that, once reopened for writing as a build would
    (which brings the derived index file and manifest in line after a kill), index, index file,
    manifest and database agree, and that no image or item is stored twice."""
    with Gallery.open(directory, writable=True) as gallery:
        content = stored_content(gallery)
        rows = np.array([entry[0] for entry in content], dtype=np.int64)
        assert np.array_equal(index_ids(read_index(directory / INDEX_FILE)), rows)
        assert np.array_equal(index_ids(gallery.index), rows)
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
        assert (manifest["items"], manifest["images"]) == (len(rows), gallery.image_count)
    assert len({entry[1:] for entry in content}) == len(content)
    with sqlite3.connect(directory / DATABASE_FILE) as db:
        paths = [path for (path,) in db.execute("SELECT path FROM images")]
    assert len(paths) == len(set(paths))
    assert not [path for path in directory.iterdir() if path.name.endswith(".tmp")]
    return content


def test_split_build_keeps_ids_pairs_styles_and_the_model(datasets: Path, weights: Path,
                                                          tmp_path: Path, capsys) -> None:
    out = tmp_path / "gallery"
    assert build(weights, "synthetic_train", out, "--batch-size", "2") == 0
    shops = [r for r in DatasetCatalog.get("synthetic_train") if r["source"] == "shop"]
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"shop images of split synthetic_train: {len(shops)} images, "
                                 f"0 already indexed, {len(shops)} indexed now with ")
    content = check_consistent(out)
    assert content, "an untrained model at score >= 0 detects something in every image"
    by_id = {record["image_id"]: record for record in shops}
    with Gallery.open(out) as gallery:
        assert gallery.image_count == len(shops)
        model = RetrievalModel(setup_cfg(CONFIG, [*TINY, "MODEL.WEIGHTS", str(weights)]))
        assert (gallery.fingerprint, gallery.embed_dim) == (model.fingerprint, model.embed_dim)
        for item in gallery.items([entry[0] for entry in content]):
            record = by_id[item.image_id]
            assert item.image_path == str(Path(record["file_name"]).resolve())
            assert item.pair_id == record["pair_id"]
            assert item.style in {0} | {a["style"] for a in record["annotations"]}


def test_running_again_appends_only_new_images(datasets: Path, weights: Path, tmp_path: Path,
                                               capsys) -> None:
    source, names = train_images(datasets)
    folder = copy_images(source, tmp_path / "shop", names[:3])
    out = tmp_path / "gallery"
    assert build(weights, folder, out, "--batch-size", "1") == 0
    first = check_consistent(out)
    copy_images(source, folder, names[3:5])
    capsys.readouterr()
    assert build(weights, folder, out, "--batch-size", "1") == 0
    assert "5 images, 3 already indexed, 2 indexed now" in capsys.readouterr().out
    second = check_consistent(out)
    assert second[:len(first)] == first
    assert {entry[1] for entry in second} == {str(folder.resolve() / n) for n in names[:5]}
    before = snapshot(out)
    assert build(weights, folder, out) == 0
    assert "5 images, 5 already indexed, 0 indexed now with 0 items" in capsys.readouterr().out
    assert snapshot(out) == before


def test_an_interrupted_build_resumes_without_loss_or_duplicates(
        datasets: Path, weights: Path, tmp_path: Path, capsys,
        monkeypatch: pytest.MonkeyPatch) -> None:
    source, names = train_images(datasets)
    folder = copy_images(source, tmp_path / "shop", names[:6])
    whole = tmp_path / "whole"
    assert build(weights, folder, whole, "--batch-size", "1", "--commit-every", "2") == 0
    expected = check_consistent(whole)

    predict, calls = RetrievalModel.predict, []

    def interrupted(self, images, with_masks=True):
        calls.append(1)
        if len(calls) == 4:  # two images committed, a third predicted but not committed
            raise KeyboardInterrupt
        return predict(self, images, with_masks)

    monkeypatch.setattr(RetrievalModel, "predict", interrupted)
    stopped = tmp_path / "stopped"
    capsys.readouterr()
    assert build(weights, folder, stopped, "--batch-size", "1", "--commit-every", "2") == 130
    assert capsys.readouterr().err.strip() == (
        f"interrupted: gallery {stopped} keeps the 2 images indexed so far; run the same "
        f"command again to continue")
    assert len({entry[1] for entry in check_consistent(stopped)}) == 2
    monkeypatch.setattr(RetrievalModel, "predict", predict)
    assert build(weights, folder, stopped, "--batch-size", "1", "--commit-every", "2") == 0
    assert "6 images, 2 already indexed, 4 indexed now" in capsys.readouterr().out
    assert check_consistent(stopped) == expected


@pytest.mark.slow
def test_a_killed_build_process_resumes(datasets: Path, weights: Path, tmp_path: Path) -> None:
    """SIGKILL at a random point of a real run (here: once the first images are committed)."""
    source, names = train_images(datasets)
    folder = copy_images(source, tmp_path / "shop", names)

    def command(out: Path) -> list[str]:
        return [sys.executable, str(REPO / "tools" / "build_gallery.py"), *model_args(weights),
                "--images", str(folder), "--out", str(out), "--min-score", "0", "--no-progress",
                "--batch-size", "1", "--commit-every", "1", *TINY]

    # the reference runs as a process too: torch's thread count changes the float rounding
    assert subprocess.run(command(tmp_path / "whole"), cwd=REPO).returncode == 0
    expected = check_consistent(tmp_path / "whole")
    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        _wait_for_indexed_images(killed / DATABASE_FILE, process)
    finally:
        process.kill()
        process.wait()
    partial = {entry[1] for entry in check_consistent(killed)}
    assert 0 < len(partial) < len(names), "killed mid-build"
    assert subprocess.run(command(killed), cwd=REPO, capture_output=True).returncode == 0
    assert check_consistent(killed) == expected


def _wait_for_indexed_images(database: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if database.is_file():
            try:
                with sqlite3.connect(database) as db:
                    if db.execute("SELECT count(*) FROM images").fetchone()[0] >= 2:
                        return
            except sqlite3.DatabaseError:
                pass  # the tables are being created
        time.sleep(0.05)
    raise AssertionError(f"the build did not commit two images in time (exit {process.poll()})")


def test_unreadable_images_are_reported_and_the_build_goes_on(datasets: Path, weights: Path,
                                                              tmp_path: Path, capsys) -> None:
    source, names = train_images(datasets)
    folder = copy_images(source, tmp_path / "shop", names[:2])
    (folder / "cut.jpg").write_bytes((folder / names[0]).read_bytes()[:300])
    (folder / "notes.png").write_text("not a picture")
    out = tmp_path / "gallery"
    assert build(weights, folder, out, "--max-pixels", "100000") == 0
    captured = capsys.readouterr()
    assert "4 images, 0 already indexed, 2 indexed now" in captured.out
    cut, notes = sorted(captured.err.strip().splitlines())
    assert cut.startswith(f"warning: skipped {folder.resolve() / 'cut.jpg'}: truncated or "
                          f"corrupt image data (")
    assert notes == (f"warning: skipped {folder.resolve() / 'notes.png'}: not an image file "
                     f"(no known image format)")
    with Gallery.open(out) as gallery:
        assert set(gallery.failures()) == {str(folder.resolve() / "cut.jpg"),
                                           str(folder.resolve() / "notes.png")}
        assert gallery.image_count == 2


def test_another_models_gallery_is_refused_untouched(datasets: Path, weights: Path,
                                                     other_weights: Path, tmp_path: Path,
                                                     capsys) -> None:
    source, names = train_images(datasets)
    folder = copy_images(source, tmp_path / "shop", names[:2])
    out = tmp_path / "gallery"
    assert build(weights, folder, out) == 0
    before = snapshot(out)
    capsys.readouterr()
    assert build(other_weights, folder, out) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith(f"error: gallery {out} was built by model ")
    assert "not by this model" in error
    assert snapshot(out) == before


def test_bad_images_argument_is_one_line_error_from_the_command_line(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(REPO / "tools" / "build_gallery.py"), "--config-file", "c.yaml",
         "--weights", "w.pth", "--images", str(tmp_path / "nowhere"), "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.startswith(f"error: --images {tmp_path / 'nowhere'}: neither a folder nor "
                                 f"a registered dataset split (registered: ")
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr


def test_index_settings_reach_the_gallery(datasets: Path, weights: Path, tmp_path: Path) -> None:
    source, names = train_images(datasets)
    folder = copy_images(source, tmp_path / "shop", names[:2])
    out = tmp_path / "gallery"
    assert build(weights, folder, out, "--index", "hnsw", "--index-setting", "hnsw_m=8",
                 "--index-setting", "ef_search=40") == 0
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["index_kind"] == "hnsw"
    assert (manifest["index"]["hnsw_m"], manifest["index"]["ef_search"]) == (8, 40)
    assert build(weights, folder, out) == 0  # no --index: the gallery keeps its own
    assert json.loads((out / MANIFEST_FILE).read_text())["index"] == manifest["index"]


@pytest.mark.parametrize(("extra", "message"), [
    (["--min-score", "2"], "--min-score must be in [0, 1], got 2.0"),
    (["--commit-every", "0"], "--commit-every must be a positive integer, got 0"),
    (["--batch-size", "0"], "--batch-size must be a positive integer, got 0"),
    (["--index-setting", "nprobe=many"], "--index-setting 'nprobe=many': expected KEY=INTEGER"),
    (["--index-setting", "depth=3"], "unknown index settings ['depth']"),
])
def test_bad_settings_fail_before_anything_is_written(datasets: Path, weights: Path,
                                                      tmp_path: Path, capsys, extra: list[str],
                                                      message: str) -> None:
    source, names = train_images(datasets)
    folder = copy_images(source, tmp_path / "shop", names[:1])
    assert build(weights, folder, tmp_path / "gallery", *extra) == 1
    error = capsys.readouterr().err
    assert error.startswith(f"error: {message}") and error.count("\n") == 1
    assert not (tmp_path / "gallery").exists()
