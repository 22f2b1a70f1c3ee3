"""MODEL.MATCH_HEAD.INPUT "pixels": the match stream pools the normalised input pixels."""

from __future__ import annotations

import math

import pytest
import torch

from matchrcnn.config import ConfigError
from matchrcnn.modeling import build_model
from matchrcnn.modeling.pixels import PIXELS

from .conftest import make_batch


@pytest.fixture
def pixels_cfg(tiny_cfg):
    tiny_cfg.MODEL.MATCH_HEAD.INPUT = "pixels"
    return tiny_cfg


def _build(cfg):
    torch.manual_seed(0)
    return build_model(cfg)


def test_the_match_stream_reads_the_colour_inside_each_box(pixels_cfg) -> None:
    model = _build(pixels_cfg).eval()
    image = torch.full((3, 96, 128), 0.5)
    colour = torch.tensor([0.9, 0.1, 0.3])
    image[:, 20:80, 30:100] = colour[:, None, None]
    batch, _ = model.transform([image])
    features = model.backbone(batch.tensors)
    torch.testing.assert_close(features[PIXELS], batch.tensors)
    box = torch.tensor([[40.0, 30.0, 90.0, 70.0]])  # inside the coloured block, at input scale 1
    assert batch.image_sizes[0] == (96, 128)
    pooled = model.roi_heads.match_branch.roi_pool(features, [box], batch.image_sizes)
    assert pooled.shape == (1, 3, 14, 14)
    mean = torch.tensor(pixels_cfg.MODEL.PIXEL_MEAN)
    std = torch.tensor(pixels_cfg.MODEL.PIXEL_STD)
    expected = ((colour - mean) / std)[:, None, None].expand(3, 14, 14)
    torch.testing.assert_close(pooled[0], expected)


def test_without_the_option_the_match_stream_reads_fpn_features_only(tiny_cfg) -> None:
    model = _build(tiny_cfg).eval()
    batch, _ = model.transform([torch.rand(3, 96, 128)])
    assert PIXELS not in model.backbone(batch.tensors)
    first = model.roi_heads.match_branch.head.convs[0]
    assert first.in_channels == tiny_cfg.MODEL.FPN.OUT_CHANNELS


def test_training_and_inference_with_pixels(pixels_cfg) -> None:
    model = _build(pixels_cfg)
    images, targets = make_batch()
    losses = model(images, targets)
    assert all(math.isfinite(value.item()) for value in losses.values())
    sum(losses.values()).backward()
    first = model.roi_heads.match_branch.head.convs[0]
    assert first.in_channels == 3
    assert first.weight.grad.abs().sum() > 0
    assert model.roi_heads.box_head.fc6.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        outputs = model(images)
    embedded = model.embed_boxes(images, [output["boxes"] for output in outputs])
    for output, embeddings in zip(outputs, embedded, strict=True):
        assert output["embeddings"].shape == (len(output["boxes"]), 24)
        torch.testing.assert_close(embeddings, output["embeddings"], atol=1e-3, rtol=1e-3)


def test_the_option_changes_no_weight_outside_the_match_head(tiny_cfg) -> None:
    """Detection weights load either way; only the match head's first conv narrows."""
    plain = _build(tiny_cfg).state_dict()
    tiny_cfg.MODEL.MATCH_HEAD.INPUT = "pixels"
    with_pixels = _build(tiny_cfg).state_dict()
    assert plain.keys() == with_pixels.keys()
    differ = {key for key in plain if plain[key].shape != with_pixels[key].shape}
    assert differ == {"roi_heads.match_branch.head.convs.0.weight"}


def test_an_unknown_match_input_is_a_config_error(tiny_cfg) -> None:
    tiny_cfg.MODEL.MATCH_HEAD.INPUT = "rgb"
    with pytest.raises(ConfigError, match=r"MATCH_HEAD.INPUT must be one of \('fpn', 'pixels'\)"):
        build_model(tiny_cfg)
