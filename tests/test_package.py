"""Importing the package checks that torchvision's compiled ops run with the installed torch."""

from __future__ import annotations

import pytest
import torchvision.ops

from matchrcnn._torchvision_check import TorchvisionOpsError, check_torchvision_ops


def test_working_install_passes_the_check():
    check_torchvision_ops()


def test_broken_ops_stop_with_an_explanation(monkeypatch):
    def broken_nms(*args, **kwargs):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(torchvision.ops, "nms", broken_nms)
    with pytest.raises(TorchvisionOpsError) as error:
        check_torchvision_ops()
    message = str(error.value)
    assert "operator torchvision::nms does not exist" in message
    assert "torch and torchvision must come from the same source and release" in message
    assert "pip install torch torchvision" in message
