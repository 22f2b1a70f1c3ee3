"""Named splits resolve under $MATCHRCNN_DATASETS and load converted COCO files as records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matchrcnn.data.catalog import DatasetCatalog, MetadataCatalog, SplitFiles
from matchrcnn.data.categories import CATEGORY_NAMES, keypoint_oks_sigmas
from matchrcnn.data.deepfashion2 import convert_split
from tests.conftest import write_df2_split


def test_builtin_splits_are_registered():
    names = DatasetCatalog.names()
    for name in ("deepfashion2_train", "deepfashion2_validation", "synthetic_train",
                 "synthetic_validation"):
        assert name in names
        metadata = MetadataCatalog.get(name)
        assert metadata.thing_classes == list(CATEGORY_NAMES)
        assert metadata.keypoint_oks_sigmas == list(keypoint_oks_sigmas())
        assert len(metadata.keypoint_names) == 294


def test_split_resolves_under_the_environment_root(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(tmp_path))
    files = MetadataCatalog.get("synthetic_validation").files
    assert files.image_root == tmp_path / "synthetic" / "validation" / "image"
    assert files.json_file == tmp_path / "synthetic" / "annotations" / "validation.json"
    assert files.query_gt == tmp_path / "synthetic" / "retrieval" / "validation" / "query_gt.json"


def test_unconverted_split_error_names_the_command(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"tools/convert_deepfashion2\.py --root"):
        DatasetCatalog.get("deepfashion2_train")


def test_records_group_annotations_under_their_images(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(tmp_path))
    files = SplitFiles("deepfashion2", "validation")
    write_df2_split(files.base, "validation", [1, 2, 5, 7])
    convert_split(files.base, "validation", files.json_file, workers=1)
    coco = json.loads(files.json_file.read_text())

    records = DatasetCatalog.get("deepfashion2_validation")
    assert [r["image_id"] for r in records] == [1, 2, 5, 7]
    for record in records:
        assert Path(record["file_name"]) == files.image_root / f"{record['image_id']:06d}.jpg"
        assert Path(record["file_name"]).is_file()
        expected = [a for a in coco["annotations"] if a["image_id"] == record["image_id"]]
        assert record["annotations"] == expected


def test_registering_a_name_twice_is_refused():
    with pytest.raises(KeyError, match="already registered"):
        DatasetCatalog.register("synthetic_train", list)
