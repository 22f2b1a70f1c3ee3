"""Moved to matchrcnn.data.images; these names stay here until every importer has switched."""

from matchrcnn.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    ImageInputError,
    ImageTooLargeError,
    NotAnImageError,
    decode_image,
    list_images,
    read_image,
)

__all__ = ["DEFAULT_MAX_PIXELS", "IMAGE_SUFFIXES", "ImageInputError", "ImageTooLargeError",
           "NotAnImageError", "decode_image", "list_images", "read_image"]
