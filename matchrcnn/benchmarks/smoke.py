"""A short run of tools/train_net.py on a synthetic set: train, checkpoint, resume, evaluate.

What a user runs, in the order a user runs it, each command in its own process: train the first
half of the iterations, ``--resume`` to the full count, then ``--eval-only`` on the final
weights. Losses must be finite at every iteration, the resumed run must continue from the
checkpoint (not restart), and the evaluation must report every task the config enables.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from matchrcnn.config import CONFIG_FILE_NAME
from matchrcnn.data.catalog import DATASETS_ENV
from matchrcnn.data.deepfashion2 import convert_split
from matchrcnn.data.synthetic import SPLITS, generate_dataset

REPOSITORY = Path(__file__).resolve().parents[2]
TRAIN_NET = REPOSITORY / "tools" / "train_net.py"
EVAL_TASKS = ("bbox", "segm", "landmarks", "retrieval")
"""What --eval-only must report with the mask, landmark and match heads on."""


class SmokeError(RuntimeError):
    """A smoke-run command failed or its outputs are wrong; the message says which and why."""


@dataclass(frozen=True)
class SmokeSettings:
    """One smoke run: the synthetic set, the training length and batch, the device."""

    config_file: str
    device: str
    images: int
    image_size: int
    iterations: int
    batch: int
    loader_workers: int
    seed: int = 0
    overrides: tuple[str, ...] = ()
    data_workers: int | None = None
    """Processes that draw and convert the synthetic set (None: all cores)."""

    @property
    def first_run_iterations(self) -> int:
        """Iterations of the first run; the resumed run does the rest."""
        return self.iterations // 2


def prepare_datasets(root: Path, settings: SmokeSettings) -> dict:
    """``root/synthetic`` generated and converted, as `make demo` does: the per-split counts."""
    synthetic = root / "synthetic"
    summary = generate_dataset(synthetic, settings.images, size=settings.image_size,
                               seed=settings.seed, workers=settings.data_workers)
    for split in SPLITS:
        convert_split(synthetic, split, synthetic / "annotations" / f"{split}.json",
                      synthetic / "retrieval" / split, strict=True,
                      workers=settings.data_workers)
    return {split: summary[split] for split in SPLITS}


def train_net_command(settings: SmokeSettings, output: Path, *flags: str,
                      overrides: tuple[str, ...] = ()) -> list[str]:
    """tools/train_net.py on the synthetic splits, from random backbone weights (offline)."""
    return [
        sys.executable, str(TRAIN_NET), "--config-file", settings.config_file, *flags,
        "MODEL.DEVICE", settings.device, "MODEL.BACKBONE.PRETRAINED", "",
        "DATASETS.TRAIN", "('synthetic_train',)", "DATASETS.TEST", "()",
        "SOLVER.IMS_PER_BATCH", str(settings.batch), "SOLVER.CHECKPOINT_PERIOD",
        str(settings.first_run_iterations),
        "DATALOADER.NUM_WORKERS", str(settings.loader_workers), "SEED", str(settings.seed),
        "OUTPUT_DIR", str(output), *settings.overrides, *overrides,
    ]


def run_command(command: list[str], datasets: Path, log: Path) -> float:
    """Run one command with the datasets root set; its wall seconds. Output goes to ``log``."""
    path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, DATASETS_ENV: str(datasets), "PYTHONPATH": path}
    started = time.perf_counter()
    with open(log, "w", encoding="utf-8") as handle:
        done = subprocess.run(command, cwd=REPOSITORY, env=env, stdout=handle,
                              stderr=subprocess.STDOUT, check=False)
    seconds = time.perf_counter() - started
    if done.returncode:
        tail = "\n".join(log.read_text(errors="replace").strip().splitlines()[-20:])
        raise SmokeError(f"exit {done.returncode}: {shlex.join(command)}\n(log {log})\n{tail}")
    return seconds


def read_metrics(output: Path) -> list[dict]:
    """OUTPUT_DIR/metrics.json, one dict per line."""
    path = output / "metrics.json"
    if not path.is_file():
        raise SmokeError(f"{path} was not written")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def check_losses(metrics: list[dict], iterations: int, path: Path) -> None:
    """SmokeError unless ``metrics`` has iterations 0..iterations-1, every loss finite."""
    found = [line.get("iteration") for line in metrics]
    if found != list(range(iterations)):
        raise SmokeError(f"{path}: expected iterations 0..{iterations - 1}, found {found}")
    for line in metrics:
        for name, value in line.items():
            if (name.startswith("loss_") or name == "total_loss") and not math.isfinite(value):
                raise SmokeError(f"{path}: iteration {line['iteration']}: {name} is {value}")


def checkpoint_iteration(output: Path) -> tuple[str, int]:
    """(file named by OUTPUT_DIR/last_checkpoint, the iteration stored in it)."""
    pointer = output / "last_checkpoint"
    if not pointer.is_file():
        raise SmokeError(f"{pointer} was not written: no checkpoint")
    name = pointer.read_text().strip()
    data = torch.load(output / name, map_location="cpu", weights_only=True, mmap=True)
    return name, int(data["iteration"])


def trained_with_amp(output: Path) -> bool:
    """Whether the run's saved config (OUTPUT_DIR/config.yaml) trained in mixed precision: the
    trainer uses AMP where SOLVER.AMP.ENABLED is set and the device is CUDA."""
    cfg = yaml.safe_load((output / CONFIG_FILE_NAME).read_text())
    return bool(cfg["SOLVER"]["AMP"]["ENABLED"]) and str(cfg["MODEL"]["DEVICE"]).startswith("cuda")


def loss_summary(metrics: list[dict]) -> dict:
    """First and last total loss, and the last value of each loss term."""
    last = metrics[-1]
    return {"first_total_loss": metrics[0]["total_loss"], "last_total_loss": last["total_loss"],
            "last_losses": {k: v for k, v in last.items() if k.startswith("loss_")}}


def eval_summary(results: dict, path: Path) -> dict:
    """The headline numbers of eval_results.json; SmokeError for a task it lacks."""
    missing = [task for task in EVAL_TASKS if task not in results]
    if missing:
        raise SmokeError(f"{path} lacks {', '.join(missing)}: has {sorted(results)}")
    summary = {task: {key: results[task].get(key) for key in ("AP", "AP50", "AP75")}
               for task in ("bbox", "segm", "landmarks")}
    summary["retrieval"] = results["retrieval"]
    return summary


def check_first_run(output: Path, half: int) -> tuple[list[dict], tuple[str, int]]:
    """The first run's metrics and checkpoint: ``half`` iterations, the last one saved."""
    metrics = read_metrics(output)
    check_losses(metrics, half, output / "metrics.json")
    checkpoint = checkpoint_iteration(output)
    if checkpoint[1] != half - 1:
        raise SmokeError(f"{output / checkpoint[0]} holds iteration {checkpoint[1]}, "
                         f"expected {half - 1}")
    return metrics, checkpoint


