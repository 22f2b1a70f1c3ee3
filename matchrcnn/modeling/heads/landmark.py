"""The landmark stream: eight 3x3 convs, two 2x deconvs, one heatmap per slot of a landmark layout.

Categories share the layout's slot vector (DeepFashion2: 294 slots, by default), but an item only
has landmarks in its own category's slots (``layout.slots(c)``). The head therefore works on
*packed* heatmaps: row ``j`` of an RoI of category ``c`` is slot ``layout.slots(c)[j]``; rows past
that category's landmark count are zero. Packing keeps the loss on the item's own slots and lets
the last deconv compute only the channels that are needed, which is most of the head's time and
memory at 56x56 (see ``LandmarkPredictor``). Every function defaults to DeepFashion2's layout.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import heatmaps_to_keypoints

from matchrcnn.data.layouts import DEEPFASHION2, LandmarkLayout
from matchrcnn.modeling.heads.heatmaps import decode_heatmaps

MAX_LANDMARKS = DEEPFASHION2.max_landmarks
"""Rows of a packed DeepFashion2 heatmap tensor: the largest category's landmark count (39)."""


def category_slots(
    categories: Tensor, layout: LandmarkLayout = DEEPFASHION2
) -> tuple[Tensor, Tensor]:
    """For categories (N,) in 1..C: slot numbers (N, M) and which of them are real (N, M).

    M is the layout's largest category. Rows past a category's landmark count point at slot
    ``layout.num_slots``, one past the end, so that they can be sent to a scratch slot when
    scattering.
    """
    device = categories.device
    table, counts = layout.slot_table
    index = categories.long() - 1
    rows = torch.arange(layout.max_landmarks, device=device)
    valid = rows[None] < counts.to(device)[index][:, None]
    return table.to(device)[index], valid


def pack_slices(
    full: Tensor, categories: Tensor, layout: LandmarkLayout = DEEPFASHION2
) -> Tensor:
    """(N, slots, ...) -> (N, M, ...): each row's own category slots, zero-padded."""
    slots, valid = category_slots(categories, layout)
    trailing = (1,) * (full.dim() - 2)
    index = slots.clamp(max=layout.num_slots - 1).view(*slots.shape, *trailing)
    packed = full.gather(1, index.expand(-1, -1, *full.shape[2:]))
    return packed * valid.view(*valid.shape, *trailing).to(packed.dtype)


def unpack_slices(
    packed: Tensor, categories: Tensor, layout: LandmarkLayout = DEEPFASHION2
) -> Tensor:
    """(N, M, ...) -> (N, slots, ...): each row's values in its category's slots, zero elsewhere."""
    slots, _ = category_slots(categories, layout)
    trailing = packed.shape[2:]
    index = slots.view(*slots.shape, *(1,) * len(trailing)).expand(-1, -1, *trailing)
    full = packed.new_zeros(packed.shape[0], layout.num_slots + 1, *trailing)
    return full.scatter(1, index, packed)[:, : layout.num_slots]


class LandmarkHead(nn.Sequential):
    """RoI features (N, C, 14, 14) -> (N, conv_dim, 28, 28): 3x3 convs, then the first 2x deconv.

    ``norm_layer`` (a factory of channels, e.g. GroupNorm's) follows each conv when given; those
    convs then have no bias, as the norm's shift replaces it.
    """

    def __init__(self, in_channels: int, num_convs: int = 8, conv_dim: int = 512,
                 norm_layer: Callable[[int], nn.Module] | None = None) -> None:
        layers: list[nn.Module] = []
        for index in range(num_convs):
            layers.append(nn.Conv2d(in_channels if index == 0 else conv_dim, conv_dim, 3,
                                    padding=1, bias=norm_layer is None))
            if norm_layer is not None:
                layers.append(norm_layer(conv_dim))
            layers.append(nn.ReLU(inplace=True))
        layers += [nn.ConvTranspose2d(conv_dim if num_convs else in_channels, conv_dim, 4, 2, 1),
                   nn.ReLU(inplace=True)]
        super().__init__(*layers)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
                nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)


class LandmarkPredictor(nn.Module):
    """The second 2x deconv, to one logit map per slot (full) or per RoI's own slots (packed)."""

    def __init__(self, in_channels: int, layout: LandmarkLayout = DEEPFASHION2) -> None:
        super().__init__()
        self.layout = layout
        self.deconv = nn.ConvTranspose2d(in_channels, layout.num_slots, 4, 2, 1)
        nn.init.kaiming_normal_(self.deconv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.deconv.bias)

    def forward(self, x: Tensor, categories: Tensor | None = None) -> Tensor:
        """(N, C, S, S) -> (N, slots, 2S, 2S) logits, or packed (N, M, 2S, 2S) given categories.

        The packed form runs the deconv once per category present, with only that category's
        output channels: the same numbers as ``pack_slices(self(x), categories, layout)``.
        Without RoIs it still runs the (empty) deconv, so that its weights stay in the autograd
        graph.
        """
        if categories is None:
            return self.deconv(x)
        if categories.numel() == 0:
            return pack_slices(self.deconv(x), categories, self.layout)
        size = (x.shape[-2] * 2, x.shape[-1] * 2)
        packed = x.new_zeros(x.shape[0], self.layout.max_landmarks, *size)
        for category in categories.unique().tolist():
            rows = torch.nonzero(categories == category).squeeze(1)
            channels = _channels(self.layout.slots(int(category)))
            packed[rows, : len(self.layout.slots(int(category)))] = F.conv_transpose2d(
                x[rows],
                self.deconv.weight[:, channels],
                self.deconv.bias[channels],
                stride=2,
                padding=1,
            )
        return packed


def _channels(slots: tuple[int, ...]) -> slice | list[int]:
    """A contiguous run of slots as a slice (a view of the weights), else the slot list."""
    if list(slots) == list(range(slots[0], slots[0] + len(slots))):
        return slice(slots[0], slots[0] + len(slots))
    return list(slots)


def torchvision_decode(maps: Tensor, boxes: Tensor) -> Tensor:
    """torchvision's ``heatmaps_to_keypoints`` points (N, K, 2): a resize per box, in a loop."""
    return heatmaps_to_keypoints(maps, boxes)[0][..., :2]


DECODERS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "vectorised": decode_heatmaps,
    "torchvision": torchvision_decode,
}
"""Heatmap decoders by name: ours (modeling/heads/heatmaps.py) and torchvision's, its reference."""
Decoder = Callable[[Tensor, Tensor], Tensor]
_DECODER: ContextVar[Decoder] = ContextVar("landmark_decoder", default=decode_heatmaps)


@contextmanager
def landmark_decoder(decoder: str | Decoder) -> Iterator[None]:
    """Decode landmark heatmaps in this block with ``decoder``: a name of ``DECODERS``, or a
    function of (maps, boxes) as they take (the inference benchmark measures both decoders, and
    records what they are given); the vectorised decoder otherwise."""
    if isinstance(decoder, str):
        if decoder not in DECODERS:
            raise ValueError(f"unknown landmark decoder {decoder!r}: expected one of "
                             f"{sorted(DECODERS)}")
        decoder = DECODERS[decoder]
    token = _DECODER.set(decoder)
    try:
        yield
    finally:
        _DECODER.reset(token)


def heatmaps_to_landmarks(
    packed: Tensor, categories: Tensor, boxes: Tensor, layout: LandmarkLayout = DEEPFASHION2
) -> Tensor:
    """Packed logits (N, M, S, S) of boxes (N, 4) -> landmarks (N, slots, 3) in image coordinates.

    Each landmark is (x, y, score): (x, y) the heatmap's maximum where torchvision's decoder puts
    it (to within a pixel; see heatmaps.py), score the peak of its heatmap's spatial softmax, in
    (0, 1]; slots outside each detection's category are all zero, as the official evaluation
    needs.
    """
    xy = _DECODER.get()(packed, boxes)
    scores = packed.flatten(2).softmax(-1).amax(-1)
    landmarks = torch.cat([xy.float(), scores[..., None].float()], dim=-1)
    return unpack_slices(landmarks, categories, layout)
