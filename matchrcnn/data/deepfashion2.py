"""Read, validate and convert DeepFashion2 annotation files to the official COCO form.

One annotation file per image (``<root>/<split>/annos/NNNNNN.json``) becomes one COCO image and one
COCO annotation per valid item. Every problem is reported with its file, item and reason; a bad item
is skipped (or, with ``strict``, the conversion fails) and nothing is dropped without a report.
Files are converted in a process pool and streamed to the output: workers parse, validate and
serialise; the main process only writes the text they return, in file order.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from matchrcnn.data.categories import (
    NUM_CATEGORIES,
    NUM_LANDMARKS,
    category_name,
    coco_categories,
    is_category_id,
    landmark_count,
    landmark_slice,
)
from matchrcnn.utils.atomic import atomic_open, write_json_atomic

ITEM_KEYS = (
    "category_id",
    "category_name",
    "style",
    "bounding_box",
    "landmarks",
    "segmentation",
    "scale",
    "occlusion",
    "zoom_in",
    "viewpoint",
)
ATTRIBUTE_KEYS = ("scale", "occlusion", "zoom_in", "viewpoint")
"""Per-item attributes, each 1..3, that the breakdown tables group by."""
SOURCES = ("shop", "user")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input: where (file, item) and what."""

    file: str
    item: str | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.item}" if self.item else self.file
        return f"{where}: {self.reason}"


