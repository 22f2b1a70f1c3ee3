"""docs/extending.md's occlusion head, added by the test alone, trains and predicts in the
detectron2 engine, with the same config keys and weight names as in the torchvision engine."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip(
    "detectron2", reason="detectron2 is not installed (no package index has it; see README.md, "
    "'Use with detectron2')"
)

from detectron2.data import DatasetCatalog

from matchrcnn.config import get_cfg
from matchrcnn.d2 import MatchRCNNDatasetMapper, MatchRCNNTrainer
from tests.d2.conftest import d2_cfg
from tests.extending_example import occlusion_branch


def test_the_example_head_trains_and_predicts(d2_env, tmp_path) -> None:
    with occlusion_branch():
        torch.manual_seed(0)
        cfg = d2_cfg("MODEL.OCCLUSION_ON", "True", "SOLVER.MAX_ITER", "3",
                     "DATASETS.TEST", "()", "OUTPUT_DIR", str(tmp_path))
        assert cfg.MODEL.ROI_OCCLUSION_HEAD.POOLER_TYPE == "ROIAlignV2"  # detectron2's default
        assert set(cfg.MODEL.ROI_OCCLUSION_HEAD) == set(get_cfg().MODEL.ROI_OCCLUSION_HEAD)
        trainer = MatchRCNNTrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        values = [value for value, _ in trainer.storage.history("loss_occlusion").values()]
        assert len(values) == 3 and all(math.isfinite(v) and v > 0 for v in values)

        model = trainer.model.eval()
        assert any(name.startswith("roi_heads.occlusion_branch.classifier.")
                   for name in model.state_dict())
        record = DatasetCatalog.get("synthetic_validation")[0]
        with torch.no_grad():
            instances = model([MatchRCNNDatasetMapper(cfg, False)(record)])[0]["instances"]
        levels = instances.pred_occlusion
        assert levels.shape == (len(instances),) and len(instances)
        assert bool(((levels >= 1) & (levels <= 3)).all())
