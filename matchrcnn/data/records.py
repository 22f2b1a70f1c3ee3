"""Dataset records held compactly: one image's dict rebuilt on demand from flat byte buffers.

DeepFashion2's training split as Python dicts (636,624 items, each with 882 landmark numbers and
its polygons) takes several GiB per process, copied into every rank and, as reference counts are
touched, into every loader worker. ``RecordStore`` keeps each image's fields and each annotation
pickled into one numpy byte buffer apiece, as detectron2's ``DatasetFromList(serialize=True)``
does, so forked loader workers share the pages copy-on-write. Long number lists are packed on top
of that: landmark lists keep only the span between their first and last non-zero number, and every
list is stored at the narrowest width that gives the same values back (int32, float32 or float64),
so a record comes back equal to the one read from the file.

``load_coco_records`` streams a COCO file with ijson (yajl's C parser): the file is never held as
a whole, in bytes or as objects.
"""

from __future__ import annotations

import os
import pickle
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_PACKED_KEYS = ("keypoints", "segmentation")
"""Annotation fields whose long number lists are packed (landmarks, polygons)."""


def _pack_numbers(values: list, trim: bool) -> tuple:
    """(length, first kept index, dtype char, bytes): the list at its narrowest exact width."""
    numbers = np.asarray(values)
    if numbers.dtype.kind not in "iuf" or numbers.ndim != 1:
        raise ValueError("not a flat list of numbers")
    start, stop = 0, len(numbers)
    if trim:
        nonzero = np.flatnonzero(numbers)
        start, stop = (int(nonzero[0]), int(nonzero[-1]) + 1) if len(nonzero) else (0, 0)
    kept = numbers[start:stop]
    if numbers.dtype.kind in "iu":
        fits = len(kept) == 0 or (kept.min() >= -(2**31) and kept.max() < 2**31)
        kept = kept.astype(np.int32 if fits else np.int64)
    elif np.array_equal(kept.astype(np.float32), kept):
        kept = kept.astype(np.float32)
    return len(numbers), start, kept.dtype.char, kept.tobytes()


def _unpack_numbers(packed: tuple) -> list:
    length, start, char, data = packed
    kept = np.frombuffer(data, dtype=char)
    full = np.zeros(length, dtype=np.int64 if kept.dtype.kind == "i" else np.float64)
    full[start : start + len(kept)] = kept
    return full.tolist()


def _pack_value(key: str, value: Any) -> Any:
    try:
        if key == "keypoints" and isinstance(value, list):
            return _pack_numbers(value, trim=True)
        if key == "segmentation" and isinstance(value, list) and all(
            isinstance(polygon, list) for polygon in value
        ):
            return [_pack_numbers(polygon, trim=False) for polygon in value]
    except ValueError:
        return value
    return value


def _unpack_value(key: str, value: Any) -> Any:
    if key == "keypoints" and isinstance(value, tuple):
        return _unpack_numbers(value)
    if key == "segmentation" and isinstance(value, list) and value and isinstance(value[0], tuple):
        return [_unpack_numbers(polygon) for polygon in value]
    return value


CHUNK_BYTES = 64 << 20
"""Pickles are appended to byte chunks of at most this size (one pickle may exceed it alone), so
that growing the store never reallocates, and briefly doubles, one buffer the size of the split."""


class _Buffer:
    """Append-only pickled mappings in byte chunks, frozen into ``_Frozen`` numpy arrays."""

    def __init__(self) -> None:
        self._chunks = [bytearray()]
        self._chunk_starts = array("q", [0])
        self._offsets = array("q", [0])
        self._schemas: dict[tuple[str, ...], int] = {}

    def add(self, mapping: dict) -> None:
        keys = tuple(mapping)
        schema = self._schemas.setdefault(keys, len(self._schemas))
        values = tuple(_pack_value(key, value) if key in _PACKED_KEYS else value
                       for key, value in mapping.items())
        data = pickle.dumps((schema, values), protocol=pickle.HIGHEST_PROTOCOL)
        if self._chunks[-1] and len(self._chunks[-1]) + len(data) > CHUNK_BYTES:
            self._chunk_starts.append(self._offsets[-1])
            self._chunks.append(bytearray())
        self._chunks[-1] += data
        self._offsets.append(self._offsets[-1] + len(data))

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def freeze(self) -> _Frozen:
        # np.frombuffer shares each bytearray: nothing is copied.
        chunks = tuple(np.frombuffer(chunk, dtype=np.uint8) for chunk in self._chunks)
        frozen = _Frozen(chunks, np.frombuffer(self._chunk_starts, dtype=np.int64).copy(),
                         np.frombuffer(self._offsets, dtype=np.int64).copy(),
                         tuple(sorted(self._schemas, key=self._schemas.__getitem__)))
        return frozen


