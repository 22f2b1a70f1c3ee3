"""Turn a record (one image with its COCO annotations) into the tensors torchvision models take.

Images become CHW float tensors in [0, 1] (RGB); targets carry XYXY boxes, labels, instance
masks rasterised from the polygons, the (N, K, 3) landmark array (K = 294 in DeepFashion2's
layout), and what the match loss needs: pair_ids, styles and whether the image is a shop image.
A target holds only what its record has: a landmark-only dataset (FashionAI, SAL-HG) gives no
masks and no pair fields, and the model says which key is missing if a head needs it. Resizing is
the model's job (torchvision's GeneralizedRCNNTransform), as in torchvision's detection
references.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from matchrcnn.data.categories import NUM_LANDMARKS


class ImageDecodeError(ValueError):
    """An image file that cannot be read or decoded."""


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """The image as an (H, W, 3) uint8 RGB array; a clear error for a missing or broken file."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageDecodeError(f"cannot decode image {path}: {error}") from error


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    rles = mask_utils.frPyObjects(polygons, height, width)
    return mask_utils.decode(mask_utils.merge(rles))


def record_to_target(
    record: dict, height: int, width: int, num_landmarks: int = NUM_LANDMARKS
) -> dict[str, torch.Tensor]:
    """The record's target; masks, keypoints and pair fields only where every item has them."""
    annotations = record["annotations"]
    boxes = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    target = {
        "boxes": boxes,
        "labels": torch.tensor([a["category_id"] for a in annotations], dtype=torch.int64),
        "image_id": torch.tensor(record["image_id"]),
    }
    if all("segmentation" in a for a in annotations):
        masks = np.zeros((len(annotations), height, width), dtype=np.uint8)
        for index, annotation in enumerate(annotations):
            masks[index] = polygons_to_mask(annotation["segmentation"], height, width)
        target["masks"] = torch.from_numpy(masks)
    if all("keypoints" in a for a in annotations):
        keypoints = torch.tensor([a["keypoints"] for a in annotations], dtype=torch.float32)
        target["keypoints"] = keypoints.reshape(-1, num_landmarks, 3)
    if "source" in record and all("pair_id" in a and "style" in a for a in annotations):
        target["pair_ids"] = torch.tensor([a["pair_id"] for a in annotations], dtype=torch.int64)
        target["styles"] = torch.tensor([a["style"] for a in annotations], dtype=torch.int64)
        target["is_shop"] = torch.tensor(record["source"] == "shop")
    return target


class DatasetMapper:
    """record -> (image tensor, target dict); with ``with_targets=False`` only the image.

    ``num_landmarks`` is the slot count of the dataset's landmark layout (294 for DeepFashion2).
    """

    def __init__(self, with_targets: bool = True, num_landmarks: int = NUM_LANDMARKS) -> None:
        self.with_targets = with_targets
        self.num_landmarks = num_landmarks

    def __call__(self, record: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        array = read_rgb(record["file_name"])
        height, width = array.shape[:2]
        if (record.get("height"), record.get("width")) not in ((None, None), (height, width)):
            raise ImageDecodeError(
                f"image {record['file_name']} is {width}x{height} but its annotation says "
                f"{record['width']}x{record['height']}"
            )
        image = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)
        if not self.with_targets:
            return image, {"image_id": torch.tensor(record["image_id"])}
        return image, record_to_target(record, height, width, self.num_landmarks)
