"""The match network: pair labels, the balanced pair loss, the similarity head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from matchrcnn.modeling.heads.match import MatchHead, SimilarityHead
from matchrcnn.modeling.losses import match_loss, match_pair_labels


def test_pair_labels_follow_deepfashion2_definition() -> None:
    # user items 0-2, shop items 3-6
    is_shop = torch.tensor([False, False, False, True, True, True, True])
    pair_ids = torch.tensor([1, 1, 2, 1, 1, 2, 3])
    styles = torch.tensor([1, 0, 1, 1, 2, 1, 1])
    user, shop, labels = match_pair_labels(is_shop, pair_ids, styles)
    assert user.tolist() == [0, 1, 2]
    assert shop.tolist() == [3, 4, 5, 6]
    expected = [
        [True, False, False, False],  # pair 1 style 1: only the shop item of pair 1 style 1
        [False, False, False, False],  # style 0 is never positive
        [False, False, True, False],  # pair 2 style 1
    ]
    assert labels.tolist() == expected


def test_style_zero_items_of_the_same_pair_are_negative() -> None:
    _, _, labels = match_pair_labels(
        torch.tensor([False, True]), torch.tensor([4, 4]), torch.tensor([0, 0])
    )
    assert labels.tolist() == [[False]]


def test_loss_keeps_positives_and_hardest_negatives() -> None:
    labels = torch.tensor([[True, False, False], [False, False, False]])
    logits = torch.tensor(
        [
            [[0.0, 1.0], [0.0, 3.0], [2.0, 0.0]],  # pos right; neg (0,1) wrong and hardest
            [[1.0, 0.0], [0.0, 0.5], [4.0, 0.0]],  # (1,1) wrong, second hardest
        ],
        requires_grad=True,
    )
    output = match_loss(logits, labels, neg_pos_ratio=2.0, balance="hard_negatives")
    chosen = torch.stack([logits[0, 0], logits[0, 1], logits[1, 1]])
    expected = F.cross_entropy(chosen, torch.tensor([1, 0, 0]))
    assert math.isclose(output.loss.item(), expected.item(), rel_tol=1e-6)
    assert output.pos_accuracy.item() == 1.0
    assert math.isclose(output.neg_accuracy.item(), 3 / 5, rel_tol=1e-6)
    assert (output.num_pos, output.num_neg) == (1, 5)
    output.loss.backward()
    assert not logits.grad[0, 2].any() and not logits.grad[1, 2].any()  # easy negatives unused


def test_ratio_zero_uses_every_pair() -> None:
    labels = torch.tensor([[True, False], [False, False]])
    logits = torch.randn(2, 2, 2)
    output = match_loss(logits, labels, neg_pos_ratio=0, balance="hard_negatives")
    expected = F.cross_entropy(logits.reshape(-1, 2), labels.reshape(-1).long())
    assert math.isclose(output.loss.item(), expected.item(), rel_tol=1e-6)


def test_class_weights_make_positives_weigh_as_much_as_negatives() -> None:
    labels = torch.tensor([[True, False, False], [False, False, False]])
    logits = torch.randn(2, 3, 2)
    output = match_loss(logits, labels)
    flat, targets = logits.reshape(-1, 2), labels.reshape(-1).long()
    per_pair = F.cross_entropy(flat, targets, reduction="none")
    expected = (5 * per_pair[0] + per_pair[1:].sum()) / (5 + 5)
    assert math.isclose(output.loss.item(), expected.item(), rel_tol=1e-6)
    prior = match_loss(torch.zeros(2, 3, 2), labels)
    assert math.isclose(prior.loss.item(), math.log(2), rel_tol=1e-6)
    with pytest.raises(ValueError, match="balance must be one of"):
        match_loss(logits, labels, balance="focal")


def test_batch_without_positives_still_trains_negatives() -> None:
    logits = torch.randn(2, 3, 2, requires_grad=True)
    output = match_loss(logits, torch.zeros(2, 3, dtype=torch.bool), neg_pos_ratio=3.0,
                        balance="hard_negatives")
    assert math.isnan(output.pos_accuracy.item())
    assert output.num_pos == 0
    output.loss.backward()
    assert (logits.grad.abs().sum(-1) > 0).sum().item() == 3


def test_similarity_pairwise_equals_aligned_pairs() -> None:
    torch.manual_seed(0)
    head = SimilarityHead(16)
    a, b = torch.randn(3, 16), torch.randn(4, 16)
    pairwise = head.pairwise(a, b)
    assert pairwise.shape == (3, 4, 2)
    aligned = head(a.repeat_interleave(4, 0), b.repeat(3, 1)).reshape(3, 4, 2)
    torch.testing.assert_close(pairwise, aligned)
    torch.testing.assert_close(head(a, a), head.fc.bias.expand(3, 2))


def test_match_head_embeds_each_roi() -> None:
    embeddings = MatchHead(8, num_convs=4, conv_dim=6, embed_dim=10)(torch.randn(5, 8, 14, 14))
    assert embeddings.shape == (5, 10)


def test_embeddings_of_items_sharing_a_common_feature_do_not_collapse() -> None:
    """Pooled features from scratch share a large common part; embeddings must still spread."""
    torch.manual_seed(0)
    head = MatchHead(8, num_convs=2, conv_dim=16, embed_dim=32).train()
    common = torch.randn(1, 8, 14, 14) * 10
    embeddings = head(common + 0.1 * torch.randn(12, 8, 14, 14))
    norm = embeddings.norm(dim=1).mean()
    assert torch.allclose(norm, torch.tensor(32**0.25))
    assert embeddings.mean(0).norm() < 0.5 * norm
    squared = torch.cdist(embeddings, embeddings).square()
    assert squared[~torch.eye(12, dtype=torch.bool)].mean() > 0.5 * norm**2


def test_a_single_item_in_training_uses_the_running_statistics() -> None:
    head = MatchHead(8, num_convs=1, conv_dim=6, embed_dim=10).train()
    one = head(torch.randn(1, 8, 14, 14))
    assert one.shape == (1, 10) and torch.isfinite(one).all()
