"""Config: defaults, _BASE_ inheritance, command-line overrides, errors, saving, shipped files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from matchrcnn.config import ConfigError, get_cfg, save_cfg, setup_cfg
from matchrcnn.data.layouts import get_layout
from matchrcnn.data.mapper import DatasetMapper
from matchrcnn.modeling import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults_use_detectron2_names() -> None:
    cfg = get_cfg()
    assert cfg.MODEL.META_ARCHITECTURE == "MatchRCNN"
    assert cfg.MODEL.ROI_HEADS.NUM_CLASSES == 13
    assert cfg.MODEL.ROI_LANDMARK_HEAD.NUM_CONVS == 8
    assert cfg.MODEL.MATCH_HEAD.EMBED_DIM == 256
    assert cfg.MODEL.MATCH_HEAD.POOLER_RESOLUTION == 14
    cfg.SOLVER.BASE_LR = 1.0
    assert get_cfg().SOLVER.BASE_LR == 0.02  # every call is a fresh copy


def test_base_chain_then_overrides(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", "MODEL:\n  RESNETS:\n    DEPTH: 34\nSOLVER:\n  BASE_LR: 0.1\n")
    child = write(
        tmp_path / "sub" / "child.yaml",
        '_BASE_: "../base.yaml"\nSOLVER:\n  BASE_LR: 0.05\n  STEPS: [10, 20]\n',
    )
    cfg = setup_cfg(child, ["SOLVER.MAX_ITER", "7", "DATASETS.TRAIN", "('a', 'b')"])
    assert cfg.MODEL.RESNETS.DEPTH == 34
    assert cfg.SOLVER.BASE_LR == 0.05
    assert cfg.SOLVER.STEPS == (10, 20)
    assert cfg.SOLVER.MAX_ITER == 7
    assert cfg.DATASETS.TRAIN == ("a", "b")
    assert cfg.is_frozen()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("MODEL:\n  RESNET:\n    DEPTH: 50\n", r"bad\.yaml: unknown config key.*MODEL\.RESNET"),
        ("SOLVER:\n  MAX_ITER: lots\n", r"bad\.yaml: .*SOLVER\.MAX_ITER"),
        ("MODEL: [unclosed\n", r"bad\.yaml: not valid YAML"),
        ('_BASE_: "missing.yaml"\n', r"bad\.yaml: .*missing\.yaml"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        setup_cfg(write(tmp_path / "bad.yaml", text))


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"config file not found: .*nowhere\.yaml"):
        setup_cfg("nowhere.yaml")


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["MODEL.NOPE", "1"], r"override MODEL\.NOPE: unknown config key"),
        (["MODEL.RESNETS.DEPTH", "fifty"], r"override MODEL\.RESNETS\.DEPTH fifty: .*mismatch"),
        (["SOLVER.MAX_ITER"], r"KEY VALUE pairs; 'SOLVER\.MAX_ITER' has no value"),
    ],
)
def test_bad_overrides_are_named(opts: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        setup_cfg(None, opts)


def test_saved_config_reloads_equal(tmp_path: Path) -> None:
    cfg = setup_cfg(CONFIGS / "synthetic" / "quickstart.yaml", ["SOLVER.MAX_ITER", "3"])
    path = save_cfg(cfg, tmp_path / "run")
    assert path == tmp_path / "run" / "config.yaml"
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]
    assert setup_cfg(path) == cfg


def test_shipped_deepfashion2_config() -> None:
    cfg = setup_cfg(CONFIGS / "deepfashion2" / "matchrcnn_R50_FPN_1x.yaml")
    assert cfg.MODEL.RESNETS.DEPTH == 50
    assert cfg.MODEL.BACKBONE.PRETRAINED == "imagenet"
    assert cfg.DATASETS.TRAIN == ("deepfashion2_train",)
    assert max(cfg.SOLVER.STEPS) < cfg.SOLVER.MAX_ITER


def test_quickstart_config_builds_a_model_that_predicts() -> None:
    cfg = setup_cfg(CONFIGS / "synthetic" / "quickstart.yaml")
    assert cfg.MODEL.BACKBONE.PRETRAINED == ""
    assert cfg.DATASETS.TRAIN == ("synthetic_train",)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        output = model([torch.rand(3, 120, 160)])[0]
    assert output["landmarks"].shape[1:] == (294, 3)
    assert output["embeddings"].shape[1] == cfg.MODEL.MATCH_HEAD.EMBED_DIM
    assert output["masks"].shape[-2:] == (120, 160)


TORCHVISION_CONFIGS = sorted(p for p in CONFIGS.rglob("*.yaml")
                             if "d2" not in p.parts and not p.name.startswith("Base-"))


@pytest.mark.parametrize("path", TORCHVISION_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_every_config_flips_exactly_when_its_layout_has_a_flip_map(path: Path) -> None:
    cfg = setup_cfg(path)
    layout = get_layout(cfg.MODEL.ROI_LANDMARK_HEAD.LAYOUT)
    if layout.flip_indices is None:
        assert cfg.INPUT.RANDOM_FLIP == "none"
    mapper = DatasetMapper.from_config(cfg, is_train=True)
    assert mapper.hflip == (cfg.INPUT.RANDOM_FLIP == "horizontal")
    if path.parent.name == "deepfashion2":
        assert mapper.hflip and mapper.flip_indices == layout.flip_indices


def test_shipped_coco_configs_start_from_torchvisions_weights() -> None:
    v2 = setup_cfg(CONFIGS / "deepfashion2" / "matchrcnn_R50_FPN_v2_coco.yaml")
    assert v2.MODEL.WEIGHTS == "torchvision://MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1"
    assert (v2.MODEL.FPN.NORM, v2.MODEL.ROI_BOX_HEAD.NORM, v2.MODEL.ROI_MASK_HEAD.NORM) == (
        "BN", "BN", "BN")
    assert (v2.MODEL.ROI_BOX_HEAD.NUM_CONV, v2.MODEL.ROI_BOX_HEAD.NUM_FC) == (4, 1)
    assert tuple(v2.MODEL.RPN.CONV_DIMS) == (-1, -1)
    v1 = setup_cfg(CONFIGS / "deepfashion2" / "matchrcnn_R50_FPN_1x_coco.yaml")
    assert v1.MODEL.WEIGHTS == "torchvision://MaskRCNN_ResNet50_FPN_Weights.COCO_V1"
    assert v1.SOLVER.MAX_ITER == setup_cfg(
        CONFIGS / "deepfashion2" / "matchrcnn_R50_FPN_1x.yaml").SOLVER.MAX_ITER
