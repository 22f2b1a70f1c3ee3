"""matchrcnn and its torchvision engine never import detectron2; matchrcnn.d2 says how to get it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.d2.conftest import DETECTRON2_INSTALLED

REPO = Path(__file__).resolve().parents[2]

_IMPORT_EVERYTHING_BUT_D2_AND_RUN_THE_ENGINE = """
import json, pkgutil, sys
import torch
torch.set_num_threads(1)
import matchrcnn
from matchrcnn.config import setup_cfg
from matchrcnn.modeling import build_model

def import_all(package):
    # Not pkgutil.walk_packages: it imports every package it walks into, matchrcnn.d2 included.
    for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if module.name != "matchrcnn.d2":
            imported = __import__(module.name, fromlist=["_"])
            if module.ispkg:
                import_all(imported)

import_all(matchrcnn)
cfg = setup_cfg(sys.argv[1], ["MODEL.DEVICE", "cpu"])
model = build_model(cfg)
image = torch.rand(3, 96, 96)
target = {
    "boxes": torch.tensor([[10.0, 10.0, 60.0, 80.0]]), "labels": torch.tensor([1]),
    "masks": torch.ones(1, 96, 96, dtype=torch.uint8),
    "keypoints": torch.zeros(1, 294, 3), "pair_ids": torch.tensor([1]),
    "styles": torch.tensor([1]), "is_shop": torch.tensor(False),
}
losses = model([image], [target])
sum(losses.values()).backward()
model.eval()
with torch.no_grad():
    model([image])
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "detectron2")))
"""


def test_matchrcnn_and_the_torchvision_engine_import_no_detectron2():
    config = REPO / "configs" / "synthetic" / "quickstart.yaml"
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING_BUT_D2_AND_RUN_THE_ENGINE, str(config)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


@pytest.mark.skipif(DETECTRON2_INSTALLED, reason="detectron2 is installed here, so "
                    "matchrcnn.d2 imports")
def test_importing_the_extension_without_detectron2_says_how_to_install_it():
    # A fresh interpreter without the vendored source that the d2 tests may have put on the path.
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", "import matchrcnn.d2"], capture_output=True,
                            text=True, cwd=REPO, env=env, timeout=300)
    assert result.returncode == 1
    assert "ModuleNotFoundError" in result.stderr
    assert "'Use with detectron2' of matchrcnn's README" in result.stderr
