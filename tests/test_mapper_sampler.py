"""Records become model tensors; pair batches mix matching user/shop images with unrelated ones."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch

from matchrcnn.data.catalog import load_coco_records
from matchrcnn.data.categories import landmark_slice
from matchrcnn.data.deepfashion2 import convert_split
from matchrcnn.data.images import ImageInputError
from matchrcnn.data.layouts import DEEPFASHION2, FASHIONAI, SALHG
from matchrcnn.data.mapper import DatasetMapper
from matchrcnn.data.samplers import PairBatchSampler


@pytest.fixture
def records(df2_root: Path, tmp_path: Path) -> list[dict]:
    convert_split(df2_root, "validation", tmp_path / "val.json", workers=1)
    return load_coco_records(tmp_path / "val.json", df2_root / "validation" / "image")


def test_mapper_builds_torchvision_targets(records: list[dict]):
    for record in records:
        image, target = DatasetMapper(DEEPFASHION2)(record)
        n = len(record["annotations"])
        assert image.shape == (3, record["height"], record["width"])
        assert image.dtype == torch.float32 and image.min() >= 0.0 and image.max() <= 1.0
        assert target["boxes"].shape == (n, 4)
        assert target["masks"].shape == (n, record["height"], record["width"])
        assert target["keypoints"].shape == (n, 294, 3)
        assert bool(target["is_shop"]) == (record["source"] == "shop")
        for i, annotation in enumerate(record["annotations"]):
            x, y, w, h = annotation["bbox"]
            assert target["boxes"][i].tolist() == [x, y, x + w, y + h]
            assert target["labels"][i] == annotation["category_id"]
            assert target["pair_ids"][i] == annotation["pair_id"]
            assert target["styles"][i] == annotation["style"]
            # The hand-made fixture's polygon is its box: the mask fills the box.
            mask = target["masks"][i].numpy()
            ys, xs = np.nonzero(mask)
            assert xs.min() == x and ys.min() == y
            assert abs(int(mask.sum()) - w * h) <= w + h + 1
            slots = landmark_slice(annotation["category_id"])
            flat = target["keypoints"][i].flatten().tolist()
            assert flat[3 * slots.start : 3 * slots.stop] == [
                float(v) for v in annotation["keypoints"][3 * slots.start : 3 * slots.stop]
            ]


def test_mapper_names_a_broken_image(records: list[dict]):
    record = records[0]
    Path(record["file_name"]).write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ImageInputError, match=record["file_name"]):
        DatasetMapper(DEEPFASHION2)(record)


def test_mapper_refuses_an_image_of_another_size(records: list[dict]):
    record = dict(records[0], width=records[0]["width"] + 1)
    with pytest.raises(ImageInputError, match="annotation says"):
        DatasetMapper(DEEPFASHION2)(record)


def test_the_layout_sets_the_landmark_slots_and_is_required_for_them(records: list[dict]):
    record = records[0]
    with pytest.raises(ValueError, match="needs the dataset's landmark layout"):
        DatasetMapper()
    for layout in (DEEPFASHION2, FASHIONAI, SALHG):
        assert DatasetMapper(layout).num_landmarks == layout.num_slots
    _, without = DatasetMapper(landmarks=False)(record)
    assert "keypoints" not in without and without["boxes"].shape == (len(record["annotations"]), 4)
    image, target = DatasetMapper(with_targets=False)(record)
    assert image.shape == (3, record["height"], record["width"]) and set(target) == {"image_id"}
    with pytest.raises(ValueError, match="needs a flip map; the 'salhg' layout has none"):
        DatasetMapper(SALHG, hflip=True)


def _pair_records(groups: int, unrelated_users: int) -> list[dict]:
    records = []
    for pid in range(groups):
        records += [{"source": "user", "pair_id": pid}, {"source": "user", "pair_id": pid},
                    {"source": "shop", "pair_id": pid}]
    records += [{"source": "user", "pair_id": 1000 + i} for i in range(unrelated_users)]
    return records


def test_pair_batches_hold_matching_pairs_and_unrelated_images():
    records = _pair_records(groups=10, unrelated_users=6)
    sampler = PairBatchSampler(records, images_per_batch=8, unrelated_fraction=0.25, seed=3)
    assert sampler.groups == 3
    for batch in islice(sampler.iterate(), 20):
        assert len(batch) == 8 and len(set(batch)) == 8
        pairs = [batch[i : i + 2] for i in range(0, 6, 2)]
        chosen = set()
        for user, shop in pairs:
            assert records[user]["source"] == "user" and records[shop]["source"] == "shop"
            assert records[user]["pair_id"] == records[shop]["pair_id"]
            chosen.add(records[user]["pair_id"])
        assert len(chosen) == 3
        assert all(records[i]["pair_id"] not in chosen for i in batch[6:])


def test_pair_batches_are_a_function_of_seed_rank_and_iteration():
    records = _pair_records(groups=20, unrelated_users=10)
    a = PairBatchSampler(records, 6, seed=1)
    assert list(islice(a.iterate(5), 3)) == list(islice(a.iterate(), 8))[5:]
    assert [a.batch(i) for i in range(4)] == [PairBatchSampler(records, 6, seed=1).batch(i)
                                              for i in range(4)]
    assert [a.batch(i) for i in range(4)] != [PairBatchSampler(records, 6, seed=1, rank=1).batch(i)
                                              for i in range(4)]
    assert [a.batch(i) for i in range(4)] != [PairBatchSampler(records, 6, seed=2).batch(i)
                                              for i in range(4)]


def test_pair_sampler_rejects_what_it_cannot_sample():
    with pytest.raises(ValueError, match="no pair_id has both"):
        PairBatchSampler([{"source": "user", "pair_id": 1}] * 4, 2)
    with pytest.raises(ValueError, match="cannot fill batches"):
        PairBatchSampler(_pair_records(1, 0), 8)
