"""Seeded inputs for exercising the evaluation at any scale, without images or a model.

The eval benchmark and the tests need submissions whose outcome is not known in advance:
retrieval results drawn over real ground truth (rich in the protocol's tie cases), and COCO-form
ground truth with predictions perturbed from it. Everything here is a pure function of its seed.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from matchrcnn.data.categories import (
    NUM_CATEGORIES,
    NUM_LANDMARKS,
    coco_categories,
    landmark_count,
    landmark_slice,
)
from matchrcnn.evaluation.results import RETRIEVED


def _jitter(rng: np.random.Generator, box: np.ndarray, scale: float) -> np.ndarray:
    """XYXY box moved and resized by up to ``scale`` of its size, corners kept ordered."""
    width, height = box[2] - box[0], box[3] - box[1]
    noise = rng.uniform(-scale, scale, 4) * np.array([width, height, width, height])
    moved = box + noise
    return np.concatenate([np.minimum(moved[:2], moved[2:]), np.maximum(moved[:2], moved[2:])])


def _as_float32_values(box: np.ndarray) -> list[float]:
    """Coordinates as a float32 model writes them, the hardest case for exact parsing."""
    return np.asarray(box, dtype=np.float32).astype(np.float64).tolist()


def random_retrieval_results(
    query_gt: list[dict],
    gallery_gt: list[dict],
    seed: int,
    *,
    detect_rate: float = 0.85,
    extra_per_image: float = 0.55,
    empty_rate: float = 0.05,
    hit_rate: float = 0.3,
) -> list[dict]:
    """A retrieval submission over real ground truth, in random file order.

    Each item is detected with probability ``detect_rate`` (sometimes with its exact box, sometimes
    with another class), images get extra detections (some overlapping no item at all) and a few
    images none; scores come from a coarse grid, so equal scores are common. Each retrieved entry
    shows, with probability ``hit_rate``, a shop image of the item's pair and style with a box
    whose IoU falls on either side of 0.5, otherwise a random shop item or an unknown image.
    """
    rng = np.random.default_rng(seed)
    items_of_image: dict[int, list[dict]] = defaultdict(list)
    for item in query_gt:
        items_of_image[item["query_image_id"]].append(item)
    shop_of_pair: dict[tuple[int, int], list[dict]] = defaultdict(list)
    for item in gallery_gt:
        shop_of_pair[item["pair_id"], item["style"]].append(item)
    shop_items = list(gallery_gt)
    unknown_image = max(item["gallery_image_id"] for item in gallery_gt) + 1

    def retrieved(source: dict | None) -> tuple[list[int], list[list[float]]]:
        positives = shop_of_pair.get((source["pair_id"], source["style"]), []) if source else []
        image_ids, boxes = [], []
        for _ in range(RETRIEVED):
            draw = rng.random()
            if positives and draw < hit_rate:
                shop = positives[rng.integers(len(positives))]
                box = _jitter(rng, np.asarray(shop["bbox"], dtype=np.float64), 0.35)
            elif draw > 0.97:
                image_ids.append(unknown_image + int(rng.integers(1000)))
                boxes.append(_as_float32_values(rng.uniform(0, 400, 4).cumsum()))
                continue
            else:
                shop = shop_items[rng.integers(len(shop_items))]
                box = _jitter(rng, np.asarray(shop["bbox"], dtype=np.float64), 0.2)
            image_ids.append(int(shop["gallery_image_id"]))
            boxes.append(_as_float32_values(box))
        return image_ids, boxes

    def detection(image_id: int, box: np.ndarray, cls: int, source: dict | None) -> dict:
        image_ids, boxes = retrieved(source)
        return {
            "query_image_id": image_id,
            "query_bbox": _as_float32_values(box),
            "query_cls": cls,
            "query_score": float(np.round(rng.random(), 1)),
            "gallery_image_id": image_ids,
            "gallery_bbox": boxes,
        }

    results = []
    for image_id, items in items_of_image.items():
        if rng.random() < empty_rate:
            continue
        for item in items:
            if rng.random() >= detect_rate:
                continue
            box = np.asarray(item["bbox"], dtype=np.float64)
            if rng.random() >= 0.1:
                box = _jitter(rng, box, 0.15)
            cls = item["cls"] if rng.random() < 0.85 else int(rng.integers(1, NUM_CATEGORIES + 1))
            results.append(detection(image_id, box, cls, item))
        for _ in range(rng.poisson(extra_per_image)):
            anchor = items[rng.integers(len(items))]
            if rng.random() < 0.5:
                box = _jitter(rng, np.asarray(anchor["bbox"], dtype=np.float64), 0.6)
            else:
                box = np.array([-900.0, -900.0, -800.0, -850.0]) - rng.uniform(0, 50)
            cls = int(rng.integers(1, NUM_CATEGORIES + 1))
            results.append(detection(image_id, box, cls, anchor if rng.random() < 0.5 else None))
    return [results[i] for i in rng.permutation(len(results))]


def _polygon(rng: np.random.Generator, box: np.ndarray, corners: int = 8) -> list[float]:
    """A star-shaped polygon inscribed in an XYXY box, as a flat [x1, y1, ...] list."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, corners))
    radius = rng.uniform(0.6, 1.0, corners)
    centre = (box[:2] + box[2:]) / 2
    half = (box[2:] - box[:2]) / 2
    points = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radius[:, None] * half
    return np.round(points, 2).ravel().tolist()


