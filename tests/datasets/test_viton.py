"""VITON-family pair lists become retrieval ground truth that the evaluation and gallery use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from matchrcnn.data.catalog import DatasetCatalog, MetadataCatalog
from matchrcnn.data.samplers import has_pairs
from matchrcnn.data.viton import convert_pairs
from matchrcnn.evaluation.results import RETRIEVED, write_results
from matchrcnn.evaluation.retrieval import evaluate_retrieval
from matchrcnn.retrieval.gallery import Gallery
from matchrcnn.retrieval.metric import MatchMetric
from matchrcnn.retrieval.records import ShopImage
from matchrcnn.retrieval.search import retrieval_entries, search

from .conftest import VITON_LAYOUTS, run_tool, write_image, write_viton

PAIRS = 5


def _convert(tmp_path: Path, layout: str = "viton-hd") -> tuple[Path, dict, list, list]:
    root = tmp_path / "root"
    pairs = write_viton(root, layout, PAIRS)
    out = tmp_path / "gt"
    summary = convert_pairs(pairs, root, out)
    assert (summary.read, summary.converted, summary.skipped, summary.problems) == (5, 5, 0, [])
    coco = json.loads((out / "images.json").read_text())
    query_gt = json.loads((out / "query_gt.json").read_text())
    gallery_gt = json.loads((out / "gallery_gt.json").read_text())
    return out, coco, query_gt, gallery_gt


@pytest.mark.parametrize("layout", list(VITON_LAYOUTS))
def test_pairs_become_query_and_gallery_ground_truth(tmp_path: Path, layout: str):
    _, coco, query_gt, gallery_gt = _convert(tmp_path, layout)
    person, garment, _ = VITON_LAYOUTS[layout]
    images = {image["id"]: image for image in coco["images"]}
    # persons and garments are numbered together, in order of first appearance
    assert [images[i]["file_name"] for i in range(1, 11)] == [
        path for index in range(PAIRS) for path in (person(index), garment(index))]
    assert query_gt == [
        {"query_image_id": 2 * i + 1, "style": 1, "cls": 1, "pair_id": 2 * i + 2,
         "bbox": [0.0, 0.0, 48.0 + i, 64.0]} for i in range(PAIRS)]
    assert gallery_gt == [
        {"gallery_image_id": 2 * i + 2, "style": 1, "pair_id": 2 * i + 2,
         "bbox": [0.0, 0.0, 40.0, 50.0 + i]} for i in range(PAIRS)]
    assert [images[i]["source"] for i in (1, 2)] == ["user", "shop"]
    assert [a["image_id"] for a in coco["annotations"]] == list(range(1, 11))


def _entry(query: dict, ranked: list[int], boxes: dict[int, list[float]]) -> dict:
    ranked = ranked + [ranked[-1]] * (RETRIEVED - len(ranked))
    return {"query_image_id": query["query_image_id"], "query_bbox": query["bbox"],
            "query_cls": 1, "query_score": 0.9, "gallery_image_id": ranked,
            "gallery_bbox": [boxes[g] for g in ranked]}


def test_retrieval_evaluation_runs_on_converted_pairs(tmp_path: Path):
    out, _, query_gt, gallery_gt = _convert(tmp_path)
    boxes = {g["gallery_image_id"]: g["bbox"] for g in gallery_gt}
    garments = list(boxes)

    def ranking(truth: int, rank: int | None) -> list[int]:
        wrong = [g for g in garments if g != truth]
        ranked = [wrong[i % len(wrong)] for i in range(RETRIEVED)]
        if rank is not None:
            ranked[rank] = truth
        return ranked

    # the right garment at rank 1, 3, 8 and 13; never for the last query
    ranks = [0, 2, 7, 12, None]
    results = [_entry(q, ranking(q["pair_id"], rank), boxes)
               for q, rank in zip(query_gt, ranks, strict=True)]
    write_results(tmp_path / "results.json", results)
    expected = {"top1": 0.2, "top5": 0.4, "top10": 0.6, "top15": 0.8, "top20": 0.8,
                "queries": 5, "missed": 0}
    for gt_boxes in (False, True):
        accuracy = evaluate_retrieval(tmp_path / "results.json", out / "query_gt.json",
                                      out / "gallery_gt.json", gt_boxes=gt_boxes)
        assert accuracy.as_dict() == expected


def test_a_gallery_built_from_the_garments_answers_the_persons(tmp_path: Path):
    out, coco, query_gt, _ = _convert(tmp_path)
    rng = np.random.default_rng(0)
    garments = [image for image in coco["images"] if image["source"] == "shop"]
    vectors = {image["id"]: rng.normal(size=8) for image in garments}
    with Gallery.create(tmp_path / "gallery", "test-model",
                        MatchMetric(-np.ones(8), 0.0)) as gallery:
        gallery.add_images([
            ShopImage(path=image["file_name"], image_id=image["id"],
                      boxes=[[0, 0, image["width"], image["height"]]], categories=[1],
                      scores=[1.0], embeddings=vectors[image["id"]][None], pair_id=image["id"],
                      styles=[1])
            for image in garments])
        # each person looks like the garment it wears, except the last, who looks like the first
        wears = [q["pair_id"] for q in query_gt]
        looks = [*wears[:-1], wears[0]]
        queries = np.stack([vectors[g] + 0.01 for g in looks])
        rankings = search(gallery, queries, topk=RETRIEVED)
    predictions = [{"image_id": q["query_image_id"], "boxes": [q["bbox"]], "labels": [1],
                    "scores": [1.0]} for q in query_gt]
    entries = retrieval_entries(predictions, rankings)
    accuracy = evaluate_retrieval(entries, out / "query_gt.json", out / "gallery_gt.json")
    assert accuracy.top_k[1] == pytest.approx(0.8)
    assert accuracy.top_k[5] == pytest.approx(1.0)


def test_the_catalog_serves_converted_pairs(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(tmp_path))
    root = tmp_path / "viton" / "test"
    pairs = write_viton(root, "viton-hd", PAIRS)
    convert_pairs(pairs, root, tmp_path / "viton" / "retrieval" / "test")
    records = DatasetCatalog.get("viton_test")
    assert len(records) == 2 * PAIRS and has_pairs(records)
    assert all(Path(record["file_name"]).is_file() for record in records)
    files = MetadataCatalog.get("viton_test").files
    assert json.loads(files.query_gt.read_text())[0]["query_image_id"] == 1
    assert MetadataCatalog.get("viton_test").layout is None


def test_malformed_lines_are_named_skipped_and_counted(tmp_path: Path, capsys):
    root = tmp_path / "root"
    pairs = write_viton(root, "viton", 3)
    write_image(root / "lonely_0.jpg", 30, 30)
    lines = pairs.read_text().splitlines()
    pairs.write_text("\n".join([
        lines[0],
        "",  # blank lines are ignored
        "000001_0.jpg 000001_1.jpg extra",
        "000001_0.jpg",
        "gone_0.jpg 000001_1.jpg",
        "lonely_0.jpg gone_1.jpg",
        "000000_0.jpg 000001_1.jpg",
        "lonely_0.jpg lonely_0.jpg",
        lines[1],
        "000001_1.jpg 000002_1.jpg",
        lines[2],
    ]) + "\n")
    out = tmp_path / "gt"
    assert run_tool("viton", "--pairs", pairs, "--root", root, "--out", out) == 0
    captured = capsys.readouterr()
    problems = [line.removeprefix(f"problem: {pairs}: ") for line in captured.err.splitlines()]
    assert problems == [
        "line 3: expected 'person_image garment_image', got 3 field(s): "
        "'000001_0.jpg 000001_1.jpg extra'",
        "line 4: expected 'person_image garment_image', got 1 field(s): '000001_0.jpg'",
        f"line 5: image file missing: {root / 'gone_0.jpg'}",
        f"line 6: image file missing: {root / 'gone_1.jpg'}",
        "line 7: person 000000_0.jpg was already paired with 000000_1.jpg on line 1",
        "line 8: the person and the garment are the same image lonely_0.jpg",
        "line 10: 000001_1.jpg is listed both as a person and as a garment image",
    ]
    assert f"{pairs}: 10 pairs: 3 converted, 7 skipped; 7 problems reported" in captured.out
    query_gt = json.loads((out / "query_gt.json").read_text())
    images = json.loads((out / "images.json").read_text())["images"]
    assert len(query_gt) == 3 and len(images) == 6  # lonely_0.jpg was never kept


def test_strict_fails_and_writes_nothing(tmp_path: Path, capsys):
    root = tmp_path / "root"
    pairs = write_viton(root, "dresscode", 2)
    pairs.write_text(pairs.read_text() + "a b c\n")
    out = tmp_path / "gt"
    assert run_tool("viton", "--pairs", pairs, "--root", root, "--out", out, "--strict") == 1
    assert "error: --strict: 1 problem(s)" in capsys.readouterr().err
    assert not out.exists()