def check_resumed(output: Path, first: list[dict], checkpoint: tuple[str, int],
                  total: int) -> tuple[list[dict], tuple[str, int]]:
    """The resumed run's metrics and checkpoint; SmokeError unless it continued from
    ``checkpoint`` (the first run's file and iteration) to ``total`` iterations."""
    metrics = read_metrics(output)
    check_losses(metrics, total, output / "metrics.json")
    half = checkpoint[1] + 1
    # A run that ignored --resume would start at 0, rewrite the first half's lines and, at
    # CHECKPOINT_PERIOD = half, leave a periodic checkpoint of iteration half - 1 behind.
    restarted = output / f"model_{half - 1:07d}.pth"
    if restarted.exists() or metrics[:half] != first:
        raise SmokeError(f"--resume did not continue from {checkpoint[0]}: the run restarted "
                         f"at iteration 0 ({restarted.name} exists or the first {half} "
                         "iterations' metrics changed)")
    final = checkpoint_iteration(output)
    if final[1] != total - 1:
        raise SmokeError(f"{output / final[0]} holds iteration {final[1]}, expected {total - 1}")
    return metrics, final


def run_smoke(settings: SmokeSettings, work: Path) -> dict:
    """Train half, resume to ``settings.iterations``, evaluate; the figures and checks made."""
    half, total = settings.first_run_iterations, settings.iterations
    if half < 1:
        raise SmokeError(f"the smoke run needs at least 2 iterations to resume, got {total}")
    datasets, output = work / "datasets", work / "smoke"
    started = time.perf_counter()
    counts = prepare_datasets(datasets, settings)
    data_seconds = time.perf_counter() - started
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    commands = {
        "train": train_net_command(settings, output, overrides=("SOLVER.MAX_ITER", str(half))),
        "resume": train_net_command(settings, output, "--resume",
                                    overrides=("SOLVER.MAX_ITER", str(total))),
        "eval_only": train_net_command(settings, output, "--eval-only", overrides=(
            "MODEL.WEIGHTS", str(output / "model_final.pth"),
            "DATASETS.TEST", "('synthetic_validation',)")),
    }
    seconds = {"train": run_command(commands["train"], datasets, output / "train.log")}
    first, checkpoint = check_first_run(output, half)
    seconds["resume"] = run_command(commands["resume"], datasets, output / "resume.log")
    metrics, final = check_resumed(output, first, checkpoint, total)
    seconds["eval_only"] = run_command(commands["eval_only"], datasets, output / "eval.log")
    results_path = output / "eval_results.json"
    if not results_path.is_file():
        raise SmokeError(f"--eval-only wrote no {results_path}")
    evaluation = eval_summary(json.loads(results_path.read_text()), results_path)
    return {
        "dataset": {"images": settings.images, "image_size": settings.image_size, **counts},
        "data_seconds": data_seconds,
        "iterations": total, "batch": settings.batch,
        "amp": trained_with_amp(output),
        "checkpoint": {"file": checkpoint[0], "iteration": checkpoint[1]},
        "resume": {"from_iteration": checkpoint[1] + 1, "final_file": final[0],
                   "final_iteration": final[1]},
        "losses": loss_summary(metrics),
        "eval_only": evaluation,
        "seconds": seconds,
        "commands": {name: shlex.join(command) for name, command in commands.items()},
    }
