"""A shop item's crop, as the page's grid shows it: its box cut from its shop image, at most
CROP_SIDE pixels on its longer side, as JPEG."""

from __future__ import annotations

import io
import math

from PIL import Image

from matchrcnn.data.images import read_image
from matchrcnn.retrieval.records import GalleryItem

CROP_SIDE = 320
JPEG_QUALITY = 90


def crop_jpeg(item: GalleryItem, max_pixels: int) -> bytes:
    """JPEG bytes of the item's box (clamped to its image, at least one pixel) in its shop
    image, read as the gallery build read it; ImageInputError when the image is unreadable."""
    image = read_image(item.image_path, max_pixels)
    height, width = image.shape[:2]
    x1 = min(max(0, int(item.box[0])), width - 1)
    y1 = min(max(0, int(item.box[1])), height - 1)
    x2 = min(width, max(x1 + 1, math.ceil(item.box[2])))
    y2 = min(height, max(y1 + 1, math.ceil(item.box[3])))
    crop = Image.fromarray(image[y1:y2, x1:x2])
    crop.thumbnail((CROP_SIDE, CROP_SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    crop.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
