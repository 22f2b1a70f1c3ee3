"""The model as retrieval sees it: predictions for a batch of images, and the identity (fingerprint,
similarity head, embedding size) that a gallery is checked against.

Images are batched only with images of the same size. torchvision pads a batch to its largest
image, and the padding reaches the features (GroupNorm statistics cover the whole padded map;
convolutions see it at the borders), so an image's detections and embeddings would otherwise
depend on which images it happened to share a batch with: a gallery built in batches would not
match a query run alone. Same-size batches give what one image alone gives, up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from fvcore.common.config import CfgNode

from matchrcnn.config import ConfigError
from matchrcnn.modeling.predictor import MASK_THRESHOLD, Predictor, load_image
from matchrcnn.retrieval.fingerprint import model_fingerprint
from matchrcnn.retrieval.metric import MatchMetric


class RetrievalModel:
    """A ``Predictor`` with the match network on, its fingerprint and its similarity metric."""

    def __init__(self, cfg: CfgNode) -> None:
        if not cfg.MODEL.MATCH_ON:
            raise ConfigError("retrieval needs the match network: MODEL.MATCH_ON must be True")
        if not cfg.MODEL.WEIGHTS:
            raise ConfigError("retrieval needs trained weights: give --weights "
                              "(or MODEL.WEIGHTS)")
        self.predictor = Predictor(cfg)
        model = self.predictor.model
        self.metric = MatchMetric.from_head(model.roi_heads.match_branch.similarity)
        self.embed_dim = self.metric.dim
        self.fingerprint = model_fingerprint(model.state_dict(), self.embed_dim, self.predictor.cfg)

    @property
    def device(self) -> torch.device:
        return self.predictor.device

    def predict(self, images: Sequence[np.ndarray], with_masks: bool = True,
                ) -> list[dict[str, np.ndarray]]:
        """Predictions for RGB uint8 arrays, in their order, as ``Predictor`` returns them;
        images of one size run as one batch (see the module notes). ``with_masks=False`` drops
        the masks, which a gallery does not keep."""
        outputs: list[dict[str, np.ndarray] | None] = [None] * len(images)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for position, image in enumerate(images):
            by_size.setdefault(image.shape, []).append(position)
        for positions in by_size.values():
            tensors = [load_image(images[position]).to(self.device) for position in positions]
            with torch.inference_mode():
                predictions = self.predictor.model(tensors)
            for position, prediction in zip(positions, predictions, strict=True):
                output = {key: value.cpu().numpy() for key, value in prediction.items()
                          if with_masks or key != "masks"}
                if "masks" in output:
                    output["masks"] = output["masks"][:, 0] >= MASK_THRESHOLD
                outputs[position] = output
        return outputs
