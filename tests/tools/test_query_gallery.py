"""tools/query_gallery.py as a user runs it: results.json, query.png, and one clear error line for
each kind of bad input, with nothing written or changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matchrcnn.config import setup_cfg
from matchrcnn.data.catalog import DatasetCatalog
from matchrcnn.evaluation.box_iou import coco_box_iou
from matchrcnn.retrieval import Gallery, MatchMetric, ShopImage
from matchrcnn.retrieval.model import RetrievalModel
from tests.modeling.conftest import TINY
from tests.retrieval.conftest import snapshot, stored_content
from tests.tools.conftest import CONFIG, REPO, model_args, tool_main

build_main = tool_main("build_gallery")
query_main = tool_main("query_gallery")
TRAIN_SPLIT = "synthetic_train"


@pytest.fixture(scope="module")
def module_datasets(datasets_root: Path) -> Path:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MATCHRCNN_DATASETS", str(datasets_root))
        yield datasets_root


@pytest.fixture(scope="module")
def gallery_dir(module_datasets: Path, weights: Path,
                tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The train split's shop images, every detection kept, one image per model call: each image
    is then computed exactly as a query of it is, so its detections come back bit for bit."""
    out = tmp_path_factory.mktemp("query") / "gallery"
    assert build_main([*model_args(weights), "--images", TRAIN_SPLIT, "--out", str(out),
                       "--min-score", "0", "--batch-size", "1", "--no-progress", *TINY]) == 0
    return out


@pytest.fixture(scope="module")
def shop_record(module_datasets: Path) -> dict:
    return next(r for r in DatasetCatalog.get(TRAIN_SPLIT) if r["source"] == "shop")


def query(weights: Path, gallery: Path, image: Path | str, out: Path, *extra: str) -> int:
    return query_main([*model_args(weights), "--gallery", str(gallery), "--image", str(image),
                       "--out", str(out), *extra, *TINY])


def test_a_gallery_photo_finds_itself_first(gallery_dir: Path, shop_record: dict, weights: Path,
                                            tmp_path: Path, capsys) -> None:
    """The clear case: the query photo is one of the gallery's shop images (same pixels), every
    detection is kept on both sides. Each detected item's rank-1 entry must be that image's own
    item with the same box, at the highest possible match logit (the head's bias: embeddings
    equal); the next entries are other items, in descending match order. This proves that
    detection, embedding, FAISS search, match scoring and the SQLite metadata (image id, path,
    box, pair_id) stay together through build and query. It proves nothing about the model's
    ability to match a consumer photo to a different shop photo: the model is untrained."""
    out = tmp_path / "out"
    assert query(weights, gallery_dir, shop_record["file_name"], out, "--topk", "5",
                 "--min-score", "0") == 0
    document = json.loads((out / "results.json").read_text())
    model = RetrievalModel(setup_cfg(CONFIG, [*TINY, "MODEL.WEIGHTS", str(weights)]))
    assert document["model_fingerprint"] == model.fingerprint
    assert document["items"], "an untrained model at score >= 0 detects something"
    scores = [item["score"] for item in document["items"]]
    assert scores == sorted(scores, reverse=True)
    for item in document["items"]:
        assert len(item["retrieved"]) == 5
        first = item["retrieved"][0]
        assert first["image_id"] == shop_record["image_id"]
        assert first["image_path"] == str(Path(shop_record["file_name"]).resolve())
        assert first["pair_id"] == shop_record["pair_id"]
        assert first["category_id"] == item["category_id"]
        assert np.allclose(first["box"], item["box"], atol=1e-3)
        assert first["match_logit"] == pytest.approx(model.metric.bias, abs=1e-6)
        logits = [entry["match_logit"] for entry in item["retrieved"]]
        assert logits == sorted(logits, reverse=True) and logits[1] < logits[0]
        assert [entry["rank"] for entry in item["retrieved"]] == [1, 2, 3, 4, 5]
    table = capsys.readouterr().out
    assert table.startswith(f"item 1: {document['items'][0]['category']}, score ")
    assert f"wrote {out / 'results.json'} and {out / 'query.png'}" in table
    with Image.open(out / "query.png") as picture:
        photo = Image.open(shop_record["file_name"])
        assert picture.format == "PNG" and picture.mode == "RGB"
        assert picture.width >= photo.width
        assert picture.height > photo.height + 96 * len(document["items"])


