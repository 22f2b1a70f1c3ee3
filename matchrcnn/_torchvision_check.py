"""Fail early, and say why, when torchvision's compiled ops cannot run with the installed torch.

torchvision wheels are built against one torch build; pairing them with another (a CPU-only torch
from a local wheel with torchvision from PyPI, say) imports fine but breaks at the first nms or
roi_align, deep inside a training step. We try one op when ``matchrcnn.modeling`` is imported
instead, where a model is built: tools that only read or score files never load torch.
"""

from __future__ import annotations


class TorchvisionOpsError(ImportError):
    """torch and torchvision are installed but torchvision's compiled ops do not load."""


def check_torchvision_ops() -> None:
    import torch
    import torchvision
    from torchvision.ops import nms

    try:
        nms(torch.zeros((1, 4)), torch.zeros(1), 0.5)
    except (RuntimeError, NotImplementedError) as error:
        raise TorchvisionOpsError(
            f"torchvision {torchvision.__version__} cannot run its compiled ops (nms, roi_align) "
            f"with torch {torch.__version__}: {error}\n"
            "torch and torchvision must come from the same source and release. Install them "
            "together into a fresh virtual environment, for example\n"
            "  python3 -m venv .venv && .venv/bin/pip install torch torchvision\n"
            "and do not mix a torch wheel from one index with a torchvision from another."
        ) from error
