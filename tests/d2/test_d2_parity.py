"""Every key of the torchvision engine's branches works in the detectron2 engine: the landmark
LAYOUT (FashionAI and SAL-HG train and predict), NORM, MATCH_HEAD.INPUT "pixels", the RoI level
mapping (MODEL.ROI_HEADS.CANONICAL_BOX_SIZE) and TEST.CLASS_AGNOSTIC_NMS."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip(
    "detectron2", reason="detectron2 is not installed (no package index has it; see README.md, "
    "'Use with detectron2')"
)

from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.modeling.poolers import assign_boxes_to_levels
from detectron2.structures import Boxes
from detectron2.utils.events import EventStorage
from torchvision.ops import box_iou, roi_align

from matchrcnn.config import ConfigError
from matchrcnn.d2 import MatchRCNNDatasetMapper, MatchRCNNTrainer, build_pair_train_loader
from matchrcnn.data.fashionai import convert_fashionai
from matchrcnn.data.salhg import convert_salhg
from tests.d2.conftest import CONFIGS, d2_cfg
from tests.datasets.conftest import (
    fashionai_rows,
    salhg_entries,
    write_fashionai_csv,
    write_pickle,
)

SMALL = [
    "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", "MODEL.BACKBONE.FREEZE_AT", "0",
    "MODEL.RESNETS.DEPTH", "18", "MODEL.RESNETS.RES2_OUT_CHANNELS", "64",
    "MODEL.RESNETS.NORM", "GN", "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.PIXEL_MEAN", "[103.530, 116.280, 123.675]",
    "MODEL.PIXEL_STD", "[57.375, 57.120, 58.395]",
    "MODEL.ANCHOR_GENERATOR.SIZES", "[[16], [32], [64], [128], [256]]",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
    "MODEL.ROI_LANDMARK_HEAD.NUM_CONVS", "2", "MODEL.ROI_LANDMARK_HEAD.CONV_DIM", "16",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "1",
    "SOLVER.BASE_LR", "0.005", "SOLVER.CHECKPOINT_PERIOD", "100",
]
"""configs/d2's ResNet-50 landmark configs cut down to a CPU test's size."""


@pytest.fixture(scope="module")
def landmark_datasets(tmp_path_factory) -> Path:
    """FashionAI and SAL-HG training splits, converted to where the catalog's names find them."""
    root = tmp_path_factory.mktemp("landmark_datasets")
    images = root / "fashionai" / "train"
    csv_file = write_fashionai_csv(images / "Annotations" / "train.csv",
                                   fashionai_rows(images, 6, 0))
    convert_fashionai(csv_file, images, root / "fashionai" / "annotations" / "train.json",
                      strict=True)
    for kind in ("person", "garment"):
        images = root / "salhg" / "train" / kind
        pkl = write_pickle(root / "pickles" / f"hd_train_{kind}.pkl", salhg_entries(images, 4, 0))
        convert_salhg(pkl, images, root / "salhg" / "annotations" / f"{kind}_train.json",
                      strict=True)
    return root


@pytest.mark.parametrize("config, slots", [("fashionai_landmarks_R50_FPN.yaml", 24),
                                           ("salhg_landmarks_R50_FPN.yaml", 32)])
def test_fashionai_and_salhg_train_and_predict_their_layouts(
        landmark_datasets, tmp_path, monkeypatch, config, slots) -> None:
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(landmark_datasets))
    torch.manual_seed(0)
    cfg = d2_cfg(*SMALL, "OUTPUT_DIR", str(tmp_path), config=CONFIGS / config)
    trainer = MatchRCNNTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    histories = trainer.storage.histories()
    assert "loss_landmark" in histories and not {"loss_mask", "loss_match"} & set(histories)
    values = [value for value, _ in histories["loss_landmark"].values()]
    assert len(values) == 3 and all(math.isfinite(v) and v > 0 for v in values)

    model = trainer.model.eval()
    record = DatasetCatalog.get(cfg.DATASETS.TRAIN[0])[0]
    with torch.no_grad():
        instances = model([MatchRCNNDatasetMapper(cfg, False)(record)])[0]["instances"]
    assert instances.pred_keypoints.shape == (len(instances), slots, 3)
    assert not instances.has("pred_embeddings")


