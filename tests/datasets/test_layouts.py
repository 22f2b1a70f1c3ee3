"""Landmark layouts: DeepFashion2's is unchanged, FashionAI's and SAL-HG's train and predict."""

from __future__ import annotations

import math

import pytest
import torch

from matchrcnn.config import ConfigError, get_cfg
from matchrcnn.data.categories import NUM_LANDMARKS, keypoint_oks_sigmas, landmark_slice
from matchrcnn.data.layouts import DEEPFASHION2, FASHIONAI, SALHG, get_layout
from matchrcnn.modeling import build_model
from matchrcnn.modeling.heads.landmark import (
    LandmarkHead,
    LandmarkPredictor,
    heatmaps_to_landmarks,
    pack_slices,
    unpack_slices,
)
from tests.modeling.conftest import TINY

CATEGORIES = torch.tensor([1, 2, 3, 4, 5, 3])


def test_deepfashion2_layout_is_the_category_slices():
    assert DEEPFASHION2.num_slots == NUM_LANDMARKS and DEEPFASHION2.max_landmarks == 39
    for category in range(1, 14):
        span = landmark_slice(category)
        assert DEEPFASHION2.slots(category) == tuple(range(span.start, span.stop))
    assert DEEPFASHION2.oks_sigmas == keypoint_oks_sigmas()


def test_fashionai_and_salhg_layouts():
    assert [len(FASHIONAI.slots(c)) for c in range(1, 6)] == [13, 14, 15, 4, 7]
    blouse = [FASHIONAI.slot_names[s] for s in FASHIONAI.slots(1)]
    assert blouse == ["neckline_left", "neckline_right", "center_front", "shoulder_left",
                      "shoulder_right", "armpit_left", "armpit_right", "cuff_left_in",
                      "cuff_left_out", "cuff_right_in", "cuff_right_out", "top_hem_left",
                      "top_hem_right"]
    assert FASHIONAI.oks_sigmas is None and FASHIONAI.reference_pairs["skirt"] == (
        "waistband_left", "waistband_right")
    assert SALHG.category_names == ("upper_garment",) and SALHG.slots(1) == tuple(range(32))
    with pytest.raises(ValueError, match=r"unknown landmark layout 'coco'; registered: "
                       r"deepfashion2, fashionai, salhg"):
        get_layout("coco")
    with pytest.raises(ValueError, match=r"category_id must be an int in 1\.\.5, got 6"):
        FASHIONAI.slots(6)


def test_packing_gathers_each_category_subset():
    full = torch.randn(len(CATEGORIES), 24, 2)
    packed = pack_slices(full, CATEGORIES, FASHIONAI)
    assert packed.shape == (len(CATEGORIES), 15, 2)
    for row, category in enumerate(CATEGORIES.tolist()):
        slots = list(FASHIONAI.slots(category))
        assert torch.equal(packed[row, : len(slots)], full[row, slots])
        assert not packed[row, len(slots):].any()
    restored = unpack_slices(packed, CATEGORIES, FASHIONAI)
    for row, category in enumerate(CATEGORIES.tolist()):
        own = torch.zeros(24, dtype=torch.bool)
        own[list(FASHIONAI.slots(category))] = True
        assert torch.equal(restored[row, own], full[row, own])
        assert not restored[row, ~own].any()


@pytest.mark.parametrize("layout", [FASHIONAI, SALHG])
def test_sliced_predictor_equals_full_computation(layout):
    torch.manual_seed(0)
    categories = CATEGORIES.clamp(max=layout.num_categories)
    head, predictor = LandmarkHead(8, num_convs=1, conv_dim=6), LandmarkPredictor(6, layout)
    features = head(torch.randn(len(categories), 8, 7, 7))
    full = predictor(features)
    assert full.shape == (len(categories), layout.num_slots, 28, 28)
    sliced = predictor(features, categories)
    assert sliced.shape == (len(categories), layout.max_landmarks, 28, 28)
    torch.testing.assert_close(sliced, pack_slices(full, categories, layout), rtol=1e-5,
                               atol=1e-6)


def test_decoding_puts_a_peak_in_its_named_slot():
    packed = torch.zeros(1, FASHIONAI.max_landmarks, 56, 56)
    packed[0, 1, 7, 5] = 20.0  # a skirt's second landmark, waistband_right, at cell x=5, y=7
    boxes = torch.tensor([[10.0, 20.0, 66.0, 76.0]])
    landmarks = heatmaps_to_landmarks(packed, torch.tensor([4]), boxes, FASHIONAI)
    assert landmarks.shape == (1, 24, 3)
    slot = FASHIONAI.slot_index("waistband_right")
    torch.testing.assert_close(landmarks[0, slot, :2], torch.tensor([15.5, 27.5]))
    own = torch.zeros(24, dtype=torch.bool)
    own[list(FASHIONAI.slots(4))] = True
    assert not landmarks[0, ~own].any() and (landmarks[0, own, 2] > 0).all()