def test_same_category_restricts_every_entry(gallery_dir: Path, shop_record: dict,
                                             weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert query(weights, gallery_dir, shop_record["file_name"], out, "--min-score", "0",
                 "--same-category") == 0
    document = json.loads((out / "results.json").read_text())
    assert document["same_category"] is True
    for item in document["items"]:
        assert item["retrieved"]
        assert {entry["category_id"] for entry in item["retrieved"]} == {item["category_id"]}


def test_max_items_keeps_the_best_scoring(gallery_dir: Path, shop_record: dict, weights: Path,
                                          tmp_path: Path) -> None:
    results = []
    for limit in ("2", "20"):
        out = tmp_path / limit
        assert query(weights, gallery_dir, shop_record["file_name"], out, "--min-score", "0",
                     "--max-items", limit, "--topk", "1") == 0
        results.append(json.loads((out / "results.json").read_text())["items"])
    assert len(results[0]) == 2 and len(results[1]) > 2
    assert results[0] == results[1][:2]


def test_no_detection_above_the_threshold(gallery_dir: Path, shop_record: dict, weights: Path,
                                          tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert query(weights, gallery_dir, shop_record["file_name"], out, "--min-score", "1.01") == 0
    assert capsys.readouterr().out.startswith("no garment detected with a score of at least 1.01")
    assert json.loads((out / "results.json").read_text())["items"] == []
    assert (out / "query.png").is_file()


def _worst_overlap(boxes: list[list[float]]) -> float:
    """The largest box IoU between two of ``boxes`` (0 for fewer than two)."""
    if len(boxes) < 2:
        return 0.0
    iou = coco_box_iou(np.array(boxes)[:, None], np.array(boxes)[None])
    return float(iou[~np.eye(len(boxes), dtype=bool)].max())


def test_one_detection_per_garment_unless_the_overrides_say_otherwise(
        gallery_dir: Path, shop_record: dict, weights: Path, tmp_path: Path) -> None:
    """The query tool keeps one detection per garment (class-agnostic suppression, IoU 0.7);
    TEST.CLASS_AGNOSTIC_NMS.ENABLED False gives torchvision's per-class results back, where the
    untrained model repeats a box under several classes. The gallery, built with it on, serves
    both: the setting is no part of the model's fingerprint."""
    found = {}
    for enabled in ("True", "False"):
        out = tmp_path / enabled
        assert query(weights, gallery_dir, shop_record["file_name"], out, "--min-score", "0",
                     "--max-items", "50", "TEST.CLASS_AGNOSTIC_NMS.ENABLED", enabled) == 0
        document = json.loads((out / "results.json").read_text())
        found[enabled] = [item["box"] for item in document["items"]]
    assert found["True"] and _worst_overlap(found["True"]) <= 0.7 + 1e-6
    assert len(found["False"]) > len(found["True"]) and _worst_overlap(found["False"]) > 0.7
    assert query(weights, gallery_dir, shop_record["file_name"], tmp_path / "default",
                 "--min-score", "0", "--max-items", "50") == 0
    default = json.loads((tmp_path / "default" / "results.json").read_text())
    assert [item["box"] for item in default["items"]] == found["True"]


def test_the_build_keeps_one_item_per_garment(gallery_dir: Path) -> None:
    with Gallery.open(gallery_dir) as gallery:
        content = stored_content(gallery)
    by_image: dict[str, list] = {}
    for _, path, _, box, *_ in content:
        by_image.setdefault(path, []).append(list(box))
    assert by_image and all(_worst_overlap(boxes) <= 0.7 + 1e-6 for boxes in by_image.values())


def _gallery_of(directory: Path, fingerprint: str, metric: MatchMetric, dim: int) -> Path:
    with Gallery.create(directory, fingerprint, metric) as gallery:
        gallery.add_images([ShopImage("shop/1.jpg", 1, [[0, 0, 9, 9]], [1], [0.9],
                                      np.ones((1, dim), np.float32))])
    return directory


@pytest.fixture
def bad_inputs(gallery_dir: Path, shop_record: dict, weights: Path, tmp_path: Path) -> dict:
    """Each bad input: (arguments changed, expected error message)."""
    photo = Path(shop_record["file_name"])
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])
    text = tmp_path / "notes.jpg"
    text.write_text("a shopping list, not a photo")
    empty = tmp_path / "empty_gallery"
    model = RetrievalModel(setup_cfg(CONFIG, [*TINY, "MODEL.WEIGHTS", str(weights)]))
    Gallery.create(empty, model.fingerprint, model.metric).close()
    other = _gallery_of(tmp_path / "other_model", "0" * 64, model.metric, model.embed_dim)
    narrow_metric = MatchMetric(-np.ones(8), 0.0)
    narrow = _gallery_of(tmp_path / "other_size", model.fingerprint, narrow_metric, 8)
    width, height = Image.open(photo).size
    return {
        "missing": ({"--image": tmp_path / "nowhere.jpg"}, f"{tmp_path / 'nowhere.jpg'}: no such "
                                                          f"file"),
        "unreadable": ({"--image": tmp_path}, f"{tmp_path}: not a file"),
        "truncated": ({"--image": truncated}, f"{truncated}: truncated or corrupt image data ("),
        "not an image": ({"--image": text}, f"{text}: not an image file (no known image format)"),
        "oversized": ({"--image": photo, "--max-pixels": "1000"},
                      f"{photo}: {width}x{height} = {width * height:,} pixels, more than the "
                      f"limit of 1,000 (--max-pixels)"),
        "empty gallery": ({"--gallery": empty}, f"gallery {empty} holds no items: add shop "
                                                f"images (tools/build_gallery.py) before "
                                                f"querying it"),
        "other model": ({"--gallery": other}, f"gallery {other} was built by model "
                                              f"0000000000000000..., not by this model "
                                              f"({model.fingerprint[:16]}...)"),
        "other size": ({"--gallery": narrow}, f"gallery {narrow} holds 8-d embeddings but the "
                                              f"model gives {model.embed_dim}-d ones"),
        "no gallery": ({"--gallery": tmp_path / "none"}, f"{tmp_path / 'none'} holds no gallery "
                                                         f"(gallery.sqlite is missing)"),
        "bad topk": ({"--topk": "0"}, "--topk must be at least 1, got 0"),
    }


