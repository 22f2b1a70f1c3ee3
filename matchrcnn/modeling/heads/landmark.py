"""The landmark stream: eight 3x3 convs, two 2x deconvs, one heatmap per DeepFashion2 landmark slot.

All 13 categories share the 294-slot vector, but an item only has landmarks in its own category's
slice. The head therefore works on *packed* heatmaps: row ``j`` of an RoI of category ``c`` is slot
``landmark_slice(c).start + j``; rows past that category's landmark count are zero. Packing keeps
the loss on the item's own slice and lets the last deconv compute only the channels that are
needed, which is most of the head's time and memory at 56x56 (see ``LandmarkPredictor``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import heatmaps_to_keypoints

from matchrcnn.data.categories import LANDMARK_COUNTS, NUM_LANDMARKS, landmark_slice

MAX_LANDMARKS = max(LANDMARK_COUNTS)
"""Rows of a packed heatmap tensor: the largest category's landmark count (39)."""

_STARTS = torch.tensor([landmark_slice(c).start for c in range(1, len(LANDMARK_COUNTS) + 1)])
_COUNTS = torch.tensor(LANDMARK_COUNTS)


def category_slots(categories: Tensor) -> tuple[Tensor, Tensor]:
    """For categories (N,) in 1..13: slot numbers (N, 39) and which of them are real (N, 39).

    Rows past a category's landmark count point at slot 294, one past the end, so that they can
    be sent to a scratch slot when scattering.
    """
    device = categories.device
    index = categories.long() - 1
    rows = torch.arange(MAX_LANDMARKS, device=device)
    valid = rows[None] < _COUNTS.to(device)[index][:, None]
    starts = _STARTS.to(device)[index][:, None]
    return torch.where(valid, starts + rows[None], NUM_LANDMARKS), valid


def pack_slices(full: Tensor, categories: Tensor) -> Tensor:
    """(N, 294, ...) -> (N, 39, ...): each row's own category slice, zero-padded."""
    slots, valid = category_slots(categories)
    trailing = (1,) * (full.dim() - 2)
    index = slots.clamp(max=NUM_LANDMARKS - 1).view(*slots.shape, *trailing)
    packed = full.gather(1, index.expand(-1, -1, *full.shape[2:]))
    return packed * valid.view(*valid.shape, *trailing).to(packed.dtype)


def unpack_slices(packed: Tensor, categories: Tensor) -> Tensor:
    """(N, 39, ...) -> (N, 294, ...): each row's values in its category slice, zeros elsewhere."""
    slots, _ = category_slots(categories)
    trailing = packed.shape[2:]
    index = slots.view(*slots.shape, *(1,) * len(trailing)).expand(-1, -1, *trailing)
    full = packed.new_zeros(packed.shape[0], NUM_LANDMARKS + 1, *trailing)
    return full.scatter(1, index, packed)[:, :NUM_LANDMARKS]


class LandmarkHead(nn.Sequential):
    """RoI features (N, C, 14, 14) -> (N, conv_dim, 28, 28): 3x3 convs, then the first 2x deconv."""

    def __init__(self, in_channels: int, num_convs: int = 8, conv_dim: int = 512) -> None:
        layers: list[nn.Module] = []
        for index in range(num_convs):
            layers += [nn.Conv2d(in_channels if index == 0 else conv_dim, conv_dim, 3, padding=1),
                       nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(conv_dim if num_convs else in_channels, conv_dim, 4, 2, 1),
                   nn.ReLU(inplace=True)]
        super().__init__(*layers)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(layer.bias)


class LandmarkPredictor(nn.Module):
    """The second 2x deconv, to 294 heatmap logits (full) or to each RoI's slice only (packed)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose2d(in_channels, NUM_LANDMARKS, 4, 2, 1)
        nn.init.kaiming_normal_(self.deconv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.deconv.bias)

    def forward(self, x: Tensor, categories: Tensor | None = None) -> Tensor:
        """(N, C, S, S) -> (N, 294, 2S, 2S) logits, or packed (N, 39, 2S, 2S) given categories.

        The packed form runs the deconv once per category present, with only that category's
        output channels: the same numbers as ``pack_slices(self(x), categories)``. Without RoIs
        it still runs the (empty) deconv, so that its weights stay in the autograd graph.
        """
        if categories is None:
            return self.deconv(x)
        if categories.numel() == 0:
            return pack_slices(self.deconv(x), categories)
        size = (x.shape[-2] * 2, x.shape[-1] * 2)
        packed = x.new_zeros(x.shape[0], MAX_LANDMARKS, *size)
        for category in categories.unique().tolist():
            rows = torch.nonzero(categories == category).squeeze(1)
            channels = landmark_slice(int(category))
            packed[rows, : channels.stop - channels.start] = F.conv_transpose2d(
                x[rows],
                self.deconv.weight[:, channels],
                self.deconv.bias[channels],
                stride=2,
                padding=1,
            )
        return packed


def heatmaps_to_landmarks(packed: Tensor, categories: Tensor, boxes: Tensor) -> Tensor:
    """Packed logits (N, 39, S, S) of boxes (N, 4) -> landmarks (N, 294, 3) in image coordinates.

    Each landmark is (x, y, score) with score the peak of its heatmap's spatial softmax, in (0, 1];
    slots outside each detection's category slice are all zero, as the official evaluation needs.
    """
    xy, _ = heatmaps_to_keypoints(packed, boxes)
    scores = packed.flatten(2).softmax(-1).amax(-1)
    landmarks = torch.cat([xy[..., :2], scores[..., None]], dim=-1)
    return unpack_slices(landmarks, categories)
