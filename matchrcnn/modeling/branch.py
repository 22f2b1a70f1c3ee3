"""The RoI branch interface: what a head on the detected items is, for both engines.

A branch (the landmark head, the match network, any head added later) is one module that
- declares its config keys once (``add_config``): both engines' configs get them from there;
- builds itself from a config (``from_config``), taking its RoI pooler from the engine, since the
  torchvision engine pools with MultiScaleRoIAlign and detectron2's with its ROIPooler;
- names the ground-truth fields it trains on (``target_fields``), which the engines check and
  hand over;
- returns its losses in training (``losses``) and its predictions in inference (``predict``).

The engines (``matchrcnn.modeling.roi_heads.MatchRoIHeads``, ``matchrcnn.d2.roi_heads``) decide
which boxes a branch sees: at training the foreground sampled proposals, each with the target
fields of the item it was matched to, and every ground-truth item; at inference the detections.
They hold each enabled branch as the attribute ``<name>_branch`` (so its weights are named
``roi_heads.<name>_branch.*`` in both) and iterate over them. Adding a head is a new module with a
``RoIBranch`` subclass and ``register_branch``: docs/extending.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

import torch
from fvcore.common.config import CfgNode
from torch import Tensor, nn

Pool = Callable[[nn.Module, list[Tensor]], Tensor]
"""The engine's pooling: (a branch's roi_pool, boxes per image in network-input pixels) -> the
pooled features (sum of boxes, C, S, S). Poolers of equal settings over the same boxes share
one RoIAlign."""


class FieldSpec(NamedTuple):
    """A ground-truth field a branch trains on: its per-item trailing shape and dtype."""

    shape: tuple[int, ...]
    dtype: torch.dtype | None = None
    per_image: bool = False
    """One value per image (e.g. "is_shop"), which the engines repeat for each of its items."""
    annotation: str | None = None
    """The key of each item's annotation that both engines' mappers read the field from (a number
    or list of numbers per item), for a field of a new branch; None for the fields that the
    mappers build themselves (keypoints, pair_ids, styles, is_shop)."""


@dataclass
class BranchInputs:
    """One batch as a branch sees it. Boxes are XYXY in the network's input pixels.

    ``boxes`` and ``classes`` (1..C) are per image: at training the foreground sampled proposals
    and their items' categories, at inference the detections and their predicted categories.
    At training ``fields`` holds, per image and per box, the target fields of the box's item, and
    ``items`` every ground-truth item of the image ("boxes", "labels" and the target fields).
    """

    boxes: list[Tensor]
    classes: list[Tensor]
    pool: Pool
    fields: list[dict[str, Tensor]] | None = None
    items: list[dict[str, Tensor]] | None = None

    def cat(self, key: str) -> Tensor:
        """A training field of every box, concatenated over the images."""
        return torch.cat([image[key] for image in self.fields])


class PoolerBuilder(Protocol):
    """The engine's RoI pooler for a branch's config node, over the FPN levels or the pixels."""

    def __call__(self, head_cfg: CfgNode, source: str = "features") -> nn.Module: ...


@dataclass(frozen=True)
class BuildContext:
    """What an engine gives a branch to build itself: its poolers and the channels they read."""

    pooler: PoolerBuilder
    channels: Callable[[str], int]


@dataclass(frozen=True)
class PoolerDefaults:
    """Default RoI pooler settings: the engines' conventions differ (detectron2: sampling ratio 0
    (adaptive) and ROIAlignV2; torchvision: 2 and ROIAlign, the only type MultiScaleRoIAlign has).
    """

    sampling_ratio: int
    pooler_type: str


TORCHVISION_POOLERS = PoolerDefaults(sampling_ratio=2, pooler_type="ROIAlign")
DETECTRON2_POOLERS = PoolerDefaults(sampling_ratio=0, pooler_type="ROIAlignV2")


def add_pooler_config(node: CfgNode, defaults: PoolerDefaults, resolution: int = 14) -> None:
    """A head's RoI pooler keys, detectron2's names: POOLER_RESOLUTION, _SAMPLING_RATIO, _TYPE."""
    node.POOLER_RESOLUTION = resolution
    node.POOLER_SAMPLING_RATIO = defaults.sampling_ratio
    node.POOLER_TYPE = defaults.pooler_type


class RoIBranch(nn.Module):
    """A head over RoI features; subclasses set the class attributes and the four methods."""

    name: ClassVar[str]
    """Attribute ``<name>_branch`` of the RoI heads; the prefix of its weights."""
    enable_key: ClassVar[str]
    """The MODEL key that turns it on, e.g. "LANDMARK_ON"."""
    outputs: ClassVar[dict[str, str]]
    """Prediction keys (the torchvision engine's) -> detectron2 Instances field names."""
    annotation_targets: ClassVar[dict[str, FieldSpec]] = {}
    """Target fields that the mappers read from each item's annotation (``FieldSpec.annotation``
    names the key), known before the branch is built."""

    def __init__(self) -> None:
        super().__init__()
        self.last_metrics: dict[str, Tensor | float] = {}

    @staticmethod
    def add_config(cfg: CfgNode, poolers: PoolerDefaults) -> None:
        """Declare the branch's keys (MODEL.<enable_key> and its own node) with their defaults."""
        raise NotImplementedError

    @classmethod
    def from_config(cls, cfg: CfgNode, context: BuildContext) -> RoIBranch:
        raise NotImplementedError

    def target_fields(self) -> dict[str, FieldSpec]:
        """The ground-truth fields the branch trains on, by their target-dict names; by default
        its ``annotation_targets``."""
        return dict(self.annotation_targets)

    @classmethod
    def reads_pixels(cls, cfg: CfgNode) -> bool:
        """Whether the branch pools the input pixels, which the backbone must then pass along."""
        return False

    def losses(self, inputs: BranchInputs) -> dict[str, Tensor]:
        raise NotImplementedError

    def predict(self, inputs: BranchInputs) -> dict[str, Tensor]:
        """Outputs of every box, concatenated over the images (the engine splits them)."""
        raise NotImplementedError


BRANCHES: dict[str, type[RoIBranch]] = {}
"""Registered branches by name, in the order they are built and run."""


def register_branch(branch: type[RoIBranch]) -> type[RoIBranch]:
    """Make a branch known to both engines and their configs; usable as a class decorator."""
    BRANCHES[branch.name] = branch
    return branch


def registered_branches() -> list[type[RoIBranch]]:
    """Every registered branch, the built-in ones (matchrcnn.modeling.branches) first."""
    importlib.import_module("matchrcnn.modeling.branches")
    return list(BRANCHES.values())


def add_branch_configs(cfg: CfgNode, poolers: PoolerDefaults) -> None:
    """Declare the keys of every registered branch not yet in ``cfg``."""
    for branch in registered_branches():
        if branch.enable_key not in cfg.MODEL:
            branch.add_config(cfg, poolers)


def enabled_branches(cfg: CfgNode) -> list[type[RoIBranch]]:
    """The registered branches that the config turns on, in registration order."""
    return [branch for branch in registered_branches()
            if cfg.MODEL.get(branch.enable_key, False)]


def annotation_fields(cfg: CfgNode) -> dict[str, FieldSpec]:
    """The target fields that the enabled branches read straight from the annotations."""
    return {key: spec for branch in enabled_branches(cfg)
            for key, spec in branch.annotation_targets.items()}


class HoldsBranches:
    """The RoI heads' side of the interface, the same in both engines: each branch held as the
    attribute ``<name>_branch`` (None for a registered branch that is off)."""

    branch_names: tuple[str, ...] = ()

    def attach_branches(self, branches: Sequence[RoIBranch]) -> None:
        for registered in registered_branches():
            setattr(self, f"{registered.name}_branch", None)
        for branch in branches:
            delattr(self, f"{branch.name}_branch")
            self.add_module(f"{branch.name}_branch", branch)
        self.branch_names = tuple(branch.name for branch in branches)

    @property
    def branches(self) -> list[RoIBranch]:
        return [getattr(self, f"{name}_branch") for name in self.branch_names]

    def target_fields(self) -> dict[str, FieldSpec]:
        """The ground-truth fields that the branches train on."""
        return {key: spec for branch in self.branches
                for key, spec in branch.target_fields().items()}

    @property
    def last_metrics(self) -> dict[str, Tensor | float]:
        """The branches' metrics of the last training step (match accuracies, pair counts)."""
        return {key: value for branch in self.branches
                for key, value in branch.last_metrics.items()}
