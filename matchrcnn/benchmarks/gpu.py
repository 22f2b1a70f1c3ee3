"""The prepared GPU check: Match R-CNN trained, resumed, evaluated and measured on one CUDA GPU.

One command, meant to finish within 8 minutes on one H100/H200 (an estimate until it has run on
one), in three parts, each recorded even when another fails:

- smoke: a synthetic set at 800 px; tools/train_net.py trains 50 iterations of the R50-FPN 1x
  config with AMP in two runs (the second ``--resume``s the first's checkpoint), then
  ``--eval-only`` on the final weights; every loss must be finite (matchrcnn/benchmarks/smoke.py);
- throughput: training images/s and peak memory of ours (all heads and the match network)
  against torchvision's Mask R-CNN with a 294-keypoint head, batch 2, 4 and 8 per GPU, AMP, then
  the inference latency per image for both (matchrcnn/benchmarks/train.py, a fresh process per
  measurement);
- profile: a torch.profiler table of one training step of ours, top 15 ops by self CUDA time
  (matchrcnn/benchmarks/step_profile.py).

The backbone starts from random weights (MODEL.BACKBONE.PRETRAINED ""): nothing is downloaded.
OUT/gpu.json holds every figure, OUT/gpu.md the tables for docs/benchmarks.md, OUT/profile.txt
torch's own profile table. ``--device cpu --tiny`` takes every path on small images, narrow
heads and one or two iterations, in under a minute on two quiet cores: CI runs it so that the
check still works when a GPU is at hand.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import torch
import torchvision

from matchrcnn.benchmarks import train
from matchrcnn.benchmarks.gpu_report import format_markdown
from matchrcnn.benchmarks.smoke import SmokeError, SmokeSettings, run_smoke
from matchrcnn.benchmarks.step_profile import profile_training_step
from matchrcnn.config import ConfigError
from matchrcnn.utils.atomic import write_json_atomic, write_text_atomic

REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPOSITORY / "configs" / "deepfashion2" / "matchrcnn_R50_FPN_1x.yaml"
JSON_FILE, MARKDOWN_FILE, PROFILE_FILE = "gpu.json", "gpu.md", "profile.txt"


@dataclass(frozen=True)
class Plan:
    """The sizes of one check: the smoke run's set and schedule, the measurements' batches."""

    images: int
    image_size: int
    smoke_iterations: int
    smoke_batch: int
    loader_workers: int
    batch_sizes: tuple[int, ...]
    size: int
    warmup: int
    iterations: int
    overrides: tuple[str, ...] = ()
    data_workers: int | None = None


FULL = Plan(images=96, image_size=800, smoke_iterations=50, smoke_batch=8, loader_workers=8,
            batch_sizes=(2, 4, 8), size=800, warmup=3, iterations=10)
"""The GPU check: 75 training and 21 validation images, 50 iterations of 8, then batches of 2, 4
and 8."""

TINY_OVERRIDES = (
    "INPUT.MIN_SIZE_TRAIN", "(96,)", "INPUT.MAX_SIZE_TRAIN", "128",
    "INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "128",
    "MODEL.RESNETS.DEPTH", "18", "MODEL.FPN.OUT_CHANNELS", "32",
    "MODEL.ANCHOR_GENERATOR.SIZES", "[[16], [32], [64], [128], [256]]",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "100", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50",
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "100", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
    "MODEL.ROI_MASK_HEAD.CONV_DIM", "32", "MODEL.ROI_LANDMARK_HEAD.CONV_DIM", "32",
    "MODEL.ROI_LANDMARK_HEAD.NUM_CONVS", "2", "MODEL.MATCH_HEAD.CONV_DIM", "32",
    "MODEL.MATCH_HEAD.EMBED_DIM", "32", "TEST.DETECTIONS_PER_IMAGE", "10",
)
"""Small images, a ResNet-18 and narrow heads: the same code paths at a CPU test's cost."""

TINY = Plan(images=16, image_size=128, smoke_iterations=2, smoke_batch=2, loader_workers=0,
            batch_sizes=(1, 2), size=96, warmup=1, iterations=1, overrides=TINY_OVERRIDES,
            data_workers=1)


def parse_args(argv: list[str], prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=str(DEFAULT_CONFIG), metavar="FILE")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--tiny", action="store_true",
                        help="small images, narrow heads, 1-2 iterations: every path, fast (CI)")
    parser.add_argument("--out", type=Path, default=Path("output/gpu_check"), metavar="DIR",
                        help=f"where {JSON_FILE}, {MARKDOWN_FILE} and {PROFILE_FILE} go")
    parser.add_argument("--work-dir", type=Path, default=None, metavar="DIR",
                        help="synthetic set and smoke-run outputs, checkpoints included "
                             "(default OUT/work)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the weights")
    return parser.parse_args(argv)


