"""Checkpoints that resume a run exactly and refuse weights of another architecture.

A checkpoint holds the model, optimizer, scheduler and grad-scaler states, the iteration, and the
RNG states of python, numpy and torch, so that a resumed run continues bit for bit. It is written to
a temporary file and renamed into place, and ``last_checkpoint`` names the newest one only after it
is complete: a run killed at any moment leaves the previous checkpoint intact. Loading uses
``torch.load(weights_only=True)``: a checkpoint cannot run code; one of another architecture or
class count is refused (``matchrcnn.modeling.weights``).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from matchrcnn.modeling.weights import load_checked, model_state, read_checkpoint
from matchrcnn.utils.atomic import atomic_open, write_text_atomic

LAST_CHECKPOINT = "last_checkpoint"


def rng_states() -> dict[str, Any]:
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.copy()), position, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy(), position, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class Checkpointer:
    """Saves and loads training state under one output directory, detectron2's file names."""

    def __init__(self, output_dir: str | os.PathLike, model: torch.nn.Module, **stateful: Any):
        self.output_dir = Path(output_dir)
        self.model = model
        self.stateful = {name: obj for name, obj in stateful.items() if obj is not None}

    def save(self, name: str, iteration: int) -> Path:
        """Write ``<name>.pth`` atomically, then point ``last_checkpoint`` at it."""
        data = {
            "model": _unwrap(self.model).state_dict(),
            "iteration": iteration,
            "rng": rng_states(),
            **{key: obj.state_dict() for key, obj in self.stateful.items()},
        }
        path = self.output_dir / f"{name}.pth"
        with atomic_open(path, "wb") as handle:
            torch.save(data, handle)
        write_text_atomic(self.output_dir / LAST_CHECKPOINT, path.name)
        return path

    def last_checkpoint(self) -> Path | None:
        pointer = self.output_dir / LAST_CHECKPOINT
        if not pointer.is_file():
            return None
        path = self.output_dir / pointer.read_text().strip()
        return path if path.is_file() else None

    def resume(self) -> int:
        """Restore all state from the last checkpoint; the next iteration to run (0 if none)."""
        path = self.last_checkpoint()
        if path is None:
            return 0
        data = read_checkpoint(path, "--resume")
        load_checked(_unwrap(self.model), model_state(data, path, "--resume"), str(path))
        for key, obj in self.stateful.items():
            if key in data:
                obj.load_state_dict(data[key])
        set_rng_states(data["rng"])
        return int(data["iteration"]) + 1


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model
