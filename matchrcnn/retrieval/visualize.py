"""query.png: the photo with each detected garment's mask, box and landmarks, and under it one row
per garment with the crops of its retrieved shop items, best first, each captioned with its rank
and match probability. Each garment keeps one colour in the photo and in its row. The photo is
drawn by the project's one drawer (matchrcnn.visualize).
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from matchrcnn.data.images import ImageInputError, read_image
from matchrcnn.retrieval.query import QueryItem, category_label
from matchrcnn.utils.atomic import atomic_open
from matchrcnn.visualize import Garment, colour, draw_garments

PHOTO_SIDE = 640
"""Longest side of the photo in the picture: larger photos are scaled down, smaller ones up (at
most MAX_UPSCALE times)."""
MAX_UPSCALE = 2.0
THUMB_HEIGHT = 96
LABEL_WIDTH = 170
CAPTION = 14
GAP = 6


def _photo_panel(photo: np.ndarray, items: list[QueryItem]) -> Image.Image:
    """The photo, scaled, with each item's mask, box, landmarks and number in its colour."""
    scale = min(MAX_UPSCALE, PHOTO_SIDE / max(photo.shape[:2]))
    return draw_garments(photo, [Garment(item.box, colour(index), str(index + 1), item.mask,
                                         item.landmarks)
                                 for index, item in enumerate(items)], scale)


def _crop(path: str, box: tuple[float, float, float, float],
          cache: dict[str, np.ndarray | None]) -> Image.Image | None:
    """The shop item's crop at THUMB_HEIGHT, or None when its image cannot be read any more."""
    if path not in cache:
        try:
            cache[path] = read_image(path)
        except ImageInputError:
            cache[path] = None
    image = cache[path]
    if image is None:
        return None
    height, width = image.shape[:2]
    x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
    x2, y2 = min(width, max(x1 + 1, int(np.ceil(box[2])))), min(height,
                                                                max(y1 + 1, int(np.ceil(box[3]))))
    crop = Image.fromarray(image[y1:y2, x1:x2])
    thumb_width = max(24, min(3 * THUMB_HEIGHT, round(crop.width * THUMB_HEIGHT / crop.height)))
    return crop.resize((thumb_width, THUMB_HEIGHT), Image.Resampling.BILINEAR)


def _strip(item: QueryItem, index: int, cache: dict[str, np.ndarray | None]) -> Image.Image:
    """One row: the item's label, then its retrieved crops with rank and match probability."""
    font = ImageFont.load_default()
    thumbs = []
    for hit in item.hits:
        thumb = _crop(hit.image_path, hit.box, cache)
        if thumb is None:
            thumb = Image.new("RGB", (THUMB_HEIGHT, THUMB_HEIGHT), (128, 128, 128))
            ImageDraw.Draw(thumb).text((4, THUMB_HEIGHT // 2 - 6), "unreadable", fill="white")
        thumbs.append(thumb)
    width = LABEL_WIDTH + sum(thumb.width + GAP for thumb in thumbs)
    row = Image.new("RGB", (width, THUMB_HEIGHT + CAPTION + GAP), "white")
    draw = ImageDraw.Draw(row)
    draw.rectangle((0, 0, 8, THUMB_HEIGHT + CAPTION), fill=colour(index))
    label = f"item {index + 1}\n{category_label(item.category)}\nscore {item.score:.2f}"
    draw.multiline_text((14, 4), label, fill="black", font=font)
    x = LABEL_WIDTH
    for rank, (hit, thumb) in enumerate(zip(item.hits, thumbs, strict=True), start=1):
        draw.text((x, 0), f"#{rank} p={hit.match_probability:.2f}", fill="black", font=font)
        row.paste(thumb, (x, CAPTION))
        x += thumb.width + GAP
    return row


def render_query(photo: np.ndarray, items: list[QueryItem]) -> Image.Image:
    """The whole picture (see the module notes)."""
    panel = _photo_panel(photo, items)
    cache: dict[str, np.ndarray | None] = {}
    rows = [_strip(item, index, cache) for index, item in enumerate(items)]
    width = max([panel.width, *(row.width for row in rows)])
    height = panel.height + GAP + sum(row.height for row in rows)
    picture = Image.new("RGB", (width, height), "white")
    picture.paste(panel, (0, 0))
    y = panel.height + GAP
    for row in rows:
        picture.paste(row, (0, y))
        y += row.height
    return picture


def write_query_png(path: str | os.PathLike, photo: np.ndarray, items: list[QueryItem]) -> None:
    """Render and write query.png atomically."""
    with atomic_open(path, "wb") as handle:
        render_query(photo, items).save(handle, format="PNG")
