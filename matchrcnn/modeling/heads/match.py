"""The match network: an embedding per item, and a learned similarity between two embeddings."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn


class MatchHead(nn.Module):
    """RoI features (N, C, 14, 14) -> embeddings (N, embed_dim): 3x3 convs, global pooling, FC.

    Embeddings are scaled to norm sqrt(embed_dim), so their squared differences stay bounded
    (about 1 per dimension): left free, embeddings and the similarity logits grow together and
    training from scratch diverges within a few steps. L2 distance between these embeddings ranks
    as cosine similarity does.
    """

    def __init__(
        self, in_channels: int, num_convs: int = 4, conv_dim: int = 256, embed_dim: int = 256
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(num_convs):
            layers += [nn.Conv2d(in_channels if index == 0 else conv_dim, conv_dim, 3, padding=1),
                       nn.ReLU(inplace=True)]
        self.convs = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(conv_dim if num_convs else in_channels, embed_dim)
        self.scale = math.sqrt(embed_dim)
        for layer in self.convs:
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(self.fc(self.pool(self.convs(x)).flatten(1)), dim=1) * self.scale


class SimilarityHead(nn.Module):
    """Two logits (different, same item) from an FC over the squared difference of embeddings."""

    def __init__(self, embed_dim: int = 256) -> None:
        super().__init__()
        self.fc = nn.Linear(embed_dim, 2)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Aligned pairs: a, b (N, D) -> logits (N, 2)."""
        return self.fc((a - b).square())

    def pairwise(self, a: Tensor, b: Tensor) -> Tensor:
        """Every pair: a (U, D), b (S, D) -> logits (U, S, 2)."""
        return self.fc((a[:, None] - b[None]).square())
