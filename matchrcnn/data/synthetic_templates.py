"""Canonical garment outlines of the synthetic dataset, one per DeepFashion2 category.

Each template is a simple polygon in a canonical frame (x right, y down, about 100 units wide)
whose vertices are exactly the category's landmarks, in the category's order. A garment is drawn
by transforming this polygon, so its landmarks lie on its outline by construction. The outline is
written as a few anchor corners (neckline, shoulders, cuffs, hems); the remaining landmarks are
spread evenly along the edges, in proportion to edge length, to reach the category's count.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from matchrcnn.data.categories import NUM_CATEGORIES, landmark_count


@dataclass(frozen=True)
class Template:
    """A category's outline: ``points`` (N, 2) are the polygon vertices and the N landmarks."""

    category_id: int
    points: np.ndarray
    mark_center: tuple[float, float]
    """Where the printed mark of the garment sits, in template units."""

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        x1, y1 = self.points.min(axis=0)
        x2, y2 = self.points.max(axis=0)
        return float(x1), float(y1), float(x2), float(y2)


def _mirror(left: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The right half of a symmetric outline, walked on from the bottom back to the top."""
    return [(100.0 - x, y) for x, y in reversed(left)]


def _symmetric(center_top: tuple[float, float], left: list[tuple[float, float]],
               center_bottom: tuple[float, float] | None) -> list[tuple[float, float]]:
    """Outline from the top centre, down the left half, across the bottom, up the right half."""
    bottom = [center_bottom] if center_bottom is not None else []
    return [center_top, *left, *bottom, *_mirror(left)]


_SHORT_SLEEVE_TOP = [(43, 13), (38, 5), (18, 10), (0, 32), (12, 42), (24, 30)]
_LONG_SLEEVE_TOP = [(43, 13), (38, 5), (20, 8), (0, 80), (12, 84), (26, 28)]
_SLEEVELESS_TOP = [(40, 12), (36, 3), (24, 5), (20, 20), (15, 32)]
_SLING_TOP = [(40, 24), (36, 0), (31, 0), (19, 30)]
_LAPEL_SHORT = [(42, 18), (38, 4), (16, 9), (0, 34), (12, 44), (23, 30)]
_LAPEL_LONG = [(42, 18), (38, 4), (18, 8), (0, 84), (12, 88), (25, 28)]
_OPEN_HEM = [(22, 105), (47, 105)]

_ANCHORS: dict[int, list[tuple[float, float]]] = {
    1: _symmetric((50, 16), [*_SHORT_SLEEVE_TOP, (25, 100)], (50, 100)),
    2: _symmetric((50, 16), [*_LONG_SLEEVE_TOP, (27, 100)], (50, 100)),
    3: _symmetric((50, 36), [*_LAPEL_SHORT, *_OPEN_HEM], (50, 98)),
    4: _symmetric((50, 36), [*_LAPEL_LONG, (24, 105), (47, 105)], (50, 98)),
    5: _symmetric((50, 20), [*_SLEEVELESS_TOP, (17, 100)], (50, 100)),
    6: _symmetric((50, 30), [*_SLING_TOP, (19, 100)], (50, 100)),
    7: [(10, 0), (50, 0), (90, 0), (100, 62), (57, 66), (50, 36), (43, 66), (0, 62)],
    8: [(14, 0), (50, 0), (86, 0), (92, 120), (93, 220), (58, 220), (56, 120), (50, 48),
        (44, 120), (42, 220), (7, 220), (8, 120)],
    9: [(25, 0), (50, 0), (75, 0), (100, 90), (67, 97), (33, 97), (0, 90)],
    10: _symmetric((50, 16), [*_SHORT_SLEEVE_TOP[:-1], (26, 28), (28, 70), (8, 170)], (50, 174)),
    11: _symmetric((50, 16), [*_LONG_SLEEVE_TOP[:-1], (27, 28), (29, 70), (8, 170)], (50, 174)),
    12: _symmetric((50, 20), [*_SLEEVELESS_TOP, (20, 70), (6, 170)], (50, 172)),
    13: _symmetric((50, 30), [*_SLING_TOP, (22, 70), (6, 170)], (50, 172)),
}

_MARK_CENTERS: dict[int, tuple[float, float]] = {
    1: (50, 40), 2: (50, 40), 3: (36, 60), 4: (36, 60), 5: (50, 45), 6: (50, 55),
    7: (30, 20), 8: (30, 30), 9: (50, 35), 10: (50, 42), 11: (50, 42), 12: (50, 45),
    13: (50, 50),
}


def _spread_landmarks(anchors: np.ndarray, count: int) -> np.ndarray:
    """Insert ``count - len(anchors)`` points along the closed outline, more on longer edges."""
    extra = count - len(anchors)
    if extra < 0:
        raise ValueError(f"{len(anchors)} anchors exceed {count} landmarks")
    lengths = np.linalg.norm(np.roll(anchors, -1, axis=0) - anchors, axis=1)
    share = extra * lengths / lengths.sum()
    per_edge = np.floor(share).astype(int)
    remainder_order = np.argsort(-(share - per_edge), kind="stable")
    per_edge[remainder_order[: extra - per_edge.sum()]] += 1
    points = []
    for start, end, inserted in zip(anchors, np.roll(anchors, -1, axis=0), per_edge, strict=True):
        for t in np.arange(inserted + 1) / (inserted + 1):
            points.append(start + t * (end - start))
    return np.asarray(points, dtype=np.float64)


@cache
def template(category_id: int) -> Template:
    """The canonical outline of a category (cached; its arrays must not be modified)."""
    count = landmark_count(category_id)
    points = _spread_landmarks(np.asarray(_ANCHORS[category_id], dtype=np.float64), count)
    points.setflags(write=False)
    return Template(category_id, points, _MARK_CENTERS[category_id])


def all_templates() -> list[Template]:
    return [template(category_id) for category_id in range(1, NUM_CATEGORIES + 1)]
