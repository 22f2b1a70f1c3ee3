"""One evaluator for both engines, in detectron2's shape: ``reset``, ``process``, ``evaluate``.

``process(inputs, outputs)`` turns each batch's predictions into compact results at once: boxes,
labels and scores as arrays, masks as COCO RLE, landmarks as the predicted category's slots only,
and the ground-truth-box embeddings of the retrieval items as float32 rows. Memory is bounded by
these compact results, never by image size times detections.

``evaluate()`` is collective under ``torch.distributed``: every rank evaluates its shard, rank 0
gathers the compact results (over a gloo group with a long timeout, so ranks waiting for rank 0's
scoring do not hit NCCL's), scores them once and sends the numbers back; every rank returns the
same dict. Results are put in image-id order before scoring, so a sharded evaluation gives the
numbers of a single-process one digit for digit.

Scoring is DeepFashion2's official protocol:
- box, mask and landmark AP (``matchrcnn.evaluation.coco``), one category at a time: COCO scores
  each category on its own, so the per-category precision and recall blocks, put side by side,
  are the arrays of one joint run (the same summary, bit for bit), while only one category's
  result entries (with full 294-slot landmark arrays) exist at a time;
- FashionAI's normalized error for layouts that define reference landmarks;
- ground-truth-box retrieval: every user item ranks every shop item by the match network's
  margin ``sum_d w_d (a_d - g_d)^2 + b`` (``MatchMetric``), computed in the decomposed form
  ``(a^2) w - 2 (a w) g^T + (g^2) w + b`` over chunks of queries, and the top 20 are scored by the
  official protocol, next to the accuracy a random ranking would reach.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from matchrcnn.data.layouts import DEEPFASHION2, LandmarkLayout
from matchrcnn.evaluation.results import RETRIEVED, write_results
from matchrcnn.evaluation.retrieval import TOP_K, evaluate_retrieval

if TYPE_CHECKING:  # the package matchrcnn.retrieval loads FAISS; only its metric is used here
    from matchrcnn.retrieval.metric import MatchMetric

logger = logging.getLogger("matchrcnn")

MASK_THRESHOLD = 0.5
QUERY_CHUNK = 256
"""User items ranked at once against the whole gallery: a (256, G) float64 block."""
GATHER_TIMEOUT = timedelta(hours=4)
"""How long ranks wait for rank 0 to gather and score: longer than any evaluation."""


@dataclass(frozen=True)
class EvaluationFiles:
    """A split's ground truth: its COCO file and, for retrieval, the official GT files."""

    json_file: Path
    query_gt: Path | None = None
    gallery_gt: Path | None = None


def _numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


