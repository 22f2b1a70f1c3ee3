"""Real training on a tiny synthetic dataset: losses fall, resume is exact, faults are handled."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from matchrcnn.config import setup_cfg
from matchrcnn.engine.trainer import NonFiniteLossError, Trainer, seed_everything
from matchrcnn.modeling import build_model
from tests.synthetic_data import TINY, write_synthetic_datasets

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "synthetic" / "quickstart.yaml"



@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory) -> Path:
    return write_synthetic_datasets(tmp_path_factory.mktemp("datasets"), 48, size=128, seed=3)


@pytest.fixture
def env(datasets_root: Path, monkeypatch) -> dict:
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(datasets_root))
    torch.set_num_threads(2)
    return {**os.environ, "MATCHRCNN_DATASETS": str(datasets_root)}


def _train(output: Path, max_iter: int, resume: bool = False, extra: tuple = ()) -> Trainer:
    cfg = setup_cfg(CONFIG, [*TINY, "OUTPUT_DIR", str(output), "SOLVER.MAX_ITER", str(max_iter),
                             "SOLVER.CHECKPOINT_PERIOD", "4", "DATASETS.TEST", "()", *extra])
    seed_everything(cfg.SEED)
    trainer = Trainer(cfg, build_model(cfg), resume=resume)
    trainer.train()
    return trainer


def _metrics(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.json").read_text().splitlines()]


def _final_weights(output: Path) -> dict[str, torch.Tensor]:
    return torch.load(output / "model_final.pth", weights_only=True)["model"]


def test_losses_fall_and_resuming_gives_the_uninterrupted_weights(env, tmp_path: Path):
    whole = tmp_path / "whole"
    _train(whole, 20)
    metrics = _metrics(whole)
    assert len(metrics) == 20
    # From scratch the box classifier's loss swings as the RPN starts to find garments; the
    # RPN's, mask and landmark losses fall steadily. The match loss rests on about two positive
    # pairs per batch: over 20 steps it only wanders around its prior, ln 2 (it falls over
    # hundreds of steps, docs/benchmarks.md), so here it must only be finite and near that prior.
    for term in ("loss_objectness", "loss_mask", "loss_landmark"):
        values = [line[term] for line in metrics]
        assert sum(values[-5:]) < sum(values[:5]), (term, values)
    match = [line["loss_match"] for line in metrics]
    assert all(abs(value - math.log(2)) < 0.35 for value in match), match
    losses = [line["total_loss"] for line in metrics]

    split = tmp_path / "split"
    _train(split, 8)
    assert (split / "last_checkpoint").read_text() == "model_final.pth"
    resumed = _train(split, 20, resume=True)
    assert resumed.start_iter == 8
    expected, actual = _final_weights(whole), _final_weights(split)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    assert [line["iteration"] for line in _metrics(split)] == list(range(20))
    assert [line["total_loss"] for line in _metrics(split)] == losses


def test_a_non_finite_loss_stops_the_run_and_keeps_the_last_checkpoint(env, tmp_path: Path,
                                                                       monkeypatch):
    cfg = setup_cfg(CONFIG, [*TINY, "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITER", "10",
                             "SOLVER.CHECKPOINT_PERIOD", "2", "DATASETS.TEST", "()"])
    model = build_model(cfg)
    forward, calls = model.forward, []

    def poisoned(images, targets=None):
        outputs = forward(images, targets)
        calls.append(1)
        if len(calls) == 4:
            outputs["loss_mask"] = outputs["loss_mask"] * float("nan")
        return outputs

    monkeypatch.setattr(model, "forward", poisoned)
    trainer = Trainer(cfg, model)
    with pytest.raises(NonFiniteLossError) as error:
        trainer.train()
    checkpoint = tmp_path / "model_0000001.pth"
    assert str(error.value) == (f"iteration 3: loss term loss_mask is nan; the last good "
                                f"checkpoint {checkpoint} is intact")
    assert (tmp_path / "last_checkpoint").read_text() == checkpoint.name
    assert torch.load(checkpoint, weights_only=True)["iteration"] == 1
    assert not (tmp_path / "model_0000003.pth").exists()


def test_images_that_fail_to_decode_are_skipped_and_counted(env, datasets_root: Path,
                                                            tmp_path: Path, caplog):
    broken_root = tmp_path / "datasets"
    source = datasets_root / "synthetic"
    target = broken_root / "synthetic"
    for path in source.rglob("*"):
        if path.is_file():
            destination = target / path.relative_to(source)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(path.read_bytes())
    images = sorted((target / "train" / "image").glob("*.jpg"))
    for image in images[::3]:
        image.write_bytes(b"\xff\xd8 not really a jpeg")
    os.environ["MATCHRCNN_DATASETS"] = str(broken_root)
    with caplog.at_level("WARNING", logger="matchrcnn"):
        trainer = _train(tmp_path / "out", 6)
    assert trainer.skipped_images > 0
    assert _metrics(tmp_path / "out")[-1]["skipped_images"] == trainer.skipped_images
    broken = {str(image) for image in images[::3]}
    skipped = [record.getMessage() for record in caplog.records
               if record.getMessage().startswith("skipping image: ")]
    assert skipped and all(message.removeprefix("skipping image: ").split(": ")[0] in broken
                           and message.endswith(": not an image file (no known image format)")
                           for message in skipped)
    assert f"{trainer.skipped_images} training image(s) failed to decode" in caplog.text


def _train_net(*args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", str(CONFIG),
         *args], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_a_killed_run_resumes_from_its_last_checkpoint(env: dict, tmp_path: Path):
    args = [*TINY, "OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITER", "14",
            "SOLVER.CHECKPOINT_PERIOD", "3", "DATASETS.TEST", "()"]
    process = _train_net(*args, env=env)
    deadline = time.monotonic() + 300
    while not (tmp_path / "last_checkpoint").exists():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (tmp_path / "model_final.pth").exists()
    killed_at = torch.load(tmp_path / (tmp_path / "last_checkpoint").read_text(),
                           weights_only=True)["iteration"]

    resumed = _train_net("--resume", *args, env=env)
    output, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, output
    assert (tmp_path / "model_final.pth").is_file()
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["iteration"] == 13
    iterations = [line["iteration"] for line in _metrics(tmp_path)]
    assert iterations == list(range(14)), (killed_at, iterations)


def test_eval_only_writes_eval_results(env: dict, tmp_path: Path):
    _train(tmp_path / "run", 2)
    process = _train_net("--eval-only", *TINY, "OUTPUT_DIR", str(tmp_path / "eval"),
                         "MODEL.WEIGHTS", str(tmp_path / "run" / "model_final.pth"), env=env)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 0, output
    results = json.loads((tmp_path / "eval" / "eval_results.json").read_text())
    for task in ("bbox", "segm", "landmarks"):
        assert set(results[task]) >= {"AP", "AP50", "AP75"}
        assert all(0.0 <= results[task][k] <= 1.0 for k in ("AP", "AP50", "AP75"))
    assert set(results["retrieval"]) == {"top1", "top5", "top10", "top15", "top20"}
    assert 0.0 <= results["retrieval"]["top1"] <= results["retrieval"]["top20"] <= 1.0
    assert "evaluation on synthetic_validation" in output


def test_train_net_refuses_weights_of_another_class_count(env: dict, tmp_path: Path):
    _train(tmp_path / "run", 1)
    state = torch.load(tmp_path / "run" / "model_final.pth", weights_only=True)["model"]
    name = "roi_heads.box_predictor.cls_score.weight"
    state[name] = torch.zeros(15, state[name].shape[1])
    torch.save(state, tmp_path / "other.pth")
    process = _train_net("--eval-only", *TINY, "OUTPUT_DIR", str(tmp_path / "eval"),
                         "MODEL.WEIGHTS", str(tmp_path / "other.pth"), env=env)
    output, _ = process.communicate(timeout=600)
    assert process.returncode == 1
    assert "error: " in output and "class count" in output and name in output
    assert "Traceback" not in output
