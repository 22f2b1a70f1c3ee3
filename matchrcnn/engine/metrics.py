"""Training metrics to ``OUTPUT_DIR/metrics.json`` (one JSON object per line, as detectron2
writes it) and to TensorBoard. On resume, lines from iterations at or after the resumed one are
dropped first, so a run killed after its last checkpoint leaves no duplicated or orphaned lines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from matchrcnn.utils.atomic import write_text_atomic


class MetricsWriter:
    def __init__(self, output_dir: str | os.PathLike, start_iter: int = 0,
                 tensorboard: bool = True) -> None:
        self.path = Path(output_dir) / "metrics.json"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("iteration", -1) < start_iter]
            write_text_atomic(self.path, "".join(f"{line}\n" for line in kept))
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open for the run)
        self._board = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._board = SummaryWriter(log_dir=str(self.path.parent), purge_step=start_iter)

    def write(self, iteration: int, values: dict[str, float]) -> None:
        self._handle.write(json.dumps({"iteration": iteration, **values}) + "\n")
        self._handle.flush()
        if self._board is not None:
            for name, value in values.items():
                self._board.add_scalar(name, value, iteration)

    def close(self) -> None:
        self._handle.close()
        if self._board is not None:
            self._board.close()
