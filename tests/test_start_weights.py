"""Starting from torchvision's COCO Mask R-CNN (v1, v2) or ImageNet ResNet-50 files, and runs that
need no network: every tensor that fits loads, the table names the rest, two steps train.

The torchvision files are the real architectures' state_dicts (``weights=None``: random values,
the real names and shapes), so no download is needed; small images keep the ResNet-50 quick.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import socket
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet50
from torchvision.models.detection import maskrcnn_resnet50_fpn, maskrcnn_resnet50_fpn_v2

from matchrcnn.config import setup_cfg
from matchrcnn.engine.checkpoint import Checkpointer
from matchrcnn.engine.trainer import Trainer
from matchrcnn.modeling import WeightsError, build_model, load_model_weights
from tests.synthetic_data import TINY, write_synthetic_datasets

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "deepfashion2"
_SPEC = importlib.util.spec_from_file_location("train_net", REPO / "tools" / "train_net.py")
train_net = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(train_net)

SMALL = [
    *TINY, "DATASETS.TRAIN", "('synthetic_train',)", "DATASETS.TEST", "()", "MODEL.DEVICE", "cpu",
    "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "2", "SOLVER.AMP.ENABLED", "False",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "300", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100",
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "100", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "64", "TEST.DETECTIONS_PER_IMAGE", "10",
    "MODEL.ROI_LANDMARK_HEAD.NUM_CONVS", "2", "MODEL.ROI_LANDMARK_HEAD.CONV_DIM", "32",
    "MODEL.MATCH_HEAD.NUM_CONVS", "2", "MODEL.MATCH_HEAD.CONV_DIM", "32",
]
"""The DeepFashion2 configs at 128 px on the synthetic split, with narrow landmark and match heads
(which no foreign file covers): the COCO-shaped parts keep their real sizes."""

OURS_ONLY = ("roi_heads.landmark_branch.", "roi_heads.match_branch.")
PREDICTORS = ("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn_logits.")
"""The class-count-shaped layers: 91 COCO classes in the file, 13 garments + background here."""


@pytest.fixture(scope="module")
def datasets_root(tmp_path_factory) -> Path:
    return write_synthetic_datasets(tmp_path_factory.mktemp("datasets"), 24, size=128, seed=3)


@pytest.fixture
def env(datasets_root: Path, monkeypatch, tmp_path: Path) -> Path:
    """The synthetic datasets, no network at all, and an empty torch hub cache."""
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(datasets_root))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable (blocked by the test)")

    monkeypatch.setattr(socket.socket, "connect", offline)
    monkeypatch.setattr(socket, "create_connection", offline)
    torch.set_num_threads(2)
    return tmp_path


@pytest.fixture(scope="module")
def torchvision_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("torchvision")
    torch.manual_seed(0)
    models = {"maskrcnn_v1": maskrcnn_resnet50_fpn(weights=None, weights_backbone=None),
              "maskrcnn_v2": maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None),
              "resnet50": resnet50(weights=None)}
    files = {}
    for name, model in models.items():
        files[name] = folder / f"{name}.pth"
        torch.save(model.state_dict(), files[name])
    return files


CASES = {
    # file, config, how a model name reads in the file, how many tensors must load
    "maskrcnn_v1": ("matchrcnn_R50_FPN_1x.yaml", lambda name: name, 301),
    "maskrcnn_v2": ("matchrcnn_R50_FPN_v2_coco.yaml", lambda name: name, 373),
    "resnet50": ("matchrcnn_R50_FPN_1x.yaml",
                 lambda name: name.removeprefix("backbone.body."), 265),
}


def _covered(name: str, case: str) -> bool:
    """Whether the file of ``case`` should cover this model tensor."""
    if case == "resnet50":
        return name.startswith("backbone.body.")
    return not name.startswith(OURS_ONLY + PREDICTORS)


def _listed(table: str, name: str) -> bool:
    module, leaf = name.rsplit(".", 1)
    return re.search(re.escape(module) + r"\.(" + leaf + r"\b|\{[^}]*\b" + leaf + r"\b)",
                     table) is not None


@pytest.mark.parametrize("case", list(CASES))
def test_foreign_file_loads_what_fits_and_trains_two_steps(case, env, torchvision_files, caplog):
    config, file_name, count = CASES[case]
    path = torchvision_files[case]
    cfg = setup_cfg(CONFIGS / config, [*SMALL, "OUTPUT_DIR", str(env / "run"),
                                       "MODEL.WEIGHTS", str(path)])
    torch.manual_seed(0)
    model = build_model(cfg, backbone_weights=False)
    initial = {name: value.clone() for name, value in model.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="matchrcnn"):
        report = load_model_weights(model, path, foreign=True)
    table = caplog.text
    file_state = torch.load(path, weights_only=True)
    state = model.state_dict()
    fits = {name for name, value in state.items()
            if file_name(name) in file_state and file_state[file_name(name)].shape == value.shape}
    assert set(report.loaded) == fits and len(fits) == count
    assert fits == {name for name in state if _covered(name, case)}
    for name in fits:  # loaded: the file's values, before any step
        assert torch.equal(state[name], file_state[file_name(name)]), name
    for name in set(state) - fits:  # the rest: the model's own initialisation, listed
        assert torch.equal(state[name], initial[name]), name
        assert name in report.skipped or name in report.missing
    assert ("torchvision ResNet" if case == "resnet50" else "torchvision Mask R-CNN") in table
    for name in report.skipped:
        assert name in table and f"{tuple(file_state[name].shape)} in the file" in table
    assert all(_listed(table, name) for name in report.missing)
    if case != "resnet50":
        assert sorted(report.skipped) == sorted(n for n in state if n.startswith(PREDICTORS))
        assert all(name.startswith(OURS_ONLY) for name in report.missing)

    Trainer(cfg, model).train()
    lines = [json.loads(line) for line in (env / "run" / "metrics.json").read_text().splitlines()]
    assert len(lines) == 2 and all(torch.isfinite(torch.tensor(line["total_loss"]))
                                   for line in lines)


def test_train_net_starts_from_a_coco_file_offline(env, torchvision_files, caplog):
    """The command line: MODEL.WEIGHTS covers the backbone, so the config's ImageNet weights are
    never fetched (the network is blocked); the table is printed; one step trains."""
    out = env / "cli"
    with caplog.at_level(logging.INFO, logger="matchrcnn"):
        code = train_net.main(["--config-file", str(CONFIGS / "matchrcnn_R50_FPN_1x.yaml"),
                               *SMALL, "SOLVER.MAX_ITER", "1", "OUTPUT_DIR", str(out),
                               "MODEL.WEIGHTS", str(torchvision_files["maskrcnn_v1"])])
    assert code == 0
    assert "torchvision Mask R-CNN v1" in caplog.text and "skipped for shape" in caplog.text
    assert (out / "model_final.pth").is_file()


def _checkpoint(config: str, folder: Path) -> Path:
    cfg = setup_cfg(CONFIGS / config, SMALL)
    model = build_model(cfg, backbone_weights=False)
    folder.mkdir(parents=True, exist_ok=True)
    return Checkpointer(folder, model).save("model_final", cfg.SOLVER.MAX_ITER - 1)


@pytest.mark.parametrize("config", ["matchrcnn_R50_FPN_1x.yaml", "matchrcnn_R50_FPN_1x_coco.yaml",
                                    "matchrcnn_R50_FPN_v2_coco.yaml"])
def test_eval_only_with_the_deepfashion2_configs_needs_no_network(config, env, capsys):
    weights = _checkpoint(config, env / "trained")
    code = train_net.main(["--config-file", str(CONFIGS / config), "--eval-only", *SMALL,
                           "DATASETS.TEST", "('synthetic_validation',)",
                           "OUTPUT_DIR", str(env / "eval"), "MODEL.WEIGHTS", str(weights)])
    assert code == 0, capsys.readouterr().err
    results = json.loads((env / "eval" / "eval_results.json").read_text())
    assert results["dataset"] == "synthetic_validation" and "bbox" in results


def test_resume_needs_no_network_and_a_fresh_start_would_fetch_imagenet(env, capsys):
    config = CONFIGS / "matchrcnn_R50_FPN_1x.yaml"
    out = env / "resumed"
    _checkpoint("matchrcnn_R50_FPN_1x.yaml", out)
    assert train_net.main(["--config-file", str(config), "--resume", *SMALL,
                           "OUTPUT_DIR", str(out)]) == 0
    # The same run without a checkpoint starts from ImageNet: offline, that is the error.
    assert train_net.main(["--config-file", str(config), *SMALL,
                           "OUTPUT_DIR", str(env / "fresh")]) == 1
    error = capsys.readouterr().err
    assert "cannot fetch" in error and "MODEL.BACKBONE.PRETRAINED /path/to/resnet50-" in error


def test_a_torchvision_weights_name_is_read_from_torchvisions_cache(env, torchvision_files):
    checkpoints = env / "torch_home" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth").write_bytes(
        torchvision_files["maskrcnn_v2"].read_bytes())
    cfg = setup_cfg(CONFIGS / "matchrcnn_R50_FPN_v2_coco.yaml", SMALL)
    assert cfg.MODEL.WEIGHTS == "torchvision://MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1"
    model = build_model(cfg, backbone_weights=False)
    report = load_model_weights(model, cfg.MODEL.WEIGHTS, foreign=True)
    assert len(report.loaded) == CASES["maskrcnn_v2"][2]
    with pytest.raises(WeightsError, match=r"(?s)cannot fetch .* put it in"):
        load_model_weights(model, "torchvision://MaskRCNN_ResNet50_FPN_Weights.COCO_V1",
                           foreign=True)
    with pytest.raises(WeightsError, match="start a training run, not stand for a trained model"):
        load_model_weights(model, cfg.MODEL.WEIGHTS)
