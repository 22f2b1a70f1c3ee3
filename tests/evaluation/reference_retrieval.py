"""The official retrieval protocol as a plain loop, written from docs/deepfashion2.md, rule by rule.

This is the yardstick of matchrcnn.evaluation.retrieval: the tests require equal numbers to the
last digit, and the eval benchmark times both. It reads files with the json module and computes
every IoU with pycocotools' own ``mask.iou``, one call per detection and per retrieved entry.

It also treats as the official deepfashion2_retrieval_test.py does what the format forbids but
that script scores: it reads only the detections of ground-truth images and only the first 20
retrieved entries, and a box with x2 < x1 or y2 < y1 becomes an [x, y, w, h] box with a negative
side, which ``mask.iou`` finds to overlap nothing (IoU 0: a query box goes to its image's first
item, a retrieved box matches nothing). A class outside 1..13 simply equals no item's class.
"""

from __future__ import annotations

import json
from collections import defaultdict

from pycocotools import mask as mask_utils

TOP_K = (1, 5, 10, 15, 20)


def _xywh(box: list) -> list:
    return [box[0], box[1], box[2] - box[0], box[3] - box[1]]


def _load(source):
    if isinstance(source, list):
        return source
    with open(source, encoding="utf-8") as handle:
        return json.load(handle)


def reference_retrieval(results, query_gt, gallery_gt) -> dict:
    """Top-k accuracies, ``queries`` and ``missed``; each argument is a path or a loaded list."""
    results, query_gt, gallery_gt = _load(results), _load(query_gt), _load(gallery_gt)
    items_of_image = defaultdict(list)
    for item in query_gt:
        items_of_image[item["query_image_id"]].append(item)
    detections_of_image = defaultdict(list)  # only those of ground-truth images are read below
    for detection in results:
        detections_of_image[detection["query_image_id"]].append(detection)
    gallery_of_image = defaultdict(list)
    for item in gallery_gt:
        gallery_of_image[item["gallery_image_id"]].append(item)

    correct = dict.fromkeys(TOP_K, 0)
    queries = missed = 0
    for image_id, items in items_of_image.items():
        detections = detections_of_image[image_id]
        # Rule 1: each detection goes to the item of highest IoU, the first one on ties (all
        # IoUs are 0 for a box with x2 < x1 or y2 < y1: its w or h is negative).
        item_boxes = [_xywh(item["bbox"]) for item in items]
        assigned = []
        for detection in detections:
            ious = mask_utils.iou([_xywh(detection["query_bbox"])], item_boxes, [0] * len(items))[0]
            best = 0
            for index in range(1, len(items)):
                if ious[index] > ious[best]:
                    best = index
            assigned.append(best)
        for index, item in enumerate(items):
            if item["style"] <= 0:
                continue
            queries += 1
            # Rule 2: the highest-scoring detection of the item's class among those assigned to it.
            chosen = None
            for detection, owner in zip(detections, assigned, strict=True):
                if owner != index or detection["query_cls"] != item["cls"]:
                    continue
                if chosen is None or detection["query_score"] > chosen["query_score"]:
                    chosen = detection
            if chosen is None:
                if detections:
                    missed += 1
                continue
            # Rule 3: the first retrieved entry showing the same pair_id and style, IoU >= 0.5.
            first_hit = None
            entries = zip(chosen["gallery_image_id"][:20], chosen["gallery_bbox"][:20],
                          strict=True)
            for rank, (gallery_image_id, gallery_box) in enumerate(entries):
                for shop_item in gallery_of_image[gallery_image_id]:
                    if shop_item["pair_id"] != item["pair_id"]:
                        continue
                    if shop_item["style"] != item["style"]:
                        continue
                    iou = mask_utils.iou([_xywh(gallery_box)], [_xywh(shop_item["bbox"])], [0])
                    if iou[0][0] >= 0.5:
                        first_hit = rank
                        break
                if first_hit is not None:
                    break
            for k in TOP_K:
                if first_hit is not None and first_hit < k:
                    correct[k] += 1
    accuracy = {f"top{k}": correct[k] / queries for k in TOP_K}
    return {**accuracy, "queries": queries, "missed": missed}
