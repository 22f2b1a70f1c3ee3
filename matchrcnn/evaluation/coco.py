"""DeepFashion2 box, mask and landmark AP by the official protocol, with either COCO backend.

Tasks: ``bbox`` and ``segm`` (COCO AP over the 13 categories, areas from the ground truth's
``area`` = box w*h), ``landmarks`` (COCO keypoint AP with the 294 DeepFashion2 sigmas, maxDets 20,
ground-truth landmarks with v > 0: visible + occluded) and ``landmarks_visible`` (the same with
occluded ground-truth landmarks, v = 1, dropped, so that only visible ones count). Both landmark
tasks score the same landmark results.

Backends: ``faster`` (faster-coco-eval, C++; the default) and ``pycocotools`` (the reference).
Both get the same inputs and give identical numbers; tests/evaluation checks that on every task
and on the breakdowns.

Breakdowns by ``scale``, ``occlusion``, ``zoom_in`` and ``viewpoint`` transpose COCO's area-range
mechanism to an attribute value: ground truth outside the subset is ignored (a detection matched
to it is neither a true nor a false positive), while a detection that matches nothing stays a
false positive, as it is whatever the subset. Ignoring is done through the fields COCO already
honours, identically in both backends: an out-of-subset item gets area -1 (outside every range)
for boxes and masks, and num_keypoints 0 for landmarks; neither field enters IoU or OKS.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from matchrcnn.data.categories import keypoint_oks_sigmas
from matchrcnn.evaluation.entries import EntriesError, Problems, Source, check_known, read_json
from matchrcnn.evaluation.results import (
    CocoResults,
    box_results,
    landmark_results,
    mask_results,
    read_coco_results,
)

TASKS = ("bbox", "segm", "landmarks", "landmarks_visible")
BACKENDS = ("faster", "pycocotools")
ATTRIBUTES: dict[str, dict[int, str]] = {
    "scale": {1: "small", 2: "moderate", 3: "large"},
    "occlusion": {1: "slight", 2: "medium", 3: "heavy"},
    "zoom_in": {1: "no", 2: "medium", 3: "large"},
    "viewpoint": {1: "no_wear", 2: "frontal", 3: "side_or_back"},
}
"""The breakdown attributes and the names of their values, as in DeepFashion2's tables."""

_RESULTS_OF_TASK = {"bbox": "bbox", "segm": "segm", "landmarks": "landmarks",
                    "landmarks_visible": "landmarks"}
_IOU_TYPE = {"bbox": "bbox", "segm": "segm", "landmarks": "keypoints",
             "landmarks_visible": "keypoints"}
_TASK_FIELDS = {"bbox": (), "segm": ("segmentation",), "landmarks": ("keypoints", "num_keypoints"),
                "landmarks_visible": ("keypoints",)}
_WRITERS: dict[str, Callable[[Sequence[Mapping]], list[dict]]] = {
    "bbox": box_results, "segm": mask_results, "landmarks": landmark_results,
}
_ALL_AREAS = [[0.0, 1e5**2]]
_ONE_WITH_EPSILON = 1.0 / (1.0 + np.spacing(1))
"""pycocotools' precision for one true positive out of one detection: it divides by
tp + fp + eps, which changes nothing when tp + fp >= 2 but gives 1 - 2**-52 here, where
faster-coco-eval gives exactly 1. No other precision (below 2**52 detections) takes this value, so
setting it back to 1 makes the backends' precision arrays identical, bit for bit; every summary
number then differs from pycocotools' own summarize() by less than 3e-16 (tests/evaluation)."""


def load_coco_gt(source: str | os.PathLike | Mapping, tasks: Iterable[str] = TASKS) -> Mapping:
    """The ground truth as a dict (a COCO file in DeepFashion2's COCO form, or the dict itself).

    Checks that every annotation has the fields the tasks read, naming the ones that do not.
    """
    data = source if isinstance(source, Mapping) else read_json(source)
    name = "<ground truth>" if isinstance(source, Mapping) else str(source)
    if not isinstance(data, Mapping):
        raise EntriesError(f"{name}: a COCO ground truth is a JSON object", name)
    missing = [key for key in ("images", "annotations", "categories") if key not in data]
    if missing:
        raise EntriesError(f"{name}: not a COCO ground truth, missing {', '.join(missing)}",
                           name)
    needed = ["id", "image_id", "category_id", "bbox", "area"]
    needed += [key for task in tasks for key in _TASK_FIELDS[task] if key not in needed]
    problems = Problems(f"{name} annotations")
    for index, ann in enumerate(data["annotations"]):
        lacking = [key for key in needed if key not in ann]
        if lacking:
            problems.add(index, f"missing {', '.join(map(repr, lacking))}")
    problems.raise_if_any()
    return data


def _task_list(tasks: Iterable[str]) -> list[str]:
    tasks = list(tasks)
    unknown = [task for task in tasks if task not in TASKS]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; choose from {TASKS}")
    return tasks


