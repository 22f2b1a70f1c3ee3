"""Validation of JSON lists of flat entries: result files and retrieval ground truth.

Every evaluation input is a JSON list of objects with fixed keys. The checks run column-wise in
numpy, so a valid file of validation size costs little beyond parsing it; only when a column does
not convert is it walked entry by entry, to say which entries are wrong and how.
``load_columns`` first tries ``json_columns``, which parses a file it can vouch for several times
faster than ``json.load`` and leaves every other file to these checks.

Some faults break the format although the official scripts score such files anyway (a retrieval
box with x2 < x1, say). ``Problems.tolerate`` takes them: strict, each is a problem like any
other; otherwise the file is scored as the official script scores it and one warning line counts
them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

import numpy as np

from matchrcnn.data.categories import NUM_CATEGORIES
from matchrcnn.evaluation.json_columns import Field, read_columns

MAX_LISTED = 10
"""Bad entries spelled out in one error message; the rest are counted."""

Source = str | os.PathLike | list


class EntriesError(ValueError):
    """An input file that breaks its format; the message names the file, entries and faults.

    ``name`` is the file (or a name for a list) and ``entries`` every bad entry's index and first
    fault, in file order: empty when the fault is the whole file's (not JSON, not a list).
    """

    def __init__(self, message: str, name: str = "", entries: Sequence[tuple[int, str]] = ()):
        super().__init__(message)
        self.name = name
        self.entries = list(entries)


class Problems:
    """The first fault of each bad entry, raised together as one EntriesError; and, when not
    ``strict``, the tolerated faults, as warning lines."""

    def __init__(self, name: str, strict: bool = True) -> None:
        self.name = name
        self.strict = strict
        self.found: dict[int, str] = {}
        self.warnings: list[str] = []

    def add(self, index: int, message: str) -> None:
        self.found.setdefault(int(index), message)

    def add_rows(self, bad: np.ndarray, message: str) -> None:
        for index in np.flatnonzero(bad):
            self.add(index, message)

    def tolerate(self, rows: Iterable[int] | np.ndarray, problem: Callable[[int], str],
                 warning: str) -> bool:
        """Entries the official script scores although they break the format.

        Strict, each is a problem (``problem(index)`` says what); otherwise one warning line:
        "NAME: COUNT entries WARNING: entries I, J, ...". Returns whether they are tolerated.
        """
        rows = [int(index) for index in rows]
        if not rows:
            return True
        if self.strict:
            for index in rows:
                self.add(index, problem(index))
            return False
        listed = ", ".join(map(str, rows[:MAX_LISTED])) + (", ..." if len(rows) > MAX_LISTED
                                                           else "")
        noun = "entry" if len(rows) == 1 else "entries"
        self.warnings.append(f"{self.name}: {len(rows)} {noun} {warning}: {noun} {listed}")
        return True

    def raise_if_any(self) -> None:
        if not self.found:
            return
        count = len(self.found)
        found = sorted(self.found.items())
        lines = [f"{self.name}: {count} malformed entr{'y' if count == 1 else 'ies'}"]
        lines += [f"  entry {i}: {m}" for i, m in found[:MAX_LISTED]]
        if count > MAX_LISTED:
            lines.append(f"  ... and {count - MAX_LISTED} more")
        raise EntriesError("\n".join(lines), self.name, found)


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's content; an unreadable or invalid file raises EntriesError naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as error:
        raise EntriesError(f"{path}: cannot read: {error.strerror or error}",
                           str(path)) from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EntriesError(f"{path}: not valid JSON: {error}", str(path)) from error


def load_entries(source: Source, what: str = "results") -> tuple[list, str]:
    """The list held by a JSON file (or the list itself) and a name for messages."""
    if isinstance(source, list):
        return source, f"<{what}>"
    name = str(source)
    data = read_json(source)
    if not isinstance(data, list):
        raise EntriesError(f"{name}: a {what} file holds a JSON list of entries, "
                           f"not a {type(data).__name__}", name)
    return data, name


def _shape_problem(value: Any, shape: tuple[int, ...], integer: bool) -> str | None:
    """What keeps ``value`` from being a nested list of that shape, or None if nothing does."""
    if not shape:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"must be {'an integer' if integer else 'a number'}, got {value!r:.40}"
        if integer and not isinstance(value, int):
            return f"must be an integer, got {value!r}"
        if integer and not -(2**63) <= value < 2**63:
            return f"is out of range: {value}"
        return None
    if not isinstance(value, list):
        return f"must be a list of {shape[0]}, got {type(value).__name__}"
    if len(value) != shape[0]:
        return f"has {len(value)} items, expected {shape[0]}"
    for index, item in enumerate(value):
        problem = _shape_problem(item, shape[1:], integer)
        if problem:
            return f"[{index}] {problem}"
    return None


def _holds_bool(value: Any) -> bool:
    if isinstance(value, list):
        return any(_holds_bool(item) for item in value)
    return isinstance(value, bool | np.bool_)


def _hides_bool(values: list, array: np.ndarray) -> bool:
    """Whether numpy took a bool among numbers for 0 or 1; only entries with a 0 or 1 are walked."""
    flat = array.reshape(len(values), -1)
    suspects = np.flatnonzero(((flat == 0) | (flat == 1)).any(axis=1))
    return any(_holds_bool(values[index]) for index in suspects)


def _as_array(values: list, shape: tuple[int, ...], integer: bool) -> np.ndarray | None:
    """The values as one array when they all have the shape and type, else None."""
    try:
        array = np.array(values)
    except (ValueError, TypeError, OverflowError):
        return None
    kinds = "i" if integer else "iuf"  # uint64 only holds values past int64
    if array.shape != (len(values), *shape) or array.dtype.kind not in kinds:
        return None
    if _hides_bool(values, array):
        return None
    return array.astype(np.int64 if integer else np.float64)


def _cut_longer(values: list, field: Field, problems: Problems) -> list:
    """Lists longer than an ``at_least`` field's length: checked whole, then, where tolerated,
    cut to that length, as the official retrieval script reads only its first 20 entries."""
    length = field.shape[0]
    longer = [index for index, value in enumerate(values)
              if isinstance(value, list) and len(value) > length]
    well_formed = []
    for index in longer:
        problem = _shape_problem(values[index], (len(values[index]), *field.shape[1:]),
                                 field.integer)
        if problem:
            problems.add(index, f"{field.key!r} {problem}")
        else:
            well_formed.append(index)
    tolerated = problems.tolerate(
        well_formed, lambda i: f"{field.key!r} has {len(values[i])} items, expected {length}",
        f"listing more than {length} {field.key!r}, of which only the first {length} are scored "
        f"(as by the official script)")
    if not (tolerated and well_formed):
        return values
    cut = list(values)
    for index in well_formed:
        cut[index] = values[index][:length]
    return cut


def columns(entries: list, fields: Sequence[Field], problems: Problems) -> dict[str, np.ndarray]:
    """One validated array per field; raises naming every entry with a missing or bad field."""
    fields = [Field(*field) for field in fields]
    keys = [field.key for field in fields]
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.add(index, f"must be a JSON object, got {type(entry).__name__}")
            continue
        missing = [key for key in keys if key not in entry]
        if missing:
            problems.add(index, f"missing key{'s' * (len(missing) > 1)} "
                         + ", ".join(map(repr, missing)))
    problems.raise_if_any()
    arrays = {}
    for field in fields:
        key, shape, integer = field.key, field.shape, field.integer
        values = [entry[key] for entry in entries]
        if field.at_least:
            values = _cut_longer(values, field, problems)
        empty = np.zeros((0, *shape), dtype=np.int64 if integer else np.float64)
        array = _as_array(values, shape, integer) if values else empty
        if array is None:
            faults = [(index, problem) for index, value in enumerate(values)
                      if (problem := _shape_problem(value, shape, integer))]
            for index, problem in faults:
                problems.add(index, f"{key!r} {problem}")
            if not faults:  # an integer too large for a float, say
                problems.add(0, f"{key!r} values do not convert to one array of numbers")
            continue
        if not integer:
            finite = np.isfinite(array.reshape(len(values), math.prod(shape))).all(axis=1)
            problems.add_rows(~finite, f"{key!r} holds a non-finite number")
        arrays[key] = array
    problems.raise_if_any()
    return arrays


def load_columns(source: Source, fields: Sequence[Field], what: str = "results",
                 strict: bool = True) -> tuple[dict[str, np.ndarray], Problems]:
    """Validated columns of a file or list, and the Problems that later checks add to.

    A file goes to the fast reader first; what it does not vouch for is read entry by entry, so
    the arrays, and any error, are exactly those of ``columns``. The Problems carries the name for
    messages, ``strict`` and any warning already given.
    """
    if not isinstance(source, list):
        arrays = read_columns(source, fields)
        if arrays is not None:
            return arrays, Problems(str(source), strict)
    entries, name = load_entries(source, what)
    problems = Problems(name, strict)
    return columns(entries, fields, problems), problems


def outside_categories(ids: np.ndarray) -> np.ndarray:
    """Per entry, whether the id is no category id 1..13."""
    return (ids < 1) | (ids > NUM_CATEGORIES)


def check_categories(ids: np.ndarray, key: str, problems: Problems) -> None:
    for index in np.flatnonzero(outside_categories(ids)):
        problems.add(index, category_problem(ids, key, index))


def category_problem(ids: np.ndarray, key: str, index: int) -> str:
    return f"{key!r} {ids[index]} is not a category id 1..{NUM_CATEGORIES}"


def unknown_ids(ids: np.ndarray, known: Collection[int] | np.ndarray) -> np.ndarray:
    """Per entry, whether the id is not one of ``known``."""
    known_ids = np.asarray(known if isinstance(known, np.ndarray) else list(known),
                           dtype=np.int64)
    return ~np.isin(ids, known_ids)


def unknown_problem(ids: np.ndarray, key: str, what: str, index: int) -> str:
    return f"{key!r} {ids[index]} is not an image of the {what}"


def check_known(ids: np.ndarray, known: Collection[int] | np.ndarray, key: str, what: str,
                problems: Problems) -> None:
    """Every id must be one of ``known`` (the images of ``what``)."""
    for index in np.flatnonzero(unknown_ids(ids, known)):
        problems.add(index, unknown_problem(ids, key, what, index))


def flipped_corners(boxes: np.ndarray) -> np.ndarray:
    """Per entry, whether one of its XYXY boxes (any leading shape) has x2 < x1 or y2 < y1."""
    flipped = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
    return flipped.reshape(len(boxes), math.prod(flipped.shape[1:])).any(axis=1)


def corner_problem(key: str) -> str:
    return f"{key!r} has a box with x2 < x1 or y2 < y1"


def check_corners(boxes: np.ndarray, key: str, problems: Problems) -> None:
    """XYXY boxes (any leading shape per entry) must have x1 <= x2 and y1 <= y2."""
    problems.add_rows(flipped_corners(boxes), corner_problem(key))


def check_size(value: Any, key: str) -> str | None:
    """The fault of a [height, width] pair, or None."""
    problem = _shape_problem(value, (2,), True)
    return f"{key!r} {problem}" if problem else None