class DeepFashion2Evaluator:
    """Official DeepFashion2 scores of a split from per-batch predictions.

    ``tasks``: any of "bbox", "segm", "landmarks" (keypoint AP with the 294 sigmas in
    DeepFashion2's layout, visible + occluded and visible only; normalized error in a layout with
    reference landmarks such as FashionAI's); None: what the outputs hold ("masks",
    "landmarks"), as detectron2's COCOEvaluator infers its tasks. ``match_metric``: the match
    network's similarity, to score ground-truth-box retrieval from the ``gt_embeddings`` of the
    outputs. ``breakdowns``: also AP, AP50 and AP75 by scale, occlusion, zoom_in and viewpoint, as
    in the paper's tables (``results["breakdowns"]``; about 13 times the cost of the AP alone).
    """

    def __init__(self, files: EvaluationFiles, tasks: Sequence[str] | None = ("bbox",),
                 layout: LandmarkLayout | None = DEEPFASHION2,
                 match_metric: MatchMetric | None = None,
                 output_dir: str | os.PathLike | None = None, distributed: bool = True,
                 backend: str = "faster", breakdowns: bool = False) -> None:
        unknown = sorted(set(tasks or ()) - {"bbox", "segm", "landmarks"})
        if unknown:
            raise ValueError(f"unknown evaluation task(s) {unknown}")
        if "landmarks" in (tasks or ()) and layout is None:
            raise ValueError("landmark evaluation needs the split's landmark layout")
        if match_metric is not None and (files.query_gt is None or files.gallery_gt is None):
            raise ValueError("retrieval evaluation needs the split's query and gallery GT files")
        self.files, self.layout = files, layout
        self.tasks = None if tasks is None else tuple(tasks)
        self.match_metric, self.backend = match_metric, backend
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.distributed, self.breakdowns = distributed, breakdowns
        self.reset()

    def reset(self) -> None:
        self._detections: list[dict[str, Any]] = []
        self._items: list[dict[str, Any]] = []

    def process(self, inputs: Sequence[Mapping], outputs: Sequence[Mapping]) -> None:
        """``inputs``: the images' records (``image_id``; for retrieval ``source``, ``pair_id``
        and ``annotations``); ``outputs``: per image "boxes" (N, 4) XYXY, "labels" (N,) from 1,
        "scores", and as the tasks need "masks" (N, H, W) probabilities or booleans at image
        size, "landmarks" (N, slots, 3), "gt_embeddings" (items, D)."""
        for record, output in zip(inputs, outputs, strict=True):
            self._detections.append(self._compact(int(record["image_id"]), output))
            if self.match_metric is not None:
                self._items.append(_retrieval_items(record, _numpy(output["gt_embeddings"])))

    def _compact(self, image_id: int, output: Mapping) -> dict[str, Any]:
        labels = _numpy(output["labels"]).astype(np.int64).reshape(-1)
        compact: dict[str, Any] = {
            "image_id": image_id,
            "boxes": _numpy(output["boxes"]).reshape(-1, 4),
            "labels": labels,
            "scores": _numpy(output["scores"]).reshape(-1),
        }
        if self._wants("segm", output, "masks"):
            compact["mask_size"], compact["rles"] = _encode_masks(_numpy(output["masks"]),
                                                                  len(labels))
        if self._wants("landmarks", output, "landmarks") and self.layout is not None:
            landmarks = _numpy(output["landmarks"]).astype(np.float32, copy=False)
            own = [landmarks[i, list(self.layout.slots(int(label)))]
                   for i, label in enumerate(labels)]
            compact["landmarks"] = np.concatenate(own) if own else np.zeros((0, 3), np.float32)
        return compact

    def _wants(self, task: str, output: Mapping, key: str) -> bool:
        return task in self.tasks if self.tasks is not None else key in output

    def evaluate(self) -> dict:
        """The scores, on every rank (collective under torch.distributed)."""
        group = _gather_group() if self.distributed else None
        if group is None:
            return self._score(self._detections, self._items)
        import torch.distributed as dist

        try:
            rank = dist.get_rank()
            gathered = [None] * dist.get_world_size() if rank == 0 else None
            dist.gather_object((self._detections, self._items), gathered, dst=0, group=group)
            results: list = [None]
            if rank == 0:
                results = [self._score([d for part, _ in gathered for d in part],
                                       [i for _, part in gathered for i in part])]
            dist.broadcast_object_list(results, src=0, group=group)
        finally:
            dist.destroy_process_group(group)
        return results[0]

    def _score(self, detections: list[dict], items: list[dict]) -> dict:
        detections = sorted(detections, key=lambda d: d["image_id"])
        items = sorted(items, key=lambda i: i["image_id"])
        results: dict = {}
        table = _DetectionTable(detections, self.layout)
        tasks = self.tasks if self.tasks is not None else _tasks_present(detections)
        from matchrcnn.evaluation.coco import load_coco_gt

        coco_tasks = _coco_tasks(tasks, self.layout)
        if coco_tasks:
            gt = load_coco_gt(self.files.json_file, coco_tasks)
            attributes = _attributes_of(gt) if self.breakdowns else []
            summaries, breakdowns = _score_by_category(gt, table, coco_tasks, self.backend,
                                                       attributes)
            results.update(summaries)
            if breakdowns:
                results["breakdowns"] = breakdowns
        if "landmarks" in tasks and self.layout.reference_pairs:
            from matchrcnn.evaluation.normalized_error import normalized_error

            entries = table.landmark_entries(np.arange(len(table)))
            results["landmarks_ne"] = normalized_error(self.files.json_file, entries,
                                                       self.layout).as_dict()
        retrieval_entries = None
        if self.match_metric is not None:
            retrieval_entries = gt_box_retrieval_entries(items, self.match_metric)
            accuracy = evaluate_retrieval(retrieval_entries, self.files.query_gt,
                                          self.files.gallery_gt, gt_boxes=True)
            results["retrieval"] = {f"top{k}": value for k, value in accuracy.top_k.items()}
            query_gt = json.loads(Path(self.files.query_gt).read_text(encoding="utf-8"))
            shop = [(item["pair_id"], style) for item in items if item["source"] == "shop"
                    for style in item["styles"].tolist()]
            results["retrieval_chance"] = chance_accuracy(query_gt, shop)
        if self.output_dir is not None:
            self._write(table, tasks, retrieval_entries)
        return results

    def _write(self, table: _DetectionTable, tasks: Sequence[str],
               retrieval: list[dict] | None) -> None:
        """The official result files, streamed: one chunk of images' entries at a time."""
        everything = np.arange(len(table))
        kinds = {"bbox": table.box_entries}
        if "segm" in tasks:
            kinds["segm"] = table.mask_entries
        if "landmarks" in tasks:
            kinds["landmarks"] = table.landmark_entries
        chunks = np.array_split(everything, max(1, len(everything) // 4096))
        for kind, entries_of in kinds.items():
            write_results(self.output_dir / f"results_{kind}.json",
                          (entry for chunk in chunks for entry in entries_of(chunk)))
        if retrieval is not None:
            write_results(self.output_dir / "results_retrieval.json", retrieval)


def _attributes_of(gt: Mapping) -> list[str]:
    """The breakdown attributes every ground-truth item has (DeepFashion2's four; none for
    FashionAI or SAL-HG)."""
    from matchrcnn.evaluation.coco import ATTRIBUTES

    return [attribute for attribute in ATTRIBUTES
            if all(attribute in annotation for annotation in gt["annotations"])]


def _tasks_present(detections: list[dict]) -> list[str]:
    """The tasks whose compact results the detections hold (when none were named)."""
    tasks = ["bbox"]
    for task, key in (("segm", "rles"), ("landmarks", "landmarks")):
        if any(key in detection for detection in detections):
            tasks.append(task)
    return tasks


def _coco_tasks(tasks: Sequence[str], layout: LandmarkLayout | None) -> list[str]:
    coco_tasks = [task for task in ("bbox", "segm") if task in tasks]
    if "landmarks" in tasks and layout is DEEPFASHION2:
        coco_tasks += ["landmarks", "landmarks_visible"]
    return coco_tasks


def _encode_masks(masks: np.ndarray, count: int) -> tuple[tuple[int, int], list[bytes]]:
    """The image's (height, width) and each mask's compressed RLE counts."""
    from pycocotools import mask as mask_utils

    if masks.ndim == 4:
        masks = masks[:, 0]
    if len(masks) != count:
        raise ValueError(f"{len(masks)} masks for {count} detections")
    binary = masks >= MASK_THRESHOLD if masks.dtype.kind == "f" else masks.astype(bool)
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0).astype(np.uint8)))
    return (int(binary.shape[1]), int(binary.shape[2])), [rle["counts"] for rle in rles]


