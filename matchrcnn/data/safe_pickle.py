"""Load pickles that may hold only data: plain containers, numbers, strings and numpy arrays.

Unpickling calls whatever callables the file names, so a pickle from elsewhere can run any code.
``load_pickle`` names every callable it meets before using it (``find_class``, as the Python
documentation's "Restricting Globals" recipe does) and accepts only the few that build numpy
arrays and scalars and the containers pickle has no opcode for; anything else is refused with an
error naming the file and the forbidden global, before that global is even imported.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset({
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "bytearray"),
    ("builtins", "complex"), ("collections", "OrderedDict"),
    # bytes in protocols 0-2 are written as _codecs.encode(text, "latin1")
    ("_codecs", "encode"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    *((module, name)
      for module in ("numpy.core.multiarray", "numpy._core.multiarray")
      for name in ("_reconstruct", "scalar")),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
})
"""(module, name) of the only callables a data pickle may name: numpy 1 and 2 spellings."""


class UnsafePickleError(ValueError):
    """A pickle that names a callable outside ALLOWED_GLOBALS, or is not a readable pickle."""


class _DataUnpickler(pickle.Unpickler):
    def __init__(self, handle: io.BufferedIOBase, name: str) -> None:
        super().__init__(handle)
        self.name = name

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"{self.name}: refused to unpickle: it names the global {module}.{name}, which "
                "could run code; only plain containers, numbers, strings and numpy arrays are "
                "accepted"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"{self.name}: refused to unpickle: it uses persistent ids")


def load_pickle(path: str | os.PathLike) -> Any:
    """The data in a pickle file, refusing any callable but those in ALLOWED_GLOBALS."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return _DataUnpickler(handle, str(path)).load()
    except UnsafePickleError:
        raise
    except OSError as error:
        raise UnsafePickleError(f"{path}: cannot be read: {error.strerror or error}") from error
    except Exception as error:  # a truncated or corrupt pickle fails in many ways
        raise UnsafePickleError(f"{path}: not a readable pickle: {error}") from error
