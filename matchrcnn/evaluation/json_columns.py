"""A fast reader of JSON lists of flat numeric entries, trusted only where it cannot misread.

``json.load`` builds a Python object per number, which at validation scale (a 36 MiB retrieval
results file) is most of the time an evaluation from files takes. ``read_columns`` parses such a
file with pysimdjson (simdjson's parser: exact, correctly rounded floats) and copies each field's
numbers straight into an array, and it returns the arrays only when the file is exactly a list of
entries that the strict reader (``entries.columns`` over ``json.load``) accepts as they are:

- the text is JSON to both parsers (simdjson also takes a leading byte order mark; json does not);
- every entry is an object holding exactly the fields' keys, each once;
- integer fields hold integer tokens within int64 (not 3.0, 1e2, true or "3"), number fields
  hold numbers (true, null and strings are refused by simdjson's typed buffers, and NaN,
  Infinity and numbers that overflow are not JSON to it);
- every list has its field's length, and the text holds no list but those: its count of "[" is
  that of the expected lists, and since the only strings left are the keys, a list nested where
  a number belongs would add one.

Otherwise it returns None and the caller reads the file entry by entry, which accepts it or names
its faults. Integer tokens in number fields become the nearest float, as numpy converts json's
ints, so the arrays are bit for bit those of the strict reader (tests/evaluation).
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import mmap
import os
from collections.abc import Iterator, Sequence
from operator import itemgetter, methodcaller
from typing import BinaryIO, NamedTuple

import numpy as np
import simdjson

UTF8_BOM = b"\xef\xbb\xbf"
CHUNK = 1 << 20
"""Bytes of the file searched for "[" at a time."""


class Field(NamedTuple):
    """A key of every entry, the shape of its value (() for a scalar), whether it holds integers.

    With ``at_least``, the first dimension is a minimum rather than an exact length: a longer list
    is checked whole and cut to it (the official retrieval script reads only the first 20 gallery
    entries of each detection). This reader takes lists of exactly that length and leaves longer
    ones to the strict reader.
    """

    key: str
    shape: tuple[int, ...]
    integer: bool
    at_least: bool = False


def _column(values: list, field: Field) -> np.ndarray | None:
    """One field's values (simdjson's Python values and lists) as an array, or None.

    Everything is checked a whole column at a time (types, lengths) with C-level iteration, as a
    loop over the entries in Python would cost more than the parse.
    """
    if not field.shape:
        allowed = {int} if field.integer else {int, float}  # bool is no int here, as in JSON
        if not set(map(type, values)) <= allowed:
            return None
        try:
            return np.array(values, dtype=np.int64 if field.integer else np.float64)
        except OverflowError:  # an integer past int64
            return None
    if not set(map(type, values)) <= {simdjson.Array} or set(map(len, values)) - {field.shape[0]}:
        return None
    # rows must be lists of the inner length: len() also measures objects and strings, which
    # as_buffer then refuses, and numbers, which len() refuses
    rows = itertools.chain.from_iterable(values)
    if len(field.shape) == 2 and set(map(len, rows)) - {field.shape[1]}:
        return None
    of_type = "i" if field.integer else "d"
    flat = bytearray().join(map(methodcaller("as_buffer", of_type=of_type), values))
    return np.frombuffer(flat, dtype=np.int64 if field.integer else np.float64)


def _count_lists(handle: BinaryIO) -> int:
    """How many "[" the file holds, counted through a memory map a chunk at a time (simdjson
    reads the file itself: holding its text as well would cost a copy)."""
    with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as text:
        return sum(text[start:start + CHUNK].count(b"[") for start in range(0, len(text), CHUNK))


def _identity(stat: os.stat_result) -> tuple[int, int, int, int]:
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


def _lists_per_entry(fields: Sequence[Field]) -> int:
    return sum(1 + (field.shape[0] if len(field.shape) == 2 else 0)
               for field in fields if field.shape)


def read_columns(path: str | os.PathLike, fields: Sequence[Field]) -> dict[str, np.ndarray] | None:
    """One int64 or float64 array per field of a JSON list of entries, or None to read it strictly.

    None means only that this reader does not vouch for the file (see the module docstring), not
    that the file is wrong: an unreadable, odd or malformed file is for the strict reader to judge.
    """
    if any(len(field.shape) > 2 for field in fields):
        return None
    with _collection_paused():
        return _read(path, fields)


@contextlib.contextmanager
def _collection_paused() -> Iterator[None]:
    """No garbage collection while reading: the read makes hundreds of thousands of short-lived
    simdjson proxies (no cycles among them) whose count would set off full collections of
    whatever else the process holds, which doubled the read time next to a validation-size
    submission held as Python objects (docs/benchmarks.md)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read(path: str | os.PathLike, fields: Sequence[Field]) -> dict[str, np.ndarray] | None:
    try:
        before = os.stat(path)
        with open(path, "rb") as handle:
            if handle.read(len(UTF8_BOM)) == UTF8_BOM:  # simdjson skips it, json.load refuses it
                return None
            lists = _count_lists(handle)
        document = simdjson.Parser().load(os.fspath(path))
        if _identity(os.stat(path)) != _identity(before):  # changed while it was read
            return None
    except (OSError, ValueError, RuntimeError):  # unreadable, empty, a path open() refuses, or
        return None                              # not JSON to simdjson (RuntimeError: big ints)
    if type(document) is not simdjson.Array:
        return None
    entries = list(document)
    if lists != 1 + len(entries) * _lists_per_entry(fields):
        return None
    if not set(map(type, entries)) <= {simdjson.Object} or set(map(len, entries)) - {len(fields)}:
        return None  # not objects, or objects with other or repeated keys
    arrays = {}
    try:
        for field in fields:
            array = _column(list(map(itemgetter(field.key), entries)), field)
            if array is None:
                return None
            arrays[field.key] = array.reshape(len(entries), *field.shape)
    except (KeyError, TypeError, ValueError):  # a key missing; len() of a number; as_buffer of
        return None                            # other values or of integers past int64
    if not all(np.isfinite(array).all() for array in arrays.values()):
        return None
    return arrays
