"""Canonical garment outlines of the synthetic dataset, one per DeepFashion2 category.

Each template lives in a canonical frame (x right, y down, about 100 units wide) and is symmetric
about the line x = 50, as the official landmark figure draws every category. Its landmarks are
numbered as DeepFashion2 numbers them: around the silhouette (the collar centre first on tops),
with the front neckline of tops and the lapels and front edges of outwear inside it, on seams
that the renderer draws on the fabric. Each landmark on the left half (x < 50) has its mirror on
the right half, named in the design below by the silhouette's and the seams' own structure, so
the template mirrors onto itself exactly as the dataset's flip table says (tests check the two
agree): a flipped synthetic garment is the garment drawn through the mirrored pose.

A design gives the silhouette's left half from top to bottom and, index for index, its mirror on
the right; coordinates for some landmarks, the others spread evenly between their neighbours.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cache

import numpy as np

from matchrcnn.data.categories import NUM_CATEGORIES, landmark_count

AXIS_X = 50.0
"""The templates' centre line: mirroring maps x to 2 * AXIS_X - x."""
MIRROR = np.array([[-1.0, 0.0, 2 * AXIS_X], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
"""The mirror of the template frame about its centre line, as a 3x3 matrix."""


@dataclass(frozen=True)
class Template:
    """A category's landmarks (row ``k - 1`` is landmark ``k``) and how they are drawn."""

    category_id: int
    points: np.ndarray
    outline: tuple[int, ...]
    """Rows of ``points`` that form the silhouette polygon, in drawing order."""
    seams: tuple[tuple[int, ...], ...]
    """Polylines (rows of ``points``) drawn on the fabric through the landmarks inside it."""
    mirror: tuple[int, ...]
    """For each landmark, the landmark at its mirror image (itself on the centre line)."""
    mark_center: tuple[float, float]
    """Where the printed mark of the garment sits, in template units."""

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        x1, y1 = self.points.min(axis=0)
        x2, y2 = self.points.max(axis=0)
        return float(x1), float(y1), float(x2), float(y2)


@dataclass(frozen=True)
class _Design:
    """Landmark numbers (1-based) of a symmetric garment; see the module doc."""

    top: int | None
    left: tuple[int, ...]
    bottom: int | None
    right: tuple[int, ...]
    anchors: dict[int, tuple[float, float]]
    """Coordinates of the centre-line and left-half landmarks that are not spread."""
    seam_left: tuple[int, ...] = ()
    seam_right: tuple[int, ...] = ()
    seam_centre: tuple[int, ...] = ()
    seams: tuple[tuple[int, ...], ...] = ()


def _top(count: int, bottom: int, anchors: dict[int, tuple[float, float]]) -> _Design:
    """A closed top or dress: collar centre 1, the silhouette down both sides to the hem centre
    ``bottom``, and the front neckline 2-3-4-5-6 (4 its centre) inside."""
    return _Design(
        top=1, left=(2, *range(count, bottom, -1)), bottom=bottom,
        right=(6, *range(7, bottom)), anchors=anchors,
        seam_left=(3,), seam_right=(5,), seam_centre=(4,), seams=((2, 3, 4, 5, 6),),
    )


_SHORT_SLEEVES = {1: (50, 9), 2: (38, 5), 3: (43, 13), 4: (50, 17)}
_SLEEVELESS = {1: (50, 7), 2: (36, 3), 3: (41, 12), 4: (50, 18)}
_SLINGS = {1: (50, 18), 2: (36, 0), 3: (41, 26), 4: (50, 31)}

_DESIGNS: dict[int, _Design] = {
    1: _top(25, 16, {**_SHORT_SLEEVES, 25: (18, 10), 23: (0, 32), 22: (12, 42), 21: (24, 30),
                     17: (25, 100), 16: (50, 100)}),
    2: _top(33, 20, {**_SHORT_SLEEVES, 33: (20, 8), 29: (0, 80), 28: (12, 84), 25: (26, 28),
                     21: (27, 100), 20: (50, 100)}),
    # Outerwear is open in front: the silhouette crosses the centre line between the two front
    # hem corners, and each front edge runs from the collar down a lapel to the hem.
    3: _Design(top=1, left=(2, *range(25, 16, -1), 29), bottom=None, right=(26, *range(7, 17)),
               anchors={1: (50, 8), 2: (38, 4), 25: (16, 9), 23: (0, 34), 22: (12, 44),
                        21: (23, 30), 17: (22, 105), 29: (47, 105), 3: (42, 18), 4: (47, 36),
                        30: (47, 58), 31: (47, 82)},
               seam_left=(3, 4, 30, 31), seam_right=(5, 6, 27, 28),
               seams=((2, 3, 4, 30, 31, 29), (26, 5, 6, 27, 28, 16))),
    4: _Design(top=1, left=(2, *range(33, 20, -1), 37), bottom=None, right=(6, *range(7, 21)),
               anchors={1: (50, 8), 2: (38, 4), 33: (18, 8), 29: (0, 84), 28: (12, 88),
                        25: (25, 28), 21: (24, 105), 37: (47, 105), 3: (42, 18), 4: (47, 36),
                        38: (47, 58), 39: (47, 82)},
               seam_left=(3, 4, 38, 39), seam_right=(5, 34, 35, 36),
               seams=((2, 3, 4, 38, 39, 37), (6, 5, 34, 35, 36, 20))),
    5: _top(15, 11, {**_SLEEVELESS, 15: (24, 5), 14: (20, 20), 13: (15, 32), 12: (17, 100),
                     11: (50, 100)}),
    6: _top(15, 11, {**_SLINGS, 15: (31, 0), 14: (19, 30), 12: (19, 100), 11: (50, 100)}),
    # Bottoms: the waistband centre on top, the crotch (or the skirt's hem centre) below.
    7: _Design(top=2, left=(1, 10, 9, 8), bottom=7, right=(3, 4, 5, 6),
               anchors={2: (50, 0), 1: (10, 0), 10: (5, 31), 9: (0, 62), 8: (43, 66),
                        7: (50, 36)}),
    8: _Design(top=2, left=(1, 14, 13, 12, 11, 10), bottom=9, right=(3, 4, 5, 6, 7, 8),
               anchors={2: (50, 0), 1: (14, 0), 14: (11, 60), 13: (8, 120), 12: (7, 220),
                        11: (42, 220), 10: (44, 120), 9: (50, 48)}),
    9: _Design(top=2, left=(1, 8, 7), bottom=6, right=(3, 4, 5),
               anchors={2: (50, 0), 1: (25, 0), 8: (12.5, 45), 7: (0, 90), 6: (50, 97)}),
    10: _top(29, 18, {**_SHORT_SLEEVES, 29: (18, 10), 27: (0, 32), 26: (12, 42), 25: (26, 28),
                      23: (28, 70), 19: (8, 170), 18: (50, 174)}),
    11: _top(37, 22, {**_SHORT_SLEEVES, 37: (20, 8), 33: (0, 80), 32: (12, 84), 29: (27, 28),
                      27: (29, 70), 23: (8, 170), 22: (50, 174)}),
    12: _top(19, 13, {**_SLEEVELESS, 19: (24, 5), 18: (20, 20), 17: (15, 32), 16: (20, 70),
                      14: (6, 170), 13: (50, 172)}),
    13: _top(19, 13, {**_SLINGS, 19: (31, 0), 18: (19, 30), 17: (22, 70), 14: (6, 170),
                      13: (50, 172)}),
}

_MARK_CENTERS: dict[int, tuple[float, float]] = {
    1: (50, 40), 2: (50, 40), 3: (36, 60), 4: (36, 60), 5: (50, 45), 6: (50, 55),
    7: (30, 20), 8: (30, 30), 9: (50, 35), 10: (50, 42), 11: (50, 42), 12: (50, 45),
    13: (50, 50),
}


def _build(category_id: int, design: _Design) -> Template:
    count = landmark_count(category_id)
    centre = tuple(s for s in (design.top, design.bottom, *design.seam_centre) if s is not None)
    left, right = (*design.left, *design.seam_left), (*design.right, *design.seam_right)
    named = sorted((*centre, *left, *right))
    if named != list(range(1, count + 1)) or len(left) != len(right):
        raise ValueError(f"template {category_id}: the design must name each of its {count} "
                         "landmarks once and give every left landmark a mirror")
    points = np.full((count, 2), np.nan)
    for slot, xy in design.anchors.items():
        points[slot - 1] = xy
    chain = [s for s in (design.top, *design.left, design.bottom) if s is not None]
    _spread(points, [slot - 1 for slot in chain])
    mirror = list(range(count))
    for a, b in zip(left, right, strict=True):
        mirror[a - 1], mirror[b - 1] = b - 1, a - 1
        points[b - 1] = (2 * AXIS_X - points[a - 1, 0], points[a - 1, 1])
    if np.isnan(points).any() or not np.allclose(points[[s - 1 for s in centre], 0], AXIS_X):
        raise ValueError(f"template {category_id}: a landmark has no place, or a centre landmark "
                         "is off the centre line")
    half = [s - 1 for s in chain]
    outline = half + [mirror[row] for row in reversed(half) if mirror[row] != row]
    points.setflags(write=False)
    return Template(category_id, points, tuple(outline),
                    tuple(tuple(s - 1 for s in seam) for seam in design.seams), tuple(mirror),
                    _MARK_CENTERS[category_id])


def _spread(points: np.ndarray, chain: list[int]) -> None:
    """Place the chain's landmarks without coordinates evenly between their placed neighbours."""
    placed = [i for i, row in enumerate(chain) if not np.isnan(points[row, 0])]
    for start, end in itertools.pairwise(placed):
        for step in range(1, end - start):
            t = step / (end - start)
            points[chain[start + step]] = (1 - t) * points[chain[start]] + t * points[chain[end]]


@cache
def template(category_id: int) -> Template:
    """The canonical garment of a category (cached; its arrays must not be modified)."""
    return _build(category_id, _DESIGNS[category_id])


def all_templates() -> list[Template]:
    return [template(category_id) for category_id in range(1, NUM_CATEGORIES + 1)]
