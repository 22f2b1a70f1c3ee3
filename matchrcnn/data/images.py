"""The project's one image reader, with one clear error per bad file.

Training reads dataset images, a retrieval tool reads files it has never seen (photos from a
phone, folders of shop images), a server reads uploads: all of them go through ``read_image`` or
``decode_image``. Each failure is an ``ImageInputError`` named for what it is (missing,
unreadable, not an image, truncated, too large) so that the user knows what to fix; the pixel
limit is checked from the header, before anything is decoded. Torch-free, so that tools which only
list or read images need not import torch.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 64_000_000
"""Largest image (width x height) read by default: a 64-megapixel photo. The model resizes every
image to INPUT.*_TEST anyway; the limit keeps a hostile or mistaken file from exhausting memory."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageInputError(ValueError):
    """An image file that cannot be used; the message names the file and what is wrong."""


class NotAnImageError(ImageInputError):
    """Data in no known image format."""


class ImageTooLargeError(ImageInputError):
    """An image of more pixels than the limit, refused from its header."""


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
    return decode_image(path, str(path), max_pixels, upright)


def decode_image(source: str | os.PathLike | BinaryIO, name: str,
                 max_pixels: int = DEFAULT_MAX_PIXELS, upright: bool = False) -> np.ndarray:
    """``read_image`` of a file path or an open binary file (an upload), called ``name`` in
    the errors."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise ImageTooLargeError(
                        f"{name}: {width}x{height} = {width * height:,} pixels, more than the "
                        f"limit of {max_pixels:,} (--max-pixels)")
                if upright:
                    image = ImageOps.exif_transpose(image)
                return np.asarray(image.convert("RGB"))
    except ImageInputError:
        raise
    except UnidentifiedImageError:
        raise NotAnImageError(f"{name}: not an image file (no known image format)") from None
    except Image.DecompressionBombError as error:
        raise ImageTooLargeError(f"{name}: too many pixels to decode safely ({error})") from None
    except PermissionError as error:
        raise ImageInputError(f"{name}: cannot be read ({error.strerror})") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageInputError(f"{name}: truncated or corrupt image data ({error})") from None


def list_images(directory: str | os.PathLike) -> list[Path]:
    """Image files under ``directory`` (recursively, by suffix), sorted by path."""
    directory = Path(directory)
    return sorted(path for path in directory.rglob("*")
                  if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file())
