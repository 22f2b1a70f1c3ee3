"""detectron2's DatasetEvaluator over the project's evaluator (``matchrcnn.evaluation.evaluator``).

A thin adapter: detectron2's ``Instances`` become the prediction arrays of the torchvision engine,
and scoring, compact storage, the distributed gather and the official result files are the shared
evaluator's, so both engines report the same numbers by the same code. Given the model,
retrieval is scored as the torchvision engine scores it: every ground-truth item is embedded from
its box and ranked against the split's shop items in ground-truth-box mode, next to the accuracy
of a random ranking. Numbers are fractions in [0, 1] (not detectron2's percent), NaN where
nothing can be measured.

With an output directory the official result files (``results_bbox.json``, ``results_segm.json``,
``results_landmarks.json``, ``results_retrieval.json``) and ``eval_results.json`` are written
there, atomically, by the main process.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import torch
from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.structures import Boxes, Instances
from detectron2.utils import comm
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from matchrcnn.data import catalog
from matchrcnn.data.records import column
from matchrcnn.engine.evaluation import gt_boxes
from matchrcnn.evaluation.evaluator import DeepFashion2Evaluator as SplitEvaluator
from matchrcnn.evaluation.evaluator import EvaluationFiles
from matchrcnn.retrieval.metric import MatchMetric
from matchrcnn.utils.atomic import write_json_atomic

EVAL_RESULTS = "eval_results.json"


class DeepFashion2Evaluator(DatasetEvaluator):
    """Official DeepFashion2 AP and, with ``model``, ground-truth-box retrieval of a split.

    The split must be registered by matchrcnn.d2 (its metadata names the split's files). Tasks
    follow the predictions: masks and landmarks are scored when the model predicts them.
    """

    def __init__(
        self,
        dataset_name: str,
        model: nn.Module | None = None,
        output_dir: str | None = None,
        distributed: bool = True,
    ) -> None:
        self.dataset_name = dataset_name
        files = MetadataCatalog.get(dataset_name).split_files
        if isinstance(model, DistributedDataParallel):
            model = model.module
        if model is not None and getattr(model.roi_heads, "match_branch", None) is None:
            model = None
        self._model = model
        self._output_dir = Path(output_dir) if output_dir else None
        metric = (MatchMetric.from_head(model.roi_heads.match_branch.similarity)
                  if model is not None else None)
        self._evaluator = SplitEvaluator(
            EvaluationFiles(Path(files.json_file), files.query_gt, files.gallery_gt), tasks=None,
            match_metric=metric, output_dir=self._output_dir, distributed=distributed)
        self._records = None
        self._position: dict[int, int] | None = None

    def reset(self) -> None:
        self._evaluator.reset()

    def process(self, inputs: list[dict], outputs: list[dict]) -> None:
        records = [self._record(image["image_id"]) for image in inputs]
        predictions = [_prediction(output["instances"].to("cpu")) for output in outputs]
        if self._model is not None:
            for prediction, embeddings in zip(predictions, self._gt_box_embeddings(inputs, records),
                                              strict=True):
                prediction["gt_embeddings"] = embeddings
        self._evaluator.process(records, predictions)

    def _record(self, image_id: int) -> dict:
        """The catalog record of an image (ground-truth items for retrieval), by image id."""
        if self._records is None:
            self._records = catalog.DatasetCatalog.get(self.dataset_name)
            self._position = {image: index
                              for index, image in enumerate(column(self._records, "image_id"))}
        return self._records[self._position[image_id]]

    @torch.no_grad()
    def _gt_box_embeddings(self, inputs: list[dict], records: list[dict]) -> list[Tensor]:
        """Embeddings of each image's ground-truth items, boxes scaled to the network's input."""
        model = self._model
        images = model.preprocess_image(inputs)
        features = model.backbone(images.tensor)
        boxes = []
        for image, record in zip(inputs, records, strict=True):
            height, width = image["image"].shape[-2:]
            scale = torch.tensor([width / image["width"], height / image["height"]] * 2)
            boxes.append(Boxes((gt_boxes(record) * scale).to(model.device)))
        embeddings = model.roi_heads.embed_boxes(features, boxes, images).float().cpu()
        return list(embeddings.split([len(b) for b in boxes]))

    def evaluate(self) -> OrderedDict:
        results = self._evaluator.evaluate()
        if self._output_dir is not None and comm.is_main_process():
            write_json_atomic(self._output_dir / EVAL_RESULTS,
                              {**results, "dataset": self.dataset_name})
        return OrderedDict(
            (task, {key: math.nan if value is None else float(value)
                    for key, value in metrics.items()})
            for task, metrics in results.items()
        )


def _prediction(instances: Instances) -> dict:
    """detectron2's Instances of one image as the evaluator's prediction arrays."""
    prediction = {
        "boxes": instances.pred_boxes.tensor.numpy(),
        "labels": instances.pred_classes.numpy() + 1,
        "scores": instances.scores.numpy(),
    }
    if instances.has("pred_masks"):
        prediction["masks"] = instances.pred_masks.numpy()
    if instances.has("pred_keypoints"):
        prediction["landmarks"] = instances.pred_keypoints.numpy()
    return prediction
