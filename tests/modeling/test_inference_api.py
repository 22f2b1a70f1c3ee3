"""MatchRCNN.inference (detections and given-box embeddings in one pass) and class-agnostic NMS."""

from __future__ import annotations

import pytest
import torch
from torchvision.ops import box_iou

from matchrcnn.modeling import build_model
from matchrcnn.modeling.roi_heads import one_per_object


def build(cfg, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(cfg).eval()


def test_inference_equals_forward_and_embeds_the_given_boxes(tiny_cfg, batch) -> None:
    model = build(tiny_cfg)
    images, targets = batch
    boxes = [target["boxes"] for target in targets]
    with torch.no_grad():
        expected = model(images)
    predictions = model.inference(images, boxes)
    embedded = model.embed_boxes(images, boxes)
    for prediction, reference, image_boxes, embeddings in zip(
            predictions, expected, boxes, embedded, strict=True):
        assert set(prediction) == {*reference, "box_embeddings"}
        for key, value in reference.items():
            torch.testing.assert_close(prediction[key], value)
        assert prediction["box_embeddings"].shape == (len(image_boxes),
                                                      tiny_cfg.MODEL.MATCH_HEAD.EMBED_DIM)
        torch.testing.assert_close(prediction["box_embeddings"], embeddings)
    assert all("box_embeddings" not in p for p in model.inference(images))


def test_inference_refuses_training_mode(tiny_cfg, batch) -> None:
    model = build(tiny_cfg).train()
    with pytest.raises(RuntimeError, match="eval mode"):
        model.inference(batch[0])


def test_one_per_object_drops_overlapping_detections_of_other_classes() -> None:
    boxes = torch.tensor([[0.0, 0, 10, 10], [0.5, 0, 10, 10], [20, 20, 30, 30], [0, 0, 5, 10]])
    scores = torch.tensor([0.6, 0.9, 0.5, 0.4])
    labels = torch.tensor([1, 2, 1, 3])
    (kept_boxes,), (kept_scores,), (kept_labels,) = one_per_object([boxes], [scores], [labels],
                                                                   0.7)
    assert kept_scores.tolist() == pytest.approx([0.9, 0.5, 0.4])
    assert kept_labels.tolist() == [2, 1, 3]
    torch.testing.assert_close(kept_boxes, boxes[[1, 2, 3]])


def test_class_agnostic_nms_key_leaves_no_overlapping_pair(tiny_cfg, batch) -> None:
    images, _ = batch
    with torch.no_grad():
        per_class = build(tiny_cfg)(images)
    tiny_cfg.TEST.CLASS_AGNOSTIC_NMS.ENABLED = True
    tiny_cfg.TEST.CLASS_AGNOSTIC_NMS.IOU_THRESH = 0.5
    with torch.no_grad():
        agnostic = build(tiny_cfg)(images)
    for before, after in zip(per_class, agnostic, strict=True):
        assert 0 < len(after["boxes"]) < len(before["boxes"])
        overlaps = box_iou(after["boxes"], after["boxes"]).fill_diagonal_(0)
        assert float(overlaps.max()) <= 0.5
        assert len(after["landmarks"]) == len(after["embeddings"]) == len(after["boxes"])
        assert torch.all(after["scores"][:-1] >= after["scores"][1:])
