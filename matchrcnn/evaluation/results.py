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

import dataclasses
import json
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from matchrcnn.data.categories import NUM_CATEGORIES, NUM_LANDMARKS, landmark_slice
from matchrcnn.evaluation.entries import (
    Field,
    Problems,
    Source,
    category_problem,
    check_size,
    columns,
    corner_problem,
    flipped_corners,
    load_columns,
    load_entries,
    outside_categories,
    unknown_ids,
    unknown_problem,
)
from matchrcnn.utils.atomic import atomic_open

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
    warnings: tuple[str, ...] = dataclasses.field(default=(), compare=False)
    """What was read as the official script reads it although it breaks the format."""

    def __len__(self) -> int:
        return len(self.query_image_id)

    def only(self, keep: np.ndarray) -> RetrievalSubmission:
        """The detections where ``keep`` is true."""
        arrays = {field.name: getattr(self, field.name)[keep]
                  for field in dataclasses.fields(self) if field.name not in ("name", "warnings")}
        return RetrievalSubmission(**arrays, name=self.name, warnings=self.warnings)


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


def write_results(path: str | os.PathLike, entries: Iterable[Mapping]) -> None:
    """Write entries as a JSON results file, atomically; non-finite numbers are refused.

    Entries are written one at a time, so a generator of them (a split's worth, built chunk by
    chunk) never has to exist as one list.
    """
    with atomic_open(path) as handle:
        handle.write("[")
        for index, entry in enumerate(entries):
            handle.write(", " if index else "")
            handle.write(json.dumps(entry, allow_nan=False, default=_json_value))
        handle.write("]")


# --- readers ------------------------------------------------------------------------------------

