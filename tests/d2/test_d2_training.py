"""Training with detectron2's DefaultTrainer on the synthetic dataset, on CPU, and the tool."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "detectron2", reason="detectron2 is not installed (no package index has it; see README.md, "
    "'Use with detectron2')"
)

from detectron2.utils.env import seed_all_rng

from matchrcnn.d2 import MatchRCNNTrainer
from tests.d2.conftest import REPO, SYNTHETIC_CONFIG, TINY, d2_cfg

FALLING = ("total_loss", "loss_rpn_cls", "loss_mask", "loss_landmark")
"""Terms that fall within 20 steps from scratch. The landmark loss falls from its initial values
to its chance level, ln(56 * 56), which it leaves after a few hundred steps (as in the torchvision
engine); box regression rises while the RPN starts finding garments; the match loss is too noisy
over 20 steps of 2 positive pairs to fall reliably."""


@pytest.mark.slow
def test_default_trainer_trains_from_scratch_then_evaluates(d2_env, tmp_path: Path):
    seed_all_rng(0)
    cfg = d2_cfg("OUTPUT_DIR", str(tmp_path), "SOLVER.MAX_ITER", "20",
                 "SOLVER.CHECKPOINT_PERIOD", "10")
    trainer = MatchRCNNTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()

    history = trainer.storage.history
    terms = [name for name in trainer.storage.histories() if name.startswith("loss_")]
    assert set(terms) == {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg",
                          "loss_mask", "loss_landmark", "loss_match"}
    for name in [*terms, "total_loss"]:
        values = [value for value, _ in history(name).values()]
        assert len(values) == 20 and all(math.isfinite(v) for v in values), name
        if name in FALLING:
            assert sum(values[-5:]) < sum(values[:5]), (name, values)
    assert sum(value for value, _ in history("match_pos_pairs").values()) >= 20

    assert (tmp_path / "model_0000009.pth").is_file() and (tmp_path / "model_final.pth").is_file()
    assert len((tmp_path / "metrics.json").read_text().splitlines()) >= 1
    results = json.loads(
        (tmp_path / "inference" / "synthetic_validation" / "eval_results.json").read_text()
    )
    assert {"bbox", "segm", "landmarks", "landmarks_visible", "retrieval",
            "retrieval_chance"} <= set(results)


@pytest.mark.slow
def test_the_tool_trains_then_evaluates_its_checkpoint(d2_env, tmp_path: Path):
    env = {**os.environ, "MATCHRCNN_DATASETS": str(d2_env), "OMP_NUM_THREADS": "1"}
    base = [sys.executable, str(REPO / "tools" / "d2_train_net.py"),
            "--config-file", str(SYNTHETIC_CONFIG)]
    train = subprocess.run(
        [*base, *TINY, "SOLVER.MAX_ITER", "3", "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path)],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    assert (tmp_path / "model_final.pth").is_file()
    assert (tmp_path / "config.yaml").is_file()
    evaluation = subprocess.run(
        [*base, "--eval-only", *TINY, "MODEL.WEIGHTS", str(tmp_path / "model_final.pth"),
         "OUTPUT_DIR", str(tmp_path / "eval")],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    output = tmp_path / "eval" / "inference" / "synthetic_validation"
    assert json.loads((output / "eval_results.json").read_text())["dataset"] == (
        "synthetic_validation"
    )
    assert "copypaste: Task: retrieval" in evaluation.stderr + evaluation.stdout