ITEMS_PER_IMAGE = (0.45, 0.38, 0.17)
"""Chances of 1, 2 and 3 items in an image: 1.72 on average, DeepFashion2 validation's ratio."""


def synthetic_coco_ground_truth(num_images: int, seed: int) -> dict:
    """DeepFashion2 COCO-form ground truth: boxes, polygons, 294-slot landmarks, attributes."""
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        width, height = int(rng.integers(200, 801)), int(rng.integers(200, 801))
        source = "user" if rng.random() < 0.5 else "shop"
        pair_id = int(rng.integers(1, max(2, num_images // 3)))
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "width": width,
                       "height": height, "source": source, "pair_id": pair_id})
        for _ in range(int(rng.choice(len(ITEMS_PER_IMAGE), p=ITEMS_PER_IMAGE)) + 1):
            category_id = int(rng.integers(1, NUM_CATEGORIES + 1))
            size = rng.uniform(0.05, 0.9, 2) * [width, height]
            corner = rng.uniform(0, 1, 2) * ([width, height] - size)
            box = np.round(np.concatenate([corner, corner + size]), 2)
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            keypoints = np.zeros((NUM_LANDMARKS, 3), dtype=np.int64)
            count = landmark_count(category_id)
            visibility = rng.choice([0, 1, 2], count, p=[0.15, 0.25, 0.6])
            points = np.floor(box[:2] + rng.uniform(0, 1, (count, 2)) * [w, h])
            keypoints[landmark_slice(category_id)] = np.column_stack([points, visibility])
            keypoints[keypoints[:, 2] == 0] = 0
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category_id,
                "bbox": [float(box[0]), float(box[1]), w, h],
                "area": w * h,
                "segmentation": [_polygon(rng, box)],
                "keypoints": keypoints.ravel().tolist(),
                "num_keypoints": int((visibility > 0).sum()),
                "iscrowd": 0,
                "pair_id": pair_id,
                "style": int(rng.integers(0, 3)),
                "source": source,
                **{key: int(rng.integers(1, 4))
                   for key in ("scale", "occlusion", "zoom_in", "viewpoint")},
            })
    return {"images": images, "annotations": annotations, "categories": coco_categories()}


def synthetic_coco_results(coco_gt: dict, seed: int) -> dict[str, list[dict]]:
    """Official-format box, mask and landmark results perturbed from ``coco_gt``.

    Most items are found with a jittered box, polygon and landmarks, some with the wrong class;
    some are missed; false positives are added. Masks are RLEs of the jittered polygons.
    """
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(seed)
    sizes = {image["id"]: (image["height"], image["width"]) for image in coco_gt["images"]}
    boxes, masks, landmarks = [], [], []
    for ann in coco_gt["annotations"]:
        if rng.random() < 0.1:
            continue
        x, y, w, h = ann["bbox"]
        box = _jitter(rng, np.array([x, y, x + w, y + h]), rng.uniform(0.02, 0.3))
        false_positive = rng.random() < 0.2
        if false_positive:
            box = _jitter(rng, box, 1.0)
        category_id = ann["category_id"] if rng.random() < 0.9 else int(rng.integers(1, 14))
        score = float(rng.random())
        height, width = sizes[ann["image_id"]]
        outline = np.asarray(ann["segmentation"][0], dtype=np.float64).reshape(-1, 2)
        outline = (outline - [x, y]) / [max(w, 1e-6), max(h, 1e-6)] * (box[2:] - box[:2])
        outline += box[:2] + rng.normal(0, 0.02 * max(w, h), outline.shape)
        rle = mask_utils.frPyObjects([outline.ravel().tolist()], height, width)[0]
        rle["counts"] = rle["counts"].decode("ascii")
        truth = np.asarray(ann["keypoints"], dtype=np.float64).reshape(NUM_LANDMARKS, 3)
        keypoints = np.zeros((NUM_LANDMARKS, 3))
        own = landmark_slice(category_id)
        spread = rng.uniform(0.5, 0.06 * max(w, h, 10.0))
        keypoints[own, :2] = truth[own, :2] + rng.normal(0, spread, (own.stop - own.start, 2))
        keypoints[own, 2] = rng.random(own.stop - own.start)
        image_id = ann["image_id"]
        xywh = [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]
        boxes.append({"image_id": image_id, "category_id": category_id, "bbox": xywh,
                      "score": score})
        masks.append({"image_id": image_id, "category_id": category_id, "segmentation": rle,
                      "score": score})
        landmarks.append({"image_id": image_id, "category_id": category_id,
                          "keypoints": keypoints.ravel(), "score": score})
    return {"bbox": boxes, "segm": masks, "landmarks": landmarks}
