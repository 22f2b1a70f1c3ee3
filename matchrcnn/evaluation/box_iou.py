"""COCO's box IoU, vectorised, bit for bit what pycocotools ``mask.iou`` returns.

The retrieval protocol is defined on pycocotools' box IoU. Calling it once per pair is what
makes a loop over a validation set slow, so this module repeats its arithmetic in numpy, in the
same order of floating-point operations, which keeps every result identical to the last bit
(tests/evaluation/test_box_iou.py compares the two on random, touching and degenerate boxes).
"""

from __future__ import annotations

import numpy as np


def coco_box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """IoU of XYXY boxes, paired element by element with broadcasting over leading axes.

    Equal to ``pycocotools.mask.iou([xywh_a], [xywh_b], [0])`` with ``xywh = [x1, y1, x2 - x1,
    y2 - y1]``: the box is first turned into COCO's [x, y, w, h] form, as the protocol does,
    then intersected the way pycocotools' C code does. Non-overlapping boxes give 0.
    """
    a = np.asarray(boxes_a, dtype=np.float64)
    b = np.asarray(boxes_b, dtype=np.float64)
    ax, ay, aw, ah = a[..., 0], a[..., 1], a[..., 2] - a[..., 0], a[..., 3] - a[..., 1]
    bx, by, bw, bh = b[..., 0], b[..., 1], b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    inter_w = np.minimum(aw + ax, bw + bx) - np.maximum(ax, bx)
    inter_h = np.minimum(ah + ay, bh + by) - np.maximum(ay, by)
    overlap = (inter_w > 0) & (inter_h > 0)
    inter = inter_w * inter_h
    union = aw * ah + bw * bh - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(overlap, inter / union, 0.0)