CASES = ["missing", "unreadable", "truncated", "not an image", "oversized", "empty gallery",
         "other model", "other size", "no gallery", "bad topk"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_error_and_touches_nothing(case: str, bad_inputs: dict,
                                                          gallery_dir: Path, shop_record: dict,
                                                          weights: Path, tmp_path: Path,
                                                          capsys) -> None:
    changed, message = bad_inputs[case]
    arguments = {"--gallery": gallery_dir, "--image": shop_record["file_name"], **changed}
    galleries = [Path(arguments["--gallery"])]
    before = [snapshot(g) if g.is_dir() else None for g in galleries]
    out = tmp_path / "out"
    extra = [str(value) for pair in changed.items() if pair[0] not in ("--gallery", "--image")
             for value in pair]
    capsys.readouterr()
    assert query(weights, arguments["--gallery"], arguments["--image"], out, *extra) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {message}"), captured.err
    assert captured.err.count("\n") == 1 and captured.out == ""
    assert not out.exists()
    assert [snapshot(g) if g.is_dir() else None for g in galleries] == before


def test_the_command_line_prints_one_line_and_no_traceback(gallery_dir: Path, weights: Path,
                                                           tmp_path: Path) -> None:
    truncated = tmp_path / "photo.jpg"
    truncated.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 64)
    run = subprocess.run([sys.executable, str(REPO / "tools" / "query_gallery.py"),
                          *model_args(weights), "--gallery", str(gallery_dir), "--image",
                          str(truncated), "--out", str(tmp_path / "out")],
                         cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.startswith(f"error: {truncated}: ")
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
