"""FashionAI CSVs become COCO keypoint files in the 24-slot layout; bad rows are named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from matchrcnn.data.catalog import DatasetCatalog, MetadataCatalog, register_coco_landmarks
from matchrcnn.data.deepfashion2 import ConversionError
from matchrcnn.data.fashionai import convert_fashionai
from matchrcnn.data.landmark_coco import BOX_MARGIN
from matchrcnn.data.layouts import FASHIONAI, FASHIONAI_CATEGORY_LANDMARKS, FASHIONAI_LANDMARKS
from matchrcnn.data.mapper import DatasetMapper

from .conftest import TOOL, fashionai_rows, run_tool, write_fashionai_csv


def _cell(text: str) -> tuple[float, float, int]:
    x, y, v = text.split("_")
    return float(x), float(y), int(v)


def test_rows_convert_to_coco_keypoints(fashionai_split, tmp_path: Path):
    csv_file, images = fashionai_split
    out = tmp_path / "train.json"
    summary = convert_fashionai(csv_file, images, out)
    assert (summary.read, summary.converted, summary.skipped, summary.problems) == (10, 10, 0, [])
    coco = json.loads(out.read_text())
    assert [c["name"] for c in coco["categories"]] == list(FASHIONAI_CATEGORY_LANDMARKS)
    assert all(c["keypoints"] == list(FASHIONAI_LANDMARKS) for c in coco["categories"])
    rows = fashionai_rows(tmp_path / "again", 10)  # the same seed: the fixture's values
    assert [image["id"] for image in coco["images"]] == list(range(1, 11))
    for image, annotation, row in zip(coco["images"], coco["annotations"], rows, strict=True):
        assert image["file_name"] == row[0]
        assert annotation["image_id"] == image["id"]
        assert annotation["category_id"] == FASHIONAI.category_names.index(row[1]) + 1
        keypoints = annotation["keypoints"]
        assert len(keypoints) == 3 * 24
        labelled = []
        for slot, cell in enumerate(row[2:]):
            x, y, v = _cell(cell)
            expected = [0, 0, 0] if v == -1 else [x, y, {1: 2, 0: 1}[v]]
            assert keypoints[3 * slot : 3 * slot + 3] == expected
            if v >= 0:
                labelled.append((x, y))
                assert FASHIONAI_LANDMARKS[slot] in FASHIONAI_CATEGORY_LANDMARKS[row[1]]
        assert annotation["num_keypoints"] == len(labelled)
        xs, ys = [p[0] for p in labelled], [p[1] for p in labelled]
        x, y, w, h = annotation["bbox"]
        margin_x, margin_y = BOX_MARGIN * (max(xs) - min(xs)), BOX_MARGIN * (max(ys) - min(ys))
        assert x == pytest.approx(max(0, min(xs) - margin_x))
        assert y == pytest.approx(max(0, min(ys) - margin_y))
        assert x + w == pytest.approx(min(image["width"], max(xs) + margin_x))
        assert y + h == pytest.approx(min(image["height"], max(ys) + margin_y))
        assert annotation["area"] == pytest.approx(w * h)


def _set(row: list[str], landmark: str, cell: str) -> list[str]:
    row = list(row)
    row[2 + FASHIONAI_LANDMARKS.index(landmark)] = cell
    return row


MALFORMED = [
    # (how row 0, a blouse, is broken; the reason printed)
    (lambda r: [r[0], "hat", *r[2:]], "unknown image_category 'hat'"),
    (lambda r: _set(r, "armpit_left", "12_x_1"), "landmark armpit_left: cell '12_x_1' is not x_y_v"
     " with numbers"),
    (lambda r: _set(r, "armpit_left", "12_13"), "landmark armpit_left: cell '12_13' is not x_y_v"),
    (lambda r: _set(r, "armpit_left", "12_13_2"), "visibility must be -1, 0 or 1, got '2'"),
    (lambda r: _set(r, "armpit_left", "nan_13_1"), "landmark armpit_left x is not finite"),
    (lambda r: _set(r, "crotch", "20_20_1"), "landmark crotch is labelled ('20_20_1') but blouse "
     "does not define it"),
    (lambda r: _set(r, "armpit_left", "500_13_1"), "landmark armpit_left at (500, 13) lies "
     "outside the"),
    (lambda r: [r[0], r[1], *["-1_-1_-1"] * 24], "no labelled landmark: no box can be derived"),
    (lambda r: [r[0].replace(".jpg", "_gone.jpg"), *r[1:]], "image file missing"),
    (lambda r: r[:3], "has 3 cells, the header has 26"),
    (lambda r: ["", *r[1:]], "empty image_id"),
]


@pytest.mark.parametrize(("breaks", "reason"), MALFORMED)
def test_a_malformed_row_is_named_skipped_and_counted(tmp_path, capsys, breaks, reason):
    root = tmp_path / "train"
    rows = fashionai_rows(root, 3)
    csv_file = write_fashionai_csv(root / "train.csv", [breaks(rows[0]), *rows[1:]])
    out = tmp_path / "out.json"
    assert run_tool("fashionai", "--csv", csv_file, "--images", root, "--out", out) == 0
    captured = capsys.readouterr()
    problems = [line for line in captured.err.splitlines() if line.startswith("problem: ")]
    assert len(problems) == 1, captured.err
    assert problems[0].startswith(f"problem: {csv_file}: row 1: ")
    assert reason in problems[0]
    assert f"{csv_file}: 3 rows: 2 converted, 1 skipped; 1 problems reported" in captured.out
    coco = json.loads(out.read_text())
    assert [image["id"] for image in coco["images"]] == [2, 3]


def test_a_repeated_image_is_a_problem(tmp_path):
    root = tmp_path / "train"
    rows = fashionai_rows(root, 2)
    csv_file = write_fashionai_csv(root / "train.csv", [*rows, rows[0]])
    reported = []
    summary = convert_fashionai(csv_file, root, tmp_path / "out.json", on_problem=reported.append)
    assert summary.converted == 2 and summary.skipped == 1
    assert [(p.item, p.reason) for p in reported] == [
        ("row 3", f"image {rows[0][0]} was already converted from row 1")]


def test_strict_fails_and_writes_nothing(tmp_path, capsys):
    root = tmp_path / "train"
    rows = fashionai_rows(root, 3)
    csv_file = write_fashionai_csv(root / "train.csv", [rows[0], [rows[1][0], "hat", *rows[1][2:]],
                                                        rows[2]])
    out = tmp_path / "out.json"
    assert run_tool("fashionai", "--csv", csv_file, "--images", root, "--out", out,
                    "--strict") == 1
    err = capsys.readouterr().err
    assert f"problem: {csv_file}: row 2: unknown image_category 'hat'" in err
    assert f"error: --strict: 1 problem(s) in {csv_file}; nothing was written" in err
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == []


def test_a_csv_without_the_landmark_columns_is_refused(tmp_path):
    csv_file = tmp_path / "test.csv"
    csv_file.write_text("image_id,image_category\nImages/skirt/a.jpg,skirt\n")
    with pytest.raises(ConversionError, match=r"test\.csv: not a FashionAI keypoints CSV, the "
                       r"header lacks neckline_left, neckline_right"):
        convert_fashionai(csv_file, tmp_path, tmp_path / "out.json")
    assert not (tmp_path / "out.json").exists()


def test_the_command_line_tool_runs(fashionai_split, tmp_path):
    csv_file, images = fashionai_split
    out = tmp_path / "cli.json"
    done = subprocess.run([sys.executable, str(TOOL), "fashionai", "--csv", str(csv_file),
                           "--images", str(images), "--out", str(out)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert f"10 rows: 10 converted, 0 skipped; 0 problems reported\nwrote {out}" in done.stdout
    assert len(json.loads(out.read_text())["annotations"]) == 10


def test_converted_rows_load_by_name_and_map_to_targets(fashionai_split, tmp_path):
    csv_file, images = fashionai_split
    out = tmp_path / "train.json"
    convert_fashionai(csv_file, images, out)
    register_coco_landmarks("fashionai_fixture_for_mapper_test", out, images, "fashionai")
    metadata = MetadataCatalog.get("fashionai_fixture_for_mapper_test")
    assert metadata.layout == "fashionai" and metadata.keypoint_oks_sigmas is None
    assert metadata.thing_classes == list(FASHIONAI_CATEGORY_LANDMARKS)
    assert metadata.keypoint_names == list(FASHIONAI_LANDMARKS)
    records = DatasetCatalog.get("fashionai_fixture_for_mapper_test")
    assert len(records) == 10
    image, target = DatasetMapper(FASHIONAI)(records[0])
    assert image.shape == (3, records[0]["height"], records[0]["width"])
    # no masks and no pairs in FashionAI: the target holds only what the record has
    assert set(target) == {"boxes", "labels", "keypoints", "image_id"}
    assert target["keypoints"].shape == (1, 24, 3)
    assert target["keypoints"].flatten().tolist() == records[0]["annotations"][0]["keypoints"]
    with pytest.raises(ValueError, match=r"unknown landmark layout 'lip'"):
        register_coco_landmarks("fashionai_fixture_bad_layout", out, images, "lip")