def _retrieval_items(record: Mapping, embeddings: np.ndarray) -> dict[str, Any]:
    annotations = record["annotations"]
    if len(embeddings) != len(annotations):
        raise ValueError(f"image {record['image_id']}: {len(embeddings)} embeddings for "
                         f"{len(annotations)} items")
    boxes = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return {
        "image_id": int(record["image_id"]), "source": record["source"],
        "pair_id": record.get("pair_id"), "boxes": boxes,
        "classes": np.array([a["category_id"] for a in annotations], dtype=np.int64),
        "styles": np.array([a.get("style", 0) for a in annotations], dtype=np.int64),
        "embeddings": np.asarray(embeddings, dtype=np.float32).reshape(len(annotations), -1),
    }


class _DetectionTable:
    """Every detection of the split as columns, in image-id order; entries built on demand."""

    def __init__(self, detections: list[dict], layout: LandmarkLayout | None) -> None:
        counts = [len(d["labels"]) for d in detections]
        self.layout = layout
        self.image_ids = np.repeat(np.array([d["image_id"] for d in detections], np.int64), counts)
        self.labels = _concat([d["labels"] for d in detections], np.int64, (0,))
        self.boxes = _concat([d["boxes"] for d in detections], np.float32, (0, 4))
        self.scores = _concat([d["scores"] for d in detections], np.float32, (0,))
        self.rles = [rle for d in detections for rle in d.get("rles", ())]
        self.mask_sizes = [list(d["mask_size"]) for d in detections if "mask_size" in d]
        self.mask_images = np.repeat(np.arange(len(self.mask_sizes)),
                                     [len(d["rles"]) for d in detections if "rles" in d])
        landmarks = [d["landmarks"] for d in detections if "landmarks" in d]
        self.landmarks = _concat(landmarks, np.float32, (0, 3))
        if landmarks:
            slots = [len(layout.slots(label)) for label in self.labels.tolist()]
            self.landmark_starts = np.concatenate([[0], np.cumsum(slots)]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def _heads(self, rows: np.ndarray) -> list[tuple[int, int, float]]:
        scores = self.scores[rows].astype(np.float64).tolist()
        return list(zip(self.image_ids[rows].tolist(), self.labels[rows].tolist(), scores,
                        strict=True))

    def box_entries(self, rows: np.ndarray) -> list[dict]:
        boxes = self.boxes[rows].astype(np.float64)
        xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).tolist()
        return [{"image_id": image_id, "category_id": label, "bbox": box, "score": score}
                for (image_id, label, score), box in zip(self._heads(rows), xywh, strict=True)]

    def mask_entries(self, rows: np.ndarray) -> list[dict]:
        return [{"image_id": image_id, "category_id": label, "score": score,
                 "segmentation": {"size": self.mask_sizes[self.mask_images[row]],
                                  "counts": self.rles[row].decode("ascii")}}
                for (image_id, label, score), row in zip(self._heads(rows), rows.tolist(),
                                                         strict=True)]

    def landmark_entries(self, rows: np.ndarray) -> list[dict]:
        """Full-layout keypoint arrays, zeros outside each detection's own category."""
        entries = []
        for (image_id, label, score), row in zip(self._heads(rows), rows.tolist(), strict=True):
            keypoints = np.zeros((self.layout.num_slots, 3))
            start, stop = self.landmark_starts[row], self.landmark_starts[row + 1]
            keypoints[list(self.layout.slots(label))] = self.landmarks[start:stop]
            entries.append({"image_id": image_id, "category_id": label,
                            "keypoints": keypoints.ravel(), "score": score})
        return entries

    def entries(self, kind: str, rows: np.ndarray) -> list[dict]:
        builder = {"bbox": self.box_entries, "segm": self.mask_entries,
                   "landmarks": self.landmark_entries}[kind]
        return builder(rows)


