"""The match branch: an embedding per item, and the consumer x shop pair loss over a batch's items.
Its config node is MODEL.MATCH_HEAD, turned on by MODEL.MATCH_ON."""

from __future__ import annotations

from typing import ClassVar

import torch
from fvcore.common.config import CfgNode
from torch import Tensor, nn

from matchrcnn.config import ConfigError
from matchrcnn.modeling.branch import (
    BranchInputs,
    BuildContext,
    FieldSpec,
    Pool,
    PoolerDefaults,
    RoIBranch,
    add_pooler_config,
    register_branch,
)
from matchrcnn.modeling.heads.match import MatchHead, SimilarityHead
from matchrcnn.modeling.losses import (
    MATCH_BALANCES,
    MatchLossOutput,
    match_loss,
    match_pair_labels,
)

MATCH_INPUTS = ("fpn", "pixels")
"""What the match stream pools: the FPN levels (as in the paper) or the input pixels
(matchrcnn/modeling/pixels.py)."""


@register_branch
class MatchBranch(RoIBranch):
    """Embeddings of items and the pair loss (``roi_pool`` as in LandmarkBranch).

    At training it embeds every ground-truth item, and up to ``proposals_per_image`` foreground
    proposals per image as extra views of their items, then pairs every consumer item of the
    batch with every shop item.
    """

    name: ClassVar[str] = "match"
    enable_key: ClassVar[str] = "MATCH_ON"
    outputs: ClassVar[dict[str, str]] = {"embeddings": "pred_embeddings"}

    def __init__(
        self,
        roi_pool: nn.Module,
        head: MatchHead,
        similarity: SimilarityHead,
        loss_weight: float = 1.0,
        neg_pos_ratio: float = 3.0,
        balance: str = "class_weights",
        proposals_per_image: int = 0,
    ) -> None:
        super().__init__()
        self.roi_pool = roi_pool
        self.head = head
        self.similarity = similarity
        self.loss_weight = loss_weight
        self.neg_pos_ratio = neg_pos_ratio
        self.balance = balance
        self.proposals_per_image = proposals_per_image

    @staticmethod
    def add_config(cfg: CfgNode, poolers: PoolerDefaults) -> None:
        # The match network: one embedding per item, trained on consumer x shop pairs.
        cfg.MODEL.MATCH_ON = True
        node = cfg.MODEL.MATCH_HEAD = type(cfg)()
        add_pooler_config(node, poolers)
        node.NUM_CONVS = 4
        node.CONV_DIM = 256
        node.EMBED_DIM = 256
        node.LOSS_WEIGHT = 1.0
        # How the pair loss offsets the many negatives: "class_weights" (every pair; positives and
        # negatives weigh equally in total) or "hard_negatives" (every positive, and the hardest
        # negatives, NEG_POS_RATIO per positive; 0 keeps every negative).
        node.BALANCE = "class_weights"
        node.NEG_POS_RATIO = 3.0
        # Besides ground-truth boxes, embed up to this many foreground proposals per image
        # (0: none).
        node.PROPOSALS_PER_IMAGE = 0
        # What the match stream pools over each box: "fpn" (the FPN features, as in the paper) or
        # "pixels" (the normalised input pixels): a backbone trained from scratch on the shape
        # tasks loses the colour that tells garments apart (matchrcnn/modeling/pixels.py).
        node.INPUT = "fpn"

    @classmethod
    def reads_pixels(cls, cfg: CfgNode) -> bool:
        match_input = cfg.MODEL.MATCH_HEAD.INPUT
        if match_input not in MATCH_INPUTS:
            raise ConfigError(
                f"MODEL.MATCH_HEAD.INPUT must be one of {MATCH_INPUTS}, got {match_input!r}"
            )
        return match_input == "pixels"

    @classmethod
    def from_config(cls, cfg: CfgNode, context: BuildContext) -> MatchBranch:
        head_cfg = cfg.MODEL.MATCH_HEAD
        if head_cfg.BALANCE not in MATCH_BALANCES:
            raise ConfigError(
                f"MODEL.MATCH_HEAD.BALANCE must be one of {MATCH_BALANCES}, "
                f"got {head_cfg.BALANCE!r}"
            )
        source = "pixels" if cls.reads_pixels(cfg) else "features"
        pooler = context.pooler(head_cfg, source)
        head = MatchHead(context.channels(source), head_cfg.NUM_CONVS, head_cfg.CONV_DIM,
                         head_cfg.EMBED_DIM)
        return cls(pooler, head, SimilarityHead(head_cfg.EMBED_DIM),
                   loss_weight=head_cfg.LOSS_WEIGHT, neg_pos_ratio=head_cfg.NEG_POS_RATIO,
                   balance=head_cfg.BALANCE, proposals_per_image=head_cfg.PROPOSALS_PER_IMAGE)

    def target_fields(self) -> dict[str, FieldSpec]:
        return {"pair_ids": FieldSpec((), torch.int64), "styles": FieldSpec((), torch.int64),
                "is_shop": FieldSpec((), per_image=True)}

    def embed(self, pool: Pool, boxes: list[Tensor]) -> Tensor:
        """Embeddings (sum of boxes, EMBED_DIM) of boxes given per image."""
        return self.head(pool(self.roi_pool, boxes))

    def loss(
        self, embeddings: Tensor, is_shop: Tensor, pair_ids: Tensor, styles: Tensor
    ) -> MatchLossOutput:
        user, shop, labels = match_pair_labels(is_shop, pair_ids, styles)
        logits = self.similarity.pairwise(embeddings[user], embeddings[shop])
        output = match_loss(logits, labels, self.neg_pos_ratio, self.balance)
        return output._replace(loss=self.loss_weight * output.loss)

    def losses(self, inputs: BranchInputs) -> dict[str, Tensor]:
        boxes, labels = [], {key: [] for key in ("is_shop", "pair_ids", "styles")}
        for items, rois, fields in zip(inputs.items, inputs.boxes, inputs.fields, strict=True):
            image_boxes = [items["boxes"]]
            for key, values in labels.items():
                values.append(items[key])
            if self.proposals_per_image and rois.shape[0]:
                chosen = torch.randperm(rois.shape[0], device=rois.device)
                chosen = chosen[: self.proposals_per_image]
                image_boxes.append(rois[chosen])
                for key, values in labels.items():
                    values.append(fields[key][chosen])
            boxes.append(torch.cat(image_boxes))
        embeddings = self.embed(inputs.pool, boxes)
        output = self.loss(embeddings, torch.cat(labels["is_shop"]).bool(),
                           torch.cat(labels["pair_ids"]), torch.cat(labels["styles"]))
        self.last_metrics = {
            "match_pos_acc": output.pos_accuracy.detach(),
            "match_neg_acc": output.neg_accuracy.detach(),
            "match_pos_pairs": float(output.num_pos),
            "match_neg_pairs": float(output.num_neg),
        }
        return {"loss_match": output.loss}

    def predict(self, inputs: BranchInputs) -> dict[str, Tensor]:
        return {"embeddings": self.embed(inputs.pool, inputs.boxes)}
