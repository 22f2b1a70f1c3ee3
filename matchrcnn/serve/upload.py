"""An uploaded photo to pixels, or the HTTP error that says what is wrong with it.

The checks go from cheapest to dearest: the declared content type, the byte count, then the image
header (format, and width x height against the pixel limit, so that a decompression bomb is
refused before anything is decoded), and only then the pixels. The decoding is
matchrcnn.data.images', the query tool's own, with the EXIF orientation applied.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from matchrcnn.data.images import (
    ImageInputError,
    ImageTooLargeError,
    NotAnImageError,
    decode_image,
)

ACCEPTED_TYPES = ("image/", "application/octet-stream")
"""Declared content types of an upload that may hold an image (octet-stream: a client that
does not know; the bytes decide)."""


@dataclass(frozen=True)
class UploadLimits:
    """``max_bytes``: largest upload; ``max_pixels``: largest photo (width x height)."""

    max_bytes: int
    max_pixels: int


class UploadError(ValueError):
    """A photo the service refuses; ``status`` is its HTTP status code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_declared(name: str, content_type: str | None, size: int | None,
                   limits: UploadLimits) -> None:
    """Refuse an upload by what its part declares, before its bytes are read."""
    declared = (content_type or "").split(";")[0].strip().lower()
    if not declared.startswith(ACCEPTED_TYPES):
        raise UploadError(415, f"{name}: sent as {declared or 'no content type'}, not as an image "
                               f"(send image/jpeg, image/png, ...)")
    if size is not None and size > limits.max_bytes:
        raise UploadError(413, f"{name}: {size:,} bytes, more than the limit of "
                               f"{limits.max_bytes:,} (--max-upload-mb)")


def decode_upload(name: str, data: bytes, limits: UploadLimits) -> np.ndarray:
    """The photo as (H, W, 3) uint8 RGB, upright; UploadError for anything unusable."""
    if len(data) > limits.max_bytes:
        raise UploadError(413, f"{name}: {len(data):,} bytes, more than the limit of "
                               f"{limits.max_bytes:,} (--max-upload-mb)")
    if not data:
        raise UploadError(422, f"{name}: empty upload")
    try:
        return decode_image(io.BytesIO(data), name, limits.max_pixels, upright=True)
    except ImageTooLargeError as error:
        raise UploadError(413, str(error)) from None
    except NotAnImageError as error:
        raise UploadError(415, str(error)) from None
    except ImageInputError as error:
        raise UploadError(422, str(error)) from None
