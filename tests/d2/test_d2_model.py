"""MatchRCNNROIHeads built from configs/d2: its losses, its outputs, its errors, its weights."""

from __future__ import annotations

import logging
import math
import pickle

import pytest
import torch

pytest.importorskip(
    "detectron2", reason="detectron2 is not installed (no package index has it; see README.md, "
    "'Use with detectron2')"
)

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import build_detection_test_loader
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from matchrcnn.config import setup_cfg
from matchrcnn.d2 import MatchRCNNROIHeads, build_pair_train_loader
from matchrcnn.data.categories import landmark_slice
from matchrcnn.data.layouts import get_layout
from matchrcnn.modeling import build_model as build_torchvision_model
from tests.d2.conftest import CONFIGS, REPO, d2_cfg

LOSSES = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask",
          "loss_landmark", "loss_match"}


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_config_builds_match_rcnn(config):
    cfg = d2_cfg("MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "", config=CONFIGS / config)
    model = build_model(cfg)
    heads = model.roi_heads
    layout = get_layout(cfg.MODEL.ROI_LANDMARK_HEAD.LAYOUT)
    assert isinstance(heads, MatchRCNNROIHeads)
    assert heads.num_classes == layout.num_categories
    assert heads.landmark_branch.predictor.deconv.out_channels == layout.num_slots
    if cfg.MODEL.MATCH_ON:
        assert heads.match_branch.head.fc.out_features == cfg.MODEL.MATCH_HEAD.EMBED_DIM
    else:
        assert heads.match_branch is None
    assert heads.mask_on == cfg.MODEL.MASK_ON and not heads.keypoint_on


def _training_batch():
    return next(iter(build_pair_train_loader(d2_cfg())))


def test_training_gives_finite_losses_of_every_head_and_match_metrics(d2_env):
    torch.manual_seed(0)
    model = build_model(d2_cfg())
    with EventStorage() as storage:
        losses = model(_training_batch())
        assert set(losses) == LOSSES
        assert all(math.isfinite(float(value)) for value in losses.values())
        sum(losses.values()).backward()
    for branch in (model.roi_heads.landmark_branch, model.roi_heads.match_branch):
        assert all(p.grad is not None and p.grad.abs().sum() > 0
                   for p in branch.head.parameters())
    assert storage.history("match_pos_pairs").latest() > 0
    assert 0.0 <= storage.history("match_neg_acc").latest() <= 1.0


def test_match_proposals_add_items_to_the_pairs(d2_env):
    batch = _training_batch()
    pairs = []
    for proposals in (0, 8):
        torch.manual_seed(0)
        model = build_model(d2_cfg("MODEL.MATCH_HEAD.PROPOSALS_PER_IMAGE", str(proposals)))
        with EventStorage() as storage:
            model(batch)
        history = storage.history
        pairs.append(history("match_pos_pairs").latest() + history("match_neg_pairs").latest())
    assert pairs[1] > pairs[0]


def test_without_our_heads_it_is_detectron2_mask_rcnn(d2_env):
    model = build_model(d2_cfg("MODEL.LANDMARK_ON", "False", "MODEL.MATCH_ON", "False"))
    assert model.roi_heads.landmark_branch is None and model.roi_heads.match_branch is None
    with EventStorage():
        losses = model(_training_batch())
    assert set(losses) == LOSSES - {"loss_landmark", "loss_match"}


def test_inference_adds_landmarks_in_the_predicted_slice_and_embeddings(d2_env):
    cfg = d2_cfg("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
    model = build_model(cfg).eval()
    inputs = next(iter(build_detection_test_loader(cfg, "synthetic_validation")))
    with torch.no_grad():
        (output,) = model(inputs)
    instances = output["instances"]
    count = len(instances)
    height, width = inputs[0]["height"], inputs[0]["width"]
    assert count == 10
    assert instances.pred_masks.shape == (count, height, width)
    assert instances.pred_embeddings.shape == (count, 256)
    assert torch.isfinite(instances.pred_embeddings).all()
    landmarks = instances.pred_keypoints
    assert landmarks.shape == (count, 294, 3)
    for points, category in zip(landmarks, instances.pred_classes.tolist(), strict=True):
        own = landmark_slice(category + 1)
        outside = torch.ones(294, dtype=torch.bool)
        outside[own] = False
        assert (points[outside] == 0).all()
        assert (points[own, 2] > 0).all() and (points[own, 2] <= 1).all()
        assert (points[own, 0] >= 0).all() and (points[own, 0] <= width).all()
        assert (points[own, 1] >= 0).all() and (points[own, 1] <= height).all()


def test_heads_trained_by_either_engine_load_into_the_other():
    ours = build_model(d2_cfg()).roi_heads
    # The detectron2 heads read FPN features, as the paper's; the quickstart's match stream reads
    # pixels, so compare with its FPN-input form.
    torchvision_cfg = setup_cfg(REPO / "configs" / "synthetic" / "quickstart.yaml",
                                ["MODEL.MATCH_HEAD.INPUT", "fpn"])
    theirs = build_torchvision_model(torchvision_cfg).roi_heads
    for name in ("landmark_branch", "match_branch"):
        source = getattr(theirs, name).state_dict()
        assert set(source) == set(getattr(ours, name).state_dict())
        getattr(ours, name).load_state_dict(source)
        for key, value in getattr(ours, name).state_dict().items():
            assert torch.equal(value, source[key]), key


@pytest.mark.parametrize(("opts", "message"), [
    (("MODEL.ROI_HEADS.NUM_CLASSES", "12"), "NUM_CLASSES is 12"),
    (("MODEL.KEYPOINT_ON", "True"), "both predict pred_keypoints"),
    (("MODEL.MATCH_HEAD.BALANCE", "'focal'"), "BALANCE must be one of"),
])
def test_inconsistent_configs_are_refused(opts, message):
    with pytest.raises(ValueError, match=message):
        build_model(d2_cfg(*opts))


def test_a_model_zoo_coco_file_loads_where_it_fits(tmp_path, caplog):
    """A detectron2 model-zoo .pkl of a COCO Mask R-CNN (80 classes): DetectionCheckpointer loads
    every tensor that fits, skips the predictors for their shape and reports our heads missing."""
    torch.manual_seed(0)
    coco = build_model(d2_cfg("MODEL.ROI_HEADS.NAME", "StandardROIHeads",
                              "MODEL.ROI_HEADS.NUM_CLASSES", "80",
                              "MODEL.LANDMARK_ON", "False", "MODEL.MATCH_ON", "False"))
    coco_state = coco.state_dict()
    path = tmp_path / "model_final_coco.pkl"
    path.write_bytes(pickle.dumps({"model": {k: v.numpy() for k, v in coco_state.items()},
                                   "__author__": "Detectron2 Model Zoo"}))
    model = build_model(d2_cfg())
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    with caplog.at_level(logging.INFO):
        DetectionCheckpointer(model).load(str(path))
    state = model.state_dict()
    fits = {n for n, v in state.items() if n in coco_state and coco_state[n].shape == v.shape}
    assert all(n.startswith(("roi_heads.box_predictor.", "roi_heads.mask_head.predictor.",
                             "roi_heads.landmark_branch.", "roi_heads.match_branch."))
               for n in set(state) - fits)
    for name, value in state.items():
        assert torch.equal(value, coco_state[name] if name in fits else initial[name]), name
    assert "Detectron2 Model Zoo" in caplog.text
    assert "Skip loading parameter 'roi_heads.box_predictor.cls_score.weight'" in caplog.text
    assert "roi_heads.landmark_branch" in caplog.text and "roi_heads.match_branch" in caplog.text