def test_landmark_norm_follows_every_conv(d2_env) -> None:
    cfg = d2_cfg("MODEL.ROI_LANDMARK_HEAD.NORM", "GN")
    head = build_model(cfg).roi_heads.landmark_branch.head
    convs = [m for m in head if isinstance(m, nn.Conv2d)]
    norms = [m for m in head if isinstance(m, nn.GroupNorm)]
    assert len(convs) == len(norms) == cfg.MODEL.ROI_LANDMARK_HEAD.NUM_CONVS
    assert all(conv.bias is None for conv in convs)
    layers = list(head)
    assert all(isinstance(layers[layers.index(conv) + 1], nn.GroupNorm) for conv in convs)


def test_the_match_head_can_pool_the_input_pixels(d2_env) -> None:
    torch.manual_seed(0)
    cfg = d2_cfg("MODEL.MATCH_HEAD.INPUT", "pixels")
    model = build_model(cfg)
    branch = model.roi_heads.match_branch
    assert branch.head.convs[0].in_channels == 3

    batch = next(iter(build_pair_train_loader(cfg)))
    images = model.preprocess_image(batch)
    box = torch.tensor([[10.0, 12.0, 70.0, 90.0]])
    resolution = cfg.MODEL.MATCH_HEAD.POOLER_RESOLUTION
    expected = roi_align(images.tensor[:1], [box], resolution, 1.0, 0, aligned=True)
    pooled = branch.roi_pool({"pixels": images.tensor[:1]}, [box])
    torch.testing.assert_close(pooled, expected)

    with EventStorage():
        losses = model(batch)
    assert math.isfinite(float(losses["loss_match"].detach()))
    losses["loss_match"].backward()
    assert branch.head.convs[0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        instances = model(batch[:1])[0]["instances"]
        first = model.preprocess_image(batch[:1])
        embeddings = model.roi_heads.embed_boxes(model.backbone(first.tensor), [Boxes(box)],
                                                 first)
    assert instances.pred_embeddings.shape == (len(instances), cfg.MODEL.MATCH_HEAD.EMBED_DIM)
    assert embeddings.shape == (1, cfg.MODEL.MATCH_HEAD.EMBED_DIM)


@pytest.mark.parametrize("canonical", [112, 224])
def test_canonical_box_size_maps_levels_in_every_stream(d2_env, canonical) -> None:
    cfg = d2_cfg("MODEL.ROI_HEADS.CANONICAL_BOX_SIZE", str(canonical))
    heads = build_model(cfg).roi_heads
    poolers = [heads.box_pooler, heads.mask_pooler, heads.landmark_branch.roi_pool.pooler,
               heads.match_branch.roi_pool.pooler]
    assert {pooler.canonical_box_size for pooler in poolers} == {canonical}
    box = Boxes(torch.tensor([[0.0, 0.0, float(canonical), float(canonical)]]))
    pooler = heads.landmark_branch.roi_pool.pooler
    level = assign_boxes_to_levels([box], pooler.min_level, pooler.max_level,
                                   pooler.canonical_box_size, pooler.canonical_level)
    assert int(level) + pooler.min_level == 4


def test_class_agnostic_nms_leaves_one_detection_per_object(d2_env) -> None:
    batch = next(iter(build_pair_train_loader(d2_cfg())))[:1]
    overlaps = []
    for enabled in ("False", "True"):
        torch.manual_seed(0)
        cfg = d2_cfg("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                     "TEST.CLASS_AGNOSTIC_NMS.ENABLED", enabled,
                     "TEST.CLASS_AGNOSTIC_NMS.IOU_THRESH", "0.3")
        model = build_model(cfg).eval()
        with torch.no_grad():
            instances = model(batch)[0]["instances"]
        boxes = instances.pred_boxes.tensor
        overlaps.append(float(box_iou(boxes, boxes).fill_diagonal_(0).max()))
        assert instances.pred_keypoints.shape[0] == instances.pred_embeddings.shape[0] == len(
            instances)
    assert overlaps[0] > 0.3 >= overlaps[1]


def test_a_split_without_an_evaluator_is_refused_by_name(landmark_datasets, monkeypatch) -> None:
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(landmark_datasets))
    cfg = d2_cfg(*SMALL, config=CONFIGS / "fashionai_landmarks_R50_FPN.yaml")
    with pytest.raises(ConfigError, match="'fashionai_train': the detectron2 engine evaluates"):
        MatchRCNNTrainer.build_evaluator(cfg, "fashionai_train")
