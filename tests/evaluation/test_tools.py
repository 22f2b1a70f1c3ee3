"""tools/eval_retrieval.py and tools/benchmark.py --what eval, run as a user runs them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from matchrcnn.benchmarks import eval as eval_benchmark

from .reference_retrieval import reference_retrieval
from .test_retrieval import GALLERY_GT, _detection, _query_gt

TOOL = Path(__file__).resolve().parents[2] / "tools" / "eval_retrieval.py"


def _tool_main():
    spec = importlib.util.spec_from_file_location("eval_retrieval_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    results = [_detection(2, [10, 10, 50, 50], 3, 0.9, {1: (101, [5, 5, 60, 60])}),
               _detection(1, [0, 0, 90, 90], 1, 0.3)]
    paths = []
    for name, data in (("r.json", results), ("q.json", _query_gt()), ("g.json", GALLERY_GT)):
        paths.append(str(tmp_path / name))
        Path(paths[-1]).write_text(json.dumps(data))
    return paths


def _arguments(files: list[str]) -> list[str]:
    return ["--results", files[0], "--query-gt", files[1], "--gallery-gt", files[2]]


def test_json_output_is_one_object_with_the_protocol_numbers(files):
    run = subprocess.run([sys.executable, str(TOOL), *_arguments(files), "--json"],
                         capture_output=True, text=True, check=True)
    printed = json.loads(run.stdout)
    assert list(printed) == ["top1", "top5", "top10", "top15", "top20", "queries", "missed"]
    assert printed == reference_retrieval(*files)
    assert (printed["top1"], printed["top5"], printed["missed"]) == (0, 1 / 3, 1)


def test_plain_output_is_a_table(files, capsys):
    assert _tool_main()(_arguments(files)) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"DeepFashion2 retrieval (detected boxes): {files[0]}"
    assert lines[1].split() == ["top-1", "top-5", "top-10", "top-15", "top-20"]
    assert lines[2].split() == ["0.0000", "0.3333", "0.3333", "0.3333", "0.3333"]
    assert lines[3] == "query items (style > 0): 3, missed: 1"


def test_gt_box_mode_and_malformed_files_exit_with_a_line_per_problem(files, capsys):
    assert _tool_main()([*_arguments(files), "--gt-boxes"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"problem: {files[0]}: entry 1: query_bbox and query_cls match no ground-truth item of "
        f"the image (ground-truth-box mode needs an item's exact box and class)",
        f"error: {files[0]}: 1 malformed entry; nothing was scored"]
    Path(files[0]).write_text(json.dumps([{"query_image_id": 2}, [], {"query_image_id": 2}]))
    assert _tool_main()(_arguments(files)) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"problem: {files[0]}: entry 0: missing keys 'query_bbox'")
    assert lines[1] == f"problem: {files[0]}: entry 1: must be a JSON object, got list"
    assert lines[3] == f"error: {files[0]}: 3 malformed entries; nothing was scored"
    Path(files[0]).write_text("[{")
    assert _tool_main()(_arguments(files)) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith(f"problem: {files[0]}: not valid JSON: ")
    assert lines[1] == "error: nothing was scored"


def test_inverted_boxes_are_scored_with_one_warning_unless_strict(files):
    entries = json.loads(Path(files[0]).read_text())
    entries[1]["query_bbox"] = [90, 0, 0, 90]
    entries.append(dict(entries[0], query_bbox=[10, 50, 50, 10]))
    Path(files[0]).write_text(json.dumps(entries))
    run = subprocess.run([sys.executable, str(TOOL), *_arguments(files), "--json"],
                         capture_output=True, text=True, check=True)
    assert json.loads(run.stdout) == reference_retrieval(*files)
    assert run.stderr.splitlines() == [
        f"warning: {files[0]}: 2 entries with a box with x2 < x1 or y2 < y1 ('query_bbox' or "
        f"'gallery_bbox'), scored as by the official script: IoU 0 with every ground-truth box, "
        f"so a query box goes to its image's first item and a retrieved box matches nothing: "
        f"entries 1, 2"]
    strict = subprocess.run([sys.executable, str(TOOL), *_arguments(files), "--strict"],
                            capture_output=True, text=True)
    assert strict.returncode == 1 and strict.stdout == ""
    assert strict.stderr.splitlines()[:2] == [
        f"problem: {files[0]}: entry 1: 'query_bbox' has a box with x2 < x1 or y2 < y1",
        f"problem: {files[0]}: entry 2: 'query_bbox' has a box with x2 < x1 or y2 < y1"]
    assert "Traceback" not in strict.stderr


def test_benchmark_runs_small_and_checks_its_numbers(capsys):
    code = eval_benchmark.main(["--query-images", "300", "--images", "30", "--repeat", "1"],
                               prog="benchmark")
    out = capsys.readouterr().out
    assert code == 0
    assert "numbers identical to the reference (tool and in process): yes" in out
    assert "reference loop, files -> numbers" in out
    assert "tools/eval_retrieval.py --json, whole process" in out
    assert "reference loop, whole process" in out
    for task in ("bbox", "segm", "landmarks", "landmarks_visible"):
        assert any(line.split()[:1] == [task] and "yes" in line for line in out.splitlines())
