"""Splits released without annotations: images, and files that list them.

DeepFashion2's test split comes as ``test/image/`` and image-level information only (its
repository's README): ``keypoints_test_information.json`` lists every test image, and
``retrieval_test_consumer_information.json`` and ``retrieval_test_shop_information.json`` list its
consumer (query) and shop (gallery) images; the validation split's release has the same three
files tagged ``val``. They are COCO files written by the official converter without annotations,
so an image is a COCO ``images`` entry: ``id`` (the file's number), ``file_name``, ``width`` and
``height``. An entry's own ``source`` ("user" or "shop"), where a file has one, wins over the
consumer and shop lists.

``load_image_info`` turns them into records as an annotated split has them, without annotations;
``write_image_info`` writes the three files for the images of an annotated COCO file, which
makes an unannotated copy of a split whose ground truth one keeps (a rehearsal of a submission).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from matchrcnn.data.records import RecordStore, RecordStoreBuilder
from matchrcnn.utils.atomic import write_json_atomic

SOURCES = ("user", "shop")
_IMAGE_FIELDS = {"id": int, "file_name": str, "width": int, "height": int}


class ImageInfoError(ValueError):
    """An image-information file that cannot be used; the message names the file and what is
    wrong with it."""


def info_file_names(tag: str) -> tuple[str, str, str]:
    """The released names of a split's three files (all images, consumer, shop) for its tag
    ("test"; "val" for validation)."""
    return (f"keypoints_{tag}_information.json", f"retrieval_{tag}_consumer_information.json",
            f"retrieval_{tag}_shop_information.json")


def _images(path: Path) -> Iterator[dict]:
    """The ``images`` entries of a COCO file, streamed, each checked."""
    import ijson

    if not path.is_file():
        raise ImageInfoError(f"{path}: no such file")
    with open(path, "rb") as handle:
        try:
            for position, image in enumerate(ijson.items(handle, "images.item")):
                yield _checked(path, position, image)
        except ijson.JSONError as error:
            raise ImageInfoError(f"{path}: not valid JSON ({error})") from None


def _checked(path: Path, position: int, image: object) -> dict:
    if not isinstance(image, dict):
        raise ImageInfoError(f"{path}: images entry {position} is not an object")
    for key, kind in _IMAGE_FIELDS.items():
        value = image.get(key)
        if not isinstance(value, kind) or isinstance(value, bool) or (
                kind is int and key != "id" and value < 1):
            raise ImageInfoError(f"{path}: images entry {position}: {key!r} must be "
                                 f"{'a positive integer' if kind is int else 'a string'}, got "
                                 f"{value!r}")
    source = image.get("source")
    if source is not None and source not in SOURCES:
        raise ImageInfoError(f"{path}: image {image['id']}: 'source' must be 'user' or 'shop', "
                             f"got {source!r}")
    return image


def _ids(path: Path) -> set[int]:
    return {image["id"] for image in _images(path)}


def load_image_info(images_file: str | os.PathLike, image_root: str | os.PathLike,
                    consumer_file: str | os.PathLike | None = None,
                    shop_file: str | os.PathLike | None = None) -> RecordStore:
    """The split's records in image-id order: the image's fields, ``image_id``, ``file_name``
    under ``image_root``, ``source`` ("user", "shop", or absent for an image neither list
    names) and no annotations. ImageInfoError for a malformed file, a repeated id, an image in
    both lists, or a listed image the images file lacks."""
    images_file = Path(images_file)
    users = _ids(Path(consumer_file)) if consumer_file is not None else set()
    shops = _ids(Path(shop_file)) if shop_file is not None else set()
    both = users & shops
    if both:
        raise ImageInfoError(f"image {min(both)} is listed as a consumer image ({consumer_file}) "
                             f"and as a shop image ({shop_file})")
    listed = {**dict.fromkeys(users, "user"), **dict.fromkeys(shops, "shop")}
    builder = RecordStoreBuilder()
    ids: list[int] = []
    known: set[int] = set()
    for image in _images(images_file):
        if image["id"] in known:
            raise ImageInfoError(f"{images_file}: image id {image['id']} is listed more than once")
        known.add(image["id"])
        ids.append(image["id"])
        record = {**image, "image_id": image["id"],
                  "file_name": str(Path(image_root) / image["file_name"])}
        if "source" not in record and image["id"] in listed:
            record["source"] = listed[image["id"]]
        builder.add_image(record)
    if not ids:
        raise ImageInfoError(f"{images_file} lists no images: expected a COCO file with an "
                             f"'images' list")
    for named, path in ((users, consumer_file), (shops, shop_file)):
        unknown = named - known
        if unknown:
            raise ImageInfoError(f"{path}: image {min(unknown)} ({len(unknown)} in all) is not "
                                 f"in {images_file}")
    return builder.build(image_order=np.argsort(np.asarray(ids, dtype=np.int64), kind="stable"))


def write_image_info(records: RecordStore | list[dict], info_dir: str | os.PathLike,
                     tag: str) -> tuple[Path, Path, Path]:
    """The three files for ``records`` (an annotated split's, with ``source``): COCO ``images``
    entries only (id, file_name relative to the image folder, width, height), so nothing of the
    ground truth comes along. Returns their paths (all, consumer, shop)."""
    paths = tuple(Path(info_dir) / name for name in info_file_names(tag))
    entries: dict[str, list[dict]] = {"all": [], "user": [], "shop": []}
    for record in records:
        entry = {"id": int(record["image_id"]), "file_name": Path(record["file_name"]).name,
                 "width": int(record["width"]), "height": int(record["height"])}
        entries["all"].append(entry)
        if record.get("source") in SOURCES:
            entries[record["source"]].append(entry)
    for path, kind in zip(paths, ("all", "user", "shop"), strict=True):
        write_json_atomic(path, {"images": entries[kind]})
    return paths
