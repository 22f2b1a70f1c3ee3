"""One call from an image (array or file) to numpy predictions, for tools and users."""

from __future__ import annotations

import os

import numpy as np
import torch
from fvcore.common.config import CfgNode

from matchrcnn.data.mapper import read_rgb
from matchrcnn.modeling.matchrcnn import build_model
from matchrcnn.modeling.weights import load_model_weights

MASK_THRESHOLD = 0.5


def resolve_device(name: str) -> torch.device:
    """MODEL.DEVICE to a torch device: "auto" is CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_image(image: np.ndarray | str | os.PathLike) -> torch.Tensor:
    """An RGB image file, or an (H, W, 3) RGB / (H, W) grey uint8 array, as CHW float in [0, 1]."""
    if isinstance(image, str | os.PathLike):
        image = read_rgb(image)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected a uint8 image array or an image path, got {kind}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) == 0:
        raise ValueError(f"expected an (H, W, 3) RGB or (H, W) grey image, got shape {image.shape}")
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).div_(255)


class Predictor:
    """Builds the model of a config, loads MODEL.WEIGHTS (if set) and predicts one image per call.

    Returns numpy arrays: "boxes" (N, 4) float32 XYXY in pixels, "labels" (N,) int64 from 1,
    "scores" (N,) float32, "masks" (N, H, W) bool at image size, "landmarks" (N, K, 3) float32
    (x, y, score; K the landmark layout's slots, 294 for DeepFashion2; zero outside the predicted
    category's slots), "embeddings" (N, D) float32; heads
    turned off in the config leave their key out. The backbone is not ImageNet-initialised here:
    its weights come from MODEL.WEIGHTS.
    """

    def __init__(self, cfg: CfgNode) -> None:
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.BACKBONE.PRETRAINED = ""
        self.cfg = cfg
        self.device = resolve_device(cfg.MODEL.DEVICE)
        self.model = build_model(cfg)
        if cfg.MODEL.WEIGHTS:
            load_model_weights(self.model, cfg.MODEL.WEIGHTS)
        self.model.to(self.device).eval()

    def __call__(self, image: np.ndarray | str | os.PathLike) -> dict[str, np.ndarray]:
        tensor = load_image(image).to(self.device)
        with torch.inference_mode():
            prediction = self.model([tensor])[0]
        output = {key: value.cpu().numpy() for key, value in prediction.items()}
        if "masks" in output:
            output["masks"] = output["masks"][:, 0] >= MASK_THRESHOLD
        return output
