"""Mask outlines: what the page draws for each garment."""

from __future__ import annotations

import numpy as np

from matchrcnn.serve.outline import mask_outline


def test_no_mask_no_outline() -> None:
    assert mask_outline(None) == []
    assert mask_outline(np.zeros((20, 30), bool)) == []


def test_a_rectangle_is_its_four_corners() -> None:
    mask = np.zeros((40, 50), bool)
    mask[5:15, 10:30] = True
    assert mask_outline(mask) == [[[10.0, 5.0], [10.0, 14.0], [29.0, 14.0], [29.0, 5.0]]]


def test_separate_parts_largest_first_each_closed_polygon() -> None:
    mask = np.zeros((60, 60), bool)
    mask[2:6, 2:6] = True  # small square
    yy, xx = np.mgrid[:60, :60]
    mask |= (yy - 35) ** 2 + (xx - 35) ** 2 <= 15**2  # large disc
    outline = mask_outline(mask)
    assert len(outline) == 2
    disc, square = (np.array(polygon) for polygon in outline)
    assert len(disc) > 8 and len(square) == 4
    assert np.allclose(disc.mean(axis=0), [35, 35], atol=1.0)
    assert np.all(np.abs(np.hypot(*(disc - 35).T) - 15) <= 1.5)
