"""Checkpoints restore a run exactly, survive a failed write, and refuse foreign weights."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from matchrcnn.engine.checkpoint import Checkpointer
from matchrcnn.engine.metrics import MetricsWriter
from matchrcnn.modeling import WeightsError


def _training_state(out_features: int = 3):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, out_features)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2)
    return model, optimizer, scheduler


def _step(model, optimizer, scheduler):
    loss = model(torch.randn(8, 4)).pow(2).mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()


def test_resume_restores_weights_optimizer_scheduler_iteration_and_rngs(tmp_path: Path):
    model, optimizer, scheduler = _training_state()
    for _ in range(3):
        _step(model, optimizer, scheduler)
    Checkpointer(tmp_path, model, optimizer=optimizer, scheduler=scheduler).save("model_0000002", 2)
    expected_draws = (random.random(), np.random.rand(), torch.rand(1))
    _step(model, optimizer, scheduler)
    expected_weights = model.weight.detach().clone()

    fresh, fresh_optimizer, fresh_scheduler = _training_state()
    checkpointer = Checkpointer(tmp_path, fresh, optimizer=fresh_optimizer,
                                scheduler=fresh_scheduler)
    assert checkpointer.resume() == 3
    assert fresh_scheduler.last_epoch == 3
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected_draws
    _step(fresh, fresh_optimizer, fresh_scheduler)
    assert torch.equal(fresh.weight, expected_weights)


def test_no_checkpoint_means_start_at_zero(tmp_path: Path):
    model, optimizer, _ = _training_state()
    assert Checkpointer(tmp_path, model, optimizer=optimizer).resume() == 0


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch):
    model, optimizer, _ = _training_state()
    checkpointer = Checkpointer(tmp_path, model, optimizer=optimizer)
    first = checkpointer.save("model_0000004", 4)
    before = first.read_bytes()

    def dying_save(obj, handle):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_0000009", 9)
    assert checkpointer.last_checkpoint() == first
    assert first.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_0000004.pth"]


def test_resume_refuses_a_checkpoint_of_another_class_count(tmp_path: Path):
    model, _, _ = _training_state(out_features=3)
    Checkpointer(tmp_path, model).save("model_final", 0)
    other, _, _ = _training_state(out_features=14)
    shapes = r"weight \(3, 4\) vs \(14, 4\)"
    with pytest.raises(WeightsError, match=shapes):
        Checkpointer(tmp_path, other).resume()


def test_resume_refuses_a_checkpoint_that_would_run_code(tmp_path: Path):
    model, _, _ = _training_state()
    torch.save({"model": model.state_dict(), "payload": Path("x")}, tmp_path / "evil.pth")
    (tmp_path / "last_checkpoint").write_text("evil.pth")
    with pytest.raises(WeightsError, match="cannot be read as torch weights"):
        Checkpointer(tmp_path, model).resume()


def test_metrics_drop_lines_past_the_resumed_iteration(tmp_path: Path):
    writer = MetricsWriter(tmp_path, tensorboard=False)
    for iteration in range(6):
        writer.write(iteration, {"loss": float(iteration)})
    writer.close()
    resumed = MetricsWriter(tmp_path, start_iter=4, tensorboard=False)
    resumed.write(4, {"loss": 40.0})
    resumed.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.json").read_text().splitlines()]
    assert [line["iteration"] for line in lines] == [0, 1, 2, 3, 4]
    assert lines[-1]["loss"] == 40.0
