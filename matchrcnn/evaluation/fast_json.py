"""A fast reader of JSON lists of flat numeric entries, trusted only where it cannot misread.

``json.load`` builds a Python object per number, which at validation scale (a 36 MiB retrieval
results file) is most of the time an evaluation from files takes. ``read_columns`` reads such a
file with a small C scanner (``_json_scan.c``, one pass, numbers straight into arrays) and
returns its columns only when

1. the scanner vouches for the text: no string holds a backslash or a control character, no byte
   outside strings is past ASCII, every number follows JSON's grammar (not "01", "1.", "-" or
   "1e", nor one running into the next), no integer token is past int64 and no float overflows
   to infinity (NaN and Infinity are not numbers to JSON, so they fail the next step);
2. the text, less its JSON whitespace and with each number as ``#``, is exactly the skeleton of a
   list of entries holding the fields in the first entry's key order: ``[{"key":[#,#],...},...]``;
   so it has no strings but those keys, no true, false, null, NaN or comment, no missing, extra
   or repeated key, no trailing comma, and no other byte;
3. integer fields hold integer tokens only (3.0 and 1e2 are not integers).

Otherwise it returns None and the caller reads the file entry by entry, which accepts it or names
its faults exactly as before. The values agree to the bit: the scanner converts a non-integer
token exactly as ``float(token)`` does (correctly rounded) and keeps an integer token as an
int64, which a float field converts to the nearest float as numpy converts json's ints. Where the
scanner was not built (no C compiler at install), every file is read the strict way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

try:
    from matchrcnn.evaluation import _json_scan
except ImportError:  # installed without a C compiler: the strict reader reads every file
    _json_scan = None

Field = tuple[str, tuple[int, ...], bool]
"""A key, the shape of its value (() for a scalar) and whether it holds integers."""

NUMBER = b"#"
"""What the scanner puts in the skeleton for each number."""

CHUNK = 1 << 20
"""Bytes read and scanned at a time."""

FIRST_ENTRY = 1 << 16
"""The most skeleton bytes searched for the first entry's key order."""


def _skeleton(shape: tuple[int, ...]) -> bytes:
    """A value of this shape with its numbers as markers: b"#" for a scalar, b"[#,#,#,#]" ..."""
    if not shape:
        return NUMBER
    return b"[" + b",".join([_skeleton(shape[1:])] * shape[0]) + b"]"


def _layout(skeleton: np.ndarray, fields: Sequence[Field]) -> tuple[int, list[Field]] | None:
    """How many entries the skeleton holds and their key order, if it is exactly a list of such
    entries, each with the first one's key order; else None."""
    if len(skeleton) == 2 and skeleton.tobytes() == b"[]":
        return 0, list(fields)
    head = skeleton[:FIRST_ENTRY].tobytes()
    first = head[:head.find(b"}")]  # only a guess of the order: the comparison below decides
    order = sorted(fields, key=lambda field: first.find(b'"' + field[0].encode() + b'":'))
    entry = b"{" + b",".join(b'"' + key.encode() + b'":' + _skeleton(shape)
                             for key, shape, _ in order) + b"}"
    # The skeleton must be b"[" + b",".join([entry] * count) + b"]": after the "[", count rows
    # of the entry and a comma, the last with "]" for its comma. Compared as rows in numpy, as
    # building that text of several MiB costs more than the comparison.
    row = np.frombuffer(entry + b",", dtype=np.uint8)
    count, rest = divmod(len(skeleton) - 1, len(row))
    if rest or count < 1 or skeleton[0] != ord("[") or skeleton[-1] != ord("]"):
        return None
    rows = skeleton[1:].reshape(count, len(row))
    if not ((rows[:-1] == row).all() and (rows[-1, :-1] == row[:-1]).all()):
        return None
    return count, order


def scan_outputs(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty skeleton, values and integer-flag arrays with room for a text of ``size`` bytes.

    Numbers are separated by at least one byte, so such a text holds at most size // 2 + 1 of
    them; pages that are never written cost nothing.
    """
    capacity = size // 2 + 1
    return (np.empty(size, dtype=np.uint8), np.empty(capacity, dtype=np.int64),
            np.empty(capacity, dtype=np.bool_))


def _scan(path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The scanner's skeleton, values (int64 or float64 bits) and integer-token flags of a file,
    or None if it declines the file or cannot read it.

    The file is read in chunks cut after their last comma (which ends any number, and no string
    but one holding a comma, which the scanner then declines as unterminated), into a buffer that
    stays in cache: cheaper than filling an array of the whole file, and safe from a file that
    changes while it is read, which a memory map is not.
    """
    try:
        with open(path, "rb", buffering=0) as handle:
            size = os.fstat(handle.fileno()).st_size
            skeleton, values, integer = scan_outputs(size)
            buffer = bytearray(CHUNK)
            length = written = count = total = 0  # bytes in the buffer; outputs so far; read
            while True:
                if length == len(buffer):  # no comma in a whole buffer: make room
                    buffer.extend(bytes(len(buffer)))
                read = handle.readinto(memoryview(buffer)[length:])
                total += read
                if total > size:  # grown since: the outputs may be too small
                    return None
                length += read
                cut = length if read == 0 else buffer.rfind(b",", 0, length) + 1
                if cut == 0 and read:
                    continue
                scanned = _json_scan.scan(memoryview(buffer)[:cut], skeleton[written:],
                                          values[count:], integer[count:])
                if scanned is None:
                    return None
                written, count = written + scanned[0], count + scanned[1]
                if read == 0:
                    return skeleton[:written], values[:count], integer[:count]
                buffer[:length - cut] = buffer[cut:length]
                length -= cut
    except (OSError, ValueError):  # unreadable, or a path open() refuses (a NUL in it)
        return None


def read_columns(path: str | os.PathLike, fields: Sequence[Field]) -> dict[str, np.ndarray] | None:
    """One int64 or float64 array per field of a JSON list of entries, or None to read it strictly.

    None means only that this reader does not vouch for the file (see the module docstring), not
    that the file is wrong: an unreadable, odd or malformed file is for the strict reader to judge.
    """
    if _json_scan is None:
        return None
    scanned = _scan(os.fsdecode(path))
    if scanned is None:
        return None
    skeleton, values, integer = scanned
    layout = _layout(skeleton, fields)
    if layout is None:
        return None
    count, order = layout
    if count == 0:
        return {key: np.zeros((0, *shape), dtype=np.int64 if is_integer else np.float64)
                for key, shape, is_integer in fields}
    # Every entry has the same numbers in the same order: one row per entry, a column per number.
    values = values.reshape(count, -1)
    integer = integer.reshape(count, -1)
    arrays, start = {}, 0
    for key, shape, is_integer in order:
        columns = slice(start, start + math.prod(shape))
        start = columns.stop
        block = values[:, columns].reshape(count, *shape)
        tokens = integer[:, columns].reshape(count, *shape)
        if is_integer:
            if not tokens.all():
                return None
            array = block.copy()  # owned, writable, C-contiguous
        else:
            array = block.view(np.float64).copy()  # finite: the scanner declines infinities
            if tokens.any():  # integers among the floats: as numpy converts them, to nearest
                array[tokens] = block[tokens]
        arrays[key] = array
    return {key: arrays[key] for key, _, _ in fields}
