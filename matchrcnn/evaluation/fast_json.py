"""A fast reader of JSON lists of flat numeric entries, trusted only where it cannot misread.

``json.load`` builds a Python object per number, which at validation scale (a 36 MiB retrieval
results file) is most of the time an evaluation from files takes. DuckDB parses such a file
straight into typed columns several times faster, but it is lenient where the strict readers of
``entries`` are not: it casts "3", true and 3.7 to integers and "0.5" and false to floats, takes
trailing commas, a byte order mark, NaN and Infinity, more whitespace than JSON allows, an empty
file, and reads a missing key as null. So ``read_columns`` returns its columns only when

1. the file, less the bytes that numbers and JSON whitespace are made of (``NUMBER_BYTES``), is
   exactly the skeleton of a list of entries holding the fields in the first entry's key order:
   ``[{"key":[,,,],...},...]``; so it has no strings but those keys, no true, false, null, NaN or
   comment, no missing, extra or repeated key, no trailing comma, and no other byte;
2. DuckDB parses it into the fields' fixed-size types, with integer fields read back as text
   made of integer tokens only (3.0 and 1e2 are not integers), and no value null;
3. every float is finite and below 2**63 in magnitude: numpy refuses integer tokens past uint64
   where DuckDB converts them, so the big ones go the strict way.

Otherwise it returns None and the caller reads the file entry by entry, which accepts it or names
its faults exactly as before. Both parsers round every number correctly, so the values agree to
the bit.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

Field = tuple[str, tuple[int, ...], bool]
"""A key, the shape of its value (() for a scalar) and whether it holds integers."""

NUMBER_BYTES = b"0123456789+-.eE \t\n\r"
"""The bytes of JSON numbers and whitespace; without them a clean file is its bare skeleton."""

LARGEST_FLOAT = 2.0**63
"""Floats at or beyond this magnitude (or not finite) are left to the strict reader."""

_INTEGER_TEXT = r"[-0-9,\[\]]+"
"""Text of integers and lists of them, as DuckDB writes numbers back: no '.', 'e' or letters."""

_GLOB_CHARACTERS = "*?[{"
"""DuckDB expands these in a path; a file whose name holds one is left to the strict reader."""


@functools.cache
def _connection(process_id: int) -> Any:
    """An in-memory DuckDB per process (a forked child opens its own), imported on first use."""
    import duckdb

    return duckdb.connect(config={"preserve_insertion_order": True})


def _skeleton(shape: tuple[int, ...]) -> bytes:
    """A value of this shape without its numbers: b"" for a scalar, b"[,,,]" for four, ..."""
    if not shape:
        return b""
    return b"[" + b",".join([_skeleton(shape[1:])] * shape[0]) + b"]"


def _entry_count(stripped: bytes, fields: Sequence[Field]) -> int | None:
    """How many entries a stripped file holds if it is exactly a list of such entries, else None."""
    if stripped == b"[]":
        return 0
    values = {key.encode().translate(None, NUMBER_BYTES): _skeleton(shape)
              for key, shape, _ in fields}
    if len(values) < len(fields):  # two keys that differ only in stripped bytes
        return None
    first = stripped[:stripped.find(b"}")]
    order = sorted(values, key=lambda key: first.find(b'"' + key + b'":'))
    entry = b"{" + b",".join(b'"' + key + b'":' + values[key] for key in order) + b"}"
    count, rest = divmod(len(stripped) - 1, len(entry) + 1)
    if rest or stripped != b"[" + b",".join([entry] * count) + b"]":
        return None
    return count


def _duckdb_type(shape: tuple[int, ...], integer: bool) -> str:
    """DOUBLE[4][20] is 20 arrays of 4 doubles: DuckDB names the innermost size first."""
    return ("BIGINT" if integer else "DOUBLE") + "".join(f"[{size}]" for size in reversed(shape))


def _read_type(shape: tuple[int, ...], integer: bool) -> str:
    """Floats are read as such; integers as text (a list's as JSON), to tell 3 from 3.0 or 3e0."""
    if integer:
        return "JSON" if shape else "VARCHAR"
    return _duckdb_type(shape, integer)


def _projection(fields: Sequence[Field]) -> str:
    """Floats as read; integers cast from their text, or null when it is not integer tokens."""
    columns = []
    for key, shape, integer in fields:
        name = f'"{key}"'
        if integer:
            name = (f"CASE WHEN regexp_full_match({name}, '{_INTEGER_TEXT}') "
                    f"THEN {name}::{_duckdb_type(shape, True)} END AS {name}")
        columns.append(name)
    return ", ".join(columns)


def _values(view: Any, shape: tuple[int, ...], dtype: type) -> np.ndarray | None:
    """One column of an Arrow chunk (fixed-size lists of numbers) as an array; None if any null."""
    start, count = view.offset, view.length
    for size in shape:
        if view.null_count != 0:
            return None
        view = view.child(0)
        start, count = view.offset + start * size, count * size
    if view.null_count != 0:
        return None
    return np.frombuffer(view.buffer(1), dtype=dtype)[start:start + count]


def _duckdb_columns(path: str, fields: Sequence[Field], count: int) -> dict[str, np.ndarray] | None:
    """Steps 2 and 3 of the module docstring, on a file of ``count`` entries that passed step 1."""
    import duckdb
    import nanoarrow

    types = {key: _read_type(shape, integer) for key, shape, integer in fields}
    with _connection(os.getpid()).cursor() as cursor:
        try:
            relation = cursor.read_json(path, format="array", columns=types,
                                        compression="uncompressed")
            chunks = list(nanoarrow.Array(relation.project(_projection(fields))).iter_chunk_views())
        except (duckdb.Error, RuntimeError):  # errors past the first rows come through nanoarrow
            return None
    if sum(chunk.length for chunk in chunks) != count:
        return None
    arrays = {}
    for index, (key, shape, integer) in enumerate(fields):
        dtype = np.int64 if integer else np.float64
        parts = [_values(chunk.child(index), shape, dtype) for chunk in chunks]
        if any(part is None for part in parts):
            return None
        array = np.concatenate(parts).reshape(-1, *shape)  # a copy: owned and writable
        if not integer and not -LARGEST_FLOAT < array.min() <= array.max() < LARGEST_FLOAT:
            return None  # NaN fails every comparison
        arrays[key] = array
    return arrays


def read_columns(path: str | os.PathLike, fields: Sequence[Field]) -> dict[str, np.ndarray] | None:
    """One int64 or float64 array per field of a JSON list of entries, or None to read it strictly.

    None means only that this reader does not vouch for the file (see the module docstring), not
    that the file is wrong: an unreadable, odd or malformed file is for the strict reader to judge.
    """
    path = os.path.abspath(os.fsdecode(path))
    if any(character in path for character in _GLOB_CHARACTERS):
        return None
    try:
        with open(path, "rb") as handle:
            stripped = handle.read().translate(None, NUMBER_BYTES)
    except OSError:
        return None
    count = _entry_count(stripped, fields)
    if count is None:
        return None
    if count == 0:
        return {key: np.zeros((0, *shape), dtype=np.int64 if integer else np.float64)
                for key, shape, integer in fields}
    return _duckdb_columns(path, fields, count)
