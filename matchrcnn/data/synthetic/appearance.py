"""How a synthetic garment looks: base colour, pattern, printed mark and cut.

Retrieval can only be learned if the same garment looks the same in every photo, so an
appearance is drawn from a random stream keyed by (seed, pair_id, style) alone; distractor items
(style 0) get a stream of their own per image and slot. The texture is painted in the template's
canonical frame, so warping it with the garment's pose keeps the pattern and mark on the garment.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from matchrcnn.data.synthetic.templates import Template

PATTERNS = ("plain", "stripes", "checks", "dots")
MARKS = ("circle", "triangle", "star", "cross", "diamond", "letter")

TEXTURE_PIXELS_PER_UNIT = 2.0
"""Resolution of the canonical texture: about 200 px across a garment, near its drawn size."""
TEXTURE_MARGIN_UNITS = 4.0

_APPEARANCE_STREAM = 101
_DISTRACTOR_STREAM = 102


@dataclass(frozen=True)
class Appearance:
    """Everything that makes one garment recognisable, in colour order BGR."""

    base_color: tuple[int, int, int]
    pattern: str
    pattern_color: tuple[int, int, int]
    pattern_period: float
    pattern_angle: float
    mark: str
    mark_color: tuple[int, int, int]
    mark_size: float
    mark_letter: str
    cut: tuple[float, float]
    """Horizontal and vertical stretch of the outline: the garment's own fit."""


def garment_appearance(seed: int, pair_id: int, style: int) -> Appearance:
    """The shared look of every item with this (pair_id, style > 0)."""
    return _random_appearance(np.random.default_rng([seed, _APPEARANCE_STREAM, pair_id, style]))


def distractor_appearance(seed: int, split_code: int, image_index: int, slot: int) -> Appearance:
    """A look for a style-0 item that no other item shares."""
    stream = [seed, _DISTRACTOR_STREAM, split_code, image_index, slot]
    return _random_appearance(np.random.default_rng(stream))


def random_color(rng: np.random.Generator, min_value: float = 0.25) -> tuple[int, int, int]:
    """A BGR colour from a uniform hue, a spread of saturation and a floor on brightness."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(60, 255), rng.uniform(min_value, 1) * 255]]])
    bgr = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def _random_appearance(rng: np.random.Generator) -> Appearance:
    base = random_color(rng)
    return Appearance(
        base_color=base,
        pattern=PATTERNS[rng.integers(len(PATTERNS))],
        pattern_color=_blend(base, random_color(rng), 0.6),
        pattern_period=float(rng.uniform(8, 22)),
        pattern_angle=float(rng.uniform(0, np.pi)),
        mark=MARKS[rng.integers(len(MARKS))],
        mark_color=random_color(rng, min_value=0.1),
        mark_size=float(rng.uniform(8, 16)),
        mark_letter=chr(ord("A") + int(rng.integers(26))),
        cut=(float(rng.uniform(0.9, 1.1)), float(rng.uniform(0.9, 1.1))),
    )


def _blend(a: tuple[int, int, int], b: tuple[int, int, int], weight_b: float) -> tuple[int, ...]:
    """Mix two colours so that patterns stay within the garment's colour family."""
    return tuple(round((1 - weight_b) * x + weight_b * y) for x, y in zip(a, b, strict=True))


def texture_to_template(tmpl: Template) -> np.ndarray:
    """3x3 matrix from texture pixels to template units."""
    x1, y1, _, _ = tmpl.bounds
    scale = 1.0 / TEXTURE_PIXELS_PER_UNIT
    return np.array([[scale, 0, x1 - TEXTURE_MARGIN_UNITS],
                     [0, scale, y1 - TEXTURE_MARGIN_UNITS],
                     [0, 0, 1]])


def render_texture(appearance: Appearance, tmpl: Template) -> np.ndarray:
    """The garment's fabric over the template's bounds (plus a margin), as a BGR image."""
    x1, y1, x2, y2 = tmpl.bounds
    k = TEXTURE_PIXELS_PER_UNIT
    width = int(np.ceil((x2 - x1 + 2 * TEXTURE_MARGIN_UNITS) * k))
    height = int(np.ceil((y2 - y1 + 2 * TEXTURE_MARGIN_UNITS) * k))
    texture = np.empty((height, width, 3), dtype=np.uint8)
    texture[:] = appearance.base_color
    pattern = _pattern_mask(appearance, height, width)
    if pattern is not None:
        texture[pattern] = appearance.pattern_color
    _draw_mark(texture, appearance, tmpl)
    shade = np.linspace(1.05, 0.85, height, dtype=np.float32)[:, None, None]
    return np.clip(texture * shade, 0, 255).astype(np.uint8)


def _pattern_mask(appearance: Appearance, height: int, width: int) -> np.ndarray | None:
    if appearance.pattern == "plain":
        return None
    period = appearance.pattern_period * TEXTURE_PIXELS_PER_UNIT
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    cos, sin = np.cos(appearance.pattern_angle), np.sin(appearance.pattern_angle)
    along, across = xs * cos + ys * sin, -xs * sin + ys * cos
    if appearance.pattern == "stripes":
        return np.mod(along, period) < period * 0.4
    if appearance.pattern == "checks":
        return (np.floor(along / period) + np.floor(across / period)) % 2 == 0
    centre_a = np.mod(along, period) - period / 2
    centre_b = np.mod(across, period) - period / 2
    return centre_a**2 + centre_b**2 < (period * 0.25) ** 2


def _draw_mark(texture: np.ndarray, appearance: Appearance, tmpl: Template) -> None:
    """Print the garment's small glyph at its template's mark position."""
    k = TEXTURE_PIXELS_PER_UNIT
    x1, y1, _, _ = tmpl.bounds
    cx = (tmpl.mark_center[0] - x1 + TEXTURE_MARGIN_UNITS) * k
    cy = (tmpl.mark_center[1] - y1 + TEXTURE_MARGIN_UNITS) * k
    r = appearance.mark_size * k / 2
    color = appearance.mark_color
    if appearance.mark == "circle":
        cv2.circle(texture, (round(cx), round(cy)), round(r), color, -1, cv2.LINE_AA)
    elif appearance.mark == "cross":
        w = max(2, round(r / 2.5))
        cv2.line(texture, (round(cx - r), round(cy)), (round(cx + r), round(cy)), color, w)
        cv2.line(texture, (round(cx), round(cy - r)), (round(cx), round(cy + r)), color, w)
    elif appearance.mark == "letter":
        font_scale = r / 11
        (tw, th), _ = cv2.getTextSize(appearance.mark_letter, cv2.FONT_HERSHEY_SIMPLEX,
                                      font_scale, 2)
        origin = (round(cx - tw / 2), round(cy + th / 2))
        cv2.putText(texture, appearance.mark_letter, origin, cv2.FONT_HERSHEY_SIMPLEX,
                    font_scale, color, max(2, round(r / 5)), cv2.LINE_AA)
    else:
        corners = {"triangle": 3, "diamond": 4, "star": 10}[appearance.mark]
        angles = -np.pi / 2 + np.arange(corners) * 2 * np.pi / corners
        radii = np.where(np.arange(corners) % 2 == 1, r * 0.45, r) if corners == 10 else r
        points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(texture, [np.rint(points).astype(np.int32)], color, cv2.LINE_AA)
