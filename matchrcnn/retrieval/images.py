"""Reading the images a gallery indexes and a query sends, with one clear error per bad file.

A retrieval tool reads files it has never seen: photos from a phone, folders of shop images. Each
failure is named for what it is (missing, unreadable, not an image, truncated, too large) so that
the user knows what to fix; the pixel limit is checked from the header, before anything is decoded.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 64_000_000
"""Largest image (width x height) read by default: a 64-megapixel photo. The model resizes every
image to INPUT.*_TEST anyway; the limit keeps a hostile or mistaken file from exhausting memory."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageInputError(ValueError):
    """An image file that cannot be used; the message names the file and what is wrong."""


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
               upright: bool = False) -> np.ndarray:
    """The image as an (H, W, 3) uint8 RGB array.

    ``upright`` applies the EXIF orientation, as an image viewer shows a phone photo; dataset
    images are read as stored, as training read them, so that their annotations still fit.
    """
    path = Path(path)
    if not path.exists():
        raise ImageInputError(f"{path}: no such file")
    if not path.is_file():
        raise ImageInputError(f"{path}: not a file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageInputError(
                        f"{path}: {width}x{height} = {width * height:,} pixels, more than the "
                        f"limit of {max_pixels:,} (--max-pixels)")
                if upright:
                    image = ImageOps.exif_transpose(image)
                return np.asarray(image.convert("RGB"))
    except ImageInputError:
        raise
    except UnidentifiedImageError:
        raise ImageInputError(f"{path}: not an image file (no known image format)") from None
    except Image.DecompressionBombError as error:
        raise ImageInputError(f"{path}: too many pixels to decode safely ({error})") from None
    except PermissionError as error:
        raise ImageInputError(f"{path}: cannot be read ({error.strerror})") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageInputError(f"{path}: truncated or corrupt image data ({error})") from None


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files under ``directory`` (recursively, by suffix), sorted by path."""
    directory = Path(directory)
    return sorted(path for path in directory.rglob("*")
                  if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
