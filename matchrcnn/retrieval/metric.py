"""The match network's similarity as a weighted squared distance, and how FAISS can serve it.

``SimilarityHead`` gives two logits from an FC layer over ``(a - g) ** 2``, so its margin
``logit[same] - logit[different]`` is ``sum_d w_d (a_d - g_d) ** 2 + b`` with
``w = W[1] - W[0]`` and ``b = bias[1] - bias[0]``. Split ``w`` into its negative part ``n`` and
positive part ``p`` (both >= 0, ``w = p - n``): the margin is ``b - ||(a - g) sqrt(n)||^2 +
||(a - g) sqrt(p)||^2``. The first term is a plain L2 distance between vectors scaled by
``sqrt(n)``, which is what the FAISS index holds; when ``p`` is zero (every weight <= 0, the trained
case: more different means less alike) L2 order over the scaled vectors is match order. The
positive part is bounded by ``(||a sqrt(p)|| + max_g ||g sqrt(p)||)^2``, which lets the search stop
widening its candidate set as soon as no unseen item can reach the top k (see search.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class MatchMetric:
    """``margin(a, g) = sum_d weight_d (a_d - g_d)^2 + bias``, in float64."""

    weight: np.ndarray  # (D,) float64
    bias: float

    def __post_init__(self) -> None:
        weight = np.asarray(self.weight, dtype=np.float64)
        if weight.ndim != 1 or weight.size == 0 or not np.isfinite(weight).all():
            raise ValueError(f"match weights must be a finite non-empty vector, got shape "
                             f"{weight.shape}")
        if not np.isfinite(self.bias):
            raise ValueError(f"match bias must be finite, got {self.bias}")
        weight.setflags(write=False)
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", float(self.bias))

    @classmethod
    def from_head(cls, head: Any) -> MatchMetric:
        """From a ``SimilarityHead`` (anything with an ``fc`` Linear of 2 outputs)."""
        weight = head.fc.weight.detach().cpu().double().numpy()
        bias = head.fc.bias.detach().cpu().double().numpy()
        if weight.ndim != 2 or weight.shape[0] != 2 or bias.shape != (2,):
            raise ValueError(f"expected a similarity head with an FC of 2 outputs (different, "
                             f"same), got weight {weight.shape} and bias {bias.shape}")
        return cls(weight[1] - weight[0], float(bias[1] - bias[0]))

    @classmethod
    def from_json(cls, data: dict) -> MatchMetric:
        return cls(np.asarray(data["weight"], dtype=np.float64), float(data["bias"]))

    def to_json(self) -> dict:
        """Exact: Python writes float64 values with the digits that read back the same."""
        return {"weight": self.weight.tolist(), "bias": self.bias}

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, MatchMetric) and self.bias == other.bias
                and np.array_equal(self.weight, other.weight))

    __hash__ = None  # type: ignore[assignment]

    @property
    def dim(self) -> int:
        return len(self.weight)

    @property
    def signs(self) -> str:
        """"negative" (FAISS order is match order), "positive" or "mixed"."""
        if (self.weight <= 0).all():
            return "negative"
        return "positive" if (self.weight >= 0).all() else "mixed"

    @property
    def index_scale(self) -> np.ndarray:
        """``sqrt(n)``: index and query vectors are multiplied by it before FAISS sees them."""
        return np.sqrt(np.maximum(-self.weight, 0.0))

    @property
    def positive_scale(self) -> np.ndarray:
        return np.sqrt(np.maximum(self.weight, 0.0))

    def index_vectors(self, embeddings: np.ndarray) -> np.ndarray:
        """Embeddings (N, D) as FAISS stores and searches them: float32, scaled by sqrt(n)."""
        return np.ascontiguousarray(embeddings * self.index_scale, dtype=np.float32)

    def positive_norms(self, embeddings: np.ndarray) -> np.ndarray:
        """``||x sqrt(p)||`` per row, the quantity bounding the positive part of the margin."""
        return np.sqrt(np.square(np.asarray(embeddings, np.float64)) @ np.maximum(self.weight, 0))

    def margins(self, query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
        """Margins of one query (D,) against gallery rows (S, D), float64.

        Each row's value depends on that row alone (a contiguous per-row sum), so the same pair
        scores the same whichever other rows are scored with it: ties stay ties.
        """
        difference = np.asarray(gallery, np.float64) - np.asarray(query, np.float64)
        return (np.square(difference) * self.weight).sum(axis=1) + self.bias


def match_probability(margins: np.ndarray | Sequence[float]) -> np.ndarray:
    """softmax(logits)[same] = sigmoid(margin), computed without overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(margins, dtype=np.float64)))
