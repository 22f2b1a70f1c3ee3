"""A model's identity for its gallery: embeddings from two different models must never be mixed.

The fingerprint hashes every tensor of the state_dict (name, dtype, shape, bytes), the embedding
size, and the config keys that change what the model outputs at inference. Keys that only steer
training, and where the weights came from (MODEL.WEIGHTS, MODEL.DEVICE), are left out: the same
weights run on another device or loaded from a copied file are the same model. So are the keys
that only choose which detections come out (score and NMS thresholds, proposal counts at test
time): they change no item's embedding, and a query may lower them to find more garments.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

import torch

_NOT_INFERENCE = {"MODEL.DEVICE", "MODEL.WEIGHTS", "MODEL.BACKBONE.PRETRAINED",
                  "MODEL.BACKBONE.FREEZE_AT", "INPUT.RANDOM_FLIP", "INPUT.FLIP_PAIRS"}
_DETECTION_CHOICE = {"MODEL.ROI_HEADS.SCORE_THRESH_TEST", "MODEL.ROI_HEADS.NMS_THRESH_TEST",
                     "MODEL.RPN.PRE_NMS_TOPK_TEST", "MODEL.RPN.POST_NMS_TOPK_TEST",
                     "MODEL.RPN.NMS_THRESH"}
_TRAINING_WORDS = ("TRAIN", "BATCH_SIZE_PER_IMAGE", "POSITIVE_FRACTION", "IOU_THRESHOLDS",
                   "LOSS_WEIGHT", "NEG_POS_RATIO", "BALANCE",
                   "PROPOSALS_PER_IMAGE")


def _flatten(node: Mapping, prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def inference_config_digest(cfg: Mapping) -> str:
    """sha256 of the MODEL.* and INPUT.*_TEST keys that shape the embeddings of inference."""
    flat = _flatten({"MODEL": cfg["MODEL"], "INPUT": cfg.get("INPUT", {})}, "")
    left_out = _NOT_INFERENCE | _DETECTION_CHOICE
    kept = {key: value for key, value in flat.items()
            if key not in left_out and not any(word in key for word in _TRAINING_WORDS)}
    text = json.dumps(kept, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def model_fingerprint(state_dict: Mapping[str, Any], embed_dim: int,
                      cfg: Mapping | None = None) -> str:
    """sha256 over the state_dict tensors, the embedding size and the inference config digest."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    digest.update(f"embed_dim={int(embed_dim)}|".encode())
    if cfg is not None:
        digest.update(inference_config_digest(cfg).encode())
    return digest.hexdigest()

