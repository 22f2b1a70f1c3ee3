"""What the FashionAI, SAL-HG and VITON-pair readers share: problems, counts, strictness, boxes.

They validate as the DeepFashion2 converter does (matchrcnn/data/deepfashion2.py): a reader never
raises for bad data; each fault becomes a ``Problem`` naming the file, the row or entry and the
reason, the item is skipped and counted, and with ``strict`` the conversion fails after every item
was checked and nothing is written. Landmark-only datasets have no boxes, so a box is derived from
the labelled landmarks.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from matchrcnn.data.deepfashion2 import ConversionError, ItemError, Problem
from matchrcnn.data.layouts import LandmarkLayout
from matchrcnn.utils.atomic import write_json_atomic

BOX_MARGIN = 0.05
"""Share of the landmarks' extent added on each side of a derived box: landmarks lie on the
garment's outline, and a box touching them would put them on the edge of every RoI."""

COCO_VISIBILITY = {1: 2, 0: 1, -1: 0}
"""FashionAI's and SAL-HG's visibility (1 visible, 0 occluded, -1 absent) as COCO's (2, 1, 0)."""


@dataclass
class ReadSummary:
    """Counts of one input file's conversion; ``converted + skipped + unused == read``."""

    file: str
    unit: str
    """What the file holds: "rows", "entries" or "pairs"."""
    read: int = 0
    converted: int = 0
    skipped: int = 0
    unused: int = 0
    """Entries the dataset itself marks as not to be used (SAL-HG's ``used`` False)."""
    problems: list[Problem] = field(default_factory=list)
    on_problem: Callable[[Problem], None] | None = None

    def problem(self, item: str | None, reason: str) -> None:
        """Record (and report) a problem with the file, or with one of its items."""
        found = Problem(self.file, item, reason)
        self.problems.append(found)
        if self.on_problem:
            self.on_problem(found)

    def skip(self, item: str, reason: str) -> None:
        """Record a problem that makes the item unusable, and count it as skipped."""
        self.problem(item, reason)
        self.skipped += 1

    def describe(self) -> str:
        unused = f", {self.unused} marked unused" if self.unused else ""
        return (f"{self.file}: {self.read} {self.unit}: {self.converted} converted, "
                f"{self.skipped} skipped{unused}; {len(self.problems)} problems reported")

    def fail_if_strict(self, strict: bool) -> None:
        """Under ``strict``, any problem fails the conversion before anything is written."""
        if strict and self.problems:
            raise ConversionError(f"--strict: {len(self.problems)} problem(s) in {self.file}; "
                                  "nothing was written")


def number(value: Any, name: str) -> float:
    """A finite int or float (numpy scalars included), or ItemError naming the value."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.number):
        raise ItemError(f"{name} is not a number: {value!r:.40}")
    if not math.isfinite(float(value)):
        raise ItemError(f"{name} is not finite: {value!r}")
    return float(value)


def check_inside(points: np.ndarray, names: tuple[str, ...], width: int, height: int) -> None:
    """ItemError naming the first labelled landmark (v > 0) outside the width x height image."""
    for (x, y, v), name in zip(points, names, strict=True):
        if v > 0 and not (0 <= x <= width and 0 <= y <= height):
            raise ItemError(f"landmark {name} at ({x:g}, {y:g}) lies outside the "
                            f"{width}x{height} image")


def landmarks_box(points: np.ndarray, width: int, height: int) -> list[float]:
    """COCO [x, y, w, h] around the labelled landmarks (v > 0), BOX_MARGIN wider, in the image."""
    labelled = points[points[:, 2] > 0, :2]
    if len(labelled) == 0:
        raise ItemError("no labelled landmark: no box can be derived")
    (x1, y1), (x2, y2) = labelled.min(axis=0), labelled.max(axis=0)
    if x2 <= x1 or y2 <= y1:
        raise ItemError(f"the labelled landmarks span no area (x {x1:g}..{x2:g}, "
                        f"y {y1:g}..{y2:g}): no box can be derived")
    pad_x, pad_y = BOX_MARGIN * (x2 - x1), BOX_MARGIN * (y2 - y1)
    x1, y1 = max(0.0, x1 - pad_x), max(0.0, y1 - pad_y)
    x2, y2 = min(float(width), x2 + pad_x), min(float(height), y2 + pad_y)
    return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]


def keypoint_annotation(layout: LandmarkLayout, category_id: int, points: np.ndarray,
                        width: int, height: int) -> dict:
    """A COCO annotation (no ids) from the layout's (slots, 3) array with COCO visibilities."""
    check_inside(points, layout.slot_names, width, height)
    x, y, w, h = landmarks_box(points, width, height)
    return {
        "category_id": category_id,
        "bbox": [x, y, w, h],
        "area": w * h,
        "iscrowd": 0,
        "keypoints": points.ravel().tolist(),
        "num_keypoints": int(np.count_nonzero(points[:, 2] > 0)),
    }


def write_coco(out: str | os.PathLike, description: str, categories: list[dict],
               images: list[dict], annotations: list[dict]) -> None:
    """Write a COCO file atomically; annotations get ids 1..n in order."""
    numbered = [{"id": index, **annotation} for index, annotation in enumerate(annotations, 1)]
    write_json_atomic(Path(out), {"info": {"description": description}, "categories": categories,
                                  "images": images, "annotations": numbered})