COCO_TASKS = ("bbox", "segm", "landmarks")
_COCO_FIELDS: dict[str, tuple[Field, ...]] = {
    "bbox": (Field("image_id", (), True), Field("category_id", (), True),
             Field("bbox", (4,), False), Field("score", (), False)),
    "segm": (Field("image_id", (), True), Field("category_id", (), True),
             Field("score", (), False)),
    "landmarks": (Field("image_id", (), True), Field("category_id", (), True),
                  Field("keypoints", (NUM_LANDMARKS * 3,), False), Field("score", (), False)),
}
_RETRIEVAL_FIELDS: tuple[Field, ...] = (
    Field("query_image_id", (), True), Field("query_bbox", (4,), False),
    Field("query_cls", (), True), Field("query_score", (), False),
    Field("gallery_image_id", (RETRIEVED,), True, at_least=True),
    Field("gallery_bbox", (RETRIEVED, 4), False, at_least=True),
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


@dataclass(frozen=True)
class CocoResults:
    """A validated box, mask or landmark results file: the entries scored, and warnings about
    those left out."""

    entries: list[dict]
    name: str
    warnings: tuple[str, ...] = ()


def load_coco_results(source: Source | CocoResults, task: str, coco_gt: Mapping | None = None,
                      *, strict: bool = True) -> CocoResults:
    """Load and validate a box (``bbox``), mask (``segm``) or landmark results file.

    With ``coco_gt`` (the loaded ground truth), image ids must be its images and mask sizes their
    sizes. Raises EntriesError naming every malformed entry. Not ``strict``, entries of images
    outside the ground truth and of categories outside 1..13 are left out, with a warning line
    each, instead: COCOeval would never score them. A CocoResults is returned as it is.
    """
    if isinstance(source, CocoResults):
        return source
    if task not in COCO_TASKS:
        raise ValueError(f"task must be one of {COCO_TASKS}, got {task!r}")
    entries, name = load_entries(source)
    problems = Problems(name, strict)
    arrays = columns(entries, _COCO_FIELDS[task], problems)
    categories = arrays["category_id"]
    outside = outside_categories(categories)
    problems.tolerate(np.flatnonzero(outside),
                      lambda i: category_problem(categories, "category_id", i),
                      "with a 'category_id' outside 1..13, left out (COCOeval scores only the "
                      "ground truth's categories)")
    sizes = None
    if coco_gt is not None:
        sizes = {image["id"]: (image["height"], image["width"]) for image in coco_gt["images"]}
        image_ids = arrays["image_id"]
        unknown = unknown_ids(image_ids, np.fromiter(sizes, dtype=np.int64, count=len(sizes)))
        problems.tolerate(np.flatnonzero(unknown),
                          lambda i: unknown_problem(image_ids, "image_id", "ground truth", i),
                          "for images not in the ground truth, left out")
        outside |= unknown
    if task == "bbox":
        problems.add_rows((arrays["bbox"][:, 2:] < 0).any(axis=1),
                          "'bbox' has a negative width or height")
    if task == "segm":
        _check_rle(entries, sizes, problems)
    problems.raise_if_any()
    if outside.any():
        entries = [entry for entry, left_out in zip(entries, outside.tolist(), strict=True)
                   if not left_out]
    return CocoResults(entries, name, tuple(problems.warnings))


def read_coco_results(source: Source | CocoResults, task: str,
                      coco_gt: Mapping | None = None) -> list[dict]:
    """The entries of a results file, validated strictly (``load_coco_results``), as loaded."""
    return load_coco_results(source, task, coco_gt).entries


_OFFICIAL_IOU = ("scored as by the official script: IoU 0 with every ground-truth box, so a "
                 "query box goes to its image's first item and a retrieved box matches nothing")


def _tolerate_submission(arrays: Mapping[str, np.ndarray], problems: Problems) -> None:
    """What the official script scores although the format forbids it: classes outside 1..13
    (they match no item) and boxes with x2 < x1 or y2 < y1 (IoU 0 with everything)."""
    classes = arrays["query_cls"]
    problems.tolerate(
        np.flatnonzero(outside_categories(classes)),
        lambda i: category_problem(classes, "query_cls", i),
        "with a 'query_cls' outside 1..13, scored as by the official script: such a detection "
        "matches no item's class")
    query, gallery = flipped_corners(arrays["query_bbox"]), flipped_corners(arrays["gallery_bbox"])
    problems.tolerate(
        np.flatnonzero(query | gallery),
        lambda i: corner_problem("query_bbox" if query[i] else "gallery_bbox"),
        f"with a box with x2 < x1 or y2 < y1 ('query_bbox' or 'gallery_bbox'), {_OFFICIAL_IOU}")


def _known_images_only(submission: RetrievalSubmission,
                       query_image_ids: Collection[int] | np.ndarray,
                       problems: Problems) -> RetrievalSubmission:
    """Detections of images outside the query ground truth: the official script never looks at
    them; so, unless strict, they are left out with a warning."""
    ids = submission.query_image_id
    unknown = unknown_ids(ids, query_image_ids)
    problems.tolerate(np.flatnonzero(unknown),
                      lambda i: unknown_problem(ids, "query_image_id", "query ground truth", i),
                      "for images not in the query ground truth, left out (the official "
                      "script never reads them)")
    problems.raise_if_any()
    warnings = (*submission.warnings, *problems.warnings)
    kept = submission.only(~unknown) if unknown.any() else submission
    return dataclasses.replace(kept, warnings=warnings)


def read_retrieval_results(source: Source | RetrievalSubmission,
                           query_image_ids: Collection[int] | np.ndarray | None = None,
                           *, strict: bool = False) -> RetrievalSubmission:
    """Load and validate a retrieval results file into arrays.

    Each entry needs an integer ``query_image_id``, an integer ``query_cls``, a finite
    ``query_score``, a finite ``query_bbox`` [x1, y1, x2, y2] and at least 20 integer
    ``gallery_image_id`` with as many finite ``gallery_bbox``; anything else raises EntriesError
    naming each bad entry. What the official script scores although the format forbids it is
    scored the same way, each kind counted in one line of ``warnings``: a ``query_cls`` outside
    1..13 (it matches no item), a box with x2 < x1 or y2 < y1 (IoU 0 with every box), lists of
    more than 20 (only the first 20 are read) and, with ``query_image_ids``, detections of other
    images (left out). With ``strict`` each of those is an error instead.

    Gallery image ids are not checked against a ground truth: the released gallery ground truth
    lists only shop images with paired items, and retrieving another shop image is legitimate
    (it simply is no match). A RetrievalSubmission is only checked against ``query_image_ids``.
    """
    if isinstance(source, RetrievalSubmission):
        if query_image_ids is None:
            return source
        return _known_images_only(source, query_image_ids, Problems(source.name, strict))
    arrays, problems = load_columns(source, _RETRIEVAL_FIELDS, strict=strict)
    _tolerate_submission(arrays, problems)
    submission = RetrievalSubmission(
        query_image_id=arrays["query_image_id"], query_box=arrays["query_bbox"],
        query_cls=arrays["query_cls"], query_score=arrays["query_score"],
        gallery_image_id=arrays["gallery_image_id"], gallery_box=arrays["gallery_bbox"],
        name=problems.name,
    )
    if query_image_ids is None:
        problems.raise_if_any()
        return dataclasses.replace(submission, warnings=tuple(problems.warnings))
    return _known_images_only(submission, query_image_ids, problems)
