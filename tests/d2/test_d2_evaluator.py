"""DeepFashion2Evaluator: the project's official AP and retrieval inside detectron2's evaluation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip(
    "detectron2", reason="detectron2 is not installed (no package index has it; see README.md, "
    "'Use with detectron2')"
)

from detectron2.data import DatasetCatalog
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from pycocotools import mask as mask_utils

from matchrcnn.d2 import DeepFashion2Evaluator, MatchRCNNTrainer
from matchrcnn.data.catalog import SplitFiles
from matchrcnn.evaluation.coco import evaluate_results
from matchrcnn.evaluation.retrieval import evaluate_retrieval
from tests.d2.conftest import d2_cfg

AP_TASKS = ("bbox", "segm", "landmarks", "landmarks_visible")


def _ground_truth_as_output(record: dict) -> dict:
    """detectron2's output for one image that predicts exactly its ground truth."""
    height, width = record["height"], record["width"]
    annotations = record["annotations"]
    boxes = torch.tensor([a["bbox"] for a in annotations], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    masks = [mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"],
                                                                       height, width)))
             for a in annotations]
    instances = Instances((height, width))
    instances.pred_boxes = Boxes(boxes)
    instances.pred_classes = torch.tensor([a["category_id"] for a in annotations])
    instances.scores = torch.ones(len(annotations))
    instances.pred_masks = torch.from_numpy(np.stack(masks)).bool()
    instances.pred_keypoints = torch.tensor(
        [a["keypoints"] for a in annotations], dtype=torch.float32
    ).reshape(-1, 294, 3)
    return {"instances": instances}


def test_ground_truth_predictions_score_perfect_ap_and_are_written(d2_env, tmp_path):
    records = DatasetCatalog.get("synthetic_validation")
    evaluator = DeepFashion2Evaluator("synthetic_validation", output_dir=str(tmp_path),
                                      distributed=False)
    evaluator.reset()
    for record in records:
        evaluator.process([{"image_id": record["image_id"]}], [_ground_truth_as_output(record)])
    results = evaluator.evaluate()
    assert list(results) == list(AP_TASKS)
    for task in AP_TASKS:
        assert results[task]["AP"] == pytest.approx(1.0), task
        assert all(isinstance(v, float) for v in results[task].values())
    files = SplitFiles("synthetic", "validation", d2_env)
    written = {kind: tmp_path / f"results_{kind}.json" for kind in ("bbox", "segm", "landmarks")}
    assert evaluate_results(files.json_file, written) == {
        task: {k: (None if math.isnan(v) else v) for k, v in metrics.items()}
        for task, metrics in results.items()
    }
    saved = json.loads((tmp_path / "eval_results.json").read_text())
    assert saved["dataset"] == "synthetic_validation"
    assert saved["bbox"]["AP"] == pytest.approx(1.0)


def test_trainer_test_scores_ap_and_ground_truth_box_retrieval_with_the_model(d2_env, tmp_path):
    cfg = d2_cfg("OUTPUT_DIR", str(tmp_path))
    torch.manual_seed(0)
    model = build_model(cfg)
    results = MatchRCNNTrainer.test(cfg, model)
    assert list(results) == [*AP_TASKS, "retrieval", "retrieval_chance"]
    for task in AP_TASKS:
        assert all(math.isnan(v) or 0.0 <= v <= 1.0 for v in results[task].values())
    top_k = list(results["retrieval"].values())
    assert list(results["retrieval"]) == ["top1", "top5", "top10", "top15", "top20"]
    assert top_k == sorted(top_k)
    assert all(0.0 <= value <= 1.0 for value in top_k)
    output = tmp_path / "inference" / "synthetic_validation"
    files = SplitFiles("synthetic", "validation", d2_env)
    rescored = evaluate_retrieval(output / "results_retrieval.json", files.query_gt,
                                  files.gallery_gt, gt_boxes=True)
    assert list(rescored.top_k.values()) == top_k
    saved = json.loads((output / "eval_results.json").read_text())
    assert saved["retrieval_chance"] == results["retrieval_chance"]
