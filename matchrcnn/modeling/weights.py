"""Reading weight files safely (``weights_only``) and refusing ones that do not fit the model."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn


class WeightsError(RuntimeError):
    """A weight file that is missing, unreadable, or made for another model."""


def read_checkpoint(path: str | os.PathLike, key: str) -> object:
    """Whatever ``path`` holds, loaded weights-only: tensors and containers, never code.

    ``key`` is the config key or flag that named the file, so that the message says what to change.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{key} names {path}, which does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"{path} ({key}): cannot be read as torch weights: {error}") from error


def model_state(loaded: object, path: str | os.PathLike, key: str) -> Mapping[str, torch.Tensor]:
    """The state_dict in a loaded file: a plain one, or the "model" entry of a checkpoint."""
    if isinstance(loaded, Mapping) and isinstance(loaded.get("model"), Mapping):
        loaded = loaded["model"]
    if not isinstance(loaded, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in loaded.items()
    ):
        raise WeightsError(
            f"{path} ({key}): expected a state_dict (names to tensors, as torch.save("
            f"model.state_dict()) writes) or a checkpoint with one under 'model'"
        )
    return loaded


def read_state_dict(path: str | os.PathLike, key: str) -> Mapping[str, torch.Tensor]:
    """A state_dict from ``path``: a plain one, or the "model" entry of a training checkpoint."""
    return model_state(read_checkpoint(path, key), path, key)


def mismatch(given: Mapping[str, torch.Tensor], expected: Mapping[str, torch.Tensor]) -> str:
    """Why ``given`` cannot load where ``expected`` is the state_dict ("" when it can)."""
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshaped = sorted(
        f"{k} {tuple(given[k].shape)} vs {tuple(expected[k].shape)}"
        for k in set(expected) & set(given)
        if expected[k].shape != given[k].shape
    )
    return "; ".join(
        f"{label}: {', '.join(keys[:5])}{' ...' if len(keys) > 5 else ''}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape in file vs model", misshaped),
        )
        if keys
    )


def load_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state_dict``, refusing one of another architecture or class count."""
    problems = mismatch(state_dict, model.state_dict())
    if problems:
        raise WeightsError(
            f"{source} was saved from a different model (another architecture, backbone "
            f"depth, head width or class count) than the config builds: {problems}"
        )
    model.load_state_dict(state_dict)


def load_model_weights(
    model: nn.Module, path: str | os.PathLike, key: str = "MODEL.WEIGHTS"
) -> None:
    """Load a whole-model checkpoint, refusing one of another architecture or class count."""
    load_checked(model, read_state_dict(path, key), f"{path} ({key})")