@dataclass
class FileResult:
    """What one annotation file yields: its COCO image, its valid items, and its problems.

    ``image`` is None when the whole file is skipped (unreadable, or no valid item).
    """

    image_id: int | None
    image: dict | None = None
    annotations: list[dict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    items_in: int = 0
    items_skipped: int = 0


class ItemError(ValueError):
    """An item (or a whole file) that cannot be converted."""


def image_id_from_name(name: str) -> int:
    """DeepFashion2 names files by a six-digit number that is the image id: 000001.json -> 1."""
    stem = Path(name).stem
    if not stem.isdigit():
        raise ItemError(f"file name {name!r} is not a number; DeepFashion2 names files NNNNNN.json")
    return int(stem)


def read_image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the image header alone; the pixels are not decoded."""
    if not path.is_file():
        raise ItemError(f"image file missing: {path}")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ItemError(f"unreadable image {path}: {error}") from error
    if width <= 0 or height <= 0:
        raise ItemError(f"unreadable image {path}: size {width}x{height}")
    return width, height


def read_annotation_file(anno_path: Path, image_dir: Path) -> FileResult:
    """Parse and validate one annotation file; never raises for bad data."""
    file = str(anno_path)
    try:
        image_id = image_id_from_name(anno_path.name)
    except ItemError as error:
        return FileResult(image_id=None, problems=[Problem(file, None, str(error))])
    result = FileResult(image_id=image_id)
    try:
        with open(anno_path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        result.problems.append(Problem(file, None, f"not valid JSON: {error}"))
        return result
    except OSError as error:
        result.problems.append(Problem(file, None, f"cannot be read: {error}"))
        return result
    if not isinstance(data, dict):
        result.problems.append(
            Problem(file, None, f"top level must be a JSON object, got {type(data).__name__}")
        )
        return result

    item_keys, unexpected = _split_keys(data)
    result.items_in = len(item_keys)
    for key in unexpected:
        result.problems.append(Problem(file, None, f"unexpected key {key!r} ignored"))
    try:
        source, pair_id = _image_fields(data)
        if not item_keys:
            raise ItemError("no items (keys item1, item2, ...)")
        image_name = f"{anno_path.stem}.jpg"
        width, height = read_image_size(image_dir / image_name)
    except ItemError as error:
        result.problems.append(Problem(file, None, str(error)))
        result.items_skipped = result.items_in
        return result

    result.image = {
        "id": image_id,
        "file_name": image_name,
        "width": width,
        "height": height,
        "source": source,
        "pair_id": pair_id,
    }
    for key in item_keys:
        try:
            annotation = _convert_item(data[key], width, height)
        except ItemError as error:
            result.problems.append(Problem(file, key, str(error)))
            result.items_skipped += 1
            continue
        annotation.update(image_id=image_id, pair_id=pair_id, source=source)
        result.annotations.append(annotation)
    if not result.annotations:
        # Its garments exist but none is usable: as an image without ground truth it would
        # teach and score them as background.
        result.image = None
    return result


def _split_keys(data: dict) -> tuple[list[str], list[str]]:
    items, unexpected = [], []
    for key in data:
        if key.startswith("item") and key[4:].isdigit():
            items.append(key)
        elif key not in ("source", "pair_id"):
            unexpected.append(key)
    items.sort(key=lambda k: int(k[4:]))
    return items, unexpected


def _image_fields(data: dict) -> tuple[str, int]:
    missing = [key for key in ("source", "pair_id") if key not in data]
    if missing:
        raise ItemError(f"missing key(s) {', '.join(missing)}")
    source, pair_id = data["source"], data["pair_id"]
    if source not in SOURCES:
        raise ItemError(f"source must be 'shop' or 'user', got {source!r}")
    if not _is_int(pair_id):
        raise ItemError(f"pair_id must be an integer, got {pair_id!r}")
    return source, pair_id


def _convert_item(item: Any, width: int, height: int) -> dict:
    """Validate one item and return its COCO annotation (without ids)."""
    if not isinstance(item, dict):
        raise ItemError(f"item must be a JSON object, got {type(item).__name__}")
    missing = [key for key in ITEM_KEYS if key not in item]
    if missing:
        raise ItemError(f"missing key(s) {', '.join(missing)}")

    category_id = item["category_id"]
    if not is_category_id(category_id):
        raise ItemError(f"unknown category_id {category_id!r} (expected 1..{NUM_CATEGORIES})")
    if item["category_name"] != category_name(category_id):
        raise ItemError(
            f"category_name {item['category_name']!r} does not match category_id {category_id} "
            f"({category_name(category_id)})"
        )
    style = item["style"]
    if not _is_int(style) or style < 0:
        raise ItemError(f"style must be an integer >= 0, got {style!r}")
    for key in ATTRIBUTE_KEYS:
        if not _is_int(item[key]) or not 1 <= item[key] <= 3:
            raise ItemError(f"{key} must be 1, 2 or 3, got {item[key]!r}")

    x1, y1, x2, y2 = _numbers(item["bounding_box"], "bounding_box", length=4)
    if x2 <= x1 or y2 <= y1:
        raise ItemError(f"degenerate bounding_box {[x1, y1, x2, y2]}: needs x1 < x2 and y1 < y2")
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        raise ItemError(
            f"bounding_box {[x1, y1, x2, y2]} lies outside the {width}x{height} image"
        )

    count = landmark_count(category_id)
    landmarks = _numbers(item["landmarks"], "landmarks")
    if len(landmarks) != 3 * count:
        raise ItemError(
            f"landmarks has {len(landmarks)} numbers; category {category_id} "
            f"({category_name(category_id)}) needs {3 * count} ({count} landmarks x 3)"
        )
    visibilities = landmarks[2::3]
    bad = [i + 1 for i, v in enumerate(visibilities) if v not in (0, 1, 2)]
    if bad:
        raise ItemError(f"landmark visibility must be 0, 1 or 2 (landmark(s) {bad[:5]})")

    segmentation = item["segmentation"]
    if not isinstance(segmentation, list) or not segmentation:
        raise ItemError("segmentation must be a non-empty list of polygons")
    for index, polygon in enumerate(segmentation):
        points = _numbers(polygon, f"segmentation polygon {index}")
        if len(points) < 6 or len(points) % 2:
            raise ItemError(
                f"segmentation polygon {index} has {len(points)} numbers; a polygon needs an "
                "even count of at least 6 (three x, y points)"
            )

    keypoints = [0] * (3 * NUM_LANDMARKS)
    slots = landmark_slice(category_id)
    keypoints[3 * slots.start : 3 * slots.stop] = landmarks
    box_width, box_height = x2 - x1, y2 - y1
    return {
        "category_id": category_id,
        "bbox": [x1, y1, box_width, box_height],
        "area": box_width * box_height,
        "iscrowd": 0,
        "segmentation": segmentation,
        "keypoints": keypoints,
        "num_keypoints": sum(1 for v in visibilities if v > 0),
        "style": style,
        **{key: item[key] for key in ATTRIBUTE_KEYS},
    }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _numbers(value: Any, name: str, length: int | None = None) -> list:
    if not isinstance(value, list):
        raise ItemError(f"{name} must be a list of numbers, got {type(value).__name__}")
    if length is not None and len(value) != length:
        raise ItemError(f"{name} must have {length} numbers, got {len(value)}")
    for index, number in enumerate(value):
        if not isinstance(number, (int, float)) or isinstance(number, bool):
            raise ItemError(f"{name}[{index}] is non-numeric: {number!r}")
        if not math.isfinite(number):
            raise ItemError(f"{name}[{index}] is non-finite: {number!r}")
    return value


def query_gt_entries(result: FileResult) -> list[dict]:
    """Retrieval ground truth of a user image: every item, style 0 included."""
    if result.image is None or result.image["source"] != "user":
        return []
    return [
        {
            "query_image_id": result.image_id,
            "style": ann["style"],
            "cls": ann["category_id"],
            "pair_id": ann["pair_id"],
            "bbox": _corners(ann["bbox"]),
        }
        for ann in result.annotations
    ]


def gallery_gt_entries(result: FileResult) -> list[dict]:
    """Retrieval ground truth of a shop image: the items that take part in a pair (style > 0)."""
    if result.image is None or result.image["source"] != "shop":
        return []
    return [
        {
            "gallery_image_id": result.image_id,
            "style": ann["style"],
            "pair_id": ann["pair_id"],
            "bbox": _corners(ann["bbox"]),
        }
        for ann in result.annotations
        if ann["style"] > 0
    ]


def _corners(bbox: list) -> list:
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


# --- converting a split -------------------------------------------------------------------------


@dataclass
class ConversionSummary:
    """Counts of a conversion; ``items_out == items_in - items_skipped`` always holds."""

    files: int = 0
    files_skipped: int = 0
    images: int = 0
    items_in: int = 0
    items_out: int = 0
    items_skipped: int = 0
    problems: list[Problem] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{self.files} annotation files: {self.images} images and {self.items_out} items "
            f"converted; skipped {self.items_skipped} of {self.items_in} items and "
            f"{self.files_skipped} whole files; {len(self.problems)} problems reported"
        )


class ConversionError(RuntimeError):
    """The split cannot be converted (missing folders, or problems under ``strict``)."""


@dataclass(frozen=True)
class _SerialisedFile:
    """A worker's answer: text ready to write, so the main process does no JSON work."""

    image: str | None
    annotations: list[str]
    query_gt: list[dict]
    gallery_gt: list[dict]
    problems: list[Problem]
    items_in: int
    items_skipped: int


def split_dirs(root: str | os.PathLike, split: str) -> tuple[Path, Path]:
    """(annos_dir, image_dir) of a split, or a clear error if the layout is not DeepFashion2's."""
    split_dir = Path(root) / split
    annos_dir, image_dir = split_dir / "annos", split_dir / "image"
    for directory in (annos_dir, image_dir):
        if not directory.is_dir():
            raise ConversionError(
                f"{directory} is not a directory; expected DeepFashion2's layout "
                f"<root>/{split}/annos/*.json and <root>/{split}/image/*.jpg"
            )
    return annos_dir, image_dir


def list_annotation_files(annos_dir: Path) -> list[Path]:
    """Annotation files in image-id order; numbering need not be contiguous."""
    names = [entry.name for entry in os.scandir(annos_dir) if entry.name.endswith(".json")]
    def order(name: str) -> tuple[int, int, str]:
        stem = Path(name).stem
        return (0, int(stem), "") if stem.isdigit() else (1, 0, name)

    return [annos_dir / name for name in sorted(names, key=order)]


def _serialise_file(args: tuple[Path, Path]) -> _SerialisedFile:
    result = read_annotation_file(*args)
    return _SerialisedFile(
        image=None if result.image is None else json.dumps(result.image),
        annotations=[json.dumps(ann)[1:] for ann in result.annotations],
        query_gt=query_gt_entries(result),
        gallery_gt=gallery_gt_entries(result),
        problems=result.problems,
        items_in=result.items_in,
        items_skipped=result.items_skipped,
    )


def _results(
    paths: list[Path], image_dir: Path, workers: int
) -> Iterator[_SerialisedFile]:
    jobs = [(path, image_dir) for path in paths]
    if workers <= 1:
        yield from map(_serialise_file, jobs)
        return
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    with multiprocessing.get_context(method).Pool(workers) as pool:
        chunksize = max(1, min(256, len(jobs) // (8 * workers)))
        yield from pool.imap(_serialise_file, jobs, chunksize=chunksize)


def convert_split(
    root: str | os.PathLike,
    split: str,
    out: str | os.PathLike,
    retrieval_gt_dir: str | os.PathLike | None = None,
    strict: bool = False,
    workers: int | None = None,
    on_problem: Callable[[Problem], None] | None = None,
    progress: bool = False,
) -> ConversionSummary:
    """Convert ``<root>/<split>`` to a COCO file at ``out`` (and retrieval ground truth).

    Outputs are written atomically. With ``strict``, any problem raises ConversionError after all
    files were checked, and nothing is written.
    """
    annos_dir, image_dir = split_dirs(root, split)
    paths = list_annotation_files(annos_dir)
    workers = workers or _available_cores()
    summary = ConversionSummary(files=len(paths))
    query_gt: list[dict] = []
    gallery_gt: list[dict] = []
    images: list[str] = []
    out = Path(out)

    with atomic_open(out) as handle:
        info = {"description": f"DeepFashion2 {split} split in COCO form"}
        handle.write(f'{{"info": {json.dumps(info)}, "categories": ')
        handle.write(f'{json.dumps(coco_categories())}, "annotations": [')
        results = _results(paths, image_dir, workers)
        if progress:
            from tqdm import tqdm

            results = tqdm(results, total=len(paths), desc=f"converting {split}", unit="file")
        for answer in results:
            summary.items_in += answer.items_in
            summary.items_skipped += answer.items_skipped
            for problem in answer.problems:
                summary.problems.append(problem)
                if on_problem:
                    on_problem(problem)
            if answer.image is None:
                summary.files_skipped += 1
                continue
            images.append(answer.image)
            for body in answer.annotations:
                separator = ", " if summary.items_out else ""
                summary.items_out += 1
                handle.write(f'{separator}{{"id": {summary.items_out}, {body}')
            query_gt.extend(answer.query_gt)
            gallery_gt.extend(answer.gallery_gt)
        handle.write('], "images": [')
        handle.write(", ".join(images))
        handle.write("]}")
        summary.images = len(images)
        if strict and summary.problems:
            raise ConversionError(
                f"--strict: {len(summary.problems)} problem(s) in {root}/{split}; "
                "nothing was written"
            )

    if retrieval_gt_dir is not None:
        directory = Path(retrieval_gt_dir)
        write_json_atomic(directory / "query_gt.json", query_gt)
        write_json_atomic(directory / "gallery_gt.json", gallery_gt)
    return summary


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1