def _concat(parts: list[np.ndarray], dtype: type, empty: tuple[int, ...]) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(empty, dtype)


def _score_by_category(gt: Mapping, table: _DetectionTable, tasks: list[str], backend: str,
                       attributes: Sequence[str] = ()) -> tuple[dict, dict]:
    """COCO summaries of each task, and the breakdowns by ``attributes``, from per-category runs.

    One category's result entries of one kind exist at a time; every run of that category
    (each task, all ground truth and each attribute value's subset) reuses them.
    """
    from matchrcnn.evaluation import coco

    subsets: list[tuple[tuple[str, str] | None, np.ndarray | None]] = [(None, None)]
    for attribute in attributes:
        values = np.array([annotation[attribute] for annotation in gt["annotations"]])
        subsets += [((attribute, name), values == value)
                    for value, name in coco.ATTRIBUTES[attribute].items()]
    categories = sorted(gt["categories"], key=lambda category: category["id"])
    category_of = np.array([a["category_id"] for a in gt["annotations"]], dtype=np.int64)
    blocks: dict[tuple, list[dict]] = {}
    params: dict[tuple, Any] = {}
    for category in categories:
        indices = np.flatnonzero(category_of == category["id"])
        ground_truth = {"images": gt["images"], "categories": [category],
                        "annotations": [gt["annotations"][i] for i in indices]}
        rows = np.flatnonzero(table.labels == category["id"])
        for kind in dict.fromkeys(coco._RESULTS_OF_TASK[task] for task in tasks):
            entries = table.entries(kind, rows)
            for task in (task for task in tasks if coco._RESULTS_OF_TASK[task] == kind):
                for key, keep in subsets:
                    dataset = coco._ground_truth(ground_truth, task,
                                                 None if keep is None else keep[indices])
                    evaluation, params[task, key] = coco._BACKENDS[backend](
                        dataset, [dict(entry) for entry in entries], coco._IOU_TYPE[task],
                        keep is not None)
                    blocks.setdefault((task, key), []).append(evaluation)

    def summary(task: str, key: tuple[str, str] | None) -> dict[str, float | None]:
        # Categories on axis 2 of precision (T, R, K, A, M) and axis 1 of recall (T, K, A, M).
        parts = blocks[task, key]
        joined = {"precision": np.concatenate([b["precision"] for b in parts], axis=2),
                  "recall": np.concatenate([b["recall"] for b in parts], axis=1)}
        return coco._summary(joined, params[task, key], coco._IOU_TYPE[task])

    summaries = {task: summary(task, None) for task in tasks}
    breakdowns = {task: {attribute: {name: summary(task, (attribute, name))
                                     for name in coco.ATTRIBUTES[attribute].values()}
                         for attribute in attributes}
                  for task in tasks} if attributes else {}
    return summaries, breakdowns


