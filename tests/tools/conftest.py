"""A tiny synthetic dataset and tiny untrained models for running the retrieval tools end to end.

The models are untrained: what the tool tests prove is that the tools carry images, detections,
embeddings and metadata through correctly, never that the model recognises garments.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from matchrcnn.config import setup_cfg
from matchrcnn.modeling import build_model
from tests.modeling.conftest import TINY
from tests.synthetic_data import write_synthetic_datasets

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "synthetic" / "quickstart.yaml"
SPLIT = "synthetic_validation"


def tool_main(name: str) -> Callable[[list[str]], int]:
    """``main`` of tools/<name>.py, loaded as the file it is (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def model_args(weights: Path) -> list[str]:
    return ["--config-file", str(CONFIG), "--weights", str(weights)]


def save_tiny_model(path: Path, seed: int) -> Path:
    """An untrained tiny model (tests/modeling TINY sizes), with its similarity head set to
    weights <= 0: then an identical embedding is the unique best match, which makes "the photo
    finds itself" a clear case. (A head with positive weights may rank another item above an
    identical one; the quickstart model's head has mixed signs.)"""
    torch.manual_seed(seed)
    model = build_model(setup_cfg(CONFIG, TINY))
    similarity = model.roi_heads.match_branch.similarity
    with torch.no_grad():
        different = similarity.fc.weight[0]
        similarity.fc.weight[1] = different - 0.1 - different.abs()
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def datasets_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """$MATCHRCNN_DATASETS with a synthetic dataset of 16 images at 96 px, both splits converted
    with their retrieval ground truth (validation: 1 shop and 3 user images of one pair group)."""
    return write_synthetic_datasets(tmp_path_factory.mktemp("datasets"), 16, size=96, seed=1)


@pytest.fixture
def datasets(datasets_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MATCHRCNN_DATASETS", str(datasets_root))
    return datasets_root


@pytest.fixture(scope="session")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "model.pth", seed=0)


@pytest.fixture(scope="session")
def other_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("other") / "model.pth", seed=1)


def copy_images(source: Path, target: Path, names: list[str]) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(source / name, target / name)
    return target


def train_images(datasets_root: Path) -> tuple[Path, list[str]]:
    """The train split's image folder and its file names, sorted."""
    folder = datasets_root / "synthetic" / "train" / "image"
    return folder, sorted(path.name for path in folder.glob("*.jpg"))
