"""The RPN of Match R-CNN: torchvision's, over the FPN levels only."""

from __future__ import annotations

from torch import Tensor
from torchvision.models.detection.rpn import ImageList, RegionProposalNetwork

from matchrcnn.modeling.pixels import PIXELS


class LevelsRPN(RegionProposalNetwork):
    """torchvision's RPN over the FPN levels only, whatever else the backbone passes along (the
    input pixels, for a match stream that pools them)."""

    def forward(
        self,
        images: ImageList,
        features: dict[str, Tensor],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        levels = {name: value for name, value in features.items() if name != PIXELS}
        return super().forward(images, levels, targets)
