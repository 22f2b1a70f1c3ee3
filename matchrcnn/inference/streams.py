"""Several official results files written side by side, from one pass over the predictions.

A split is predicted once, but each image's predictions feed up to four files (boxes, masks,
landmarks, retrieval). Holding a split's entries until the end would take gigabytes (DeepFashion2's
test split: 67k images), so each file is written by ``write_results`` as the entries arrive, each
on a thread of its own fed through a short queue: memory stays at a few images' worth. Each file
is atomic (``write_results``); if the pass fails, or one file cannot be written, every file that
was being written is abandoned and any previous one is kept, and the error is raised.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType

from matchrcnn.evaluation.results import write_results

_DEPTH = 8
"""Batches of entries waiting per file."""
_END, _ABORT = object(), object()


class _Abandoned(Exception):
    """Raised inside a writer's entries to make ``write_results`` drop its temporary file."""


class ResultStreams:
    """``with ResultStreams({"bbox": path, ...}) as streams: streams.add("bbox", entries)``."""

    def __init__(self, paths: Mapping[str, str | os.PathLike]) -> None:
        self.paths = {kind: Path(path) for kind, path in paths.items()}
        self.counts = dict.fromkeys(self.paths, 0)
        self._queues = {kind: queue.Queue(_DEPTH) for kind in self.paths}
        self._errors: list[BaseException] = []
        self._threads = [threading.Thread(target=self._write, args=(kind,),
                                          name=f"results-{kind}", daemon=True)
                         for kind in self.paths]

    def __enter__(self) -> ResultStreams:
        for thread in self._threads:
            thread.start()
        return self

    def add(self, kind: str, entries: Iterable[dict]) -> None:
        """Queue entries for the file of ``kind``; raises a writer's error as soon as one failed."""
        if self._errors:
            raise self._errors[0]
        batch = list(entries)
        self.counts[kind] += len(batch)
        self._queues[kind].put(batch)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        failed = error is not None or bool(self._errors)
        for waiting in self._queues.values():
            waiting.put(_ABORT if failed else _END)
        for thread in self._threads:
            thread.join()
        if error is None and self._errors:
            raise self._errors[0]

    def _write(self, kind: str) -> None:
        waiting = self._queues[kind]
        try:
            write_results(self.paths[kind], _entries(waiting))
        except _Abandoned:
            return
        except BaseException as error:  # handed to the producer, which raises it
            self._errors.append(error)
            while waiting.get() not in (_END, _ABORT):
                pass  # keep the producer's puts from blocking until it learns of the error


def _entries(waiting: queue.Queue) -> Iterator[dict]:
    while (batch := waiting.get()) is not _END:
        if batch is _ABORT:
            raise _Abandoned
        yield from batch
