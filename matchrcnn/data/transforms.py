"""Horizontal flip of an image and its target, landmark slots swapped by the layout's flip map.

Coordinates follow torchvision's detection references and detectron2's HFlipTransform: a point at
x moves to ``width - x`` and a box [x1, x2] to [width - x2, width - x1], so both engines flip a
record to the same numbers. A mirrored left cuff is a right cuff: after moving, each landmark goes
to the slot ``flip_indices`` names for it. Unlabelled landmarks (v = 0) stay (0, 0, 0), COCO's
convention.

Whether a record is flipped is drawn from a stream keyed by (seed, image id, iteration), never
from a global RNG: a run resumed at iteration k flips exactly the images the uninterrupted run
flipped, whichever process or loader worker maps them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

FLIP_MODES = ("none", "horizontal")
"""INPUT.RANDOM_FLIP values. "vertical" (detectron2 has it) is refused: garments are not
symmetric top to bottom, and no layout says which landmarks would trade places."""
FLIP_PROBABILITY = 0.5
_FLIP_STREAM = 401


def flips(seed: int, image_id: int, iteration: int) -> bool:
    """Whether the record of ``image_id`` is mirrored when drawn at ``iteration``."""
    rng = np.random.default_rng([seed % 2**32, _FLIP_STREAM, int(image_id), int(iteration)])
    return bool(rng.random() < FLIP_PROBABILITY)


def hflip_image(image: Tensor) -> Tensor:
    """A (C, H, W) image mirrored left to right."""
    return image.flip(-1)


def hflip_boxes(boxes: Tensor, width: int) -> Tensor:
    """(N, 4) XYXY boxes of an image ``width`` pixels wide, mirrored."""
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


def hflip_keypoints(keypoints: Tensor, width: int, flip_indices: Sequence[int]) -> Tensor:
    """(N, K, 3) landmarks mirrored, each moved to its mirror slot; unlabelled ones stay zero."""
    if keypoints.shape[1] != len(flip_indices):
        raise ValueError(f"landmarks have {keypoints.shape[1]} slots but the flip map has "
                         f"{len(flip_indices)}")
    moved = keypoints[:, torch.as_tensor(flip_indices, dtype=torch.long)].clone()
    labelled = moved[..., 2] > 0
    moved[..., 0] = width - moved[..., 0]
    moved[~labelled] = 0
    return moved


def hflip_target(target: dict[str, Tensor], width: int,
                 flip_indices: Sequence[int] | None) -> dict[str, Tensor]:
    """A copy of a torchvision target with its boxes, masks and landmarks mirrored.

    ``flip_indices`` is the layout's (LandmarkLayout.flip_indices); a target with landmarks and
    no flip map is refused, as mirrored landmarks left in their slots would teach left for right.
    """
    flipped = dict(target)
    flipped["boxes"] = hflip_boxes(target["boxes"], width)
    if "masks" in target:
        flipped["masks"] = target["masks"].flip(-1)
    if "keypoints" in target:
        if flip_indices is None:
            raise ValueError("cannot flip landmarks without a flip map: the layout defines none")
        flipped["keypoints"] = hflip_keypoints(target["keypoints"], width, flip_indices)
    return flipped
