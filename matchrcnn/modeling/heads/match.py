"""The match network: an embedding per item, and a learned similarity between two embeddings."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class MatchHead(nn.Module):
    """RoI features (N, C, 14, 14) -> embeddings (N, embed_dim): 3x3 convs, global pooling, FC.

    Embeddings are scaled to norm embed_dim ** 0.25: the similarity FC then reads squared
    differences summing to about 2 sqrt(embed_dim) for unrelated items, so one SGD step at the
    usual learning rates moves its logits by a fraction of one. At norm sqrt(embed_dim) a step
    moved them by tens and the pair loss diverged; at norm 1 its weights need thousands of steps
    to separate pairs. L2 distance between these embeddings ranks as cosine similarity does.

    Before that normalisation a BatchNorm without affine parameters centres each dimension over
    the items: from scratch, pooled RoI features share one large common component, every
    normalised embedding then points the same way, squared differences (and so the gradients of
    the similarity) vanish, and the match loss sits at its prior. A batch with a single item uses
    the running statistics.
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
        self.center = nn.BatchNorm1d(embed_dim, affine=False)
        self.scale = embed_dim**0.25
        for layer in self.convs:
            if isinstance(layer, nn.Conv2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        features = self.fc(self.pool(self.convs(x)).flatten(1))
        if self.training and features.shape[0] < 2:
            features = F.batch_norm(features, self.center.running_mean, self.center.running_var,
                                    training=False, eps=self.center.eps)
        else:
            features = self.center(features)
        return F.normalize(features, dim=1) * self.scale


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
