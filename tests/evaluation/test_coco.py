"""Box, mask and landmark AP: backends identical, equal to pycocotools, right on known cases."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from matchrcnn.data.categories import NUM_LANDMARKS, keypoint_oks_sigmas
from matchrcnn.evaluation.coco import (
    ATTRIBUTES,
    TASKS,
    evaluate_breakdowns,
    evaluate_coco,
    evaluate_results,
)
from matchrcnn.evaluation.entries import EntriesError
from matchrcnn.evaluation.results import (
    box_results,
    landmark_results,
    mask_results,
    write_results,
)
from matchrcnn.evaluation.synthetic import synthetic_coco_ground_truth, synthetic_coco_results


@pytest.fixture(scope="module")
def ground_truth() -> dict:
    return synthetic_coco_ground_truth(120, seed=3)


@pytest.fixture(scope="module")
def results(ground_truth) -> dict:
    return synthetic_coco_results(ground_truth, seed=4)


def _predictions(ground_truth: dict, rng: np.random.Generator | None = None,
                 occluded_offset: float = 0.0) -> list[dict]:
    """In-memory model outputs equal to the ground truth, or jittered when ``rng`` is given."""
    sizes = {image["id"]: (image["height"], image["width"]) for image in ground_truth["images"]}
    by_image: dict[int, list[dict]] = {image_id: [] for image_id in sizes}
    for ann in ground_truth["annotations"]:
        by_image[ann["image_id"]].append(ann)
    predictions = []
    for image_id, anns in by_image.items():
        height, width = sizes[image_id]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        polygons = [np.array(a["segmentation"][0]) for a in anns]
        landmarks = np.array([a["keypoints"] for a in anns], dtype=np.float64)
        landmarks = landmarks.reshape(len(anns), NUM_LANDMARKS, 3)
        occluded = landmarks[..., 2] == 1
        landmarks[occluded, :2] += occluded_offset
        if rng is not None:
            boxes = boxes + rng.normal(0, 3, boxes.shape)
            polygons = [p + rng.normal(0, 3, p.shape) for p in polygons]
            landmarks[..., :2] += rng.normal(0, 4, landmarks[..., :2].shape)
        masks = np.stack([mask_utils.decode(mask_utils.frPyObjects([p.tolist()], height, width)[0])
                          for p in polygons]) if anns else np.zeros((0, height, width), np.uint8)
        predictions.append({
            "image_id": image_id,
            "boxes": boxes.reshape(-1, 4),
            "labels": np.array([a["category_id"] for a in anns], dtype=np.int64),
            "scores": np.linspace(0.9, 0.5, len(anns)),
            "masks": masks,
            "landmarks": landmarks,
        })
    return predictions


def test_backends_give_identical_numbers(ground_truth, results):
    faster = evaluate_results(ground_truth, results, backend="faster")
    reference = evaluate_results(ground_truth, results, backend="pycocotools")
    assert faster == reference
    assert set(faster) == set(TASKS)
    assert all(0 < faster[task]["AP"] < 1 for task in TASKS)
    assert faster["landmarks"] != faster["landmarks_visible"]


@pytest.mark.parametrize(("task", "iou_type"), [("bbox", "bbox"), ("segm", "segm"),
                                                ("landmarks", "keypoints")])
def test_summary_is_pycocotools_summarize(ground_truth, results, task, iou_type):
    ours = evaluate_results(ground_truth, results, tasks=[task], backend="faster")[task]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(ground_truth)
        gt.createIndex()
        evaluator = COCOeval(gt, gt.loadRes(copy.deepcopy(results[task])), iou_type)
        evaluator.params.kpt_oks_sigmas = np.array(keypoint_oks_sigmas())
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    ours_as_coco = [-1 if value is None else value for value in ours.values()]  # -1: no GT
    assert len(ours_as_coco) == len(evaluator.stats)
    assert np.allclose(ours_as_coco, evaluator.stats, rtol=0, atol=3e-16)


def test_in_memory_predictions_score_as_their_result_files(ground_truth, tmp_path):
    predictions = _predictions(ground_truth, np.random.default_rng(0))
    in_memory = evaluate_coco(ground_truth, predictions)
    files = {}
    for kind, writer in (("bbox", box_results), ("segm", mask_results),
                         ("landmarks", landmark_results)):
        files[kind] = tmp_path / f"{kind}.json"
        write_results(files[kind], writer(predictions))
    assert evaluate_results(ground_truth, files) == in_memory
    assert 0.2 < in_memory["bbox"]["AP"] < 1


def test_perfect_predictions_score_one(ground_truth):
    metrics = evaluate_coco(ground_truth, _predictions(ground_truth))
    for task in TASKS:
        assert (metrics[task]["AP"], metrics[task]["AP50"], metrics[task]["AP75"]) == (1, 1, 1)


def test_visible_setting_ignores_occluded_landmarks(ground_truth):
    predictions = _predictions(ground_truth, occluded_offset=40.0)
    metrics = evaluate_coco(ground_truth, predictions, tasks=["landmarks", "landmarks_visible"])
    assert metrics["landmarks_visible"]["AP"] == 1
    assert metrics["landmarks"]["AP"] < 0.9


def test_no_predictions_score_zero(ground_truth):
    for backend in ("faster", "pycocotools"):
        metrics = evaluate_coco(ground_truth, [], tasks=["bbox", "landmarks"], backend=backend)
        assert metrics["bbox"]["AP"] == 0 and metrics["landmarks"]["AR"] == 0


def test_breakdowns_are_identical_across_backends(ground_truth, results):
    tasks = ["bbox", "landmarks_visible"]
    faster = evaluate_breakdowns(ground_truth, results, tasks, backend="faster")
    reference = evaluate_breakdowns(ground_truth, results, tasks, backend="pycocotools")
    assert faster == reference
    assert set(faster["bbox"]) == set(ATTRIBUTES)
    assert set(faster["bbox"]["occlusion"]) == {"slight", "medium", "heavy"}


def test_breakdowns_ignore_other_subsets_but_keep_false_positives(ground_truth):
    predictions = _predictions(ground_truth)
    perfect = {"bbox": box_results(predictions)}
    subsets = evaluate_breakdowns(ground_truth, perfect, ["bbox"], attributes=["scale"])
    assert all(m["AP"] == 1 for m in subsets["bbox"]["scale"].values())
    stray = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 3, 3], "score": 1.0}
    with_stray = {"bbox": [stray, *perfect["bbox"]]}
    subsets = evaluate_breakdowns(ground_truth, with_stray, ["bbox"], attributes=["scale"])
    assert all(m["AP"] < 1 for m in subsets["bbox"]["scale"].values())


def test_a_subset_holding_everything_equals_the_whole(ground_truth, results):
    uniform = {**ground_truth,
               "annotations": [dict(a, zoom_in=2) for a in ground_truth["annotations"]]}
    whole = evaluate_results(uniform, results, tasks=["segm"])["segm"]
    subsets = evaluate_breakdowns(uniform, results, ["segm"], attributes=["zoom_in"])["segm"]
    assert subsets["zoom_in"]["medium"] == {k: whole[k] for k in ("AP", "AP50", "AP75")}
    assert subsets["zoom_in"]["no"] == {"AP": None, "AP50": None, "AP75": None}


def test_input_errors_are_clear(ground_truth, results):
    stray = [{"image_id": 10**6, "boxes": np.zeros((1, 4)), "labels": np.ones(1, np.int64),
              "scores": np.ones(1)}]
    with pytest.raises(EntriesError, match="'image_id' 1000000 is not an image of the ground"):
        evaluate_coco(ground_truth, stray, tasks=["bbox"])
    with pytest.raises(ValueError, match="unknown task"):
        evaluate_results(ground_truth, results, tasks=["keypoints"])
    with pytest.raises(ValueError, match="backend must be one of"):
        evaluate_results(ground_truth, results, tasks=["bbox"], backend="detectron2")
    with pytest.raises(ValueError, match=r"no results given for \['segm'\]"):
        evaluate_results(ground_truth, {"bbox": results["bbox"]}, tasks=["bbox", "segm"])
    bare = {**ground_truth, "annotations": [
        {k: v for k, v in a.items() if k != "viewpoint"} for a in ground_truth["annotations"]]}
    with pytest.raises(ValueError, match="have no 'viewpoint'"):
        evaluate_breakdowns(bare, results, ["bbox"], attributes=["viewpoint"])


def test_ground_truth_problems_name_the_file_and_annotation(ground_truth, results, tmp_path):
    annotations = [dict(a) for a in ground_truth["annotations"]]
    del annotations[4]["num_keypoints"]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({**ground_truth, "annotations": annotations}))
    assert evaluate_results(path, results, tasks=["bbox"])["bbox"]["AP"] > 0
    with pytest.raises(EntriesError, match=r"annotations: 1 malformed entry\n  entry 4: "
                                           r"missing 'num_keypoints'"):
        evaluate_results(path, results, tasks=["landmarks"])
    with pytest.raises(EntriesError, match=r"absent\.json: cannot read"):
        evaluate_results(tmp_path / "absent.json", results)


@pytest.mark.slow
def test_backends_identical_on_a_larger_set():
    ground_truth = synthetic_coco_ground_truth(3000, seed=11)
    results = synthetic_coco_results(ground_truth, seed=12)
    faster = evaluate_results(ground_truth, results, backend="faster")
    assert faster == evaluate_results(ground_truth, results, backend="pycocotools")
    breakdowns = evaluate_breakdowns(ground_truth, results, ["segm", "landmarks"],
                                     backend="faster")
    assert breakdowns == evaluate_breakdowns(ground_truth, results, ["segm", "landmarks"],
                                             backend="pycocotools")
