"""Turn a record (one image with its COCO annotations) into the tensors torchvision models take.

Images become CHW float tensors in [0, 1] (RGB); targets carry XYXY boxes, labels, instance
masks rasterised from the polygons, the (N, K, 3) landmark array (K = 294 in DeepFashion2's
layout), and what the match loss needs: pair_ids, styles and whether the image is a shop image.
A target holds only what its record has: a landmark-only dataset (FashionAI, SAL-HG) gives no
masks and no pair fields, and the model says which key is missing if a head needs it. Resizing is
the model's job (torchvision's GeneralizedRCNNTransform), as in torchvision's detection
references.

Training mappers built by ``DatasetMapper.from_config`` mirror half the images (INPUT.RANDOM_FLIP
"horizontal", matchrcnn/data/transforms.py): image, boxes, masks, and landmarks moved to their
mirror slots. Which images are flipped is a pure function of (SEED, image id, iteration), so the
caller passes the iteration a record is drawn for.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from fvcore.common.config import CfgNode
from PIL import Image
from pycocotools import mask as mask_utils

from matchrcnn.config import ConfigError
from matchrcnn.data.categories import NUM_LANDMARKS
from matchrcnn.data.layouts import LandmarkLayout, get_layout
from matchrcnn.data.transforms import FLIP_MODES, flips, hflip_image, hflip_target


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
    record: dict, height: int, width: int, num_landmarks: int = NUM_LANDMARKS,
    landmarks: bool = True,
) -> dict[str, torch.Tensor]:
    """The record's target; masks, keypoints (unless ``landmarks`` is False) and pair fields
    only where every item has them."""
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
    if landmarks and all("keypoints" in a for a in annotations):
        keypoints = torch.tensor([a["keypoints"] for a in annotations], dtype=torch.float32)
        target["keypoints"] = keypoints.reshape(-1, num_landmarks, 3)
    if "source" in record and all("pair_id" in a and "style" in a for a in annotations):
        target["pair_ids"] = torch.tensor([a["pair_id"] for a in annotations], dtype=torch.int64)
        target["styles"] = torch.tensor([a["style"] for a in annotations], dtype=torch.int64)
        target["is_shop"] = torch.tensor(record["source"] == "shop")
    return target


def with_flip_pairs(layout: LandmarkLayout, path: Path) -> LandmarkLayout:
    """``layout`` with the flip pairs of a JSON file {"pairs": [[a, b], ...]} (INPUT.FLIP_PAIRS)."""
    try:
        pairs = json.loads(path.read_text())["pairs"]
        return dataclasses.replace(layout, flip_pairs=tuple((int(a), int(b)) for a, b in pairs))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"INPUT.FLIP_PAIRS {path}: not a flip map of the {layout.name!r} "
                          f"layout ({{\"pairs\": [[slot, slot], ...]}}): {error}") from error


class DatasetMapper:
    """record -> (image tensor, target dict); with ``with_targets=False`` only the image.

    ``num_landmarks`` is the slot count of the dataset's landmark layout (294 for DeepFashion2);
    ``landmarks=False`` leaves them out of the targets. With ``hflip`` half the records are
    mirrored, landmarks moved by ``flip_indices`` (the layout's); which half depends on
    (``seed``, image id, the ``iteration`` given to the call) only.
    """

    def __init__(self, with_targets: bool = True, num_landmarks: int = NUM_LANDMARKS,
                 landmarks: bool = True, hflip: bool = False,
                 flip_indices: Sequence[int] | None = None, seed: int = 0) -> None:
        if hflip and landmarks and flip_indices is None:
            raise ValueError("flipping images with landmarks needs the layout's flip_indices")
        self.with_targets = with_targets
        self.num_landmarks = num_landmarks
        self.landmarks = landmarks
        self.hflip = hflip
        self.flip_indices = None if flip_indices is None else tuple(flip_indices)
        self.seed = seed

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool) -> DatasetMapper:
        """The mapper of training (``is_train``: targets, INPUT.RANDOM_FLIP) or of inference.

        Flipping needs the flip map of MODEL.ROI_LANDMARK_HEAD.LAYOUT (or INPUT.FLIP_PAIRS) when
        the landmark head is on; a layout without one (SAL-HG's) must train with
        INPUT.RANDOM_FLIP "none".
        """
        mode = cfg.INPUT.RANDOM_FLIP
        if mode not in FLIP_MODES:
            raise ConfigError(f"INPUT.RANDOM_FLIP must be one of {list(FLIP_MODES)}, got {mode!r} "
                              "(garments are not symmetric top to bottom)")
        layout_name = cfg.MODEL.ROI_LANDMARK_HEAD.LAYOUT
        try:
            layout = get_layout(layout_name)
        except ValueError as error:
            raise ConfigError(f"MODEL.ROI_LANDMARK_HEAD.LAYOUT: {error}") from error
        if cfg.INPUT.FLIP_PAIRS:
            layout = with_flip_pairs(layout, Path(cfg.INPUT.FLIP_PAIRS))
        hflip = is_train and mode == "horizontal"
        landmarks = bool(cfg.MODEL.LANDMARK_ON)
        if hflip and landmarks and layout.flip_indices is None:
            raise ConfigError(
                f"INPUT.RANDOM_FLIP 'horizontal' mirrors the landmarks, but the {layout_name!r} "
                "layout (MODEL.ROI_LANDMARK_HEAD.LAYOUT) does not say which of its landmarks "
                "mirror which; set INPUT.RANDOM_FLIP 'none'"
            )
        return cls(with_targets=is_train, num_landmarks=layout.num_slots, landmarks=landmarks,
                   hflip=hflip, flip_indices=layout.flip_indices, seed=cfg.SEED)

    def flips(self, record: dict, iteration: int) -> bool:
        """Whether ``record`` is mirrored when drawn at ``iteration``."""
        return self.hflip and flips(self.seed, record["image_id"], iteration)

    def __call__(self, record: dict,
                 iteration: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.hflip and iteration is None:
            raise ValueError("a flipping mapper draws each flip from (seed, image id, iteration): "
                             "pass the iteration the record is drawn for")
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
        target = record_to_target(record, height, width, self.num_landmarks, self.landmarks)
        if self.hflip and self.flips(record, iteration):
            return hflip_image(image), hflip_target(target, width, self.flip_indices)
        return image, target
