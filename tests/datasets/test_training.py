"""A few training iterations and the evaluation on converted FashionAI and SAL-HG data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from matchrcnn.config import ConfigError, setup_cfg
from matchrcnn.data.fashionai import convert_fashionai
from matchrcnn.data.salhg import convert_salhg
from matchrcnn.engine.evaluation import evaluate_model
from matchrcnn.engine.trainer import Trainer, seed_everything
from matchrcnn.modeling import build_model
from tests.modeling.conftest import TINY

from .conftest import fashionai_rows, salhg_entries, write_fashionai_csv, write_pickle

REPO = Path(__file__).resolve().parents[2]
SHORT = [*TINY, "MODEL.BACKBONE.PRETRAINED", "", "DATALOADER.NUM_WORKERS", "0",
         "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "3", "SOLVER.WARMUP_ITERS", "1",
         "SOLVER.STEPS", "(100,)", "SOLVER.CHECKPOINT_PERIOD", "100", "SOLVER.BASE_LR", "0.005"]


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory) -> Path:
    """FashionAI and SAL-HG splits, converted to where the catalog's names find them."""
    root = tmp_path_factory.mktemp("datasets")
    for split, seed in (("train", 0), ("test", 1)):
        images = root / "fashionai" / split
        csv_file = write_fashionai_csv(images / "Annotations" / f"{split}.csv",
                                       fashionai_rows(images, 6, seed))
        convert_fashionai(csv_file, images, root / "fashionai" / "annotations" / f"{split}.json",
                          strict=True)
        for kind in ("person", "garment"):
            images = root / "salhg" / split / kind
            pkl = write_pickle(root / "pickles" / f"hd_{split}_{kind}.pkl",
                               salhg_entries(images, 4, seed))
            convert_salhg(pkl, images, root / "salhg" / "annotations" / f"{kind}_{split}.json",
                          strict=True)
    return root


@pytest.fixture
def env(datasets_root: Path, monkeypatch) -> Path:
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(datasets_root))
    torch.set_num_threads(2)
    return datasets_root


def _train(config: str, output: Path, *extra: str) -> dict:
    cfg = setup_cfg(REPO / "configs" / config, [*SHORT, "OUTPUT_DIR", str(output), *extra])
    seed_everything(cfg.SEED)
    trainer = Trainer(cfg, build_model(cfg),
                      evaluate=lambda model, iteration: evaluate_model(cfg, model, iteration))
    results = trainer.train()
    metrics = [json.loads(line) for line in (output / "metrics.json").read_text().splitlines()]
    assert [line["iteration"] for line in metrics if "loss_landmark" in line] == [0, 1, 2]
    assert all(math.isfinite(line["loss_landmark"]) for line in metrics if "loss_landmark" in line)
    assert not any("loss_mask" in line or "loss_match" in line for line in metrics)
    assert (output / "model_final.pth").is_file()
    assert json.loads((output / "eval_results.json").read_text()) == json.loads(
        json.dumps(results))
    return results


def test_fashionai_trains_and_reports_its_normalized_error(env, tmp_path: Path):
    results = _train("fashionai/landmarks_R50_FPN.yaml", tmp_path)
    assert results["dataset"] == "fashionai_test" and results["iteration"] == 2
    assert 0.0 <= results["bbox"]["AP"] <= 1.0
    assert not {"segm", "landmarks", "landmarks_visible", "retrieval"} & set(results)
    error = results["landmarks_ne"]
    assert error["items"] + error["missed"] == 6 and error["no_reference"] == 0
    assert error["items"] > 0 and error["NE"] > 0 and math.isfinite(error["NE"])


def test_salhg_trains_on_person_and_garment_images(env, tmp_path: Path):
    results = _train("salhg/landmarks_R50_FPN.yaml", tmp_path)
    assert results["dataset"] == "salhg_person_test"
    assert 0.0 <= results["bbox"]["AP"] <= 1.0
    assert not {"segm", "landmarks", "landmarks_ne", "retrieval"} & set(results)


def test_the_match_network_needs_pairs(env, tmp_path: Path):
    with pytest.raises(ConfigError, match=r"MODEL\.MATCH_ON needs consumer/shop pairs"):
        _train("fashionai/landmarks_R50_FPN.yaml", tmp_path, "MODEL.MATCH_ON", "True")


def test_a_dataset_of_another_layout_is_refused(env, tmp_path: Path):
    with pytest.raises(ConfigError, match=r"dataset 'fashionai_train' has the 'fashionai' "
                       r"landmark layout, but MODEL\.ROI_LANDMARK_HEAD\.LAYOUT is 'salhg'"):
        _train("salhg/landmarks_R50_FPN.yaml", tmp_path, "DATASETS.TRAIN", "('fashionai_train',)")
