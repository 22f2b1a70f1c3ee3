"""Losses of Match R-CNN's own heads, as plain functions over tensors."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import keypoints_to_heatmap


def landmark_loss(packed_logits: Tensor, boxes: Tensor, packed_targets: Tensor) -> Tensor:
    """Spatial-softmax cross-entropy over each labelled landmark of each RoI's own category.

    packed_logits (N, M, S, S) and packed_targets (N, M, 3) hold each RoI's category slots
    (``pack_slices``; M = 39 in DeepFashion2's layout); boxes (N, 4) are the RoIs in the targets'
    coordinates. Landmarks with v = 0, padding rows and landmarks outside their RoI carry no
    loss; the loss is the mean over the rest, as torchvision's keypoint loss is.
    """
    size = packed_logits.shape[-1]
    target_index, valid = keypoints_to_heatmap(packed_targets, boxes, size)
    valid = valid.flatten().bool()
    if not bool(valid.any()):
        return packed_logits.sum() * 0
    logits = packed_logits.flatten(2).flatten(0, 1)
    return F.cross_entropy(logits[valid], target_index.flatten()[valid])


def match_pair_labels(
    is_shop: Tensor, pair_ids: Tensor, styles: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Pair every consumer item with every shop item of a batch.

    Items are given by per-item flags and ids (M,). Returns the indices of the consumer items
    (U,), of the shop items (S,), and the labels (U, S): True where both items have the same
    pair_id and the same style, and that style is > 0 (DeepFashion2's definition of a positive).
    """
    user = torch.nonzero(~is_shop).squeeze(1)
    shop = torch.nonzero(is_shop).squeeze(1)
    same_pair = pair_ids[user][:, None] == pair_ids[shop][None]
    same_style = styles[user][:, None] == styles[shop][None]
    labels = same_pair & same_style & (styles[user] > 0)[:, None]
    return user, shop, labels


class MatchLossOutput(NamedTuple):
    """The pair loss and, over *all* pairs of the batch, how many of each kind were right."""

    loss: Tensor
    pos_accuracy: Tensor
    """Share of positive pairs predicted "same" (NaN when the batch has none)."""
    neg_accuracy: Tensor
    """Share of negative pairs predicted "different" (NaN when the batch has none)."""
    num_pos: int
    num_neg: int


MATCH_BALANCES = ("class_weights", "hard_negatives")


def match_loss(
    pair_logits: Tensor,
    labels: Tensor,
    neg_pos_ratio: float = 3.0,
    balance: str = "class_weights",
) -> MatchLossOutput:
    """Cross-entropy over consumer x shop pairs, with the rare positives balanced against negatives.

    A batch holds a few positive pairs among many negatives. ``balance``:
    - "class_weights": every pair counts; positives and negatives weigh equally in total (each
      positive pair weighs negatives / positives). From scratch this is what learns.
    - "hard_negatives": every positive pair, and of the negatives only the ``neg_pos_ratio`` x
      (positives, at least 1) that the network finds most alike; ``neg_pos_ratio <= 0`` keeps every
      negative, unweighted. With a handful of positives per batch this stayed at chance in our CPU
      runs; it suits fine-tuning embeddings that already separate.
    pair_logits (U, S, 2), labels (U, S) bool.
    """
    if balance not in MATCH_BALANCES:
        raise ValueError(f"match loss balance must be one of {MATCH_BALANCES}, got {balance!r}")
    logits = pair_logits.reshape(-1, 2)
    flat_labels = labels.reshape(-1)
    positives = torch.nonzero(flat_labels).squeeze(1)
    negatives = torch.nonzero(~flat_labels).squeeze(1)
    num_pos, num_neg = positives.numel(), negatives.numel()
    with torch.no_grad():
        predicted_same = logits.argmax(1) == 1
        pos_accuracy = predicted_same[positives].float().mean()
        neg_accuracy = (~predicted_same[negatives]).float().mean()
    weights = None
    if balance == "class_weights":
        if num_pos and num_neg:
            weights = torch.tensor([1.0, num_neg / num_pos], dtype=logits.dtype,
                                   device=logits.device)
    elif neg_pos_ratio > 0 and num_neg:
        keep = min(num_neg, math.ceil(neg_pos_ratio * max(num_pos, 1)))
        with torch.no_grad():
            margin = logits[negatives, 1] - logits[negatives, 0]
        negatives = negatives[margin.topk(keep).indices]
    chosen = torch.cat([positives, negatives])
    if chosen.numel() == 0:
        loss = pair_logits.sum() * 0
    else:
        loss = F.cross_entropy(logits[chosen], flat_labels[chosen].long(), weight=weights)
    return MatchLossOutput(loss, pos_accuracy, neg_accuracy, num_pos, num_neg)
