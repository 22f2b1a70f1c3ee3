"""A garment's mask as the polygons a browser draws: a few hundred numbers instead of a bitmap of
the whole photo."""

from __future__ import annotations

import cv2
import numpy as np

SIMPLIFY_PIXELS = 1.0
"""Largest distance of the drawn outline from the mask's own boundary."""


def mask_outline(mask: np.ndarray | None) -> list[list[list[float]]]:
    """The outer boundaries of a boolean (H, W) mask, largest first, each a list of at least
    3 [x, y] points on its boundary pixels; empty for no mask or an empty one."""
    if mask is None or not mask.any():
        return []
    contours, _ = cv2.findContours(np.ascontiguousarray(mask, dtype=np.uint8),
                                   cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [cv2.approxPolyDP(contour, SIMPLIFY_PIXELS, True).reshape(-1, 2)
                for contour in sorted(contours, key=cv2.contourArea, reverse=True)]
    return [polygon.astype(float).tolist() for polygon in polygons if len(polygon) >= 3]
