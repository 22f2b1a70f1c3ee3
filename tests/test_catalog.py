"""Named splits resolve under $MATCHRCNN_DATASETS and load converted COCO files as records; the
unannotated test split loads from its image-information files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from matchrcnn.data.catalog import (
    DatasetCatalog,
    DatasetFilesError,
    ImageInfoFiles,
    MetadataCatalog,
    SplitFiles,
)
from matchrcnn.data.categories import CATEGORY_NAMES, keypoint_oks_sigmas
from matchrcnn.data.deepfashion2 import convert_split
from matchrcnn.data.image_info import ImageInfoError, load_image_info, write_image_info
from tests.conftest import write_df2_split


def test_builtin_splits_are_registered():
    names = DatasetCatalog.names()
    for name in ("deepfashion2_train", "deepfashion2_validation", "deepfashion2_test",
                 "synthetic_train", "synthetic_validation"):
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


def _info(path: Path, images: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": []}))
    return path


def _image(image_id: int, **extra: object) -> dict:
    return {"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": 40, "height": 30,
            **extra}


def test_test_split_loads_its_images_with_their_source(tmp_path: Path, monkeypatch):
    """deepfashion2_test: images in id order (not file order), the released layout, source from
    the consumer and shop lists, nothing else; metadata says it has no annotations."""
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(tmp_path))
    files = MetadataCatalog.get("deepfashion2_test").files
    assert files.image_root == tmp_path / "deepfashion2" / "test" / "image"
    everything, consumer, shop = files.info_files
    assert everything == (tmp_path / "deepfashion2" / "json_for_test"
                          / "keypoints_test_information.json")
    files.image_root.mkdir(parents=True)
    _info(everything, [_image(7), _image(2), _image(30), _image(4)])
    _info(consumer, [_image(2), _image(30)])
    _info(shop, [_image(7)])

    records = DatasetCatalog.get("deepfashion2_test")
    assert [r["image_id"] for r in records] == [2, 4, 7, 30]
    assert [r.get("source") for r in records] == ["user", None, "shop", "user"]
    assert records[0]["file_name"] == str(files.image_root / "000002.jpg")
    assert (records[0]["width"], records[0]["height"]) == (40, 30)
    assert all(r["annotations"] == [] for r in records)
    assert MetadataCatalog.get("deepfashion2_test").annotated is False


def test_test_split_without_its_files_says_where_they_go(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(tmp_path))
    with pytest.raises(DatasetFilesError, match=r"json_for_test/retrieval_test_shop_information"
                                                r"\.json.*Unzip"):
        DatasetCatalog.get("deepfashion2_test")


def test_an_images_own_source_wins_over_the_lists(tmp_path: Path):
    everything = _info(tmp_path / "all.json", [_image(1, source="shop"), _image(2)])
    consumer = _info(tmp_path / "consumer.json", [_image(1), _image(2)])
    records = load_image_info(everything, tmp_path, consumer)
    assert [r["source"] for r in records] == ["shop", "user"]


@pytest.mark.parametrize(("images", "consumer", "shop", "message"), [
    ([_image(1), _image(1)], [], [], "image id 1 is listed more than once"),
    ([_image(1)], [_image(1)], [_image(1)], "image 1 is listed as a consumer image"),
    ([_image(1)], [_image(5)], [], r"consumer.json: image 5 \(1 in all\) is not in"),
    ([{"id": 1, "file_name": "000001.jpg", "width": 40}], [], [],
     r"images entry 0: 'height' must be a positive integer, got None"),
    ([_image(1, source="street")], [], [], "'source' must be 'user' or 'shop'"),
    ([], [], [], "lists no images"),
])
def test_bad_image_information_is_refused_by_name(tmp_path: Path, images, consumer, shop,
                                                  message):
    with pytest.raises(ImageInfoError, match=message):
        load_image_info(_info(tmp_path / "all.json", images), tmp_path,
                        _info(tmp_path / "consumer.json", consumer),
                        _info(tmp_path / "shop.json", shop))


def test_not_json_is_refused_by_name(tmp_path: Path):
    broken = tmp_path / "all.json"
    broken.write_text('{"images": [{"id": 1,')
    with pytest.raises(ImageInfoError, match=r"all\.json: not valid JSON"):
        load_image_info(broken, tmp_path)


def test_an_unannotated_copy_keeps_the_images_and_nothing_of_the_ground_truth(tmp_path: Path,
                                                                               monkeypatch):
    """write_image_info of a converted split, read back as a registered unannotated split: the
    same images, sources and sizes; no pair_id, annotation or attribute in any file."""
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(tmp_path))
    source = SplitFiles("deepfashion2", "validation")
    write_df2_split(source.base, "validation", [1, 2, 3, 6, 9])
    convert_split(source.base, "validation", source.json_file, workers=1)
    annotated = DatasetCatalog.get("deepfashion2_validation")
    copy = ImageInfoFiles("copy", "test", "test", root=tmp_path)
    written = write_image_info(annotated, copy.info_dir, "test")
    assert written == copy.info_files
    for path in written:
        for entry in json.loads(path.read_text())["images"]:
            assert set(entry) == {"id", "file_name", "width", "height"}

    records = load_image_info(*copy.info_files[:1], source.image_root, *copy.info_files[1:])
    assert [(r["image_id"], r["source"], r["width"], r["height"], r["file_name"])
            for r in records] == [(r["image_id"], r["source"], r["width"], r["height"],
                                   r["file_name"]) for r in annotated]
    assert all(r["annotations"] == [] and "pair_id" not in r for r in records)


def test_evaluating_an_unannotated_split_is_refused_by_name():
    from matchrcnn.config import ConfigError, get_cfg
    from matchrcnn.engine.evaluation import build_evaluator

    with pytest.raises(ConfigError, match=r"'deepfashion2_test' has no annotations.*"
                                          r"write_submission"):
        build_evaluator(get_cfg(), None, "deepfashion2_test")
