"""coco_box_iou must be pycocotools' box IoU to the last bit: retrieval is defined on it."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from matchrcnn.evaluation.box_iou import coco_box_iou


def _xywh(boxes: np.ndarray) -> list[list[float]]:
    return [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in boxes.tolist()]


def _random_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    corner = rng.uniform(-50, 500, (count, 2))
    size = rng.uniform(0, 300, (count, 2))
    size[rng.random(count) < 0.1] = 0  # degenerate boxes
    boxes = np.concatenate([corner, corner + size], axis=1)
    rounded = rng.random(count) < 0.3
    boxes[rounded] = np.round(boxes[rounded])  # integer corners make touching edges and ties
    return boxes.astype(np.float32).astype(np.float64)


def test_equals_pycocotools_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    first, second = _random_boxes(rng, 700), _random_boxes(rng, 300)
    second[:50] = first[:50]  # identical boxes: IoU 1
    expected = mask_utils.iou(_xywh(first), _xywh(second), [0] * len(second))
    ours = coco_box_iou(first[:, None, :], second[None, :, :])
    assert ours.shape == (700, 300)
    assert np.array_equal(ours, expected)
    assert (ours > 0).mean() > 0.05 and (ours == 0).mean() > 0.05


def test_disjoint_touching_and_degenerate_boxes_give_zero() -> None:
    box = np.array([0.0, 0.0, 10.0, 10.0])
    others = np.array([[10.0, 0.0, 20.0, 10.0], [50.0, 50.0, 60.0, 60.0], [5.0, 5.0, 5.0, 8.0]])
    assert np.array_equal(coco_box_iou(box, others), [0.0, 0.0, 0.0])
    assert coco_box_iou(box, np.array([0.0, 0.0, 10.0, 5.0])) == 0.5