def device_header(device: torch.device) -> dict:
    """What the figures were measured on: device, driver, library versions, date."""
    header = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "device": device.type, "description": train.describe_device(device),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "python": platform.python_version(),
    }
    if device.type == "cuda":
        header.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                      driver=train.nvidia_driver())
    return header


def smoke_settings(args: argparse.Namespace, plan: Plan) -> SmokeSettings:
    return SmokeSettings(
        config_file=str(Path(args.config_file).resolve()), device=args.device,
        images=plan.images, image_size=plan.image_size, iterations=plan.smoke_iterations,
        batch=plan.smoke_batch, loader_workers=plan.loader_workers, seed=args.seed,
        overrides=plan.overrides, data_workers=plan.data_workers)


def train_benchmark_args(args: argparse.Namespace, plan: Plan) -> argparse.Namespace:
    """The train benchmark's options for this plan: both models, every batch, inference too."""
    argv = ["--config-file", str(Path(args.config_file).resolve()), "--device", args.device,
            "--batch-sizes", ",".join(map(str, plan.batch_sizes)), "--size", str(plan.size),
            "--warmup", str(plan.warmup), "--iterations", str(plan.iterations),
            "--seed", str(args.seed), "--inference"]
    if args.device == "cuda":
        argv.append("--amp")
    return train.parse_args([*argv, *plan.overrides])


def measure_throughput(args: argparse.Namespace, plan: Plan) -> dict:
    options = train_benchmark_args(args, plan)
    _, size, results = train.measure_all(options)
    return {"image_size": list(train.image_shape(size)), "amp": options.amp,
            "warmup": plan.warmup, "iterations": plan.iterations,
            "training": [row for row in results if row["phase"] == "train"],
            "inference": [row for row in results if row["phase"] == "inference"]}


def profile_step(args: argparse.Namespace, plan: Plan, device: torch.device) -> dict:
    """One step of ours at the smallest batch (the 1x schedule's 16 images over 8 GPUs: 2)."""
    cfg = train.benchmark_cfg(args.config_file, list(plan.overrides), plan.size)
    return profile_training_step(cfg, device, plan.batch_sizes[0], amp=device.type == "cuda",
                                 seed=args.seed, warmup=plan.warmup)


def run_section(report: dict, name: str, part: Callable[[], dict]) -> None:
    """Run one part into ``report[name]``; a failed part is recorded and the next one runs."""
    print(f"gpu check: {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    try:
        result = {"status": "ok", **part()}
    except (SmokeError, train.MeasurementError) as error:
        result = {"status": "failed", "error": str(error)}
        print(f"gpu check: {name} FAILED: {error}", file=sys.stderr, flush=True)
    result["section_seconds"] = time.perf_counter() - started
    report[name] = result


def write_reports(report: dict, out: Path) -> None:
    """gpu.json, gpu.md and (once profiled) profile.txt, each written whole."""
    profile = report.get("profile", {})
    if "table" in profile:
        write_text_atomic(out / PROFILE_FILE, profile.pop("table"))
    write_json_atomic(out / JSON_FILE, report)
    write_text_atomic(out / MARKDOWN_FILE, format_markdown(report))


def run_check(args: argparse.Namespace, command: str) -> int:
    device = train.resolve_device(args.device, amp=args.device == "cuda")
    plan = TINY if args.tiny else FULL
    out = args.out
    work = args.work_dir or out / "work"
    out.mkdir(parents=True, exist_ok=True)
    report = {**device_header(device), "command": command,
              "config": _shown_path(args.config_file),
              "tiny": args.tiny, "seed": args.seed, "overrides": list(plan.overrides),
              "total_seconds": 0.0}
    print(f"{report['date']}  {report['description']}  torch {report['torch']}  "
          f"torchvision {report['torchvision']}\ncommand: {command}", flush=True)
    started = time.perf_counter()
    parts = (("smoke", lambda: run_smoke(smoke_settings(args, plan), work)),
             ("throughput", lambda: measure_throughput(args, plan)),
             ("profile", lambda: profile_step(args, plan, device)))
    for name, part in parts:
        run_section(report, name, part)
        report["total_seconds"] = time.perf_counter() - started
        write_reports(report, out)
    print(format_markdown(report))
    failed = [name for name, _ in parts if report[name]["status"] != "ok"]
    print(f"wrote {out / JSON_FILE}, {out / MARKDOWN_FILE} and {out / PROFILE_FILE} in "
          f"{report['total_seconds']:.0f} s" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _shown_path(path: str) -> str:
    """``path`` relative to the repository when it lies inside it."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPOSITORY)) if resolved.is_relative_to(REPOSITORY) else path


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv, prog)
    command = " ".join(filter(None, [prog or "python -m matchrcnn.benchmarks.gpu",
                                     shlex.join(argv)]))
    try:
        return run_check(args, command)
    except (train.OptionError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