def _ground_truth(coco_gt: Mapping, task: str, keep: np.ndarray | None) -> dict:
    """A fresh COCO dataset for one run: annotations copied, since both backends modify them."""
    annotations = []
    for index, ann in enumerate(coco_gt["annotations"]):
        copy = dict(ann)
        if task == "landmarks_visible":
            keypoints = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
            keypoints[keypoints[:, 2] == 1] = 0
            copy["keypoints"] = keypoints.ravel()
            copy["num_keypoints"] = int(np.count_nonzero(keypoints[:, 2]))
        if keep is not None and not keep[index]:
            if _IOU_TYPE[task] == "keypoints":
                copy["num_keypoints"] = 0
            else:
                copy["area"] = -1.0
        annotations.append(copy)
    return {"images": coco_gt["images"], "categories": coco_gt["categories"],
            "annotations": annotations}


def _evaluate_pycocotools(dataset: dict, results: list[dict], iou_type: str,
                          all_areas: bool) -> tuple[dict, object]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        if results:
            dt = gt.loadRes(results)
        else:
            dt = COCO()
            dt.dataset = {**dataset, "annotations": []}
            dt.createIndex()
        evaluator = COCOeval(gt, dt, iou_type)
        if iou_type == "keypoints":
            evaluator.params.kpt_oks_sigmas = np.array(keypoint_oks_sigmas())
        if all_areas:
            evaluator.params.areaRng, evaluator.params.areaRngLbl = _ALL_AREAS, ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
    precision = evaluator.eval["precision"]
    precision[precision == _ONE_WITH_EPSILON] = 1.0
    return evaluator.eval, evaluator.params


def _evaluate_faster(dataset: dict, results: list[dict], iou_type: str,
                     all_areas: bool) -> tuple[dict, object]:
    from faster_coco_eval import COCO, COCOeval_faster

    def quiet(*_args: object, **_kwargs: object) -> None:
        return None

    gt = COCO(dataset, print_function=quiet)
    dt = gt.loadRes(results)
    sigmas = list(keypoint_oks_sigmas()) if iou_type == "keypoints" else None
    evaluator = COCOeval_faster(gt, dt, iou_type, print_function=quiet, kpt_oks_sigmas=sigmas)
    if all_areas:
        evaluator.params.areaRng, evaluator.params.areaRngLbl = _ALL_AREAS, ["all"]
    evaluator.evaluate()
    evaluator.accumulate()
    return evaluator.eval, evaluator.params


_BACKENDS = {"faster": _evaluate_faster, "pycocotools": _evaluate_pycocotools}


def _mean(values: np.ndarray) -> float | None:
    """COCO's summary mean over defined cells; None where COCO prints -1 (nothing to measure)."""
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else None


def _summary(evaluation: dict, params: object, iou_type: str) -> dict[str, float | None]:
    """The numbers of COCO's summarize(), from its precision and recall arrays."""
    precision, recall = evaluation["precision"], evaluation["recall"]
    thresholds = params.iouThrs
    labels = list(params.areaRngLbl)

    def ap(iou: float | None = None, area: str = "all") -> float | None:
        cells = precision[..., labels.index(area), -1]
        return _mean(cells if iou is None else cells[np.flatnonzero(thresholds == iou)])

    def ar(iou: float | None = None, area: str = "all", max_dets: int = -1) -> float | None:
        cells = recall[..., labels.index(area), max_dets]
        return _mean(cells if iou is None else cells[np.flatnonzero(thresholds == iou)])

    metrics = {"AP": ap(), "AP50": ap(0.5), "AP75": ap(0.75)}
    if labels == ["all"]:
        return metrics
    if iou_type == "keypoints":
        return {**metrics, "APm": ap(area="medium"), "APl": ap(area="large"), "AR": ar(),
                "AR50": ar(0.5), "AR75": ar(0.75), "ARm": ar(area="medium"),
                "ARl": ar(area="large")}
    return {**metrics, "APs": ap(area="small"), "APm": ap(area="medium"),
            "APl": ap(area="large"),
            **{f"AR{m}": ar(max_dets=i) for i, m in enumerate(params.maxDets)},
            "ARs": ar(area="small"), "ARm": ar(area="medium"), "ARl": ar(area="large")}


def _run(coco_gt: Mapping, results: list[dict], task: str, backend: str,
         keep: np.ndarray | None = None) -> dict[str, float | None]:
    """One evaluation; each run gets its own copies, since both backends annotate the dicts."""
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    dataset = _ground_truth(coco_gt, task, keep)
    entries = [dict(entry) for entry in results]
    iou_type = _IOU_TYPE[task]
    evaluation, params = _BACKENDS[backend](dataset, entries, iou_type, keep is not None)
    return _summary(evaluation, params, iou_type)