def _cfg(layout: str, classes: int):
    cfg = get_cfg()
    cfg.merge_from_list([*TINY, "MODEL.MASK_ON", "False", "MODEL.MATCH_ON", "False",
                         "MODEL.ROI_HEADS.NUM_CLASSES", str(classes),
                         "MODEL.ROI_LANDMARK_HEAD.LAYOUT", layout])
    return cfg


def _batch(layout, seed: int = 0) -> tuple[list[torch.Tensor], list[dict]]:
    """Two images, one garment per category, landmarks only in each category's own slots."""
    generator = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for categories in ([1, 2, 3], [4, 5]) if layout is FASHIONAI else ([1], [1, 1]):
        image = torch.full((3, 96, 128), 0.5)
        boxes, keypoints = [], torch.zeros(len(categories), layout.num_slots, 3)
        for row, category in enumerate(categories):
            x1, y1 = 8 + 38 * row, 10
            x2, y2 = x1 + 34, 90
            image[:, y1:y2, x1:x2] = torch.rand(3, 1, 1, generator=generator)
            boxes.append([x1, y1, x2, y2])
            slots = list(layout.slots(category))
            keypoints[row, slots, 0] = x1 + 34 * torch.rand(len(slots), generator=generator)
            keypoints[row, slots, 1] = y1 + 80 * torch.rand(len(slots), generator=generator)
            keypoints[row, slots, 2] = 2.0
        images.append(image)
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                        "labels": torch.tensor(categories), "keypoints": keypoints})
    return images, targets


@pytest.mark.parametrize(("layout", "classes"), [(FASHIONAI, 5), (SALHG, 1)])
def test_a_model_without_masks_and_pairs_trains_and_predicts_its_layout(layout, classes):
    torch.manual_seed(0)
    model = build_model(_cfg(layout.name, classes))
    assert model.roi_heads.landmark_branch.predictor.deconv.out_channels == layout.num_slots
    images, targets = _batch(layout)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.002,
                                momentum=0.9)
    for _ in range(2):
        losses = model(images, targets)
        assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier",
                               "loss_box_reg", "loss_landmark"}
        assert all(math.isfinite(v.item()) for v in losses.values())
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert losses["loss_landmark"].item() > 0
    model.eval()
    with torch.no_grad():
        output = model(images)[0]
    assert set(output) == {"boxes", "labels", "scores", "landmarks"}
    n = len(output["boxes"])
    assert n > 0 and output["landmarks"].shape == (n, layout.num_slots, 3)
    for row, label in enumerate(output["labels"].tolist()):
        own = torch.zeros(layout.num_slots, dtype=torch.bool)
        own[list(layout.slots(label))] = True
        assert not output["landmarks"][row, ~own].any()
        assert (output["landmarks"][row, own, 2] > 0).all()


def test_sliced_and_full_heads_give_the_same_loss_on_fashionai():
    losses = []
    for sliced in (True, False):
        cfg = _cfg("fashionai", 5)
        cfg.MODEL.ROI_LANDMARK_HEAD.CATEGORY_SLICED = sliced
        torch.manual_seed(0)
        model = build_model(cfg)
        torch.manual_seed(1)
        losses.append(model(*_batch(FASHIONAI))["loss_landmark"])
    torch.testing.assert_close(losses[0], losses[1])


def test_config_errors_name_the_layout_and_the_class_count():
    with pytest.raises(ConfigError, match=r"MODEL\.ROI_HEADS\.NUM_CLASSES is 13, but the landmark"
                       r" head lays out landmarks by the 5 categories of the 'fashionai' layout"):
        build_model(_cfg("fashionai", 13))
    with pytest.raises(ConfigError, match=r"MODEL\.ROI_LANDMARK_HEAD\.LAYOUT: unknown landmark "
                       r"layout 'lip'"):
        build_model(_cfg("lip", 5))


def test_targets_in_another_layout_are_named():
    model = build_model(_cfg("fashionai", 5))
    images, targets = _batch(FASHIONAI)
    targets[1]["keypoints"] = torch.zeros(2, NUM_LANDMARKS, 3)
    with pytest.raises(ValueError, match=r"target 1: 'keypoints' must have shape \('N', 24, 3\)"):
        model(images, targets)
