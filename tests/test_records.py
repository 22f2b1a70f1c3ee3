"""Compact dataset records: the same dicts back, streamed from the file, readable by columns."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from matchrcnn.data import records as records_module
from matchrcnn.data.records import (
    ConcatRecords,
    RecordStore,
    column,
    load_coco_records,
)


def _annotation(rng: np.random.Generator, ann_id: int, image_id: int) -> dict:
    keypoints = [0] * 882
    keypoints[30:36] = [int(v) for v in rng.integers(-5, 2**31 - 1, 6)]
    return {"id": ann_id, "image_id": image_id, "category_id": int(rng.integers(1, 14)),
            "bbox": [float(v) for v in rng.uniform(0, 100, 4)], "area": 12.5, "iscrowd": 0,
            "segmentation": [[0.1, 2.0, 3.5, 4.25, 5.0, 6.0], [1, 2, 3, 4, 5, 6, 7, 8]],
            "keypoints": keypoints, "num_keypoints": 2, "style": ann_id % 3}


def _coco(images: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    annotations = [_annotation(rng, index + 1, int(rng.integers(1, images + 1)))
                   for index in range(2 * images)]
    annotations.append({**_annotation(rng, 10_000, 1), "keypoints": [0.5] * 882,
                        "segmentation": {"size": [4, 4], "counts": "04"}})
    return {"images": [{"id": image_id, "file_name": f"{image_id:06d}.jpg", "height": 80,
                        "width": 60, "source": "shop" if image_id % 2 else "user",
                        "pair_id": image_id // 2} for image_id in range(images, 0, -1)],
            "annotations": annotations, "categories": []}


def _plain_records(coco: dict, image_root: Path) -> list[dict]:
    records = {}
    for image in coco["images"]:
        records[image["id"]] = {**image, "image_id": image["id"],
                                "file_name": str(image_root / image["file_name"]),
                                "annotations": []}
    for annotation in coco["annotations"]:
        records[annotation["image_id"]]["annotations"].append(annotation)
    return [records[image_id] for image_id in sorted(records)]


def test_streamed_records_equal_the_file_grouped_by_image(tmp_path: Path):
    coco = _coco(30)
    path = tmp_path / "train.json"
    path.write_text(json.dumps(coco))
    records = load_coco_records(path, tmp_path / "images")
    expected = _plain_records(coco, tmp_path / "images")
    assert len(records) == 30
    assert list(records) == expected
    assert records[-1] == expected[-1] and records[3] == expected[3]
    # Values keep their types: integers stay integers, floats stay exact floats.
    read = [a for record in records for a in record["annotations"]]
    integer, floating = (next(a for a in read if (a["id"] == 10_000) == odd) for odd in (0, 1))
    assert all(type(v) is int for v in integer["keypoints"])
    assert all(type(v) is float for v in floating["keypoints"])
    assert integer["segmentation"][0] == [0.1, 2.0, 3.5, 4.25, 5.0, 6.0]
    assert column(records, "source") == [r["source"] for r in expected]
    assert records.annotation_counts().sum() == len(coco["annotations"])
    with pytest.raises(IndexError):
        records[30]


def test_the_store_is_smaller_than_its_pickled_dicts(tmp_path: Path):
    expected = _plain_records(_coco(200), tmp_path)
    store = RecordStore.from_records(expected)
    assert list(store) == expected
    assert store.nbytes < len(pickle.dumps(expected)) / 3


def test_records_spread_over_many_chunks_come_back_whole(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(records_module, "CHUNK_BYTES", 700)
    expected = _plain_records(_coco(40), tmp_path)
    store = RecordStore.from_records(expected)
    assert len(store._annotations.chunks) > 10
    assert list(store) == expected


def test_several_splits_read_as_one_sequence(tmp_path: Path):
    first, second = _plain_records(_coco(5, 1), tmp_path), _plain_records(_coco(7, 2), tmp_path)
    joined = ConcatRecords([RecordStore.from_records(first), second])
    assert len(joined) == 12 and list(joined) == first + second
    assert joined[5] == second[0] and joined[-1] == second[-1]
    assert joined.column("pair_id") == [r["pair_id"] for r in first + second]


@pytest.mark.parametrize(("text", "message"), [
    ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [', "is not valid JSON"),
    ('{"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": '
     '[{"id": 7, "image_id": 2}]}', "annotation 7 names image 2, which the file does not list"),
    ('{"annotations": []}', "is not a COCO file: it has no 'images'"),
    ('{"images": [{"id": 1, "file_name": "a.jpg"}]}', "it has no 'annotations'"),
    ('{"images": [{"file_name": "a.jpg"}], "annotations": []}', "lacks 'id' or 'file_name'"),
    ('{"images": [{"id": 3, "file_name": "a.jpg"}, {"id": 3, "file_name": "b.jpg"}], '
     '"annotations": []}', "image id 3 is listed more than once"),
])
def test_malformed_files_are_refused_naming_the_file_and_the_entry(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as error:
        load_coco_records(path, tmp_path)
    assert str(path) in str(error.value)