def _results_by_task(coco_gt: Mapping, results: Mapping[str, Source | CocoResults],
                     tasks: list[str]) -> dict[str, list[dict]]:
    needed = {_RESULTS_OF_TASK[task] for task in tasks}
    missing = sorted(needed - set(results))
    if missing:
        raise ValueError(f"no results given for {missing} (needed by tasks {tasks})")
    return {kind: read_coco_results(results[kind], kind, coco_gt) for kind in needed}


def evaluate_results(coco_gt: str | os.PathLike | Mapping,
                     results: Mapping[str, Source | CocoResults],
                     tasks: Iterable[str] = TASKS, backend: str = "faster",
                     ) -> dict[str, dict[str, float | None]]:
    """AP of official result files (or loaded lists) keyed "bbox", "segm" and "landmarks".

    Every file or list is validated first (``EntriesError`` names each malformed entry); a
    CocoResults from ``results.load_coco_results`` is taken as validated. Returns, per task,
    COCO's summary: AP, AP50, AP75, APs/APm/APl and AR1/AR10/AR100/ARs/ARm/ARl for boxes and
    masks; AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl for landmarks; fractions in [0, 1],
    None where nothing can be measured (no ground truth in an area range).
    """
    tasks = _task_list(tasks)
    gt = load_coco_gt(coco_gt, tasks)
    by_kind = _results_by_task(gt, results, tasks)
    return {task: _run(gt, by_kind[_RESULTS_OF_TASK[task]], task, backend) for task in tasks}


def evaluate_coco(coco_gt: str | os.PathLike | Mapping, predictions: Sequence[Mapping],
                  tasks: Iterable[str] = TASKS, backend: str = "faster",
                  ) -> dict[str, dict[str, float | None]]:
    """AP of in-memory model outputs (see results.py for the prediction dicts), no files involved.

    Predictions become official result entries in memory (landmarks keep only the predicted
    category's slice) and are scored like ``evaluate_results``; the returned dict is the same.
    Image ids must be images of the ground truth.
    """
    tasks = _task_list(tasks)
    gt = load_coco_gt(coco_gt, tasks)
    by_kind = {kind: _WRITERS[kind](predictions) for kind in {_RESULTS_OF_TASK[t] for t in tasks}}
    known = np.array([image["id"] for image in gt["images"]], dtype=np.int64)
    for kind, entries in by_kind.items():
        problems = Problems(f"<{kind} results of the predictions>")
        image_ids = np.array([entry["image_id"] for entry in entries], dtype=np.int64)
        check_known(image_ids, known, "image_id", "ground truth", problems)
        problems.raise_if_any()
    return {task: _run(gt, by_kind[_RESULTS_OF_TASK[task]], task, backend) for task in tasks}


def check_attributes(coco_gt: Mapping, attributes: Iterable[str] = tuple(ATTRIBUTES),
                     name: str = "<ground truth>") -> None:
    """Every annotation must hold each attribute the breakdowns split by (EntriesError names
    the file, ``name``, otherwise)."""
    for attribute in attributes:
        if attribute not in ATTRIBUTES:
            raise ValueError(f"unknown attribute {attribute!r}; choose from {tuple(ATTRIBUTES)}")
        lacking = [ann.get("id") for ann in coco_gt["annotations"] if attribute not in ann]
        if lacking:
            raise EntriesError(f"{name}: {len(lacking)} annotations have no {attribute!r} (ids "
                               f"{lacking[:5]}...); breakdowns need the attributes that "
                               f"tools/convert_deepfashion2.py writes", name)


def evaluate_breakdowns(coco_gt: str | os.PathLike | Mapping,
                        results: Mapping[str, Source | CocoResults],
                        tasks: Iterable[str] = TASKS, backend: str = "faster",
                        attributes: Iterable[str] = tuple(ATTRIBUTES),
                        ) -> dict[str, dict[str, dict[str, dict[str, float | None]]]]:
    """AP, AP50 and AP75 per attribute value: ``{task: {attribute: {value name: metrics}}}``.

    Subsets are formed as the module docstring says; one evaluation per task and value. The
    results are taken as by ``evaluate_results``; a ground truth whose annotations lack an
    attribute raises EntriesError (``check_attributes``).
    """
    tasks = _task_list(tasks)
    attributes = list(attributes)
    gt = load_coco_gt(coco_gt, tasks)
    check_attributes(gt, attributes,
                     "<ground truth>" if isinstance(coco_gt, Mapping) else str(coco_gt))
    by_kind = _results_by_task(gt, results, tasks)
    breakdowns: dict = {task: {} for task in tasks}
    for attribute in attributes:
        values = np.array([ann[attribute] for ann in gt["annotations"]])
        for task in tasks:
            breakdowns[task][attribute] = {
                name: _run(gt, by_kind[_RESULTS_OF_TASK[task]], task, backend, values == value)
                for value, name in ATTRIBUTES[attribute].items()
            }
    return breakdowns
