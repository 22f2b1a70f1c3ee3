"""Turn a record (one image with its COCO annotations) into the tensors torchvision models take.

Images become CHW float tensors in [0, 1] (RGB); targets carry XYXY boxes, labels, instance
masks rasterised from the polygons, the (N, K, 3) landmark array (K the slot count of the
dataset's landmark layout: 294 in DeepFashion2's, 24 in FashionAI's), and what the match loss
needs: pair_ids, styles and whether the image is a shop image.
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
from pathlib import Path

import numpy as np
import torch
from fvcore.common.config import CfgNode
from pycocotools import mask as mask_utils

from matchrcnn.config import ConfigError
from matchrcnn.data.images import ImageInputError, read_image
from matchrcnn.data.layouts import LandmarkLayout, get_layout
from matchrcnn.data.transforms import FLIP_MODES, flips, hflip_image, hflip_target


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    rles = mask_utils.frPyObjects(polygons, height, width)
    return mask_utils.decode(mask_utils.merge(rles))


def record_to_target(
    record: dict, height: int, width: int, num_landmarks: int | None,
    annotation_fields: dict[str, tuple[str, torch.dtype | None]] | None = None,
) -> dict[str, torch.Tensor]:
    """The record's target; masks, keypoints (``num_landmarks`` slots, the layout's; None leaves
    them out) and pair fields only where every item has them. ``annotation_fields`` (target key
    -> (annotation key, dtype)) adds the fields of new RoI branches, read from every item."""
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
    if num_landmarks is not None and all("keypoints" in a for a in annotations):
        keypoints = torch.tensor([a["keypoints"] for a in annotations], dtype=torch.float32)
        target["keypoints"] = keypoints.reshape(-1, num_landmarks, 3)
    if "source" in record and all("pair_id" in a and "style" in a for a in annotations):
        target["pair_ids"] = torch.tensor([a["pair_id"] for a in annotations], dtype=torch.int64)
        target["styles"] = torch.tensor([a["style"] for a in annotations], dtype=torch.int64)
        target["is_shop"] = torch.tensor(record["source"] == "shop")
    for key, (name, dtype) in (annotation_fields or {}).items():
        target[key] = annotation_field(record, name, dtype)
    return target


def annotation_field(record: dict, name: str, dtype: torch.dtype | None) -> torch.Tensor:
    """Every item's ``name`` as one tensor; a KeyError naming the image and the item without it."""
    values = []
    for index, annotation in enumerate(record["annotations"]):
        if name not in annotation:
            raise KeyError(f"image {record['file_name']}: item {index} has no {name!r}, which "
                           "an enabled RoI branch trains on")
        values.append(annotation[name])
    return torch.tensor(values, dtype=dtype)


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

    ``layout`` is the dataset's landmark layout: its slot count shapes the targets' landmarks and
    its flip map moves them when an image is mirrored. Only a mapper that gives no landmarks
    (``with_targets=False``, or ``landmarks=False``) goes without one. ``annotation_fields`` adds
    per-item fields read from the annotations (``record_to_target``), as new RoI branches ask.
    With ``hflip`` half the records are mirrored; which half depends on (``seed``, image id, the
    ``iteration`` given to the call) only.
    """

    def __init__(self, layout: LandmarkLayout | None = None, *, with_targets: bool = True,
                 landmarks: bool = True, hflip: bool = False, seed: int = 0,
                 annotation_fields: dict[str, tuple[str, torch.dtype | None]] | None = None,
                 ) -> None:
        if with_targets and landmarks and layout is None:
            raise ValueError("a mapper of targets with landmarks needs the dataset's landmark "
                             "layout (matchrcnn.data.layouts), whose slots the targets hold")
        if hflip and landmarks and layout is not None and layout.flip_indices is None:
            raise ValueError(f"flipping images with landmarks needs a flip map; the "
                             f"{layout.name!r} layout has none")
        self.with_targets = with_targets
        self.num_landmarks = None if layout is None else layout.num_slots
        self.landmarks = landmarks
        self.hflip = hflip
        self.flip_indices = None if layout is None else layout.flip_indices
        self.seed = seed
        self.annotation_fields = dict(annotation_fields or {})

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
        from matchrcnn.modeling.branch import annotation_fields

        fields = {key: (spec.annotation, spec.dtype)
                  for key, spec in annotation_fields(cfg).items()}
        return cls(layout, with_targets=is_train, landmarks=landmarks, hflip=hflip,
                   seed=cfg.SEED, annotation_fields=fields)

    def flips(self, record: dict, iteration: int) -> bool:
        """Whether ``record`` is mirrored when drawn at ``iteration``."""
        return self.hflip and flips(self.seed, record["image_id"], iteration)

    def __call__(self, record: dict,
                 iteration: int | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.hflip and iteration is None:
            raise ValueError("a flipping mapper draws each flip from (seed, image id, iteration): "
                             "pass the iteration the record is drawn for")
        array = read_image(record["file_name"])
        height, width = array.shape[:2]
        if (record.get("height"), record.get("width")) not in ((None, None), (height, width)):
            raise ImageInputError(
                f"image {record['file_name']} is {width}x{height} but its annotation says "
                f"{record['width']}x{record['height']}"
            )
        image = torch.from_numpy(array.copy()).permute(2, 0, 1).float().div_(255.0)
        if not self.with_targets:
            return image, {"image_id": torch.tensor(record["image_id"])}
        target = record_to_target(record, height, width,
                                  self.num_landmarks if self.landmarks else None,
                                  self.annotation_fields)
        if self.hflip and self.flips(record, iteration):
            return hflip_image(image), hflip_target(target, width, self.flip_indices)
        return image, target
