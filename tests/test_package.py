"""Importing the package is cheap; the torchvision ops check runs where a model is built.

What scores result files, converts DeepFashion2 or generates the synthetic dataset, and the
``--help`` of those tools, must load neither torch, torchvision nor FAISS: each is checked in a
fresh interpreter, which lists the modules it ended up with.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torchvision.ops

from matchrcnn._torchvision_check import TorchvisionOpsError, check_torchvision_ops

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "faiss")

LIGHT_MODULES = [
    "matchrcnn",
    "matchrcnn.evaluation",
    "matchrcnn.evaluation.retrieval",
    "matchrcnn.evaluation.results",
    "matchrcnn.evaluation.coco",
    "matchrcnn.evaluation.cli",
    "matchrcnn.evaluation.synthetic",
    "matchrcnn.evaluation.evaluator",
    "matchrcnn.evaluation.normalized_error",
    "matchrcnn.data.catalog",
    "matchrcnn.data.records",
    "matchrcnn.data.layouts",
    "matchrcnn.data.deepfashion2",
    "matchrcnn.data.synthetic",
]

REPORT_HEAVY = ("import sys; print(sorted(name for name in sys.modules "
                f"if name.split('.')[0] in {HEAVY!r}))")


def _heavy_modules_after(code: str) -> list[str]:
    run = subprocess.run([sys.executable, "-c", f"{code}\n{REPORT_HEAVY}"], capture_output=True,
                         text=True, cwd=REPO, check=True)
    return ast.literal_eval(run.stdout.strip().splitlines()[-1])


def _run_tool(tool: str, *args: str) -> str:
    """The tool run as __main__ in a fresh interpreter; what it exits with does not matter."""
    return (f"import runpy, sys\nsys.argv = [{tool!r}, *{list(args)!r}]\n"
            f"try:\n    runpy.run_path({str(REPO / 'tools' / tool)!r}, run_name='__main__')\n"
            "except SystemExit:\n    pass")


def test_scoring_and_conversion_code_loads_no_torch_nor_faiss():
    assert _heavy_modules_after("\n".join(f"import {name}" for name in LIGHT_MODULES)) == []


@pytest.mark.parametrize("tool", ["eval_retrieval.py", "eval_results.py",
                                  "convert_deepfashion2.py", "convert_dataset.py",
                                  "make_synthetic_dataset.py"])
def test_help_of_the_tools_that_need_no_model_loads_no_torch(tool):
    assert _heavy_modules_after(_run_tool(tool, "--help")) == []


def test_scoring_files_and_converting_load_no_torch(tmp_path):
    from tests.conftest import write_df2_split

    write_df2_split(tmp_path / "df2", "validation", [1, 2, 3, 4, 5, 6])
    retrieval = tmp_path / "retrieval"
    convert = _run_tool("convert_deepfashion2.py", "--root", str(tmp_path / "df2"), "--split",
                        "validation", "--out", str(tmp_path / "gt.json"), "--retrieval-gt",
                        str(retrieval), "--workers", "1", "--no-progress")
    assert _heavy_modules_after(convert) == []
    ground_truth = json.loads((tmp_path / "gt.json").read_text())
    boxes = [{"image_id": ann["image_id"], "category_id": ann["category_id"],
              "bbox": ann["bbox"], "score": 0.5} for ann in ground_truth["annotations"]]
    (tmp_path / "bbox.json").write_text(json.dumps(boxes))
    score_ap = _run_tool("eval_results.py", "--gt", str(tmp_path / "gt.json"), "--bbox",
                         str(tmp_path / "bbox.json"), "--json")
    assert _heavy_modules_after(score_ap) == []
    (tmp_path / "retrieval.json").write_text("[]")
    score_retrieval = _run_tool("eval_retrieval.py", "--results", str(tmp_path / "retrieval.json"),
                                "--query-gt", str(retrieval / "query_gt.json"),
                                "--gallery-gt", str(retrieval / "gallery_gt.json"))
    assert _heavy_modules_after(score_retrieval) == []


def test_working_install_passes_the_check():
    check_torchvision_ops()


def test_broken_ops_stop_with_an_explanation(monkeypatch):
    def broken_nms(*args, **kwargs):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(torchvision.ops, "nms", broken_nms)
    with pytest.raises(TorchvisionOpsError) as error:
        check_torchvision_ops()
    message = str(error.value)
    assert "operator torchvision::nms does not exist" in message
    assert "torch and torchvision must come from the same source and release" in message
    assert "pip install torch torchvision" in message


def test_the_check_runs_where_a_model_is_built():
    code = ("import torchvision.ops\n"
            "def broken(*args, **kwargs):\n"
            "    raise RuntimeError('operator torchvision::nms does not exist')\n"
            "torchvision.ops.nms = broken\n"
            "import matchrcnn\n"
            "from matchrcnn._torchvision_check import TorchvisionOpsError\n"
            "try:\n"
            "    import matchrcnn.modeling\n"
            "except TorchvisionOpsError:\n"
            "    print('refused')\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                         check=True)
    assert run.stdout.strip() == "refused"


def test_the_install_builds_nothing(monkeypatch):
    import setuptools

    captured: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kwargs: captured.update(kwargs))
    setup_py = REPO / "setup.py"
    exec(compile(setup_py.read_text(), str(setup_py), "exec"), {"__file__": str(setup_py)})
    assert captured["name"] == "matchrcnn"
    assert not captured.get("ext_modules")
    assert any(r.startswith("pysimdjson") for r in captured["install_requires"])
    sources = [path for suffix in ("*.c", "*.cpp", "*.pyx", "*.so")
               for path in (REPO / "matchrcnn").rglob(suffix)]
    assert sources == []
