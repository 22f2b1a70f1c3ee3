"""Read and validate a FashionAI keypoints CSV and write it as a COCO keypoint file.

The CSV (one per split) has ``image_id`` (the image path, relative to the split's folder),
``image_category`` (blouse, outwear, dress, skirt, trousers) and one ``x_y_v`` cell per landmark
for the 24 landmarks of ``layouts.FASHIONAI_LANDMARKS`` (v: 1 visible, 0 occluded, -1 absent).
Each row becomes one COCO image, id = the row's number (1 = the first row under the header), and
one annotation in the "fashionai" layout: 24 slots, visibility mapped to COCO's (2, 1, 0), a box
derived from the landmarks. Rows are problems when their cells, category or image are bad, when
they label a landmark their category does not define, or repeat an image.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from matchrcnn.data.deepfashion2 import ConversionError, ItemError, Problem, read_image_size
from matchrcnn.data.landmark_coco import (
    COCO_VISIBILITY,
    ReadSummary,
    keypoint_annotation,
    number,
    write_coco,
)
from matchrcnn.data.layouts import FASHIONAI, FASHIONAI_LANDMARKS

COLUMNS = ("image_id", "image_category", *FASHIONAI_LANDMARKS)


def parse_cell(cell: str, landmark: str) -> tuple[float, float, int]:
    """``"x_y_v"`` -> (x, y, v) with v in {-1, 0, 1}; ItemError naming the landmark otherwise."""
    parts = cell.strip().split("_")
    if len(parts) != 3:
        raise ItemError(f"landmark {landmark}: cell {cell!r} is not x_y_v")
    try:
        x, y, v = (float(part) for part in parts)
    except ValueError:
        raise ItemError(f"landmark {landmark}: cell {cell!r} is not x_y_v with numbers") from None
    number(x, f"landmark {landmark} x")
    number(y, f"landmark {landmark} y")
    if v not in (-1, 0, 1):
        raise ItemError(f"landmark {landmark}: visibility must be -1, 0 or 1, got {parts[2]!r}")
    return x, y, int(v)


def row_points(row: dict[str, str], category: str) -> np.ndarray:
    """The row's (24, 3) landmarks with COCO visibilities; absent landmarks are (0, 0, 0)."""
    defined = set(FASHIONAI.slots(FASHIONAI.category_names.index(category) + 1))
    points = np.zeros((len(FASHIONAI_LANDMARKS), 3))
    for slot, landmark in enumerate(FASHIONAI_LANDMARKS):
        x, y, v = parse_cell(row[landmark], landmark)
        if v == -1:
            continue
        if slot not in defined:
            raise ItemError(f"landmark {landmark} is labelled ({row[landmark]!r}) but {category} "
                            "does not define it")
        points[slot] = (x, y, COCO_VISIBILITY[v])
    return points


def read_csv_rows(csv_file: Path) -> tuple[list[str], list[list[str]]]:
    """The header and the data rows; ConversionError if the file cannot be read as a CSV."""
    try:
        with open(csv_file, encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConversionError(f"{csv_file}: cannot be read as a CSV: {error}") from error
    if not rows:
        raise ConversionError(f"{csv_file}: empty file, expected a header {COLUMNS[:3]}...")
    return rows[0], rows[1:]


def convert_fashionai(
    csv_file: str | os.PathLike,
    images_dir: str | os.PathLike,
    out: str | os.PathLike,
    strict: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
) -> ReadSummary:
    """Convert a FashionAI CSV (images under ``images_dir``) to a COCO keypoint file ``out``.

    Bad rows are reported through ``on_problem`` and skipped; with ``strict`` any problem raises
    ConversionError and nothing is written. A missing column fails the whole file.
    """
    csv_file, images_dir = Path(csv_file), Path(images_dir)
    header, rows = read_csv_rows(csv_file)
    missing = [column for column in COLUMNS if column not in header]
    if missing:
        raise ConversionError(f"{csv_file}: not a FashionAI keypoints CSV, the header lacks "
                              f"{', '.join(missing)}")
    summary = ReadSummary(str(csv_file), "rows", read=len(rows), on_problem=on_problem)
    for column in header:
        if column not in COLUMNS:
            summary.problem(None, f"unexpected column {column!r} ignored")
    images, annotations, seen = [], [], {}
    for row_number, cells in enumerate(rows, start=1):
        item = f"row {row_number}"
        if len(cells) != len(header):
            summary.skip(item, f"has {len(cells)} cells, the header has {len(header)}")
            continue
        row = dict(zip(header, cells, strict=True))
        name, category = row["image_id"].strip(), row["image_category"].strip()
        try:
            if not name:
                raise ItemError("empty image_id")
            if name in seen:
                raise ItemError(f"image {name} was already converted from row {seen[name]}")
            if category not in FASHIONAI.category_names:
                raise ItemError(f"unknown image_category {category!r} (expected "
                                f"{', '.join(FASHIONAI.category_names)})")
            points = row_points(row, category)
            width, height = read_image_size(images_dir / name)
            category_id = FASHIONAI.category_names.index(category) + 1
            annotation = keypoint_annotation(FASHIONAI, category_id, points, width, height)
        except ItemError as error:
            summary.skip(item, str(error))
            continue
        seen[name] = row_number
        images.append({"id": row_number, "file_name": name, "width": width, "height": height})
        annotations.append({**annotation, "image_id": row_number})
    summary.converted = len(images)
    summary.fail_if_strict(strict)
    write_coco(out, f"FashionAI keypoints from {csv_file.name} in COCO form",
               FASHIONAI.coco_categories(), images, annotations)
    return summary