def gt_box_retrieval_entries(items: Sequence[Mapping], metric: MatchMetric) -> list[dict]:
    """Official retrieval entries: each user item's 20 best shop items by the match margin."""
    def side(source: str) -> tuple[np.ndarray, ...]:
        chosen = [item for item in items if item["source"] == source]
        counts = [len(item["classes"]) for item in chosen]
        ids = np.repeat(np.array([item["image_id"] for item in chosen], np.int64), counts)
        return (ids, _concat([item["boxes"] for item in chosen], np.float64, (0, 4)),
                _concat([item["classes"] for item in chosen], np.int64, (0,)),
                _concat([item["embeddings"] for item in chosen], np.float64, (0, metric.dim)))

    query_ids, query_boxes, query_classes, queries = side("user")
    gallery_ids, gallery_boxes, _, gallery = side("shop")
    if len(gallery_ids) == 0 or len(query_ids) == 0:
        raise ValueError("retrieval evaluation needs user and shop images in the test split")
    weight = metric.weight
    gallery_term = np.square(gallery) @ weight + metric.bias
    weighted_gallery = (gallery * weight).T
    keep = min(RETRIEVED, len(gallery_ids))
    entries = []
    for start in range(0, len(queries), QUERY_CHUNK):
        block = queries[start : start + QUERY_CHUNK]
        margins = (np.square(block) @ weight)[:, None] - 2.0 * (block @ weighted_gallery)
        margins += gallery_term[None]
        ranked = _top_k(margins, keep)
        for offset, row in enumerate(ranked.tolist()):
            # A gallery smaller than 20 items repeats its last entry, which changes no rank.
            row = row + [row[-1]] * (RETRIEVED - len(row))
            index = start + offset
            entries.append({
                "query_image_id": int(query_ids[index]), "query_bbox": query_boxes[index].tolist(),
                "query_cls": int(query_classes[index]), "query_score": 1.0,
                "gallery_image_id": gallery_ids[row].tolist(),
                "gallery_bbox": gallery_boxes[row].tolist(),
            })
    return entries


def _top_k(margins: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's k largest values, best first, lower index first on ties."""
    if k < margins.shape[1]:
        candidates = np.argpartition(-margins, k - 1, axis=1)[:, :k]
    else:
        candidates = np.broadcast_to(np.arange(margins.shape[1]), margins.shape)
    values = np.take_along_axis(margins, candidates, axis=1)
    order = np.lexsort((candidates, -values), axis=1)
    return np.take_along_axis(candidates, order, axis=1)


def chance_accuracy(query_gt: list[dict], gallery_items: list[tuple[int, int]]) -> dict:
    """Expected top-k accuracy of a random ranking of ``gallery_items`` ((pair_id, style) each)."""
    pool = len(gallery_items)
    counts: dict[tuple[int, int], int] = {}
    for key in gallery_items:
        counts[key] = counts.get(key, 0) + 1
    chance = {}
    queries = [q for q in query_gt if q["style"] > 0]
    for k in TOP_K:
        total = 0.0
        for query in queries:
            right = counts.get((query["pair_id"], query["style"]), 0)
            miss = np.prod([(pool - right - i) / (pool - i) for i in range(min(k, pool))])
            total += 1.0 - float(max(miss, 0.0))
        chance[f"top{k}"] = total / len(queries) if queries else 0.0
    return chance


def _gather_group() -> Any:
    """A new gloo group over all ranks with a long timeout; None when not distributed.

    Made for one evaluation and destroyed after it (creating it is collective).
    """
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return None
    return dist.new_group(backend="gloo", timeout=GATHER_TIMEOUT)
