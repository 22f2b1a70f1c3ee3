"""tools/check_flip_map.py: a flip map checked against converted annotations of frontal items."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from matchrcnn.config import get_cfg
from matchrcnn.data.categories import (
    NUM_CATEGORIES,
    NUM_LANDMARKS,
    flip_pairs_document,
    landmark_slice,
)
from matchrcnn.data.deepfashion2 import convert_split
from matchrcnn.data.layouts import DEEPFASHION2
from matchrcnn.data.mapper import DatasetMapper
from matchrcnn.data.synthetic import generate_dataset
from matchrcnn.data.synthetic.geometry import rotation, scaling, translation
from matchrcnn.data.synthetic.render import garment_geometry

TOOL = Path(__file__).resolve().parents[1] / "tools" / "check_flip_map.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("check_flip_map", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _annotation(number: int, category_id: int, matrix: np.ndarray, viewpoint: int) -> dict:
    landmarks, outline = garment_geometry(category_id, matrix)
    keypoints = np.zeros((NUM_LANDMARKS, 3))
    keypoints[landmark_slice(category_id)] = np.column_stack([landmarks, np.full(len(landmarks),
                                                                                 2)])
    (x1, y1), (x2, y2) = outline.min(axis=0), outline.max(axis=0)
    return {"id": number, "image_id": number, "category_id": category_id,
            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
            "keypoints": keypoints.ravel().tolist(), "viewpoint": viewpoint}


@pytest.fixture(scope="module")
def frontal_file(tmp_path_factory) -> Path:
    """Upright synthetic garments of every category (whose landmarks mirror as the table says),
    seen from the front, plus side views that must not count."""
    rng = np.random.default_rng(0)
    annotations = []
    for number in range(NUM_CATEGORIES * 6):
        category_id = number % NUM_CATEGORIES + 1
        viewpoint = 3 if number % 6 == 5 else 2
        matrix = (translation(rng.uniform(100, 200), 150) @ rotation(rng.uniform(-2, 2))
                  @ scaling(1.5, 1.5) @ translation(-50, -60))
        if viewpoint == 3:  # turned away: everything on one side
            matrix = matrix @ translation(50, 0) @ scaling(0.05, 1.0) @ translation(-50, 0)
        annotations.append(_annotation(number, category_id, matrix, viewpoint))
    path = tmp_path_factory.mktemp("flipcheck") / "annotations.json"
    path.write_text(json.dumps({"images": [], "annotations": annotations, "categories": []}))
    return path


def test_the_shipped_table_fits_frontal_items_and_the_alternative_is_contradicted(
        tool, frontal_file, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert tool.main(["--annotations", str(frontal_file), "--min-items", "3",
                      "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "no pair of the map is contradicted" in printed
    assert "supports the table version" in printed
    report = json.loads(out.read_text())
    assert report["items"] == NUM_CATEGORIES * 5
    assert len(report["pairs"]) == 131 and report["contradicted"] == []
    assert all(row["opposite_share"] == 1.0 for row in report["pairs"])
    assert all(row["mirror_error"] < 0.06 for row in report["pairs"])
    # Both versions of the disputed pairs cross the centre line here: sides cannot tell them
    # apart, the mirror error does (the alternative's partners sit at other heights).
    alternative = report["disputed"]["alternative"]
    assert [row["pair"] for row in alternative] == ["2-6", "4-26"]
    assert all(row["verdict"] == "ok" and row["mirror_error"] > 0.15 for row in alternative)
    assert report["disputed"]["supported"] == "table"

    # A map with the alternative pairs instead: the tool names them and fails.
    document = flip_pairs_document()
    disputed = document["disputed"]
    pairs = [p for p in document["pairs"] if p not in disputed["table_pairs"]]
    mine = tmp_path / "my_pairs.json"
    mine.write_text(json.dumps({"pairs": pairs + disputed["alternative_pairs"]}))
    assert tool.main(["--annotations", str(frontal_file), "--pairs", str(mine),
                      "--min-items", "3"]) == 1
    settled = tmp_path / "settled.json"
    assert tool.main(["--annotations", str(frontal_file), "--pairs", str(mine),
                      "--min-items", "3", "--write-pairs", str(settled)]) == 1
    assert ("2 pair(s) contradicted: short_sleeved_outwear 2-6, short_sleeved_outwear 4-26"
            in capsys.readouterr().out)
    # The settled map is the table again, ready for INPUT.FLIP_PAIRS.
    assert json.loads(settled.read_text())["pairs"] == sorted(document["pairs"])
    cfg = get_cfg()
    cfg.INPUT.FLIP_PAIRS = str(settled)
    assert DatasetMapper.from_config(cfg, is_train=True).flip_indices == DEEPFASHION2.flip_indices
    cfg.INPUT.FLIP_PAIRS = str(mine)
    alternative_map = DatasetMapper.from_config(cfg, is_train=True).flip_indices
    assert (alternative_map[59], alternative_map[61]) == (63, 83)


def test_pairs_with_too_few_items_are_not_judged(tool, frontal_file, capsys):
    assert tool.main(["--annotations", str(frontal_file), "--min-items", "50"]) == 0
    printed = capsys.readouterr().out
    assert "too few" in printed and "contradicted:" not in printed
    assert "settles neither version" in printed


def test_on_a_converted_synthetic_split(tool, tmp_path, capsys):
    """End to end: the generator's files, the converter's COCO form, the tool. Its shop photos
    (viewpoint 1) show each garment upright and centred: every pair crosses and mirrors."""
    generate_dataset(tmp_path / "synthetic", 40, size=128, seed=5, workers=1)
    coco = tmp_path / "train.json"
    convert_split(tmp_path / "synthetic", "train", coco, workers=1)
    out = tmp_path / "report.json"
    assert tool.main(["--annotations", str(coco), "--viewpoints", "1", "--min-items", "1",
                      "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    judged = [row for row in report["pairs"] if row["items"]]
    assert report["items"] > 10 and len(judged) > 30
    assert all(row["opposite_share"] == 1.0 and row["mirror_error"] < 0.03 for row in judged)
    # Worn items (viewpoint 2) are turned and cropped: pairs near the centre line cross less often.
    assert tool.main(["--annotations", str(coco), "--min-items", "1000"]) == 0
    assert "items seen from the front" in capsys.readouterr().out


def test_bad_inputs_end_in_one_error_line(tool, tmp_path, capsys):
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps({"annotations": [{"id": 7, "bbox": [0, 0, 1, 1]}]}))
    assert tool.main(["--annotations", str(bare)]) == 2
    assert "bare.json: annotation 7 has no viewpoint" in capsys.readouterr().err
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps({"pairs": [[0, 30]]}))
    assert tool.main(["--annotations", str(bare), "--pairs", str(pairs)]) == 2
    assert "joins slots of two categories" in capsys.readouterr().err
    assert tool.main(["--annotations", str(tmp_path / "absent.json")]) == 2
    assert "absent.json: cannot be read" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        tool.main(["--annotations", str(bare), "--viewpoints", "front"])
