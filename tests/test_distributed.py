"""Two-process DDP training on CPU (gloo), as `--num-gpus 2` runs it: sharded evaluation equals a
single-process one, and a stopped run resumes to the weights of an uninterrupted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.synthetic_data import TINY, write_synthetic_datasets

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs" / "synthetic" / "quickstart.yaml"
DDP = [*TINY, "MODEL.DEVICE", "cpu", "SOLVER.IMS_PER_BATCH", "8", "SOLVER.CHECKPOINT_PERIOD", "3",
       "TEST.EVAL_PERIOD", "3", "DATASETS.TEST", "('synthetic_validation',)"]
"""Four images per process, a checkpoint and an evaluation every 3 iterations."""


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    root = write_synthetic_datasets(tmp_path_factory.mktemp("datasets"), 48, size=128, seed=3)
    return {**os.environ, "MATCHRCNN_DATASETS": str(root), "OMP_NUM_THREADS": "1"}


def _train_net(env: dict, *args: str) -> str:
    process = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", str(CONFIG),
         *args], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=900,
    )
    assert process.returncode == 0, process.stdout
    return process.stdout


@pytest.fixture(scope="module")
def whole(env: dict, tmp_path_factory) -> Path:
    """Six iterations on two processes, uninterrupted."""
    output = tmp_path_factory.mktemp("whole")
    _train_net(env, "--num-gpus", "2", *DDP, "SOLVER.MAX_ITER", "6", "OUTPUT_DIR", str(output))
    return output


def _metrics(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "metrics.json").read_text().splitlines()]


def test_ddp_trains_checkpoints_and_its_sharded_evaluation_equals_one_process(env, whole,
                                                                             tmp_path: Path):
    iterations = [line["iteration"] for line in _metrics(whole) if "total_loss" in line]
    assert iterations == list(range(6))
    checkpoint = torch.load(whole / "model_final.pth", weights_only=True)
    assert checkpoint["iteration"] == 5
    states = checkpoint["rng"]
    assert len(states) == 2, "every rank's RNG states are saved"
    assert not torch.equal(states[0]["torch"], states[1]["torch"])
    assert (whole / "model_0000002.pth").is_file()

    sharded = json.loads((whole / "eval_results.json").read_text())
    assert sharded["iteration"] == 5 and sharded["dataset"] == "synthetic_validation"
    assert {"bbox", "segm", "landmarks", "landmarks_visible", "retrieval"} <= set(sharded)
    _train_net(env, "--eval-only", *DDP, "OUTPUT_DIR", str(tmp_path),
               "MODEL.WEIGHTS", str(whole / "model_final.pth"))
    alone = json.loads((tmp_path / "eval_results.json").read_text())
    assert alone.pop("iteration") is None
    sharded.pop("iteration")
    assert alone == sharded


def test_a_stopped_ddp_run_resumes_to_the_uninterrupted_weights(env, whole, tmp_path: Path):
    _train_net(env, "--num-gpus", "2", *DDP, "SOLVER.MAX_ITER", "4", "OUTPUT_DIR", str(tmp_path))
    assert torch.load(tmp_path / "model_final.pth", weights_only=True)["iteration"] == 3
    _train_net(env, "--num-gpus", "2", "--resume", *DDP, "SOLVER.MAX_ITER", "6",
               "OUTPUT_DIR", str(tmp_path))
    expected = torch.load(whole / "model_final.pth", weights_only=True)["model"]
    actual = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    assert expected.keys() == actual.keys()
    for name in expected:
        assert torch.equal(expected[name], actual[name]), name
    losses = [line["total_loss"] for line in _metrics(tmp_path) if "total_loss" in line]
    assert losses == [line["total_loss"] for line in _metrics(whole) if "total_loss" in line]


def test_too_few_images_per_process_for_a_pair_group_is_refused(env, tmp_path: Path):
    process = subprocess.run(
        [sys.executable, str(REPO / "tools" / "train_net.py"), "--config-file", str(CONFIG),
         "--num-gpus", "2", *DDP, "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2",
         "OUTPUT_DIR", str(tmp_path)],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=600,
    )
    assert process.returncode == 1 and "Traceback" not in process.stdout
    assert "SOLVER.IMS_PER_BATCH=2 over 2 process(es) gives 1 image(s) per process" in \
        process.stdout
    assert "at least 4 for 2 process(es)" in process.stdout
    assert not (tmp_path / "model_final.pth").exists()
