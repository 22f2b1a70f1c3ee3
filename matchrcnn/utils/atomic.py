"""Files that appear at their path whole or not at all.

Everything the project writes for later use (converted datasets, checkpoints, indexes, results) goes
through ``atomic_open``: the content is written to a temporary file in the same directory, flushed
to disk, and renamed over the target only if the ``with`` block finishes without error. A crash or a
kill at any moment leaves either the previous file or the complete new one. The file gets the
permissions of a plainly created one (0666 less the umask).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0)
os.umask(_UMASK)
"""The process's umask, read once at import (reading it means setting it)."""


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", fsync: bool = True) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing (``"w"`` text or ``"wb"`` binary).

    ``fsync=False`` still survives a killed process, not a power cut: for bulk files that are
    cheap to regenerate, where a sync per file would dominate the cost.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file owner-only; give it the mode any new file of this process gets.
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as handle:
            yield handle
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json_atomic(path: str | os.PathLike, data: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(data, handle)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path) as handle:
        handle.write(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, fsync: bool = True) -> None:
    with atomic_open(path, "wb", fsync=fsync) as handle:
        handle.write(data)
