"""tools/benchmark.py --what gpu --device cpu --tiny: the prepared GPU check takes every path.

The GPU run itself needs a CUDA machine (docs/benchmarks.md, "GPU check"); this runs the same
command on CPU at tiny sizes and checks what it writes: the smoke run trained, checkpointed,
resumed and evaluated through tools/train_net.py, both models were measured at every batch size,
and one training step was profiled.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest
import torch

from matchrcnn.benchmarks import gpu
from matchrcnn.benchmarks.gpu_report import format_markdown
from matchrcnn.benchmarks.smoke import (
    SmokeError,
    check_losses,
    check_resumed,
    eval_summary,
)
from tests.tools.conftest import tool_main

PROG = "tools/benchmark.py --what gpu"


@pytest.fixture(scope="module")
def tiny_check(tmp_path_factory) -> tuple[int, Path, str]:
    """(exit code, --out folder, stdout) of one tiny CPU run of the check."""
    out = tmp_path_factory.mktemp("gpu_check")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = tool_main("benchmark")(["--what", "gpu", "--device", "cpu", "--tiny",
                                       "--out", str(out)])
    return code, out, printed.getvalue()


def _report(out: Path) -> dict:
    return json.loads((out / gpu.JSON_FILE).read_text())


def test_the_tiny_check_succeeds_and_says_where_and_how_it_ran(tiny_check):
    code, out, printed = tiny_check
    assert code == 0, printed
    report = _report(out)
    assert report["command"] == f"{PROG} --device cpu --tiny --out {out}"
    assert f"command: {report['command']}" in printed
    assert report["device"] == "cpu" and report["tiny"] is True
    assert report["torch"] == torch.__version__ and report["date"][:4].isdigit()
    assert report["config"] == "configs/deepfashion2/matchrcnn_R50_FPN_1x.yaml"
    assert [report[name]["status"] for name in ("smoke", "throughput", "profile")] == ["ok"] * 3
    assert 0 < report["total_seconds"] < 600


def test_the_smoke_run_trained_checkpointed_resumed_and_evaluated(tiny_check):
    _, out, _ = tiny_check
    smoke = _report(out)["smoke"]
    assert smoke["iterations"] == gpu.TINY.smoke_iterations == 2
    assert smoke["checkpoint"] == {"file": "model_final.pth", "iteration": 0}
    assert smoke["resume"] == {"from_iteration": 1, "final_file": "model_final.pth",
                               "final_iteration": 1}
    assert smoke["amp"] is False  # the config enables AMP; the trainer uses it on CUDA only
    losses = smoke["losses"]
    assert {"loss_classifier", "loss_mask", "loss_landmark", "loss_match"} <= set(
        losses["last_losses"])
    assert all(math.isfinite(value) and value >= 0 for value in losses["last_losses"].values())
    evaluation = smoke["eval_only"]
    for task in ("bbox", "segm", "landmarks"):
        assert 0.0 <= evaluation[task]["AP"] <= 1.0
    assert set(evaluation["retrieval"]) == {"top1", "top5", "top10", "top15", "top20"}
    assert "--resume" in smoke["commands"]["resume"]
    assert "--eval-only" in smoke["commands"]["eval_only"]
    assert "MODEL.BACKBONE.PRETRAINED ''" in smoke["commands"]["train"]
    output = out / "work" / "smoke"
    assert json.loads((output / "eval_results.json").read_text())["dataset"] == \
        "synthetic_validation"
    assert [json.loads(line)["iteration"]
            for line in (output / "metrics.json").read_text().splitlines()] == [0, 1]


def test_both_models_were_measured_at_every_batch_size_and_for_inference(tiny_check):
    _, out, _ = tiny_check
    throughput = _report(out)["throughput"]
    assert throughput["image_size"] == [128, 96] and throughput["amp"] is False
    training = {(row["model"], row["batch"]): row for row in throughput["training"]}
    assert set(training) == {(model, batch) for model in ("matchrcnn", "torchvision")
                             for batch in gpu.TINY.batch_sizes}
    inference = {row["model"]: row for row in throughput["inference"]}
    assert set(inference) == {"matchrcnn", "torchvision"}
    for row in [*training.values(), *inference.values()]:
        assert math.isfinite(row["images_per_second"]) and row["images_per_second"] > 0
        assert math.isfinite(row["peak_mib"]) and row["peak_mib"] >= 0
    assert all(row["batch"] == 1 for row in inference.values())


def test_one_training_step_was_profiled(tiny_check):
    _, out, _ = tiny_check
    profile = _report(out)["profile"]
    assert profile["sort_by"] == "self_cpu_time_total" and profile["batch"] == 1
    top = profile["top"]
    assert len(top) == 15
    times = [row["self_cpu_ms"] for row in top]
    assert times == sorted(times, reverse=True) and times[0] > 0
    assert any("convolution" in row["op"] for row in top)
    assert profile["self_cpu_ms"] > 0 and profile["profiled_step_ms"] > 0
    assert "Self CPU" in (out / gpu.PROFILE_FILE).read_text()


def test_the_markdown_has_one_table_per_part(tiny_check):
    _, out, printed = tiny_check
    report, markdown = _report(out), (out / gpu.MARKDOWN_FILE).read_text()
    assert markdown == format_markdown(report) and markdown in printed
    assert f"`{report['command']}`" in markdown
    for heading in ("### Smoke run", "### Training throughput", "### Profile of one training"):
        assert heading in markdown
    for batch in gpu.TINY.batch_sizes:
        assert any(line.startswith(f"| {batch} | ") for line in markdown.splitlines())
    assert "| `--resume` to iteration 2 |" in markdown


def test_a_failed_part_is_reported_with_its_error():
    report = {"description": "a CPU", "device": "cpu", "tiny": True, "date": "2026-01-01",
              "torch": "2", "torchvision": "0", "python": "3", "command": "c", "config": "f",
              "overrides": [],
              "smoke": {"status": "failed", "error": "exit 1: train_net", "section_seconds": 3.0}}
    markdown = format_markdown(report)
    assert "### smoke: failed after 3 s" in markdown and "exit 1: train_net" in markdown


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, capsys):
    assert gpu.main(["--out", str(tmp_path)], prog=PROG) == 2
    assert "--device cuda: no CUDA device is available here" in capsys.readouterr().err
    assert not (tmp_path / gpu.JSON_FILE).exists()


def test_non_finite_losses_and_missing_iterations_are_refused(tmp_path):
    path = tmp_path / "metrics.json"
    good = [{"iteration": 0, "loss_mask": 0.5, "total_loss": 1.0}]
    check_losses(good, 1, path)
    with pytest.raises(SmokeError, match="iteration 0: loss_mask is nan"):
        check_losses([{"iteration": 0, "loss_mask": float("nan"), "total_loss": 1.0}], 1, path)
    with pytest.raises(SmokeError, match=r"expected iterations 0\.\.1, found \[0\]"):
        check_losses(good, 2, path)


def test_a_resume_that_restarted_from_zero_is_refused(tmp_path):
    lines = [{"iteration": i, "total_loss": 1.0 - i / 10} for i in range(4)]
    (tmp_path / "metrics.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (tmp_path / "last_checkpoint").write_text("model_final.pth")
    torch.save({"iteration": 3}, tmp_path / "model_final.pth")
    first = lines[:2]
    assert check_resumed(tmp_path, first, ("model_final.pth", 1), 4)[1] == \
        ("model_final.pth", 3)
    torch.save({"iteration": 1}, tmp_path / "model_0000001.pth")
    with pytest.raises(SmokeError, match=r"--resume did not continue from model_final\.pth"):
        check_resumed(tmp_path, first, ("model_final.pth", 1), 4)


def test_an_evaluation_without_a_task_is_refused(tmp_path):
    results = {task: {"AP": 0.1} for task in ("bbox", "segm", "landmarks")}
    with pytest.raises(SmokeError, match="lacks retrieval"):
        eval_summary(results, tmp_path / "eval_results.json")
