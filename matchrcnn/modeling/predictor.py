"""From images (arrays or files) to numpy predictions, one image or many, for tools and users.

Images run in batches of one size only. torchvision pads a batch to its largest image, and the
padding reaches the features (GroupNorm statistics cover the whole padded map; convolutions see
it at the borders), so a prediction would otherwise depend on which images shared its batch: a
gallery built in batches would not match a query run alone. Same-size batches give what one image
alone gives, up to float rounding. Evaluation (engine/evaluation.py) batches by the same rule.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import overload

import numpy as np
import torch
from fvcore.common.config import CfgNode

from matchrcnn.data.images import read_image
from matchrcnn.modeling.matchrcnn import build_model
from matchrcnn.modeling.weights import load_model_weights

MASK_THRESHOLD = 0.5
"""A pixel belongs to a detection's mask where the mask head's probability is at least this."""
DEFAULT_BATCH_SIZE = 4
"""Images per model call, as evaluation runs them."""

ImageInput = np.ndarray | str | os.PathLike


def resolve_device(name: str) -> torch.device:
    """MODEL.DEVICE to a torch device: "auto" is CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def read_input(image: ImageInput) -> np.ndarray:
    """An RGB image file, or an (H, W, 3) RGB / (H, W) grey uint8 array, as (H, W, 3) uint8."""
    if isinstance(image, str | os.PathLike):
        image = read_image(image)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = image.dtype if isinstance(image, np.ndarray) else type(image).__name__
        raise ValueError(f"expected a uint8 image array or an image path, got {kind}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) == 0:
        raise ValueError(f"expected an (H, W, 3) RGB or (H, W) grey image, got shape {image.shape}")
    return image


def load_image(image: ImageInput) -> torch.Tensor:
    """``read_input``'s image as the model takes it: CHW float in [0, 1]."""
    array = read_input(image)
    return torch.from_numpy(np.array(array, dtype=np.float32)).permute(2, 0, 1).div_(255)


def same_size_batches(sizes: Iterable[tuple[int, ...]], batch_size: int) -> list[list[int]]:
    """Positions of ``sizes`` in batches of at most ``batch_size`` of one size each, in order
    within each size (see the module notes)."""
    by_size: dict[tuple[int, ...], list[int]] = {}
    for position, size in enumerate(sizes):
        by_size.setdefault(tuple(size), []).append(position)
    return [positions[start : start + batch_size] for positions in by_size.values()
            for start in range(0, len(positions), batch_size)]


def inference_autocast(device: torch.device, enabled: bool) -> AbstractContextManager:
    """float16 autocast for TEST.AMP.ENABLED on CUDA; a no-op elsewhere (CPU runs float32)."""
    return torch.autocast(device.type, dtype=torch.float16,
                          enabled=enabled and device.type == "cuda")


def predictions_to_numpy(output: Mapping[str, torch.Tensor], with_masks: bool = True,
                         ) -> dict[str, np.ndarray]:
    """One image's model output as numpy, the one conversion every caller uses.

    Masks (N, 1, H, W) probabilities become (N, H, W) booleans at ``MASK_THRESHOLD`` on the
    device, so only one byte a pixel is copied (``with_masks=False`` leaves them out); floating
    outputs come back as float32 (AMP's float16 included).
    """
    result = {}
    for key, value in output.items():
        if key == "masks":
            if not with_masks:
                continue
            value = value[:, 0] >= MASK_THRESHOLD
        elif value.is_floating_point():
            value = value.float()
        result[key] = value.cpu().numpy()
    return result


class Predictor:
    """Builds the model of a config, loads MODEL.WEIGHTS (if set) and predicts images.

    ``predictor(image)`` gives one image's predictions; ``predictor([image, ...])`` (or
    ``predict``) a list of them in the input order, run ``batch_size`` images of one size at a
    time, with float16 autocast on CUDA where TEST.AMP.ENABLED. Predictions are numpy arrays:
    "boxes" (N, 4) float32 XYXY in pixels, "labels" (N,) int64 from 1, "scores" (N,) float32,
    "masks" (N, H, W) bool at image size, "landmarks" (N, K, 3) float32 (x, y, score; K the
    landmark layout's slots, 294 for DeepFashion2; zero outside the predicted category's slots),
    "embeddings" (N, D) float32; heads turned off in the config leave their key out. The
    backbone is not ImageNet-initialised here: its weights come from MODEL.WEIGHTS.
    """

    def __init__(self, cfg: CfgNode, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.BACKBONE.PRETRAINED = ""
        self.cfg = cfg
        self.batch_size = batch_size
        self.device = resolve_device(cfg.MODEL.DEVICE)
        self.amp = bool(cfg.TEST.AMP.ENABLED) and self.device.type == "cuda"
        self.model = build_model(cfg)
        if cfg.MODEL.WEIGHTS:
            load_model_weights(self.model, cfg.MODEL.WEIGHTS)
        self.model.to(self.device).eval()

    @overload
    def __call__(self, images: ImageInput, with_masks: bool = True) -> dict[str, np.ndarray]:
        ...

    @overload
    def __call__(self, images: Sequence[ImageInput], with_masks: bool = True,
                 ) -> list[dict[str, np.ndarray]]:
        ...

    def __call__(self, images, with_masks=True):
        """One image's predictions, or a list's (a list or tuple of images) in its order."""
        if isinstance(images, list | tuple):
            return self.predict(images, with_masks)
        return self.predict([images], with_masks)[0]

    def predict(self, images: Sequence[ImageInput], with_masks: bool = True,
                batch_size: int | None = None) -> list[dict[str, np.ndarray]]:
        """Predictions of ``images`` in their order, ``batch_size`` (default the predictor's)
        images of one size per model call. Every image is read (to uint8) before the first
        call; for long streams of files see ``matchrcnn.retrieval.inference``."""
        arrays = [read_input(image) for image in images]
        outputs: list[dict[str, np.ndarray]] = [{} for _ in arrays]
        batches = same_size_batches((array.shape for array in arrays),
                                    batch_size or self.batch_size)
        for batch in batches:
            predictions = self.run([load_image(arrays[position]) for position in batch],
                                   with_masks)
            for position, prediction in zip(batch, predictions, strict=True):
                outputs[position] = prediction
        return outputs

    def run(self, images: list[torch.Tensor], with_masks: bool = True,
            ) -> list[dict[str, np.ndarray]]:
        """One model call on CHW float images (of one size, see the module notes)."""
        tensors = [image.to(self.device) for image in images]
        with torch.inference_mode(), inference_autocast(self.device, self.amp):
            predictions = self.model.inference(tensors)
        return [predictions_to_numpy(prediction, with_masks) for prediction in predictions]
