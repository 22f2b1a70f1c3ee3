"""The streaming evaluator: the numbers of one joint COCO run, compact memory, official files."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from matchrcnn.data.categories import NUM_LANDMARKS
from matchrcnn.evaluation.coco import evaluate_breakdowns, evaluate_coco
from matchrcnn.evaluation.evaluator import (
    DeepFashion2Evaluator,
    EvaluationFiles,
    gt_box_retrieval_entries,
)
from matchrcnn.evaluation.results import box_results, landmark_results, mask_results
from matchrcnn.evaluation.synthetic import synthetic_coco_ground_truth, synthetic_coco_results
from matchrcnn.retrieval.metric import MatchMetric

TASKS = ("bbox", "segm", "landmarks", "landmarks_visible")


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, dict, list[dict]]:
    """A COCO ground truth file and per-image model outputs (float32, as a model gives them)."""
    gt = synthetic_coco_ground_truth(60, seed=4)
    path = tmp_path_factory.mktemp("gt") / "gt.json"
    path.write_text(json.dumps(gt))
    results = synthetic_coco_results(gt, seed=5)
    sizes = {image["id"]: (image["height"], image["width"]) for image in gt["images"]}
    outputs: dict[int, dict] = {image_id: {"image_id": image_id, "boxes": [], "labels": [],
                                           "scores": [], "masks": [], "landmarks": []}
                                for image_id in sizes}
    for box, mask, points in zip(results["bbox"], results["segm"], results["landmarks"],
                                 strict=True):
        output = outputs[box["image_id"]]
        x, y, w, h = box["bbox"]
        output["boxes"].append([x, y, x + w, y + h])
        output["labels"].append(box["category_id"])
        output["scores"].append(box["score"])
        output["masks"].append(mask_utils.decode(mask["segmentation"]).astype(bool))
        output["landmarks"].append(np.asarray(points["keypoints"]).reshape(NUM_LANDMARKS, 3))
    predictions = []
    for image_id, output in outputs.items():
        height, width = sizes[image_id]
        predictions.append({
            "image_id": image_id,
            "boxes": np.array(output["boxes"], np.float32).reshape(-1, 4),
            "labels": np.array(output["labels"], np.int64),
            "scores": np.array(output["scores"], np.float32),
            "masks": np.array(output["masks"], bool).reshape(-1, height, width),
            "landmarks": np.array(output["landmarks"], np.float32).reshape(-1, NUM_LANDMARKS, 3),
        })
    return path, gt, predictions


def _evaluate(path: Path, predictions: list[dict], **kwargs) -> dict:
    evaluator = DeepFashion2Evaluator(EvaluationFiles(path), ("bbox", "segm", "landmarks"),
                                      distributed=False, **kwargs)
    records = [{"image_id": p["image_id"]} for p in predictions]
    for start in range(0, len(predictions), 3):
        evaluator.process(records[start : start + 3], predictions[start : start + 3])
    return evaluator.evaluate()


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_per_category_scoring_gives_the_numbers_of_one_joint_run(split, backend):
    path, _, predictions = split
    joint = evaluate_coco(path, predictions, tasks=TASKS, backend=backend)
    assert joint["bbox"]["AP"] > 0.2 and joint["landmarks"]["AP"] > 0.05
    # Fed in another order than the joint run's: results are put in image-id order first.
    assert _evaluate(path, predictions[::-1], backend=backend) == joint


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_breakdowns_by_attribute_equal_the_joint_runs(split, backend):
    path, _, predictions = split
    in_order = sorted(predictions, key=lambda p: p["image_id"])
    results = {"bbox": box_results(in_order), "segm": mask_results(in_order),
               "landmarks": landmark_results(in_order)}
    expected = evaluate_breakdowns(path, results, tasks=TASKS, backend=backend)
    scored = _evaluate(path, predictions, backend=backend, breakdowns=True)
    assert set(scored["breakdowns"]["segm"]) == {"scale", "occlusion", "zoom_in", "viewpoint"}
    assert scored["breakdowns"] == expected
    assert "breakdowns" not in _evaluate(path, predictions, backend=backend)


def test_the_official_result_files_are_written_streamed(split, tmp_path: Path):
    path, _, predictions = split
    _evaluate(path, predictions, output_dir=tmp_path)
    in_order = sorted(predictions, key=lambda p: p["image_id"])
    for kind, writer in (("bbox", box_results), ("segm", mask_results),
                         ("landmarks", landmark_results)):
        written = json.loads((tmp_path / f"results_{kind}.json").read_text())
        expected = json.loads(json.dumps(writer(in_order), default=np.ndarray.tolist))
        assert written == expected, kind


def test_memory_holds_compact_results_not_image_size_times_detections(split):
    """Many full-image masks and 294-slot landmarks per image: only RLE and own slots stay."""
    path = split[0]

    def retained(height: int, width: int, images: int = 40, detections: int = 50) -> int:
        evaluator = DeepFashion2Evaluator(EvaluationFiles(path), ("bbox", "segm", "landmarks"),
                                          distributed=False)
        output = {"boxes": np.tile(np.float32([0, 0, width, height]), (detections, 1)),
                  "labels": np.arange(detections) % 13 + 1,
                  "scores": np.linspace(1, 0.1, detections, dtype=np.float32),
                  "masks": np.ones((detections, height, width), dtype=bool),
                  "landmarks": np.ones((detections, NUM_LANDMARKS, 3), dtype=np.float32)}
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for image_id in range(1, images + 1):
            evaluator.process([{"image_id": image_id}], [output])
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        return held

    small, large = retained(60, 80), retained(1200, 1600)
    passed = 40 * 50 * 1200 * 1600  # bytes of boolean masks handed to process()
    assert large < passed / 5_000, (large, passed)
    assert large < 1.2 * small + 65_536, (small, large)
    assert large / (40 * 50) < 450, "bytes held per detection"


def test_gt_box_retrieval_ranks_every_shop_item_by_the_match_margin():
    rng = np.random.default_rng(0)
    metric = MatchMetric(-rng.uniform(0.2, 2.0, 16), 0.3)

    def item(image_id: int, source: str, count: int) -> dict:
        boxes = np.sort(rng.uniform(0, 100, (count, 2, 2)), axis=1).reshape(-1, 4)
        return {"image_id": image_id, "source": source, "pair_id": image_id, "boxes": boxes,
                "classes": rng.integers(1, 14, count), "styles": rng.integers(0, 3, count),
                "embeddings": rng.normal(0, 1, (count, 16)).astype(np.float32)}

    items = [item(i, "user" if i % 3 == 0 else "shop", int(rng.integers(1, 4)))
             for i in range(1, 400)]
    entries = gt_box_retrieval_entries(items, metric)
    users = [i for i in items if i["source"] == "user"]
    shops = [i for i in items if i["source"] == "shop"]
    gallery = np.concatenate([i["embeddings"] for i in shops])
    gallery_ids = np.repeat([i["image_id"] for i in shops], [len(i["classes"]) for i in shops])
    queries = [(u, row) for u in users for row in range(len(u["classes"]))]
    assert len(entries) == len(queries) > 256, "more queries than one chunk"
    for entry, (user, row) in zip(entries, queries, strict=True):
        margins = metric.margins(user["embeddings"][row], gallery)
        best = np.argsort(-margins, kind="stable")[:20]
        assert entry["query_image_id"] == user["image_id"]
        assert entry["query_bbox"] == user["boxes"][row].tolist()
        assert entry["gallery_image_id"] == gallery_ids[best].tolist()