@dataclass(frozen=True)
class _Frozen:
    chunks: tuple[np.ndarray, ...]
    chunk_starts: np.ndarray
    offsets: np.ndarray
    schemas: tuple[tuple[str, ...], ...]

    def load(self, index: int) -> dict:
        start, stop = int(self.offsets[index]), int(self.offsets[index + 1])
        chunk = int(np.searchsorted(self.chunk_starts, start, side="right")) - 1
        local = start - int(self.chunk_starts[chunk])
        view = memoryview(self.chunks[chunk][local : local + stop - start])
        schema, values = pickle.loads(view)
        return {key: _unpack_value(key, value) if key in _PACKED_KEYS else value
                for key, value in zip(self.schemas[schema], values, strict=True)}

    @property
    def nbytes(self) -> int:
        arrays = (*self.chunks, self.chunk_starts, self.offsets)
        return int(sum(array.nbytes for array in arrays))


class RecordStore(Sequence):
    """Per-image records (COCO image fields plus an ``annotations`` list), rebuilt on access.

    Build one with ``RecordStore.from_records`` or ``RecordStoreBuilder``; index, slice by
    ``records[i]`` and iterate like a list. ``column(key)`` reads one image-level field of every
    record without rebuilding their annotations.
    """

    def __init__(self, images: _Frozen, annotations: _Frozen, starts: np.ndarray,
                 order: np.ndarray, image_order: np.ndarray | None = None) -> None:
        self._images, self._annotations = images, annotations
        self._starts, self._order = starts, order
        self._image_order = image_order

    @classmethod
    def from_records(cls, records: Sequence[dict]) -> RecordStore:
        builder = RecordStoreBuilder()
        for record in records:
            builder.add_image({k: v for k, v in record.items() if k != "annotations"})
            for annotation in record.get("annotations", []):
                builder.add_annotation(len(builder) - 1, annotation)
        return builder.build()

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __getitem__(self, index: int) -> dict:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} of {len(self)}")
        index %= len(self)
        record = self._image(index)
        record["annotations"] = [
            self._annotations.load(int(j))
            for j in self._order[self._starts[index] : self._starts[index + 1]]
        ]
        return record

    def __iter__(self) -> Iterator[dict]:
        return (self[index] for index in range(len(self)))

    def column(self, key: str, default: Any = None) -> list:
        """The image-level field ``key`` of every record (``default`` where one lacks it)."""
        return [self._image(index).get(key, default) for index in range(len(self))]

    def _image(self, index: int) -> dict:
        order = self._image_order
        return self._images.load(index if order is None else int(order[index]))

    def annotation_counts(self) -> np.ndarray:
        """Items per record."""
        return np.diff(self._starts)

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers and index arrays."""
        order = 0 if self._image_order is None else self._image_order.nbytes
        return (self._images.nbytes + self._annotations.nbytes + self._starts.nbytes
                + self._order.nbytes + order)


class RecordStoreBuilder:
    """Collects images and annotations one at a time (annotations in any order), then builds."""

    def __init__(self) -> None:
        self._images, self._annotations = _Buffer(), _Buffer()
        self._owners = array("q")

    def __len__(self) -> int:
        return len(self._images)

    def add_image(self, image: dict) -> None:
        self._images.add(image)

    def add_annotation(self, record_index: int, annotation: dict) -> None:
        self._annotations.add(annotation)
        self._owners.append(record_index)

    def build(self, image_order: np.ndarray | None = None) -> RecordStore:
        """The store; record ``i`` is the image added ``image_order[i]``-th (default: in order).

        Annotations name their record by its index in the store.
        """
        owners = np.frombuffer(self._owners, dtype=np.int64)
        order = np.argsort(owners, kind="stable")
        starts = np.searchsorted(owners[order], np.arange(len(self) + 1)).astype(np.int64)
        return RecordStore(self._images.freeze(), self._annotations.freeze(), starts, order,
                           image_order)


def _stream(json_file: Path, prefix: str) -> Iterator[dict]:
    import ijson

    with open(json_file, "rb") as handle:
        try:
            yield from ijson.items(handle, prefix, use_float=True)
        except ijson.JSONError as error:
            raise ValueError(f"{json_file} is not valid JSON: {error}") from error


def load_coco_records(json_file: str | os.PathLike, image_root: str | os.PathLike) -> RecordStore:
    """A COCO file's images with their annotations grouped under them, in image-id order.

    Streams the file twice (images, then annotations), holding one entry at a time beside the
    compact store: images are stored as they come and put in id order by an index array.
    """
    json_file = Path(json_file)
    builder = RecordStoreBuilder()
    ids = array("q")
    for image in _image_headers(json_file):
        ids.append(image["id"])
        builder.add_image({**image, "image_id": image["id"],
                           "file_name": str(Path(image_root) / image["file_name"])})
    if not ids:
        _require_key(json_file, "images")
    image_ids = np.frombuffer(ids, dtype=np.int64)
    image_order = np.argsort(image_ids, kind="stable")
    sorted_ids = image_ids[image_order]
    repeated = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
    if len(repeated):
        raise ValueError(f"{json_file}: image id {int(repeated[0])} is listed more than once "
                         f"({len(repeated)} repeated id(s))")
    position = dict(zip(sorted_ids.tolist(), range(len(sorted_ids)), strict=True))
    seen = False
    for annotation in _stream(json_file, "annotations.item"):
        seen = True
        index = position.get(annotation.get("image_id"))
        if index is None:
            raise ValueError(
                f"{json_file}: annotation {annotation.get('id')} names image "
                f"{annotation.get('image_id')}, which the file does not list"
            )
        builder.add_annotation(index, annotation)
    if not seen:
        _require_key(json_file, "annotations")
    return builder.build(image_order)


def _image_headers(json_file: Path) -> Iterator[dict]:
    for image in _stream(json_file, "images.item"):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise ValueError(f"{json_file}: an entry of 'images' lacks 'id' or 'file_name': "
                             f"{str(image)[:120]}")
        yield image


def _require_key(json_file: Path, key: str) -> None:
    """ValueError unless the file's top-level object has ``key`` (an empty list is fine)."""
    import ijson

    with open(json_file, "rb") as handle:
        try:
            for prefix, event, value in ijson.parse(handle):
                if prefix == "" and event == "map_key" and value == key:
                    return
        except ijson.JSONError as error:
            raise ValueError(f"{json_file} is not valid JSON: {error}") from error
    raise ValueError(f"{json_file} is not a COCO file: it has no {key!r}")


class ConcatRecords(Sequence):
    """Several record sequences read as one (DATASETS.TRAIN naming several splits), uncopied."""

    def __init__(self, parts: Sequence[Sequence[dict]]) -> None:
        self._parts = list(parts)
        self._ends = np.cumsum([len(part) for part in self._parts], dtype=np.int64)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, index: int) -> dict:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"record {index} of {len(self)}")
        index %= len(self)
        part = int(np.searchsorted(self._ends, index, side="right"))
        start = int(self._ends[part - 1]) if part else 0
        return self._parts[part][index - start]

    def __iter__(self) -> Iterator[dict]:
        for part in self._parts:
            yield from part

    def column(self, key: str, default: Any = None) -> list:
        return [value for part in self._parts for value in column(part, key, default)]


def column(records: Sequence[dict], key: str, default: Any = None) -> list:
    """One image-level field of every record; compact stores answer without rebuilding items."""
    if hasattr(records, "column"):
        return records.column(key, default)
    return [record.get(key, default) for record in records]
