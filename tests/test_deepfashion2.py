"""The DeepFashion2 converter: output item by item, problem reports, strictness, atomic writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from matchrcnn.data.categories import NUM_LANDMARKS, coco_categories, landmark_slice
from matchrcnn.data.deepfashion2 import ConversionError, convert_split
from matchrcnn.data.synthetic import generate_dataset

REPO = Path(__file__).resolve().parents[1]
MALFORMED = REPO / "tests" / "data" / "deepfashion2_malformed"
ATTRIBUTES = ("scale", "occlusion", "zoom_in", "viewpoint")


def _annotation_files(root: Path, split: str) -> dict[int, dict]:
    return {int(p.stem): json.loads(p.read_text()) for p in (root / split / "annos").glob("*.json")}


def assert_coco_matches_sources(root: Path, split: str, coco: dict) -> None:
    """Every image and item of the COCO file against its annotation file, field by field."""
    sources = _annotation_files(root, split)
    assert coco["categories"] == coco_categories()
    assert [image["id"] for image in coco["images"]] == sorted(sources)
    for image in coco["images"]:
        with Image.open(root / split / "image" / image["file_name"]) as pil:
            assert (image["width"], image["height"]) == pil.size
        assert image["file_name"] == f"{image['id']:06d}.jpg"
        assert image["source"] == sources[image["id"]]["source"]
        assert image["pair_id"] == sources[image["id"]]["pair_id"]

    by_image: dict[int, list[dict]] = {}
    for annotation in coco["annotations"]:
        by_image.setdefault(annotation["image_id"], []).append(annotation)
    assert [a["id"] for a in coco["annotations"]] == list(range(1, len(coco["annotations"]) + 1))
    for image_id, source in sources.items():
        items = [source[f"item{i}"] for i in range(1, len(source) - 1)]
        converted = by_image[image_id]
        assert len(converted) == len(items)
        for item, annotation in zip(items, converted, strict=True):
            x1, y1, x2, y2 = item["bounding_box"]
            assert annotation["bbox"] == [x1, y1, x2 - x1, y2 - y1]
            assert annotation["area"] == (x2 - x1) * (y2 - y1)
            assert annotation["category_id"] == item["category_id"]
            keypoints = annotation["keypoints"]
            assert len(keypoints) == 3 * NUM_LANDMARKS
            slots = landmark_slice(item["category_id"])
            assert keypoints[3 * slots.start : 3 * slots.stop] == item["landmarks"]
            outside = keypoints[: 3 * slots.start] + keypoints[3 * slots.stop :]
            assert not any(outside)
            assert annotation["num_keypoints"] == sum(v > 0 for v in item["landmarks"][2::3])
            assert annotation["segmentation"] == item["segmentation"]
            assert annotation["iscrowd"] == 0
            assert annotation["style"] == item["style"]
            assert annotation["pair_id"] == source["pair_id"]
            assert annotation["source"] == source["source"]
            for key in ATTRIBUTES:
                assert annotation[key] == item[key]


def test_converter_output_matches_annotation_files_item_by_item(df2_root: Path, tmp_path: Path):
    out = tmp_path / "val.json"
    summary = convert_split(df2_root, "validation", out, workers=2)
    assert summary.problems == []
    assert_coco_matches_sources(df2_root, "validation", json.loads(out.read_text()))


def test_synthetic_dataset_passes_validation_and_converts_item_by_item(tmp_path: Path):
    root = tmp_path / "synthetic"
    generate_dataset(root, 60, size=128, seed=5, workers=1)
    for split in ("train", "validation"):
        out = tmp_path / f"{split}.json"
        summary = convert_split(root, split, out, tmp_path / split, strict=True, workers=2)
        assert summary.problems == [] and summary.items_skipped == 0
        coco = json.loads(out.read_text())
        assert_coco_matches_sources(root, split, coco)
        assert {a["category_id"] for a in coco["annotations"]} <= set(range(1, 14))
    query = json.loads((tmp_path / "validation" / "query_gt.json").read_text())
    gallery = json.loads((tmp_path / "validation" / "gallery_gt.json").read_text())
    assert gallery and {g["pair_id"] for g in gallery} <= {q["pair_id"] for q in query}


def test_retrieval_ground_truth_in_official_format(df2_root: Path, tmp_path: Path):
    convert_split(df2_root, "validation", tmp_path / "val.json", tmp_path / "gt", workers=1)
    query = json.loads((tmp_path / "gt" / "query_gt.json").read_text())
    gallery = json.loads((tmp_path / "gt" / "gallery_gt.json").read_text())
    sources = _annotation_files(df2_root, "validation")

    expected_query, expected_gallery = [], []
    for image_id in sorted(sources):
        source = sources[image_id]
        for i in range(1, len(source) - 1):
            item = source[f"item{i}"]
            if source["source"] == "user":
                expected_query.append({"query_image_id": image_id, "style": item["style"],
                                       "cls": item["category_id"], "pair_id": source["pair_id"],
                                       "bbox": item["bounding_box"]})
            elif item["style"] > 0:
                expected_gallery.append({"gallery_image_id": image_id, "style": item["style"],
                                         "pair_id": source["pair_id"],
                                         "bbox": item["bounding_box"]})
    assert query == expected_query
    assert gallery == expected_gallery
    assert any(entry["style"] == 0 for entry in query)


def test_parallel_and_single_process_outputs_are_identical(df2_root: Path, tmp_path: Path):
    convert_split(df2_root, "validation", tmp_path / "one.json", workers=1)
    convert_split(df2_root, "validation", tmp_path / "two.json", workers=2)
    assert (tmp_path / "one.json").read_bytes() == (tmp_path / "two.json").read_bytes()


def _expected_problems() -> list[dict]:
    return json.loads((MALFORMED / "expected_problems.json").read_text())


def test_malformed_corpus_each_file_yields_its_clear_error(tmp_path: Path):
    expected = _expected_problems()
    assert len(expected) >= 15
    summary = convert_split(MALFORMED, "validation", tmp_path / "out.json", workers=2)
    by_file: dict[str, list] = {}
    for problem in summary.problems:
        by_file.setdefault(Path(problem.file).name, []).append(problem)
    for case in expected:
        problems = by_file.get(case["file"], [])
        assert len(problems) == 1, (case, problems)
        problem = problems[0]
        assert problem.item == case["item"], problem
        assert case["reason"] in problem.reason, problem
        assert case["file"] in str(problem)


def test_bad_items_are_skipped_and_counted_good_items_kept(tmp_path: Path):
    out = tmp_path / "out.json"
    summary = convert_split(MALFORMED, "validation", out, workers=1)
    coco = json.loads(out.read_text())
    assert summary.items_out == len(coco["annotations"])
    assert summary.items_out == summary.items_in - summary.items_skipped
    # 000026.json holds one good item next to a bad one: only the good one survives.
    assert [a["image_id"] for a in coco["annotations"]] == [26]
    assert [image["id"] for image in coco["images"]] == [26]
    assert summary.images == 1
    assert summary.files_skipped == summary.files - 1


def test_strict_fails_without_writing_and_keeps_an_existing_output(tmp_path: Path):
    out = tmp_path / "out.json"
    out.write_text("previous output")
    with pytest.raises(ConversionError, match="27 problem"):
        convert_split(MALFORMED, "validation", out, tmp_path / "gt", strict=True, workers=1)
    assert out.read_text() == "previous output"
    assert not (tmp_path / "gt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def _run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "convert_deepfashion2.py"), *args],
        capture_output=True, text=True, cwd=REPO,
    )


def test_tool_reports_every_problem_and_a_summary_without_traceback(tmp_path: Path):
    out = tmp_path / "out.json"
    result = _run_tool("--root", str(MALFORMED), "--split", "validation", "--out", str(out),
                       "--workers", "2", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    problem_lines = [line for line in result.stderr.splitlines() if line.startswith("problem: ")]
    assert len(problem_lines) == len(_expected_problems())
    assert "skipped 24 of 25 items and 26 whole files" in result.stdout
    assert out.is_file()

    strict = _run_tool("--root", str(MALFORMED), "--split", "validation", "--out",
                       str(tmp_path / "strict.json"), "--strict", "--no-progress")
    assert strict.returncode == 1
    assert "--strict: 27 problem(s)" in strict.stderr
    assert not (tmp_path / "strict.json").exists()


def test_tool_names_a_missing_split_directory(tmp_path: Path):
    out = tmp_path / "o.json"
    result = _run_tool("--root", str(tmp_path), "--split", "train", "--out", str(out))
    assert result.returncode == 1
    assert f"{tmp_path}/train/annos is not a directory" in result.stderr
    assert "Traceback" not in result.stderr
