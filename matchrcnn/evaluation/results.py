"""DeepFashion2's four official result formats: writers from model predictions, strict readers.

Writers turn in-memory predictions (per-image dicts of numpy arrays or CPU tensors: "image_id",
"boxes" (N, 4) XYXY, "labels" (N,) 1..13, "scores" (N,), optionally "masks" (N, H, W),
"landmarks" (N, 294, 3), and for retrieval "gallery_image_ids" (N, 20) and "gallery_boxes"
(N, 20, 4) XYXY, ranked best first) into lists of entries ready to submit; ``write_results`` saves
them atomically. Readers load a results file (or an already-loaded list) and reject anything the
official evaluation would choke on or silently misread, raising ``EntriesError`` that names the
file, each bad entry and what is wrong with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from matchrcnn.data.categories import NUM_CATEGORIES, NUM_LANDMARKS, landmark_slice
from matchrcnn.evaluation.entries import (
    Field,
    Problems,
    Source,
    check_categories,
    check_corners,
    check_known,
    check_size,
    columns,
    load_columns,
    load_entries,
)
from matchrcnn.utils.atomic import write_text_atomic

RETRIEVED = 20
"""Gallery entries each submitted retrieval detection must carry."""


@dataclass(frozen=True)
class RetrievalSubmission:
    """A validated retrieval results file as arrays, one row per submitted detection."""

    query_image_id: np.ndarray  # (R,) int64
    query_box: np.ndarray  # (R, 4) float64 XYXY
    query_cls: np.ndarray  # (R,) int64
    query_score: np.ndarray  # (R,) float64
    gallery_image_id: np.ndarray  # (R, 20) int64
    gallery_box: np.ndarray  # (R, 20, 4) float64 XYXY
    name: str = "<results>"

    def __len__(self) -> int:
        return len(self.query_image_id)


# --- writers ------------------------------------------------------------------------------------


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


_PREDICTION_SHAPES: dict[str, tuple[int, ...] | None] = {
    "boxes": (4,), "labels": (), "scores": (), "masks": None, "landmarks": (NUM_LANDMARKS, 3),
    "gallery_image_ids": (RETRIEVED,), "gallery_boxes": (RETRIEVED, 4),
}
"""Shape of each prediction array after its leading N; None for masks, (N, H, W) at image size."""


def _prediction_arrays(prediction: Mapping, index: int, keys: Sequence[str]) -> dict[str, Any]:
    """The arrays of one image's prediction, shapes and values checked against its N detections."""
    where = f"prediction {index}"
    missing = [key for key in ("image_id", *keys) if key not in prediction]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(map(repr, missing))}")
    arrays: dict[str, Any] = {"image_id": int(prediction["image_id"])}
    count = len(_numpy(prediction["scores"]))
    for key in keys:
        array = _numpy(prediction[key])
        tail = _PREDICTION_SHAPES[key]
        if tail is None:
            fits, wanted = array.ndim == 3 and len(array) == count, f"({count}, H, W)"
        else:
            fits, wanted = array.shape == (count, *tail), str((count, *tail))
        if not fits:
            raise ValueError(f"{where}: {key!r} has shape {array.shape}, expected {wanted}")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ValueError(f"{where}: {key!r} holds non-finite values")
        arrays[key] = array
    labels = arrays.get("labels")
    if labels is not None and ((labels < 1) | (labels > NUM_CATEGORIES)).any():
        raise ValueError(f"{where}: labels must lie in 1..{NUM_CATEGORIES}")
    return arrays


def _floats(array: np.ndarray) -> list:
    return np.asarray(array, dtype=np.float64).tolist()


def box_results(predictions: Sequence[Mapping]) -> list[dict]:
    """Box results: ``bbox`` is COCO's [x, y, w, h] from the predicted corners."""
    entries = []
    for index, prediction in enumerate(predictions):
        arrays = _prediction_arrays(prediction, index, ("boxes", "labels", "scores"))
        boxes = np.asarray(arrays["boxes"], dtype=np.float64)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
        rows = zip(_floats(xywh), arrays["labels"].tolist(), _floats(arrays["scores"]),
                   strict=True)
        for box, label, score in rows:
            entries.append({"image_id": arrays["image_id"], "category_id": int(label),
                            "bbox": box, "score": score})
    return entries


