"""tools/eval_results.py against pycocotools run directly with the 294 sigmas, on the same files.

The ground truth is what tools/convert_deepfashion2.py writes for a small DeepFashion2-layout
split; the results are official-format files perturbed from it. The reference here is the plain
pycocotools recipe a user would follow: COCO(gt), loadRes(file), COCOeval with the DeepFashion2
sigmas (tests/evaluation/data/kpt_oks_sigmas.json, a copy of the released 294), and for the
visible-only setting a ground truth whose occluded landmarks (v = 1) are dropped.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from matchrcnn.data.deepfashion2 import convert_split
from matchrcnn.evaluation.coco import ATTRIBUTES, evaluate_breakdowns
from matchrcnn.evaluation.results import write_results
from matchrcnn.evaluation.synthetic import synthetic_coco_results

from ..conftest import write_df2_split

TOOL = Path(__file__).resolve().parents[2] / "tools" / "eval_results.py"
SIGMAS = np.array(json.loads((Path(__file__).parent / "data" / "kpt_oks_sigmas.json").read_text()))
BOX_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm",
             "ARl")
KEYPOINT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
TOLERANCE = 1e-15
"""pycocotools divides by tp + fp + eps, so one true positive out of one detection has precision
1 - 2**-52 there and 1 here (coco.py); summaries then differ by less than 3e-16."""


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("eval_results")
    root = write_df2_split(work / "df2", "validation", list(range(1, 81)), seed=4)
    gt = work / "validation.json"
    convert_split(root, "validation", gt, workers=1)
    results = synthetic_coco_results(json.loads(gt.read_text()), seed=5)
    paths = {"gt": gt}
    for kind, entries in results.items():
        paths[kind] = work / f"{kind}.json"
        write_results(paths[kind], entries)
    return paths


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True)


def _tool_main():
    spec = importlib.util.spec_from_file_location("eval_results_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _visible_only(gt_path: Path, out: Path) -> Path:
    data = json.loads(gt_path.read_text())
    for ann in data["annotations"]:
        points = np.array(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        points[points[:, 2] == 1] = 0
        ann["keypoints"] = points.ravel().tolist()
        ann["num_keypoints"] = int(np.count_nonzero(points[:, 2]))
    out.write_text(json.dumps(data))
    return out


def _pycocotools(gt_path: Path, results_path: Path, iou_type: str) -> dict[str, float | None]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        evaluator = COCOeval(gt, gt.loadRes(str(results_path)), iou_type)
        if iou_type == "keypoints":
            evaluator.params.kpt_oks_sigmas = SIGMAS
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    names = KEYPOINT_NAMES if iou_type == "keypoints" else BOX_NAMES
    return {name: None if value == -1 else float(value)
            for name, value in zip(names, evaluator.stats, strict=True)}


def _assert_equal(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for name, value in theirs.items():
        if value is None:
            assert ours[name] is None, name
        else:
            assert abs(ours[name] - value) <= TOLERANCE, (name, ours[name], value)


@pytest.mark.parametrize("backend", ["faster", "pycocotools"])
def test_every_task_equals_pycocotools_run_directly(files, tmp_path, backend):
    run = _tool("--gt", str(files["gt"]), "--bbox", str(files["bbox"]), "--segm",
                str(files["segm"]), "--landmarks", str(files["landmarks"]), "--json",
                "--backend", backend)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    printed = json.loads(run.stdout)
    assert list(printed) == ["bbox", "segm", "landmarks", "landmarks_visible"]
    visible = _visible_only(files["gt"], tmp_path / "visible.json")
    expected = {
        "bbox": _pycocotools(files["gt"], files["bbox"], "bbox"),
        "segm": _pycocotools(files["gt"], files["segm"], "segm"),
        "landmarks": _pycocotools(files["gt"], files["landmarks"], "keypoints"),
        "landmarks_visible": _pycocotools(visible, files["landmarks"], "keypoints"),
    }
    for task, metrics in expected.items():
        _assert_equal(printed[task], metrics)
        assert 0.05 < metrics["AP"] < 0.95, task  # neither empty nor perfect: a real comparison
    assert expected["landmarks"]["AP"] != expected["landmarks_visible"]["AP"]


def test_breakdowns_are_the_subsets_scored_by_pycocotools(files, tmp_path, capsys):
    assert _tool_main()(["--gt", str(files["gt"]), "--bbox", str(files["bbox"]),
                         "--landmarks", str(files["landmarks"]), "--breakdowns", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    breakdowns = printed["breakdowns"]
    assert breakdowns == evaluate_breakdowns(files["gt"], {"bbox": files["bbox"],
                                                           "landmarks": files["landmarks"]},
                                             ["bbox", "landmarks", "landmarks_visible"])
    for task in ("bbox", "landmarks", "landmarks_visible"):
        assert list(breakdowns[task]) == list(ATTRIBUTES)
        for attribute, values in ATTRIBUTES.items():
            assert list(breakdowns[task][attribute]) == list(values.values())
    # one subset by hand, the COCO way: items of other scales are ignored (outside every area
    # range), detections matching nothing stay false positives
    data = json.loads(files["gt"].read_text())
    for ann in data["annotations"]:
        if ann["scale"] != 1:
            ann["area"] = -1.0
    small = tmp_path / "small.json"
    small.write_text(json.dumps(data))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(small))
        evaluator = COCOeval(gt, gt.loadRes(str(files["bbox"])), "bbox")
        evaluator.params.areaRng, evaluator.params.areaRngLbl = [[0, 1e10]], ["all"]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert abs(breakdowns["bbox"]["scale"]["small"]["AP"] - evaluator.stats[0]) <= TOLERANCE


def test_plain_output_is_a_table_per_task(files, capsys):
    assert _tool_main()(["--gt", str(files["gt"]), "--segm", str(files["segm"]),
                         "--breakdowns"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"DeepFashion2 AP against {files['gt']}"
    assert lines[1].split() == ["AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert lines[2].split()[0] == "segm" and len(lines[2].split()) == 7
    assert lines[4] == "segm, by attribute"
    assert lines[6].split()[:2] == ["scale", "small"]
    assert [line.split()[0] for line in lines[6:18:3]] == list(ATTRIBUTES)


def _corrupt(path: Path, out: Path, index: int, change: dict) -> Path:
    entries = json.loads(path.read_text())
    entries[index] = {k: v for k, v in {**entries[index], **change}.items() if v is not None}
    out.write_text(json.dumps(entries))
    return out


def test_malformed_files_get_a_line_per_problem_and_no_traceback(files, tmp_path):
    bbox = _corrupt(files["bbox"], tmp_path / "bbox.json", 3, {"score": None})
    segm = _corrupt(files["segm"], tmp_path / "segm.json", 5,
                    {"segmentation": {"size": [1, 1], "counts": "1"}})
    run = _tool("--gt", str(files["gt"]), "--bbox", str(bbox), "--segm", str(segm))
    assert run.returncode == 1
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    lines = run.stderr.splitlines()
    assert lines[0] == f"problem: {bbox}: entry 3: missing key 'score'"
    assert lines[1] == f"error: {bbox}: 1 malformed entry; nothing was scored"
    assert lines[2].startswith(f"problem: {segm}: entry 5: 'segmentation' size [1, 1] is not "
                               "image ")
    assert len(lines) == 4
    (tmp_path / "broken.json").write_text('[{"image_id": 1,')
    broken = _tool("--gt", str(files["gt"]), "--landmarks", str(tmp_path / "broken.json"))
    assert broken.returncode == 1
    assert broken.stderr.startswith(f"problem: {tmp_path / 'broken.json'}: not valid JSON")
    absent = _tool("--gt", str(tmp_path / "absent.json"), "--bbox", str(files["bbox"]))
    assert absent.returncode == 1
    assert absent.stderr.startswith(f"problem: {tmp_path / 'absent.json'}: cannot read")
    assert "Traceback" not in broken.stderr + absent.stderr


def test_entries_of_images_outside_the_ground_truth_are_reported(files, tmp_path):
    entries = json.loads(files["bbox"].read_text())
    stray = [dict(entries[0], image_id=10**6), dict(entries[1], image_id=10**6 + 1)]
    path = tmp_path / "bbox.json"
    path.write_text(json.dumps([entries[0], *stray, *entries[1:]]))
    run = _tool("--gt", str(files["gt"]), "--bbox", str(path), "--json")
    assert run.returncode == 0
    assert run.stderr.splitlines() == [
        f"warning: {path}: 2 entries for images not in the ground truth, left out: "
        f"entries 1, 2"]
    clean = _tool("--gt", str(files["gt"]), "--bbox", str(files["bbox"]), "--json")
    assert json.loads(run.stdout) == json.loads(clean.stdout)
    strict = _tool("--gt", str(files["gt"]), "--bbox", str(path), "--strict")
    assert strict.returncode == 1
    assert strict.stderr.splitlines()[:2] == [
        f"problem: {path}: entry 1: 'image_id' 1000000 is not an image of the ground truth",
        f"problem: {path}: entry 2: 'image_id' 1000001 is not an image of the ground truth"]


def test_breakdowns_need_the_converters_attributes(files, tmp_path):
    data = json.loads(files["gt"].read_text())
    for ann in data["annotations"]:
        del ann["zoom_in"]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(data))
    assert _tool("--gt", str(bare), "--bbox", str(files["bbox"])).returncode == 0
    run = _tool("--gt", str(bare), "--bbox", str(files["bbox"]), "--breakdowns")
    assert run.returncode == 1
    assert run.stderr.startswith(f"problem: {bare}: {len(data['annotations'])} annotations have "
                                 "no 'zoom_in'")


def test_a_results_file_is_required():
    run = _tool("--gt", "gt.json")
    assert run.returncode == 2
    assert "give at least one of --bbox, --segm and --landmarks" in run.stderr
