"""The splits in detectron2's catalogs, the Match R-CNN mapper and the pair batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip(
    "detectron2", reason="detectron2 is not installed (no package index has it; see README.md, "
    "'Use with detectron2')"
)

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import detection_utils as utils
from detectron2.data import transforms as T
from detectron2.structures import BoxMode

from matchrcnn.d2 import (
    MatchRCNNDatasetMapper,
    PairTrainingSampler,
    build_pair_train_loader,
    register_split,
)
from matchrcnn.data import catalog
from matchrcnn.data.catalog import SplitFiles
from matchrcnn.data.categories import CATEGORY_NAMES, keypoint_oks_sigmas, landmark_slice
from matchrcnn.data.layouts import DEEPFASHION2
from matchrcnn.data.mapper import DatasetMapper
from matchrcnn.data.transforms import hflip_image, hflip_target
from tests.d2.conftest import d2_cfg


@pytest.mark.parametrize("name", ["deepfashion2_train", "deepfashion2_validation",
                                  "synthetic_train", "synthetic_validation"])
def test_builtin_splits_carry_deepfashion2_metadata(name):
    metadata = MetadataCatalog.get(name)
    assert name in DatasetCatalog.list()
    assert metadata.thing_classes == list(CATEGORY_NAMES)
    assert metadata.keypoint_names == [str(slot) for slot in range(1, 295)]
    assert metadata.keypoint_oks_sigmas == list(keypoint_oks_sigmas())
    assert metadata.evaluator_type == "deepfashion2"
    assert metadata.keypoint_flip_map == DEEPFASHION2.named_flip_pairs()
    assert utils.create_keypoint_hflip_indices([name]) == list(DEEPFASHION2.flip_indices)


def test_records_are_in_detectron2_format_with_zero_based_categories(d2_env):
    ours = catalog.DatasetCatalog.get("synthetic_train")
    records = DatasetCatalog.get("synthetic_train")
    assert [r["image_id"] for r in records] == [r["image_id"] for r in ours]
    for record, original in zip(records, ours, strict=True):
        assert record["source"] == original["source"]
        for annotation, item in zip(record["annotations"], original["annotations"], strict=True):
            assert annotation["bbox_mode"] == BoxMode.XYWH_ABS
            assert annotation["bbox"] == item["bbox"]
            assert annotation["category_id"] == item["category_id"] - 1
            assert annotation["keypoints"] == item["keypoints"]
            assert (annotation["pair_id"], annotation["style"]) == (item["pair_id"], item["style"])


def test_a_split_under_another_root_registers_in_both_catalogs(d2_env):
    name = "custom_synthetic_validation"
    files = SplitFiles("synthetic", "validation", d2_env)
    register_split(name, files)
    assert MetadataCatalog.get(name).split_files == files
    assert catalog.MetadataCatalog.get(name).files == files
    expected = DatasetCatalog.get("synthetic_validation")
    assert [r["image_id"] for r in DatasetCatalog.get(name)] == [r["image_id"] for r in expected]


def test_missing_split_files_name_the_conversion_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"tools/convert_deepfashion2\.py"):
        DatasetCatalog.get("deepfashion2_validation")


def test_training_mapper_gives_landmarks_and_pair_labels_at_the_resized_scale(d2_env):
    record = next(r for r in DatasetCatalog.get("synthetic_train") if len(r["annotations"]) > 1)
    mapped = MatchRCNNDatasetMapper(d2_cfg(), True)(record)
    instances = mapped["instances"]
    height, width = mapped["image"].shape[-2:]
    scale = np.array([width / record["width"], height / record["height"]])
    count = len(record["annotations"])
    assert instances.gt_keypoints.tensor.shape == (count, 294, 3)
    assert instances.gt_classes.tolist() == [a["category_id"] for a in record["annotations"]]
    assert instances.gt_pair_ids.tolist() == [a["pair_id"] for a in record["annotations"]]
    assert instances.gt_styles.tolist() == [a["style"] for a in record["annotations"]]
    assert instances.gt_is_shop.tolist() == [record["source"] == "shop"] * count
    assert len(instances.gt_masks) == count
    for index, annotation in enumerate(record["annotations"]):
        original = np.array(annotation["keypoints"], dtype=float).reshape(294, 3)
        own = landmark_slice(annotation["category_id"] + 1)
        labelled = original[:, 2] > 0
        mapped_points = instances.gt_keypoints.tensor[index].numpy()
        assert labelled[own].any() and not labelled[: own.start].any()
        np.testing.assert_allclose(mapped_points[labelled, :2], original[labelled, :2] * scale,
                                   rtol=1e-5)
        np.testing.assert_array_equal(mapped_points[:, 2], original[:, 2])


def test_inference_mapper_drops_the_annotations(d2_env):
    record = DatasetCatalog.get("synthetic_validation")[0]
    mapped = MatchRCNNDatasetMapper(d2_cfg(), False)(record)
    assert "instances" not in mapped and "annotations" not in mapped
    assert (mapped["height"], mapped["width"]) == (record["height"], record["width"])


def test_horizontal_flip_uses_the_splits_flip_map():
    mapper = MatchRCNNDatasetMapper(d2_cfg("INPUT.RANDOM_FLIP", "horizontal"), True)
    assert list(mapper.keypoint_hflip_indices) == list(DEEPFASHION2.flip_indices)
    assert any(isinstance(a, T.RandomFlip) for a in mapper.augmentations.augs)


@pytest.mark.parametrize(("flip", "split"), [("horizontal", "synthetic_unmirrored_train"),
                                             ("vertical", "synthetic_train")])
def test_flipping_without_a_landmark_flip_map_is_refused(flip, split):
    MetadataCatalog.get("synthetic_unmirrored_train").set(
        keypoint_names=[str(slot) for slot in range(1, 295)])
    cfg = d2_cfg("INPUT.RANDOM_FLIP", flip, "DATASETS.TRAIN", f"('{split}',)")
    with pytest.raises(ValueError, match=f"INPUT.RANDOM_FLIP '{flip}'"):
        MatchRCNNDatasetMapper(cfg, True)
    assert MatchRCNNDatasetMapper(cfg, False).keypoint_hflip_indices is None


def test_detectron2s_flip_agrees_with_the_torchvision_engines_on_the_same_record(d2_env):
    """detectron2's RandomFlip with the registered flip map, and our mapper's flip: the same
    pixels, boxes, landmarks (moved to the same slots) and masks."""
    ours_records = catalog.DatasetCatalog.get("synthetic_train")
    index = next(i for i, r in enumerate(ours_records) if len(r["annotations"]) > 1)
    d2_mapper = MatchRCNNDatasetMapper(d2_cfg("INPUT.RANDOM_FLIP", "horizontal",
                                              "INPUT.MASK_FORMAT", "bitmask"), True)
    d2_mapper.augmentations = T.AugmentationList([T.RandomFlip(prob=1.0, horizontal=True)])
    theirs = d2_mapper(DatasetCatalog.get("synthetic_train")[index])
    mapper = DatasetMapper(DEEPFASHION2, hflip=True)
    record = ours_records[index]
    iteration = next(i for i in range(100) if mapper.flips(record, i))
    image, target = mapper(record, iteration)

    np.testing.assert_array_equal((image * 255).round().byte().numpy(),
                                  theirs["image"].numpy()[::-1])  # detectron2's is BGR
    instances = theirs["instances"]
    assert instances.gt_classes.tolist() == (target["labels"] - 1).tolist()
    torch.testing.assert_close(instances.gt_boxes.tensor, target["boxes"])
    torch.testing.assert_close(instances.gt_keypoints.tensor, target["keypoints"])
    masks = instances.gt_masks.tensor
    assert masks.shape == target["masks"].shape
    differing = (masks != target["masks"].bool()).sum(dim=(1, 2))
    assert (differing <= 0.01 * target["masks"].sum(dim=(1, 2))).all(), differing
    # Flipping back gives the record's own target.
    unflipped = DatasetMapper(DEEPFASHION2)(record)
    again = hflip_target(target, image.shape[-1], DEEPFASHION2.flip_indices)
    assert torch.equal(hflip_image(image), unflipped[0])
    for key in ("boxes", "masks", "keypoints"):
        assert torch.equal(again[key], unflipped[1][key]), key


def test_pair_sampler_streams_batches_of_consumer_and_shop_images_of_the_same_pairs(d2_env):
    records = DatasetCatalog.get("synthetic_train")
    stream = iter(PairTrainingSampler(records, images_per_batch=4, unrelated_fraction=0.0, seed=1))
    for _ in range(10):
        batch = [records[next(stream)] for _ in range(4)]
        sources = [r["source"] for r in batch]
        assert sources == ["user", "shop", "user", "shop"]
        assert batch[0]["pair_id"] == batch[1]["pair_id"]
        assert batch[2]["pair_id"] == batch[3]["pair_id"]
    again = iter(PairTrainingSampler(records, images_per_batch=4, unrelated_fraction=0.0, seed=1))
    replay = [next(again) for _ in range(40)]
    fresh = iter(PairTrainingSampler(records, images_per_batch=4, unrelated_fraction=0.0, seed=1))
    assert [next(fresh) for _ in range(40)] == replay


def test_pair_loader_yields_mapped_pair_batches(d2_env):
    batch = next(iter(build_pair_train_loader(d2_cfg())))
    assert len(batch) == 4
    shop = [bool(image["instances"].gt_is_shop.all()) for image in batch]
    assert shop == [False, True, False, True]
    first, second = (image["instances"].gt_pair_ids for image in batch[:2])
    assert set(first.tolist()) == set(second.tolist())


def test_pair_loader_refuses_several_training_datasets(d2_env):
    cfg = d2_cfg("DATASETS.TRAIN", "('synthetic_train', 'synthetic_validation')")
    with pytest.raises(ValueError, match="single training dataset"):
        build_pair_train_loader(cfg)
