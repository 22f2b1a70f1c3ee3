"""The model as retrieval sees it: predictions for a batch of images, and the identity (fingerprint,
similarity head, embedding size) that a gallery is checked against.

Images are batched only with images of the same size, by the Predictor's rule
(modeling/predictor.py): a gallery built in batches matches a query run alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from fvcore.common.config import CfgNode

from matchrcnn.config import ConfigError
from matchrcnn.modeling.predictor import Predictor
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
        images of one size run as one batch (the caller sizes the batches, see inference.py).
        ``with_masks=False`` drops the masks, which a gallery does not keep."""
        return self.predictor.predict(images, with_masks, batch_size=max(1, len(images)))
