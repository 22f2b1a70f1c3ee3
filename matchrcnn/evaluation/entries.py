"""Validation of JSON lists of flat entries: result files and retrieval ground truth.

Every evaluation input is a JSON list of objects with fixed keys. The checks run column-wise in
numpy, so a valid file of validation size costs little beyond ``json.load``; only when a column
does not convert is it walked entry by entry, to say which entries are wrong and how.
``load_columns`` first tries ``fast_json``, which parses a file it can vouch for several times
faster than ``json.load`` and leaves every other file to these checks.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from matchrcnn.data.categories import NUM_CATEGORIES
from matchrcnn.evaluation.fast_json import Field, read_columns

MAX_LISTED = 10
"""Bad entries spelled out in one error message; the rest are counted."""

Source = str | os.PathLike | list


class EntriesError(ValueError):
    """An input file that breaks its format; the message names the file, entries and faults."""


class Problems:
    """The first fault of each bad entry, raised together as one EntriesError."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.found: dict[int, str] = {}

    def add(self, index: int, message: str) -> None:
        self.found.setdefault(int(index), message)

    def add_rows(self, bad: np.ndarray, message: str) -> None:
        for index in np.flatnonzero(bad):
            self.add(index, message)

    def raise_if_any(self) -> None:
        if not self.found:
            return
        count = len(self.found)
        lines = [f"{self.name}: {count} malformed entr{'y' if count == 1 else 'ies'}"]
        lines += [f"  entry {i}: {m}" for i, m in sorted(self.found.items())[:MAX_LISTED]]
        if count > MAX_LISTED:
            lines.append(f"  ... and {count - MAX_LISTED} more")
        raise EntriesError("\n".join(lines))


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's content; an unreadable or invalid file raises EntriesError naming it."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as error:
        raise EntriesError(f"{path}: cannot read: {error.strerror or error}") from error
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise EntriesError(f"{path}: not valid JSON: {error}") from error


def load_entries(source: Source, what: str = "results") -> tuple[list, str]:
    """The list held by a JSON file (or the list itself) and a name for messages."""
    if isinstance(source, list):
        return source, f"<{what}>"
    name = str(source)
    data = read_json(source)
    if not isinstance(data, list):
        raise EntriesError(f"{name}: a {what} file holds a JSON list of entries, "
                           f"not a {type(data).__name__}")
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


def columns(entries: list, fields: Sequence[Field], problems: Problems) -> dict[str, np.ndarray]:
    """One validated array per field; raises naming every entry with a missing or bad field."""
    keys = [key for key, _, _ in fields]
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
    for key, shape, integer in fields:
        values = [entry[key] for entry in entries]
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


def load_columns(source: Source, fields: Sequence[Field],
                 what: str = "results") -> tuple[dict[str, np.ndarray], str]:
    """Validated columns of a file or list, and a name for messages.

    A file goes to the fast reader first; what it does not vouch for is read entry by entry, so
    the arrays, and any error, are exactly those of ``columns``.
    """
    if not isinstance(source, list):
        arrays = read_columns(source, fields)
        if arrays is not None:
            return arrays, str(source)
    entries, name = load_entries(source, what)
    return columns(entries, fields, Problems(name)), name


def check_categories(ids: np.ndarray, key: str, problems: Problems) -> None:
    for index in np.flatnonzero((ids < 1) | (ids > NUM_CATEGORIES)):
        problems.add(index, f"{key!r} {ids[index]} is not a category id 1..{NUM_CATEGORIES}")


def check_known(ids: np.ndarray, known: Collection[int] | np.ndarray, key: str, what: str,
                problems: Problems) -> None:
    """Every id must be one of ``known`` (the images of ``what``)."""
    known_ids = np.asarray(known if isinstance(known, np.ndarray) else list(known),
                           dtype=np.int64)
    for index in np.flatnonzero(~np.isin(ids, known_ids)):
        problems.add(index, f"{key!r} {ids[index]} is not an image of the {what}")


def check_corners(boxes: np.ndarray, key: str, problems: Problems) -> None:
    """XYXY boxes (any leading shape per entry) must have x1 <= x2 and y1 <= y2."""
    flipped = (boxes[..., 2] < boxes[..., 0]) | (boxes[..., 3] < boxes[..., 1])
    problems.add_rows(flipped.reshape(len(boxes), math.prod(flipped.shape[1:])).any(axis=1),
                      f"{key!r} has a box with x2 < x1 or y2 < y1")


def check_size(value: Any, key: str) -> str | None:
    """The fault of a [height, width] pair, or None."""
    problem = _shape_problem(value, (2,), True)
    return f"{key!r} {problem}" if problem else None
