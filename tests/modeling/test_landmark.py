"""The category-aware landmark stream: packing, sliced computation, loss, decoding."""

from __future__ import annotations

import math

import torch

from matchrcnn.data.categories import NUM_LANDMARKS, landmark_count, landmark_slice
from matchrcnn.modeling.heads.landmark import (
    MAX_LANDMARKS,
    LandmarkHead,
    LandmarkPredictor,
    heatmaps_to_landmarks,
    pack_slices,
    unpack_slices,
)
from matchrcnn.modeling.losses import landmark_loss

CATEGORIES = torch.tensor([1, 4, 4, 9, 13])


def outside_slice(categories: torch.Tensor) -> torch.Tensor:
    """(N, 294) True where a slot is not in the row's category slice."""
    outside = torch.ones(len(categories), NUM_LANDMARKS, dtype=torch.bool)
    for row, category in enumerate(categories.tolist()):
        outside[row, landmark_slice(category)] = False
    return outside


def test_pack_keeps_own_slice_and_unpack_restores_it() -> None:
    full = torch.randn(len(CATEGORIES), NUM_LANDMARKS, 2)
    packed = pack_slices(full, CATEGORIES)
    assert packed.shape == (len(CATEGORIES), MAX_LANDMARKS, 2)
    for row, category in enumerate(CATEGORIES.tolist()):
        count = landmark_count(category)
        assert torch.equal(packed[row, :count], full[row, landmark_slice(category)])
        assert not packed[row, count:].any()
    restored = unpack_slices(packed, CATEGORIES)
    outside = outside_slice(CATEGORIES)
    assert torch.equal(restored[~outside], full[~outside])
    assert not restored[outside].any()


def test_sliced_predictor_equals_full_computation() -> None:
    torch.manual_seed(0)
    head, predictor = LandmarkHead(8, num_convs=2, conv_dim=6), LandmarkPredictor(6)
    features = head(torch.randn(len(CATEGORIES), 8, 7, 7))
    assert features.shape == (len(CATEGORIES), 6, 14, 14)
    sliced = predictor(features, CATEGORIES)
    full = predictor(features)
    assert full.shape == (len(CATEGORIES), NUM_LANDMARKS, 28, 28)
    assert sliced.shape == (len(CATEGORIES), MAX_LANDMARKS, 28, 28)
    torch.testing.assert_close(sliced, pack_slices(full, CATEGORIES), rtol=1e-5, atol=1e-6)


def test_loss_reaches_only_the_ground_truth_category_slice() -> None:
    torch.manual_seed(0)
    size = 8
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0]]).repeat(len(CATEGORIES), 1)
    # every slot labelled: the labels in other categories' slots must still be ignored
    keypoints = torch.rand(len(CATEGORIES), NUM_LANDMARKS, 3) * 16
    keypoints[..., 2] = 2.0
    logits = torch.randn(len(CATEGORIES), NUM_LANDMARKS, size, size, requires_grad=True)
    loss = landmark_loss(pack_slices(logits, CATEGORIES), boxes, pack_slices(keypoints, CATEGORIES))
    loss.backward()
    touched = logits.grad.flatten(2).abs().sum(-1) > 0
    outside = outside_slice(CATEGORIES)
    assert not touched[outside].any()
    assert touched[~outside].all()


def test_loss_is_cross_entropy_over_the_heatmap() -> None:
    size = 8
    boxes = torch.tensor([[0.0, 0.0, 8.0, 8.0]])
    category = torch.tensor([9])
    keypoints = torch.zeros(1, NUM_LANDMARKS, 3)
    first = landmark_slice(9).start
    keypoints[0, first] = torch.tensor([2.5, 3.5, 1.0])  # cell x=2, y=3; occluded still counts
    targets = pack_slices(keypoints, category)
    flat = torch.zeros(1, MAX_LANDMARKS, size, size)
    uniform = landmark_loss(flat, boxes, targets).item()
    assert math.isclose(uniform, math.log(size * size), rel_tol=1e-6)
    peaked = flat.clone()
    peaked[0, 0, 3, 2] = 30.0
    assert landmark_loss(peaked, boxes, targets).item() < 1e-6
    unlabelled = torch.zeros_like(targets)
    assert landmark_loss(flat, boxes, unlabelled).item() == 0.0


def test_decoding_places_peaks_and_zeros_other_categories() -> None:
    categories = torch.tensor([7, 12])
    boxes = torch.tensor([[10.0, 20.0, 66.0, 76.0], [0.0, 0.0, 56.0, 56.0]])
    packed = torch.zeros(2, MAX_LANDMARKS, 56, 56)
    packed[0, 3, 7, 5] = 20.0  # landmark 4 of a pair of shorts at cell x=5, y=7
    landmarks = heatmaps_to_landmarks(packed, categories, boxes)
    assert landmarks.shape == (2, NUM_LANDMARKS, 3)
    slot = landmark_slice(7).start + 3
    torch.testing.assert_close(landmarks[0, slot, :2], torch.tensor([15.5, 27.5]))
    assert 0.99 < landmarks[0, slot, 2] <= 1.0
    outside = outside_slice(categories)
    assert not landmarks[outside].any()
    assert (landmarks[~outside][:, 2] > 0).all()
