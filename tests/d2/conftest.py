"""A tiny synthetic dataset and configs/d2 configs sized for tests (needs detectron2).

Where detectron2 is not installed (CI, most machines), the source that ``../shared/vendor`` holds
is extracted into the temporary directory and put on ``sys.path``, so these tests run against it
(without its compiled ops); where neither exists they skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
import torch

from tests.synthetic_data import TINY as TINY_BASE
from tests.synthetic_data import write_synthetic_datasets

REPO = Path(__file__).resolve().parents[2]
VENDOR = REPO.parent / "shared" / "vendor"
CONFIGS = REPO / "configs" / "d2"
SYNTHETIC_CONFIG = CONFIGS / "synthetic_cpu.yaml"
TINY = [*TINY_BASE, "TEST.DETECTIONS_PER_IMAGE", "10"]
DETECTRON2_INSTALLED = importlib.util.find_spec("detectron2") is not None
"""Installed in site-packages, as against the vendored source these tests may put on the path."""


def _use_vendored_detectron2() -> None:
    archives = sorted(VENDOR.glob("detectron2-*.tar.gz"))
    if DETECTRON2_INSTALLED or not archives:
        return
    source = Path(tempfile.gettempdir()) / archives[-1].name.removesuffix(".tar.gz")
    if not (source / "detectron2" / "__init__.py").is_file():
        staging = Path(tempfile.mkdtemp(prefix="matchrcnn-vendor-"))
        with tarfile.open(archives[-1]) as archive:
            archive.extractall(staging, filter="data")
        with contextlib.suppress(OSError):  # another test process may have put it there first
            os.replace(staging / source.name, source)
        shutil.rmtree(staging, ignore_errors=True)
    sys.path.insert(0, str(source))
    # Tools run in subprocesses (tools/d2_train_net.py) find it too.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(source),
                                                             os.environ.get("PYTHONPATH")]))


_use_vendored_detectron2()


@pytest.fixture(scope="session")
def datasets_root(tmp_path_factory) -> Path:
    """synthetic_train (36 images) and synthetic_validation (12), 128 px, converted."""
    return write_synthetic_datasets(tmp_path_factory.mktemp("d2_datasets"), 48, size=128, seed=3)


@pytest.fixture(scope="session")
def d2_env(datasets_root: Path):
    """$MATCHRCNN_DATASETS at the tiny dataset, and one torch thread, for the whole session.

    One thread: these models are small, and on a busy machine a second thread spinning for
    its turn made them many times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MATCHRCNN_DATASETS", str(datasets_root))
        yield datasets_root
    torch.set_num_threads(threads)


def d2_cfg(*opts: str, config: Path = SYNTHETIC_CONFIG):
    """A frozen detectron2 config: the file, the tiny sizes, then the KEY VALUE ``opts``."""
    from detectron2.config import get_cfg

    from matchrcnn.d2 import add_matchrcnn_config

    cfg = get_cfg()
    add_matchrcnn_config(cfg)
    cfg.merge_from_file(str(config))
    cfg.merge_from_list([*TINY, *opts])
    cfg.freeze()
    return cfg
