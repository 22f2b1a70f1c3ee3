"""What a gallery build indexes: the shop images of a dataset split, or every image in a folder.

A split (a name in the DatasetCatalog, e.g. ``synthetic_validation``) gives each shop image its
image id and pair_id, and its ground-truth items, from which every detection takes the style of the
item it covers (box IoU >= 0.5, as the retrieval protocol matches gallery boxes; 0, "in no positive
pair", when it covers none). A folder gives paths only. Paths are stored absolute, so that the same
file reached by another relative path is recognised as already indexed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from matchrcnn.data.catalog import DatasetCatalog
from matchrcnn.data.images import IMAGE_SUFFIXES, list_images
from matchrcnn.evaluation.box_iou import coco_box_iou
from matchrcnn.evaluation.retrieval import MATCH_IOU
from matchrcnn.utils.errors import UsageError


@dataclass(frozen=True, eq=False)
class SourceImage:
    """One image to index or query; ``gt_boxes`` (G, 4) XYXY and ``gt_styles`` (G,) when a split
    has them."""

    path: str
    image_id: int | None = None
    pair_id: int | None = None
    gt_boxes: np.ndarray | None = None
    gt_styles: np.ndarray | None = None

    def styles_of(self, boxes: np.ndarray) -> np.ndarray | None:
        """Per detected box (N, 4), the style of the ground-truth item it covers; None without
        ground truth."""
        if self.gt_boxes is None or self.gt_styles is None:
            return None
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if not len(self.gt_boxes) or not len(boxes):
            return np.zeros(len(boxes), dtype=np.int64)
        iou = coco_box_iou(boxes[:, None, :], self.gt_boxes[None, :, :])
        best = iou.argmax(axis=1)
        covered = iou[np.arange(len(boxes)), best] >= MATCH_IOU
        return np.where(covered, self.gt_styles[best], 0).astype(np.int64)


def split_sources(records: list[dict], source: str = "shop") -> list[SourceImage]:
    """The images of ``source`` ("shop" or "user") among a split's records."""
    images = []
    for record in records:
        if record.get("source") != source:
            continue
        annotations = record.get("annotations", [])
        boxes = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        styles = np.array([a.get("style", 0) for a in annotations], dtype=np.int64)
        pair_id = int(record["pair_id"]) if "pair_id" in record else None
        images.append(SourceImage(str(Path(record["file_name"]).resolve()),
                                  int(record["image_id"]), pair_id, boxes, styles))
    return images


def folder_sources(directory: str | os.PathLike) -> list[SourceImage]:
    """Every image file under ``directory``, without ids or ground truth."""
    return [SourceImage(str(path.resolve())) for path in list_images(directory)]


def resolve_sources(images: str) -> tuple[list[SourceImage], str]:
    """The shop images named by ``--images``: a folder, or a registered split's shop images.
    Returns them with a short description for messages; raises UsageError when there are none."""
    if Path(images).is_dir():
        found, what = folder_sources(images), f"folder {images}"
        if not found:
            raise UsageError(f"--images {images}: the folder holds no image files "
                             f"({', '.join(IMAGE_SUFFIXES)})")
        return found, what
    if images not in DatasetCatalog.names():
        raise UsageError(f"--images {images}: neither a folder nor a registered dataset split "
                         f"(registered: {', '.join(DatasetCatalog.names())})")
    found, what = split_sources(DatasetCatalog.get(images)), f"shop images of split {images}"
    if not found:
        raise UsageError(f"--images {images}: the split holds no shop images")
    return found, what
