"""docs/extending.md's occlusion head, added by the test alone, trains and predicts in the
torchvision engine (tests/d2/test_d2_extending.py: in detectron2's)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from matchrcnn.config import get_cfg, setup_cfg
from matchrcnn.data import catalog
from matchrcnn.data.mapper import DatasetMapper
from matchrcnn.engine.trainer import Trainer, seed_everything
from matchrcnn.modeling import build_model
from tests.extending_example import occlusion_branch
from tests.synthetic_data import TINY, write_synthetic_datasets

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory) -> Path:
    return write_synthetic_datasets(tmp_path_factory.mktemp("datasets"), 24, size=128, seed=5)


def test_the_example_head_trains_and_predicts(datasets_root, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(datasets_root))
    with occlusion_branch():
        cfg = setup_cfg(REPO / "configs" / "synthetic" / "quickstart.yaml", [
            *TINY, "MODEL.OCCLUSION_ON", "True", "SOLVER.MAX_ITER", "3",
            "SOLVER.CHECKPOINT_PERIOD", "100", "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path),
        ])
        assert cfg.MODEL.ROI_OCCLUSION_HEAD.POOLER_SAMPLING_RATIO == 2  # the engine's default
        seed_everything(cfg.SEED)
        model = build_model(cfg)
        assert any(name.startswith("roi_heads.occlusion_branch.classifier.")
                   for name in model.state_dict())
        Trainer(cfg, model).train()
        lines = (tmp_path / "metrics.json").read_text().splitlines()
        metrics = [json.loads(line) for line in lines]
        assert len(metrics) == 3
        assert all(math.isfinite(m["loss_occlusion"]) and m["loss_occlusion"] > 0
                   for m in metrics)

        record = catalog.DatasetCatalog.get("synthetic_validation")[0]
        model.eval()
        with torch.no_grad():
            prediction = model([DatasetMapper(with_targets=False)(record)[0]])[0]
        levels = prediction["occlusion"]
        assert levels.shape == prediction["scores"].shape and levels.dtype == torch.int64
        assert levels.numel() and bool(((levels >= 1) & (levels <= 3)).all())
    assert "OCCLUSION_ON" not in get_cfg().MODEL


def test_a_target_without_the_field_is_named(datasets_root, monkeypatch) -> None:
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(datasets_root))
    with occlusion_branch():
        cfg = setup_cfg(REPO / "configs" / "synthetic" / "quickstart.yaml",
                        [*TINY, "MODEL.OCCLUSION_ON", "True"])
        mapper = DatasetMapper.from_config(cfg, is_train=True)
        record = catalog.DatasetCatalog.get("synthetic_train")[0]
        image, target = mapper(record, iteration=0)
        assert target["occlusion"].tolist() == [a["occlusion"] for a in record["annotations"]]
        del target["occlusion"]
        model = build_model(cfg)
        with pytest.raises(ValueError, match="target 0: missing occlusion"):
            model([image], [target])
        broken = {**record, "annotations": [{k: v for k, v in a.items() if k != "occlusion"}
                                            for a in record["annotations"]]}
        with pytest.raises(KeyError, match="item 0 has no 'occlusion'"):
            mapper(broken, iteration=0)
