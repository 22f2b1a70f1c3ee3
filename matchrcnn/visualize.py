"""Drawing detected garments on a photo: masks blended in, boxes, captions and landmarks.

One drawer for every picture the project makes: the demo colours each garment by its category
and captions it with the category's name and score; query.png colours each garment by its number
so that its row of shop items below can share the colour. Masks are blended at the photo's own
resolution, then the picture is scaled and the boxes, captions and landmarks are drawn at the
new size, so that lines stay thin on a large photo and visible on a small one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from matchrcnn.data.categories import CATEGORY_NAMES

PALETTE = ((230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
           (170, 110, 40), (128, 0, 0), (0, 0, 128))
"""13 well-separated colours: one per DeepFashion2 category, in id order."""
MASK_ALPHA = 0.45
LANDMARK_RADIUS = 2
Colour = tuple[int, int, int]


def colour(index: int) -> Colour:
    """The palette's colour for a 0-based index (wrapping around)."""
    return PALETTE[index % len(PALETTE)]


def category_colour(category: int) -> Colour:
    """The colour of a category id (1..13; other ids wrap around the palette)."""
    return colour(category - 1)


@dataclass(frozen=True, eq=False)
class Garment:
    """One garment to draw: box (XYXY, photo pixels), colour, caption, and optionally its mask
    (H, W) bool at the photo's size and landmarks (K, 3) (x, y, score; all-zero rows are not
    drawn: slots of other categories)."""

    box: Sequence[float]
    colour: Colour
    caption: str
    mask: np.ndarray | None = None
    landmarks: np.ndarray | None = None


def prediction_garments(prediction: Mapping[str, np.ndarray],
                        category_names: Sequence[str] = CATEGORY_NAMES) -> list[Garment]:
    """The detections of a ``Predictor`` output, each in its category's colour and captioned
    with its category's name (``category_names[id - 1]``: the model's landmark layout's) and
    score."""
    masks, landmarks = prediction.get("masks"), prediction.get("landmarks")
    garments = []
    for index, (box, label, score) in enumerate(zip(prediction["boxes"], prediction["labels"],
                                                    prediction["scores"], strict=True)):
        category = int(label)
        name = (category_names[category - 1] if 1 <= category <= len(category_names)
                else str(category))
        garments.append(Garment(
            [float(v) for v in box], category_colour(category), f"{name} {float(score):.2f}",
            None if masks is None else masks[index],
            None if landmarks is None else landmarks[index]))
    return garments


def draw_garments(photo: np.ndarray, garments: Sequence[Garment],
                  scale: float = 1.0) -> Image.Image:
    """The photo (H, W, 3 uint8 RGB) with each garment's mask blended in, scaled by ``scale``,
    with boxes, captions and landmarks drawn on top; later garments are drawn over earlier ones,
    so pass them worst first to keep the best on top."""
    canvas = photo.astype(np.float32)
    for garment in garments:
        if garment.mask is not None and garment.mask.shape == photo.shape[:2]:
            mask = garment.mask.astype(bool)
            canvas[mask] = ((1 - MASK_ALPHA) * canvas[mask]
                            + MASK_ALPHA * np.array(garment.colour, np.float32))
    picture = Image.fromarray(canvas.round().astype(np.uint8))
    if scale != 1.0:
        picture = picture.resize((max(1, round(picture.width * scale)),
                                  max(1, round(picture.height * scale))),
                                 Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    for garment in garments:
        x1, y1, x2, y2 = (value * scale for value in garment.box)
        draw.rectangle((x1, y1, max(x1, x2), max(y1, y2)), outline=garment.colour, width=2)
        if garment.landmarks is not None:
            points = garment.landmarks[np.any(garment.landmarks != 0, axis=1)]
            for x, y in points[:, :2] * scale:
                draw.ellipse((x - LANDMARK_RADIUS, y - LANDMARK_RADIUS, x + LANDMARK_RADIUS,
                              y + LANDMARK_RADIUS), fill=garment.colour, outline=(0, 0, 0))
        _caption(draw, font, (x1 + 2, y1 + 2), garment.caption, garment.colour)
    return picture


def _caption(draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
             at: tuple[float, float], text: str, background: Colour) -> None:
    """``text`` on a box of the garment's colour, in black or white, whichever reads better."""
    left, top, right, bottom = draw.textbbox(at, text, font=font)
    draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=background)
    luminance = 0.299 * background[0] + 0.587 * background[1] + 0.114 * background[2]
    draw.text(at, text, fill=(0, 0, 0) if luminance > 140 else (255, 255, 255), font=font)
