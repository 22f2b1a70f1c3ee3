"""A detectron2 DatasetEvaluator that scores Match R-CNN with the project's evaluation suite.

Box, mask and landmark AP (both landmark settings) come from matchrcnn.evaluation.coco on the
official result entries, which are built per batch (masks as RLE) so that memory stays small.
Given the model, retrieval is scored as the torchvision engine scores it: every ground-truth item
of the split is embedded from its box, each consumer item's 20 best shop items by the match
network's similarity are scored by the official protocol in ground-truth-box mode, next to the
accuracy of a random ranking. Numbers are fractions in [0, 1] (not detectron2's percent), NaN
where nothing can be measured, so that both engines report the same numbers.

With an output directory the official result files (``results_bbox.json``, ``results_segm.json``,
``results_landmarks.json``, ``results_retrieval.json``) and ``eval_results.json`` are written
there, atomically.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from matchrcnn.data import catalog
from matchrcnn.engine.evaluation import EVAL_RESULTS, chance_accuracy, gt_box_retrieval_results
from matchrcnn.evaluation.coco import evaluate_results
from matchrcnn.evaluation.results import (
    box_results,
    landmark_results,
    mask_results,
    write_results,
)
from matchrcnn.evaluation.retrieval import evaluate_retrieval
from matchrcnn.utils.atomic import write_json_atomic

logger = logging.getLogger(__name__)

_WRITERS: dict[str, tuple[str, Callable[[Sequence[Mapping]], list[dict]]]] = {
    "bbox": ("boxes", box_results),
    "segm": ("masks", mask_results),
    "landmarks": ("landmarks", landmark_results),
}
"""Result kind -> (the prediction key it needs, its official writer)."""


class DeepFashion2Evaluator(DatasetEvaluator):
    """Official DeepFashion2 AP and, with ``model``, ground-truth-box retrieval of a split.

    The split must be registered by matchrcnn.d2 (its metadata names the split's files).
    """

    def __init__(
        self,
        dataset_name: str,
        model: nn.Module | None = None,
        output_dir: str | None = None,
        distributed: bool = True,
    ) -> None:
        self.dataset_name = dataset_name
        self.files = MetadataCatalog.get(dataset_name).split_files
        if isinstance(model, DistributedDataParallel):
            model = model.module
        if model is not None and getattr(model.roi_heads, "match_branch", None) is None:
            model = None
        self._model = model
        self._output_dir = Path(output_dir) if output_dir else None
        self._distributed = distributed
        self._records: dict[int, dict] | None = None
        self.reset()

    def reset(self) -> None:
        self._entries: dict[str, list[dict]] = {kind: [] for kind in _WRITERS}
        self._kinds: set[str] = set()
        self._embeddings: dict[int, Tensor] = {}

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        predictions = [
            _prediction(image["image_id"], output["instances"].to("cpu"))
            for image, output in zip(inputs, outputs, strict=True)
        ]
        for kind, (key, writer) in _WRITERS.items():
            if key in predictions[0]:
                self._kinds.add(kind)
                self._entries[kind].extend(writer(predictions))
        if self._model is not None:
            self._embeddings.update(self._gt_box_embeddings(inputs))

    @torch.no_grad()
    def _gt_box_embeddings(self, inputs: list[dict]) -> dict[int, Tensor]:
        """Embeddings of each image's ground-truth items, boxes scaled to the network's input."""
        records = self._records_by_id()
        model = self._model
        features = model.backbone(model.preprocess_image(inputs).tensor)
        boxes = []
        for image in inputs:
            height, width = image["image"].shape[-2:]
            scale = torch.tensor([width / image["width"], height / image["height"]] * 2)
            boxes.append(Boxes((_gt_boxes(records[image["image_id"]]) * scale).to(model.device)))
        embeddings = model.roi_heads.embed_boxes(features, boxes).cpu()
        counts = [len(b) for b in boxes]
        return {
            image["image_id"]: vectors
            for image, vectors in zip(inputs, embeddings.split(counts), strict=True)
        }

    def evaluate(self) -> OrderedDict:
        entries, kinds, embeddings = self._entries, self._kinds, self._embeddings
        if self._distributed:
            comm.synchronize()
            gathered = comm.gather((entries, kinds, embeddings), dst=0)
            if not comm.is_main_process():
                return OrderedDict()
            entries = {kind: list(itertools.chain(*(g[0][kind] for g in gathered)))
                       for kind in _WRITERS}
            kinds = set().union(*(g[1] for g in gathered))
            embeddings = dict(itertools.chain(*(g[2].items() for g in gathered)))
        tasks = [*(["bbox"] if "bbox" in kinds else []), *(["segm"] if "segm" in kinds else []),
                 *(["landmarks", "landmarks_visible"] if "landmarks" in kinds else [])]
        if not tasks:
            logger.warning("%s: no predictions to evaluate", self.dataset_name)
            return OrderedDict()
        scored = {kind: entries[kind] for kind in kinds}
        results: dict = dict(evaluate_results(self.files.json_file, scored, tasks=tasks))
        retrieval_entries = self._score_retrieval(embeddings, results) if embeddings else None
        if self._output_dir is not None:
            self._write(scored, retrieval_entries, results)
        return OrderedDict(
            (task, {key: math.nan if value is None else float(value)
                    for key, value in metrics.items()})
            for task, metrics in results.items()
        )

    def _score_retrieval(self, embeddings: dict[int, Tensor], results: dict) -> list[dict]:
        """Adds "retrieval" and "retrieval_chance" to results; returns the official entries."""
        records = [self._records_by_id()[image_id] for image_id in sorted(embeddings)]
        vectors = [embeddings[record["image_id"]].to(self._model.device) for record in records]
        entries = gt_box_retrieval_results(
            records, vectors, self._model.roi_heads.match_branch.similarity
        )
        accuracy = evaluate_retrieval(
            entries, self.files.query_gt, self.files.gallery_gt, gt_boxes=True
        )
        results["retrieval"] = {f"top{k}": value for k, value in accuracy.top_k.items()}
        query_gt = json.loads(Path(self.files.query_gt).read_text(encoding="utf-8"))
        shop_items = [(record["pair_id"], annotation["style"]) for record in records
                      if record["source"] == "shop" for annotation in record["annotations"]]
        results["retrieval_chance"] = chance_accuracy(query_gt, shop_items)
        return entries

    def _records_by_id(self) -> dict[int, dict]:
        if self._records is None:
            records = catalog.DatasetCatalog.get(self.dataset_name)
            self._records = {record["image_id"]: record for record in records}
        return self._records

    def _write(self, entries: dict[str, list[dict]], retrieval: list[dict] | None,
               results: dict) -> None:
        for kind, kind_entries in entries.items():
            write_results(self._output_dir / f"results_{kind}.json", kind_entries)
        if retrieval is not None:
            write_results(self._output_dir / "results_retrieval.json", retrieval)
        write_json_atomic(self._output_dir / EVAL_RESULTS, {**results,
                                                            "dataset": self.dataset_name})


def _prediction(image_id: int, instances: Instances) -> dict:
    """detectron2's Instances of one image as the prediction dict of matchrcnn.evaluation."""
    prediction = {
        "image_id": image_id,
        "boxes": instances.pred_boxes.tensor.numpy(),
        "labels": instances.pred_classes.numpy() + 1,
        "scores": instances.scores.numpy(),
    }
    if instances.has("pred_masks"):
        prediction["masks"] = instances.pred_masks.numpy()
    if instances.has("pred_keypoints"):
        prediction["landmarks"] = instances.pred_keypoints.numpy()
    return prediction


def _gt_boxes(record: dict) -> Tensor:
    """The record's item boxes, XYXY, in the file's pixels."""
    boxes = torch.tensor([a["bbox"] for a in record["annotations"]], dtype=torch.float32)
    boxes = boxes.reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes
