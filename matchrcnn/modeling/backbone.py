"""The feature network: a torchvision ResNet (18/34/50/101) with an FPN on res2..res5, plus P6.

ImageNet initialisation goes through torchvision's weights; machines without internet access
point MODEL.BACKBONE.PRETRAINED at a local copy of the same state_dict instead. A model whose
weights all come from a checkpoint (``--eval-only``, ``--resume``, a MODEL.WEIGHTS file) is built
without them: nothing is downloaded only to be overwritten.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial

import torch
from fvcore.common.config import CfgNode
from torch import nn
from torchvision.models import get_model_weights, resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops import FrozenBatchNorm2d

from matchrcnn.config import ConfigError
from matchrcnn.modeling.pixels import PIXELS
from matchrcnn.modeling.weights import (
    WeightsError,
    fetch_torchvision_weights,
    mismatch,
    read_state_dict,
)

RESNET_DEPTHS = (18, 34, 50, 101)
NORMS: dict[str, Callable[[int], nn.Module]] = {
    "FrozenBN": FrozenBatchNorm2d,
    "BN": nn.BatchNorm2d,
    "GN": partial(nn.GroupNorm, 32),
}
HEAD_NORMS = ("", "GN", "BN")
"""Normalisation after each conv of the FPN and the RoI heads, as detectron2's ``*.NORM`` keys:
"" for none, "GN" for GroupNorm (detectron2's from-scratch configs use it), "BN" for BatchNorm
(torchvision's maskrcnn_resnet50_fpn_v2)."""
_STAGES = ("conv1", "layer1", "layer2", "layer3", "layer4")
_BN_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")
PRETRAINED_KEY = "MODEL.BACKBONE.PRETRAINED"


class ResNetFPN(BackboneWithFPN):
    """torchvision's BackboneWithFPN (same weights and names); with ``pass_pixels`` its output
    also holds the input batch under PIXELS, for the match stream (matchrcnn/modeling/pixels.py).
    """

    def __init__(self, *args, pass_pixels: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.pass_pixels = pass_pixels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = super().forward(x)
        if self.pass_pixels:
            features[PIXELS] = x
        return features


def head_norm(name: str, key: str) -> Callable[[int], nn.Module] | None:
    """The norm layer factory HEAD_NORMS ``name`` stands for (None for ""); ``key`` names the
    config key in the error."""
    if name not in HEAD_NORMS:
        raise ConfigError(f"{key} must be one of {list(HEAD_NORMS)}, got {name!r}")
    return NORMS[name] if name else None


def build_backbone(cfg: CfgNode, pass_pixels: bool = False,
                   pretrained: bool = True) -> ResNetFPN:
    """The backbone the config asks for (MODEL.RESNETS.*, MODEL.FPN.*, MODEL.BACKBONE.*);
    ``pretrained=False`` skips MODEL.BACKBONE.PRETRAINED (weights that a checkpoint replaces)."""
    return build_resnet_fpn_backbone(
        depth=cfg.MODEL.RESNETS.DEPTH,
        norm=cfg.MODEL.RESNETS.NORM,
        out_channels=cfg.MODEL.FPN.OUT_CHANNELS,
        fpn_norm=cfg.MODEL.FPN.NORM,
        freeze_at=cfg.MODEL.BACKBONE.FREEZE_AT,
        pretrained=cfg.MODEL.BACKBONE.PRETRAINED if pretrained else "",
        pass_pixels=pass_pixels,
    )


def build_resnet_fpn_backbone(
    depth: int,
    norm: str,
    out_channels: int,
    freeze_at: int,
    pretrained: str = "",
    pass_pixels: bool = False,
    fpn_norm: str = "",
) -> ResNetFPN:
    """ResNet-FPN whose outputs "0".."3" are P2..P5 and "pool" is P6, all ``out_channels`` wide
    (and, with ``pass_pixels``, its input under PIXELS); ``fpn_norm`` is one of HEAD_NORMS."""
    if depth not in RESNET_DEPTHS:
        raise ConfigError(f"MODEL.RESNETS.DEPTH must be one of {RESNET_DEPTHS}, got {depth}")
    if norm not in NORMS:
        raise ConfigError(f"MODEL.RESNETS.NORM must be one of {sorted(NORMS)}, got {norm!r}")
    if not 0 <= freeze_at <= len(_STAGES):
        raise ConfigError(f"MODEL.BACKBONE.FREEZE_AT must be in 0..5, got {freeze_at}")
    fpn_norm_layer = head_norm(fpn_norm, "MODEL.FPN.NORM")
    body = getattr(resnet, f"resnet{depth}")(weights=None, norm_layer=NORMS[norm])
    if pretrained:
        load_resnet_weights(body, pretrained, depth)
    _freeze(body, freeze_at)
    stage2_channels = body.inplanes // 8
    return ResNetFPN(
        body,
        return_layers={f"layer{k}": str(k - 1) for k in range(1, 5)},
        in_channels_list=[stage2_channels * 2 ** (k - 1) for k in range(1, 5)],
        out_channels=out_channels,
        norm_layer=fpn_norm_layer,
        pass_pixels=pass_pixels,
    )


def load_resnet_weights(body: resnet.ResNet, source: str, depth: int) -> None:
    """Load "imagenet" (torchvision's weights) or a local torchvision ResNet state_dict file.

    The classifier ("fc.*") and batch-norm statistics the chosen norm has no use for are ignored;
    any other missing, unexpected or mis-shaped tensor is an error that names the file, so a
    ResNet-50 file cannot silently half-load into a ResNet-18.
    """
    if source == "imagenet":
        state_dict, origin = _imagenet_state_dict(depth), f"torchvision's resnet{depth} weights"
    else:
        state_dict, origin = read_state_dict(source, PRETRAINED_KEY), source
    expected = {k: v for k, v in body.state_dict().items() if not k.startswith("fc.")}
    state_dict = {
        k: v
        for k, v in state_dict.items()
        if not k.startswith("fc.") and (k in expected or k.rsplit(".", 1)[-1] not in _BN_STATISTICS)
    }
    problems = mismatch(state_dict, expected)
    if problems:
        raise WeightsError(
            f"{origin} ({PRETRAINED_KEY}) does not fit a resnet{depth} backbone "
            f"(MODEL.RESNETS.DEPTH={depth}): {problems}"
        )
    body.load_state_dict(state_dict, strict=False)


def _imagenet_state_dict(depth: int) -> Mapping[str, torch.Tensor]:
    return fetch_torchvision_weights(get_model_weights(f"resnet{depth}").IMAGENET1K_V1,
                                     PRETRAINED_KEY,
                                     f"; or set {PRETRAINED_KEY} \"\" to train from scratch")


def _freeze(body: resnet.ResNet, freeze_at: int) -> None:
    frozen = _STAGES[:freeze_at]
    for name, parameter in body.named_parameters():
        stage = "conv1" if name.startswith("bn1.") else name.split(".", 1)[0]
        if stage in frozen:
            parameter.requires_grad_(False)