def mask_results(predictions: Sequence[Mapping], threshold: float = 0.5) -> list[dict]:
    """Mask results as compressed RLE; ``masks`` are image-sized, probabilities cut at threshold."""
    from pycocotools import mask as mask_utils

    entries = []
    for index, prediction in enumerate(predictions):
        arrays = _prediction_arrays(prediction, index, ("masks", "labels", "scores"))
        masks = arrays["masks"]
        binary = masks >= threshold if masks.dtype.kind == "f" else masks.astype(bool)
        rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0).astype(np.uint8)))
        rows = zip(rles, arrays["labels"].tolist(), _floats(arrays["scores"]), strict=True)
        for rle, label, score in rows:
            segmentation = {"size": [int(v) for v in rle["size"]],
                            "counts": rle["counts"].decode("ascii")}
            entries.append({"image_id": arrays["image_id"], "category_id": int(label),
                            "segmentation": segmentation, "score": score})
    return entries


def landmark_results(predictions: Sequence[Mapping]) -> list[dict]:
    """Landmark results: only the predicted category's slice is kept, zeros elsewhere.

    ``keypoints`` is a (882,) float64 array rather than a list (a quarter of the memory at
    validation scale); both backends and ``write_results`` take it as it is.
    """
    entries = []
    for index, prediction in enumerate(predictions):
        arrays = _prediction_arrays(prediction, index, ("landmarks", "labels", "scores"))
        landmarks = np.asarray(arrays["landmarks"], dtype=np.float64)
        rows = zip(landmarks, arrays["labels"].tolist(), _floats(arrays["scores"]), strict=True)
        for points, label, score in rows:
            keypoints = np.zeros((NUM_LANDMARKS, 3))
            own = landmark_slice(int(label))
            keypoints[own] = points[own]
            entries.append({"image_id": arrays["image_id"], "category_id": int(label),
                            "keypoints": keypoints.ravel(), "score": score})
    return entries


def retrieval_results(predictions: Sequence[Mapping]) -> list[dict]:
    """Retrieval results: each detection with its 20 ranked gallery images and boxes (XYXY)."""
    keys = ("boxes", "labels", "scores", "gallery_image_ids", "gallery_boxes")
    entries = []
    for index, prediction in enumerate(predictions):
        arrays = _prediction_arrays(prediction, index, keys)
        rows = zip(_floats(arrays["boxes"]), arrays["labels"].tolist(), _floats(arrays["scores"]),
                   np.asarray(arrays["gallery_image_ids"], dtype=np.int64).tolist(),
                   _floats(arrays["gallery_boxes"]), strict=True)
        for box, label, score, gallery_ids, gallery_boxes in rows:
            entries.append({"query_image_id": arrays["image_id"], "query_bbox": box,
                            "query_cls": int(label), "query_score": score,
                            "gallery_image_id": gallery_ids, "gallery_bbox": gallery_boxes})
    return entries


def _json_value(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"cannot write a {type(value).__name__} to a results file")


def write_results(path: str | os.PathLike, entries: list[dict]) -> None:
    """Write entries as a JSON results file, atomically; non-finite numbers are refused."""
    write_text_atomic(path, json.dumps(entries, allow_nan=False, default=_json_value))


# --- readers ------------------------------------------------------------------------------------

COCO_TASKS = ("bbox", "segm", "landmarks")
_COCO_FIELDS: dict[str, tuple[Field, ...]] = {
    "bbox": (("image_id", (), True), ("category_id", (), True), ("bbox", (4,), False),
             ("score", (), False)),
    "segm": (("image_id", (), True), ("category_id", (), True), ("score", (), False)),
    "landmarks": (("image_id", (), True), ("category_id", (), True),
                  ("keypoints", (NUM_LANDMARKS * 3,), False), ("score", (), False)),
}
_RETRIEVAL_FIELDS: tuple[Field, ...] = (
    ("query_image_id", (), True), ("query_bbox", (4,), False), ("query_cls", (), True),
    ("query_score", (), False), ("gallery_image_id", (RETRIEVED,), True),
    ("gallery_bbox", (RETRIEVED, 4), False),
)


