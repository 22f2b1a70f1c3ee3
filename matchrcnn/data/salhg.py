"""Read and validate SAL-HG landmark pickles and write them as COCO keypoint files.

A SAL-HG pickle (for example ``hd_train_person.pkl``) is a list of dicts: ``name`` (image file),
``used`` (only True entries are valid) and ``points``, 32 ``[x, y, attribute]`` with attribute 1
visible, 0 occluded, -1 absent. Pickles are loaded with ``safe_pickle.load_pickle``, which refuses
any that would run code. Each used entry becomes one COCO image, id = the entry's index + 1, and
one annotation of the single category "upper_garment" in the "salhg" layout: all 32 slots belong
to it, visibility mapped to COCO's (2, 1, 0), the box derived from the landmarks. Person images and
flat garment images are read alike (one pickle each); entries marked unused are counted, not
reported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from matchrcnn.data.deepfashion2 import ConversionError, ItemError, Problem, read_image_size
from matchrcnn.data.landmark_coco import (
    COCO_VISIBILITY,
    ReadSummary,
    keypoint_annotation,
    number,
    write_coco,
)
from matchrcnn.data.layouts import SALHG, SALHG_NUM_LANDMARKS
from matchrcnn.data.safe_pickle import UnsafePickleError, load_pickle

UPPER_GARMENT = 1
"""The one category id: SAL-HG annotates the upper-body garment of person and in-shop images."""


def entry_points(points: Any) -> np.ndarray:
    """The entry's (32, 3) landmarks with COCO visibilities; absent ones are (0, 0, 0)."""
    if not isinstance(points, Sequence | np.ndarray) or isinstance(points, str):
        raise ItemError(f"points must be a list of {SALHG_NUM_LANDMARKS} [x, y, attribute], got "
                        f"{type(points).__name__}")
    if len(points) != SALHG_NUM_LANDMARKS:
        raise ItemError(f"points has {len(points)} landmarks, expected {SALHG_NUM_LANDMARKS}")
    array = np.zeros((SALHG_NUM_LANDMARKS, 3))
    for index, point in enumerate(points):
        where = f"points[{index}]"
        if not isinstance(point, Sequence | np.ndarray) or len(point) != 3:
            raise ItemError(f"{where} must be [x, y, attribute], got {point!r:.60}")
        x, y = number(point[0], f"{where} x"), number(point[1], f"{where} y")
        attribute = number(point[2], f"{where} attribute")
        if attribute not in COCO_VISIBILITY:
            raise ItemError(f"{where} attribute must be 1, 0 or -1, got {point[2]!r}")
        if attribute != -1:
            array[index] = (x, y, COCO_VISIBILITY[int(attribute)])
    return array


def _entry_name(entry: Mapping) -> str:
    missing = [key for key in ("name", "used", "points") if key not in entry]
    if missing:
        raise ItemError(f"missing key(s) {', '.join(missing)}")
    name = entry["name"]
    if not isinstance(name, str) or not name:
        raise ItemError(f"name must be a non-empty string, got {name!r:.60}")
    if not isinstance(entry["used"], bool | np.bool_):
        raise ItemError(f"used must be True or False, got {entry['used']!r:.40}")
    return name


def convert_salhg(
    pkl_file: str | os.PathLike,
    images_dir: str | os.PathLike,
    out: str | os.PathLike,
    strict: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
) -> ReadSummary:
    """Convert a SAL-HG pickle (images under ``images_dir``) to a COCO keypoint file ``out``.

    Bad entries are reported through ``on_problem`` and skipped; with ``strict`` any problem
    raises ConversionError and nothing is written. A pickle that would run code, or does not
    hold a list, fails the whole file.
    """
    pkl_file, images_dir = Path(pkl_file), Path(images_dir)
    try:
        entries = load_pickle(pkl_file)
    except UnsafePickleError as error:
        raise ConversionError(str(error)) from error
    if not isinstance(entries, list | tuple):
        raise ConversionError(f"{pkl_file}: a SAL-HG pickle holds a list of entries, not a "
                              f"{type(entries).__name__}")
    summary = ReadSummary(str(pkl_file), "entries", read=len(entries), on_problem=on_problem)
    images, annotations, seen = [], [], {}
    for index, entry in enumerate(entries):
        item = f"entry {index}"
        try:
            if not isinstance(entry, Mapping):
                raise ItemError(f"must be a dict, got {type(entry).__name__}")
            name = _entry_name(entry)
            if not entry["used"]:
                summary.unused += 1
                continue
            if name in seen:
                raise ItemError(f"image {name} was already converted from entry {seen[name]}")
            points = entry_points(entry["points"])
            width, height = read_image_size(images_dir / name)
            annotation = keypoint_annotation(SALHG, UPPER_GARMENT, points, width, height)
        except ItemError as error:
            summary.skip(item, str(error))
            continue
        seen[name] = index
        image_id = index + 1
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        annotations.append({**annotation, "image_id": image_id})
    summary.converted = len(images)
    summary.fail_if_strict(strict)
    write_coco(out, f"SAL-HG landmarks from {pkl_file.name} in COCO form",
               SALHG.coco_categories(), images, annotations)
    return summary
