"""The v2 options rebuild torchvision's maskrcnn_resnet50_fpn_v2: same tensors, same outputs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

from matchrcnn.config import ConfigError, setup_cfg
from matchrcnn.modeling import build_model, load_model_weights

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "deepfashion2" / (
    "matchrcnn_R50_FPN_v2_coco.yaml")
NARROW = ["MODEL.ROI_LANDMARK_HEAD.NUM_CONVS", "1", "MODEL.ROI_LANDMARK_HEAD.CONV_DIM", "16",
          "MODEL.MATCH_HEAD.NUM_CONVS", "1", "MODEL.MATCH_HEAD.CONV_DIM", "16"]


def test_v2_config_computes_what_torchvisions_v2_computes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    theirs = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).eval()
    with torch.no_grad():  # statistics other than the defaults, so that BatchNorm matters
        for module in theirs.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "v2.pth"
    torch.save(theirs.state_dict(), path)
    ours = build_model(setup_cfg(CONFIG, NARROW), backbone_weights=False)
    report = load_model_weights(ours, path, foreign=True)
    assert sorted(report.skipped) == sorted(
        name for name in theirs.state_dict()
        if name.startswith(("roi_heads.box_predictor.", "roi_heads.mask_predictor.mask_fcn")))
    ours.eval()
    images = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        features, expected = ours.backbone(images), theirs.backbone(images)
        assert list(features) == list(expected)
        for level in expected:  # FrozenBatchNorm2d and BatchNorm2d round differently
            torch.testing.assert_close(features[level], expected[level], atol=2e-3, rtol=1e-3)
        levels = list(expected.values())
        for mine, reference in zip(ours.rpn.head(levels), theirs.rpn.head(levels), strict=True):
            for a, b in zip(mine, reference, strict=True):
                torch.testing.assert_close(a, b)
        boxes = [torch.tensor([[10.0, 12.0, 90.0, 100.0], [40.0, 5.0, 150.0, 120.0]])]
        sizes = [(128, 160)]
        pooled = theirs.roi_heads.box_roi_pool(expected, boxes, sizes)
        torch.testing.assert_close(ours.roi_heads.box_head(pooled),
                                   theirs.roi_heads.box_head(pooled))
        pooled = theirs.roi_heads.mask_roi_pool(expected, boxes, sizes)
        torch.testing.assert_close(ours.roi_heads.mask_head(pooled),
                                   theirs.roi_heads.mask_head(pooled))


@pytest.mark.parametrize("dims", ["()", "(-1, 128)"])
def test_rpn_conv_dims_other_than_the_fpn_width_are_refused(tiny_cfg, dims) -> None:
    tiny_cfg.merge_from_list(["MODEL.RPN.CONV_DIMS", dims])
    with pytest.raises(ConfigError, match=r"MODEL\.RPN\.CONV_DIMS"):
        build_model(tiny_cfg)


def test_two_rpn_convs_and_batch_norm_heads_train(tiny_cfg, batch) -> None:
    tiny_cfg.merge_from_list(["MODEL.RPN.CONV_DIMS", "(-1, -1)", "MODEL.FPN.NORM", "BN",
                              "MODEL.ROI_BOX_HEAD.NUM_CONV", "2", "MODEL.ROI_BOX_HEAD.NUM_FC", "1",
                              "MODEL.ROI_BOX_HEAD.CONV_DIM", "16", "MODEL.ROI_BOX_HEAD.NORM", "BN",
                              "MODEL.ROI_MASK_HEAD.NORM", "BN"])
    model = build_model(tiny_cfg)
    assert len(model.rpn.head.conv) == 2
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 8 + 2 + 2
    losses = model(*batch)
    assert all(torch.isfinite(value) for value in losses.values())
