"""Checkpoints that resume a run exactly and refuse weights of another architecture.

A checkpoint holds the model, optimizer, scheduler and grad-scaler states, the iteration, and the
RNG states of python, numpy and torch of every rank (gathered to rank 0, which writes the file),
so that a resumed run continues bit for bit, under DDP too; resumed with another number of
processes, each rank takes rank 0's states and the run goes on, no longer exactly. It is written to
a temporary file and renamed into place, and ``last_checkpoint`` names the newest one only after it
is complete: a run killed at any moment leaves the previous checkpoint intact. Loading uses
``torch.load(weights_only=True)``: a checkpoint cannot run code; one of another architecture or
class count is refused (``matchrcnn.modeling.weights``).
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from matchrcnn.modeling.weights import load_checked, model_state, read_checkpoint
from matchrcnn.utils.atomic import atomic_open, write_text_atomic

LAST_CHECKPOINT = "last_checkpoint"
logger = logging.getLogger("matchrcnn")


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
        """Write ``<name>.pth`` atomically, then point ``last_checkpoint`` at it.

        Under DDP every rank calls it (it gathers their RNG states); rank 0 writes.
        """
        states = rng_states()
        if _distributed():
            # Tensors travel as numpy arrays: all_gather_object's unpickler refuses torch storages.
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, _map_tensors(states, torch.Tensor.numpy))
            states = [_map_tensors(rank_states, torch.from_numpy) for rank_states in gathered]
        path = self.output_dir / f"{name}.pth"
        if _distributed() and dist.get_rank() != 0:
            dist.barrier()  # the file exists once rank 0 has written it
            return path
        data = {
            "model": _unwrap(self.model).state_dict(),
            "iteration": iteration,
            "rng": states,
            **{key: obj.state_dict() for key, obj in self.stateful.items()},
        }
        with atomic_open(path, "wb") as handle:
            torch.save(data, handle)
        write_text_atomic(self.output_dir / LAST_CHECKPOINT, path.name)
        if _distributed():
            dist.barrier()
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
        set_rng_states(_own_states(data["rng"], path))
        return int(data["iteration"]) + 1


def _map_tensors(states: dict[str, Any], convert: Any) -> dict[str, Any]:
    """RNG states with each tensor (or, back, each array) passed through ``convert``."""
    def value(item: Any) -> Any:
        if isinstance(item, torch.Tensor | np.ndarray):
            return convert(item)
        if isinstance(item, tuple | list):
            return type(item)(value(part) for part in item)
        return item

    return {key: value(item) for key, item in states.items()}


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _own_states(saved: dict | list, path: Path) -> dict:
    """This rank's RNG states from a checkpoint (a list of every rank's, or one dict)."""
    world, rank = (dist.get_world_size(), dist.get_rank()) if _distributed() else (1, 0)
    per_rank = saved if isinstance(saved, list) else [saved]
    if len(per_rank) != world:
        logger.warning("%s was written by %d process(es), resumed by %d: every rank takes rank "
                       "0's RNG states, so the run is no longer an exact continuation",
                       path, len(per_rank), world)
        return per_rank[0]
    return per_rank[rank]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model
