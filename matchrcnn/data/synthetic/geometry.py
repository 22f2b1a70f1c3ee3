"""Polygon arithmetic the synthetic generator needs: poses, areas and clipping to the image."""

from __future__ import annotations

import numpy as np


def polygon_area(points: np.ndarray) -> float:
    """Unsigned area of a simple polygon given as (N, 2) vertices (shoelace formula)."""
    if len(points) < 3:
        return 0.0
    x, y = points[:, 0], points[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def clip_polygon(points: np.ndarray, x_max: float, y_max: float) -> np.ndarray:
    """The part of a polygon inside [0, x_max] x [0, y_max] (Sutherland-Hodgman).

    The clip region is convex, so one pass per side is exact; a concave garment that leaves and
    re-enters the image comes back as one polygon joined along the border, which rasterises to
    the right mask.
    """
    result = np.asarray(points, dtype=np.float64)
    for axis, limit, keep_below in ((0, 0.0, False), (0, x_max, True),
                                    (1, 0.0, False), (1, y_max, True)):
        if len(result) == 0:
            break
        result = _clip_side(result, axis, limit, keep_below)
    return result


def _clip_side(points: np.ndarray, axis: int, limit: float, keep_below: bool) -> np.ndarray:
    coord = points[:, axis]
    inside = coord <= limit if keep_below else coord >= limit
    output = []
    previous, previous_inside = points[-1], inside[-1]
    for current, current_inside in zip(points, inside, strict=True):
        if current_inside != previous_inside:
            t = (limit - previous[axis]) / (current[axis] - previous[axis])
            crossing = previous + t * (current - previous)
            crossing[axis] = limit
            output.append(crossing)
        if current_inside:
            output.append(current)
        previous, previous_inside = current, current_inside
    return np.asarray(output, dtype=np.float64).reshape(-1, 2)


def drop_repeated_vertices(points: np.ndarray) -> np.ndarray:
    """Remove vertices equal to the one before them (cyclically), as rounding produces."""
    if len(points) == 0:
        return points
    keep = np.any(points != np.roll(points, 1, axis=0), axis=1)
    if not keep.any():
        return points[:1]
    return points[keep]


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1.0]])


def scaling(sx: float, sy: float) -> np.ndarray:
    return np.diag([sx, sy, 1.0])


def rotation(angle_deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def apply_homography(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through a 3x3 projective transform."""
    homogeneous = np.c_[points, np.ones(len(points))] @ matrix.T
    return homogeneous[:, :2] / homogeneous[:, 2:3]
