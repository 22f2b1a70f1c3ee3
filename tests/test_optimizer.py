"""SOLVER.OPTIMIZER picks the optimizer; a name it does not know is refused."""

from __future__ import annotations

import pytest
import torch

from matchrcnn.config import get_cfg
from matchrcnn.engine.trainer import build_optimizer


def _model() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    model[0].weight.requires_grad_(False)
    return model


@pytest.mark.parametrize(("name", "kind"), [("SGD", torch.optim.SGD),
                                            ("AdamW", torch.optim.AdamW)])
def test_optimizer_kind_rate_and_trainable_parameters(name, kind) -> None:
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER, cfg.SOLVER.BASE_LR, cfg.SOLVER.WEIGHT_DECAY = name, 0.003, 0.05
    model = _model()
    optimizer = build_optimizer(cfg, model)
    assert type(optimizer) is kind
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.003 and group["weight_decay"] == 0.05
    assert [p.shape for p in group["params"]] == [(4,), (1, 4), (1,)]


def test_unknown_optimizer_is_refused() -> None:
    cfg = get_cfg()
    cfg.SOLVER.OPTIMIZER = "Adam"
    with pytest.raises(ValueError, match=r"SOLVER.OPTIMIZER must be one of .*'Adam'"):
        build_optimizer(cfg, _model())