def _check_rle(entries: list, sizes: Mapping[int, tuple[int, int]] | None,
               problems: Problems) -> None:
    for index, entry in enumerate(entries):
        rle = entry["segmentation"]
        if not isinstance(rle, dict) or not isinstance(rle.get("counts"), str):
            problems.add(index, "'segmentation' must be a compressed RLE "
                         "{'size': [height, width], 'counts': str}")
            continue
        problem = check_size(rle.get("size"), "segmentation size")
        if problem:
            problems.add(index, problem)
            continue
        image_size = sizes.get(entry["image_id"]) if sizes is not None else None
        if image_size is not None and tuple(rle["size"]) != image_size:
            problems.add(index, f"'segmentation' size {rle['size']} is not image "
                         f"{entry['image_id']}'s [height, width] {list(image_size)}")


def read_coco_results(source: Source, task: str, coco_gt: Mapping | None = None) -> list[dict]:
    """Load and validate a box (``bbox``), mask (``segm``) or landmark results file.

    With ``coco_gt`` (the loaded ground truth), image ids must be its images and mask sizes their
    sizes. Returns the entries as loaded; raises EntriesError naming every malformed entry.
    """
    if task not in COCO_TASKS:
        raise ValueError(f"task must be one of {COCO_TASKS}, got {task!r}")
    entries, name = load_entries(source)
    problems = Problems(name)
    arrays = columns(entries, _COCO_FIELDS[task], problems)
    check_categories(arrays["category_id"], "category_id", problems)
    sizes = None
    if coco_gt is not None:
        sizes = {image["id"]: (image["height"], image["width"]) for image in coco_gt["images"]}
        check_known(arrays["image_id"], sizes.keys(), "image_id", "ground truth", problems)
    if task == "bbox":
        problems.add_rows((arrays["bbox"][:, 2:] < 0).any(axis=1),
                          "'bbox' has a negative width or height")
    if task == "segm":
        _check_rle(entries, sizes, problems)
    problems.raise_if_any()
    return entries


def read_retrieval_results(source: Source | RetrievalSubmission,
                           query_image_ids: Collection[int] | np.ndarray | None = None,
                           ) -> RetrievalSubmission:
    """Load and validate a retrieval results file into arrays.

    Each entry needs an integer ``query_image_id`` (one of ``query_image_ids`` when given),
    ``query_cls`` 1..13, a finite ``query_score``, a ``query_bbox`` and exactly 20 integer
    ``gallery_image_id`` with their 20 ``gallery_bbox``, boxes finite and ordered [x1, y1, x2, y2].
    Gallery image ids are not checked against a ground truth: the released gallery ground truth
    lists only shop images with paired items, and retrieving another shop image is legitimate
    (it simply is no match). A RetrievalSubmission is only checked against ``query_image_ids``.
    """
    if isinstance(source, RetrievalSubmission):
        problems = Problems(source.name)
        if query_image_ids is not None:
            check_known(source.query_image_id, query_image_ids, "query_image_id",
                        "query ground truth", problems)
        problems.raise_if_any()
        return source
    arrays, name = load_columns(source, _RETRIEVAL_FIELDS)
    problems = Problems(name)
    check_categories(arrays["query_cls"], "query_cls", problems)
    if query_image_ids is not None:
        check_known(arrays["query_image_id"], query_image_ids, "query_image_id",
                    "query ground truth", problems)
    check_corners(arrays["query_bbox"], "query_bbox", problems)
    check_corners(arrays["gallery_bbox"], "gallery_bbox", problems)
    problems.raise_if_any()
    return RetrievalSubmission(
        query_image_id=arrays["query_image_id"], query_box=arrays["query_bbox"],
        query_cls=arrays["query_cls"], query_score=arrays["query_score"],
        gallery_image_id=arrays["gallery_image_id"], gallery_box=arrays["gallery_bbox"],
        name=name,
    )
