"""The assembled model: training losses, inference outputs, target checks, learning."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign

from matchrcnn.config import ConfigError
from matchrcnn.data.categories import NUM_LANDMARKS, landmark_slice
from matchrcnn.modeling import build_model

from .conftest import ITEMS, make_batch

ALL_LOSSES = {
    "loss_objectness",
    "loss_rpn_box_reg",
    "loss_classifier",
    "loss_box_reg",
    "loss_mask",
    "loss_landmark",
    "loss_match",
}


def build(cfg, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(cfg)


def test_training_returns_every_loss_and_match_metrics(tiny_cfg, batch) -> None:
    model = build(tiny_cfg)
    losses = model(*batch)
    assert set(losses) == ALL_LOSSES
    for name, value in losses.items():
        assert value.shape == () and math.isfinite(value.item()), name
    sum(losses.values()).backward()
    for name in ("landmark_branch.head", "match_branch.head", "mask_head"):
        module = model.roi_heads.get_submodule(name)
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    metrics = model.last_metrics
    users = sum(1 for item in ITEMS if item[0] == 0)
    shops = len(ITEMS) - users
    assert metrics["match_pos_pairs"] == 1
    assert metrics["match_neg_pairs"] == users * shops - 1
    assert 0.0 <= metrics["match_neg_acc"] <= 1.0 and metrics["match_pos_acc"] in (0.0, 1.0)


def test_foreground_proposals_add_match_items(tiny_cfg, batch) -> None:
    tiny_cfg.MODEL.MATCH_HEAD.PROPOSALS_PER_IMAGE = 4
    model = build(tiny_cfg)
    model(*batch)
    assert model.last_metrics["match_pos_pairs"] > 1


def test_inference_outputs(tiny_cfg, batch) -> None:
    model = build(tiny_cfg).eval()
    images, _ = batch
    with torch.no_grad():
        outputs = model(images)
    assert len(outputs) == len(images)
    for image, output in zip(images, outputs, strict=True):
        n = len(output["boxes"])
        height, width = image.shape[-2:]
        assert n > 0
        assert output["boxes"].shape == (n, 4)
        assert output["labels"].dtype == torch.int64 and output["labels"].min() >= 1
        assert output["scores"].shape == (n,)
        assert output["masks"].shape == (n, 1, height, width)
        assert output["masks"].min() >= 0 and output["masks"].max() <= 1
        assert output["embeddings"].shape == (n, tiny_cfg.MODEL.MATCH_HEAD.EMBED_DIM)
        landmarks = output["landmarks"]
        assert landmarks.shape == (n, NUM_LANDMARKS, 3)
        for row, label in enumerate(output["labels"].tolist()):
            own = torch.zeros(NUM_LANDMARKS, dtype=torch.bool)
            own[landmark_slice(label)] = True
            assert not landmarks[row, ~own].any()
            assert (landmarks[row, own, 2] > 0).all()
            x1, y1, x2, y2 = output["boxes"][row].tolist()
            xs, ys = landmarks[row, own, 0], landmarks[row, own, 1]
            assert ((xs >= x1 - 1) & (xs <= x2 + 1) & (ys >= y1 - 1) & (ys <= y2 + 1)).all()


def test_embed_boxes_reproduces_the_embeddings_of_detections(tiny_cfg, batch) -> None:
    model = build(tiny_cfg).eval()
    images, _ = batch
    with torch.no_grad():
        outputs = model(images)
    embedded = model.embed_boxes(images, [output["boxes"] for output in outputs])
    for output, embeddings in zip(outputs, embedded, strict=True):
        assert embeddings.shape == output["embeddings"].shape
        torch.testing.assert_close(embeddings, output["embeddings"], atol=1e-3, rtol=1e-3)


def test_no_detections_gives_empty_outputs(tiny_cfg, batch) -> None:
    tiny_cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 1.0
    model = build(tiny_cfg).eval()
    with torch.no_grad():
        output = model(batch[0])[0]
    assert output["boxes"].shape == (0, 4)
    assert output["landmarks"].shape == (0, NUM_LANDMARKS, 3)
    assert output["embeddings"].shape == (0, tiny_cfg.MODEL.MATCH_HEAD.EMBED_DIM)


def test_sliced_and_full_landmark_heads_give_the_same_loss(tiny_cfg, batch) -> None:
    losses = []
    for sliced in (True, False):
        tiny_cfg.MODEL.ROI_LANDMARK_HEAD.CATEGORY_SLICED = sliced
        model = build(tiny_cfg)
        torch.manual_seed(1)
        losses.append(model(*batch)["loss_landmark"])
    torch.testing.assert_close(losses[0], losses[1])


def test_heads_can_be_turned_off(tiny_cfg, batch) -> None:
    tiny_cfg.MODEL.MASK_ON = tiny_cfg.MODEL.LANDMARK_ON = tiny_cfg.MODEL.MATCH_ON = False
    model = build(tiny_cfg)
    images, targets = batch
    targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
    assert set(model(images, targets)) == ALL_LOSSES - {"loss_mask", "loss_landmark", "loss_match"}
    model.eval()
    with torch.no_grad():
        assert set(model(images)[0]) == {"boxes", "labels", "scores"}


@pytest.mark.parametrize(
    ("index", "key", "value", "message"),
    [
        (1, "keypoints", None, r"target 1: missing keypoints"),
        (0, "keypoints", torch.zeros(2, 293, 3), r"target 0: 'keypoints' must have shape"),
        (0, "labels", torch.tensor([1, 14]), r"target 0: 'labels' must be in 1\.\.13"),
        (1, "styles", torch.tensor([1.0, 2.0]), r"target 1: 'styles' must be torch\.int64"),
        (0, "masks", torch.zeros(2, 10, 10, dtype=torch.uint8), r"target 0: 'masks' must have"),
        (1, "is_shop", None, r"target 1: missing is_shop"),
    ],
)
def test_malformed_targets_are_named(tiny_cfg, batch, index, key, value, message) -> None:
    model = build(tiny_cfg)
    images, targets = batch
    if value is None:
        del targets[index][key]
    else:
        targets[index][key] = value
    with pytest.raises(ValueError, match=message):
        model(images, targets)


def test_config_errors_name_the_key(tiny_cfg) -> None:
    tiny_cfg.MODEL.ROI_HEADS.NUM_CLASSES = 5
    with pytest.raises(ConfigError, match=r"MODEL\.ROI_HEADS\.NUM_CLASSES"):
        build_model(tiny_cfg)
    tiny_cfg.MODEL.LANDMARK_ON = False
    assert build_model(tiny_cfg).roi_heads.box_predictor.cls_score.out_features == 6
    tiny_cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    with pytest.raises(ConfigError, match=r"MODEL\.META_ARCHITECTURE"):
        build_model(tiny_cfg)
    tiny_cfg.MODEL.META_ARCHITECTURE = "MatchRCNN"
    tiny_cfg.MODEL.ANCHOR_GENERATOR.SIZES = ((32,), (64,))
    with pytest.raises(ConfigError, match=r"MODEL\.ANCHOR_GENERATOR\.SIZES"):
        build_model(tiny_cfg)


def test_a_few_steps_on_one_batch_lower_the_loss(tiny_cfg) -> None:
    model = build(tiny_cfg)
    images, targets = make_batch()
    optimizer = torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad], lr=0.002, momentum=0.9
    )
    torch.manual_seed(0)
    totals = []
    for _ in range(12):
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        totals.append(loss.item())
    assert all(math.isfinite(t) for t in totals), totals
    assert sum(totals[-3:]) / 3 < 0.92 * sum(totals[:3]) / 3, totals


def test_images_without_items_train_every_head(tiny_cfg, batch) -> None:
    model = build(tiny_cfg)
    images, targets = batch
    for target in targets:
        for key in ("boxes", "labels", "masks", "keypoints", "pair_ids", "styles"):
            target[key] = target[key][:0]
    losses = model(images, targets)
    assert set(losses) == ALL_LOSSES
    assert all(math.isfinite(v.item()) for v in losses.values())
    assert losses["loss_landmark"].item() == 0 and losses["loss_match"].item() == 0
    sum(losses.values()).backward()
    unreached = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert unreached == []


def test_streams_with_equal_poolers_share_one_roi_align(tiny_cfg, batch, monkeypatch) -> None:
    calls = []
    original = MultiScaleRoIAlign.forward

    def counted(self, features, boxes, image_shapes):
        calls.append(self.output_size)
        return original(self, features, boxes, image_shapes)

    monkeypatch.setattr(MultiScaleRoIAlign, "forward", counted)
    model = build(tiny_cfg)
    model(*batch)
    assert calls == [(7, 7), (14, 14), (14, 14)]  # box; masks + landmarks; match (ground truth)
    calls.clear()
    with torch.no_grad():
        model.eval()(batch[0])
    assert calls == [(7, 7), (14, 14)]  # box; masks + landmarks + match on the detections


GROUP_NORM_EVERYWHERE = [
    "MODEL.FPN.NORM", "GN",
    "MODEL.ROI_BOX_HEAD.NUM_CONV", "2",
    "MODEL.ROI_BOX_HEAD.CONV_DIM", "32",
    "MODEL.ROI_BOX_HEAD.NUM_FC", "1",
    "MODEL.ROI_BOX_HEAD.NORM", "GN",
    "MODEL.ROI_MASK_HEAD.CONV_DIM", "32",
    "MODEL.ROI_MASK_HEAD.NORM", "GN",
    "MODEL.ROI_LANDMARK_HEAD.CONV_DIM", "32",
    "MODEL.ROI_LANDMARK_HEAD.NORM", "GN",
]


def _count(module: torch.nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def test_group_norm_in_fpn_and_heads_follows_every_conv(tiny_cfg, batch) -> None:
    tiny_cfg.merge_from_list(GROUP_NORM_EVERYWHERE)
    model = build(tiny_cfg)
    heads = model.roi_heads
    # FPN: 4 lateral and 4 output convs; box head: 2 convs; mask and landmark heads: 2 each.
    for module, convs in ((model.backbone.fpn, 8), (heads.box_head, 2), (heads.mask_head, 2),
                          (heads.landmark_branch.head, 2)):
        assert _count(module, torch.nn.Conv2d) == convs
        assert _count(module, torch.nn.GroupNorm) == convs
        assert all(m.bias is None for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    assert _count(heads.box_head, torch.nn.Linear) == 1
    losses = model(*batch)
    assert set(losses) == ALL_LOSSES and all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    group_norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert all(p.grad is not None for m in group_norms for p in m.parameters())
    detections = model.eval()(batch[0])
    assert all(d["boxes"].shape[1] == 4 and d["landmarks"].shape[1:] == (NUM_LANDMARKS, 3)
               for d in detections)


def test_default_box_head_keeps_torchvision_weight_names(tiny_cfg) -> None:
    names = {n for n, _ in build(tiny_cfg).roi_heads.box_head.named_parameters()}
    assert names == {"fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("MODEL.FPN.NORM", "SyncBN"),
        ("MODEL.ROI_BOX_HEAD.NORM", "FrozenBN"),
        ("MODEL.ROI_MASK_HEAD.NORM", "FrozenBN"),
        ("MODEL.ROI_LANDMARK_HEAD.NORM", "gn"),
        ("MODEL.ROI_BOX_HEAD.NUM_FC", "0"),
    ],
)
def test_head_norm_and_box_head_errors_name_the_key(tiny_cfg, key, value) -> None:
    tiny_cfg.merge_from_list([key, value])
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_model(tiny_cfg)


@pytest.mark.parametrize(("canonical", "level"), [(224, 3), (112, 4)])
def test_canonical_box_size_chooses_the_level_every_stream_reads(tiny_cfg, canonical, level):
    tiny_cfg.MODEL.ROI_HEADS.CANONICAL_BOX_SIZE = canonical
    heads = build(tiny_cfg).roi_heads
    # Each level's map holds its own number (P2 = 2, ..., P5 = 5) on a 256 x 256 image.
    features = {name: torch.full((1, 1, 64 >> k, 64 >> k), float(k + 2))
                for k, name in enumerate(("0", "1", "2", "3"))}
    box = [torch.tensor([[40.0, 40.0, 152.0, 152.0]])]  # 112 pixels square
    for pool in (heads.box_roi_pool, heads.mask_roi_pool, heads.landmark_branch.roi_pool):
        pooled = pool(features, box, [(256, 256)])
        assert torch.all(pooled == level)
