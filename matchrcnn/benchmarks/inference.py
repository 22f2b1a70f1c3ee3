"""Inference speed per image: our Match R-CNN with torchvision's landmark decoding (before) and
with the vectorised one (after), against torchvision's Mask R-CNN with a 294-keypoint head.

The models are the training benchmark's (matchrcnn/benchmarks/train.py): one config builds both,
with the same backbone, RPN, box and mask heads and image size; random weights (speed does not
depend on them, and nothing is downloaded). Every model sees the same seeded images, portrait 4:3
at the test size so that nothing is resized, in eval mode, under torch.no_grad (and float16
autocast with ``--amp``, CUDA only).

Decoding landmarks costs in proportion to the detections, and torchvision's decoder also to their
area, so the random models are made to detect as a trained one does on a photo of garments:
MODEL.ROI_HEADS.SCORE_THRESH_TEST is 0 (every image gives TEST.DETECTIONS_PER_IMAGE detections)
and the anchors are garment-sized, a quarter of the shorter image side to all of it
(``garment_anchors``; a random RPN otherwise proposes mostly its smallest anchors). A second table
times the two landmark decoders alone on the heatmaps our model decoded for one image, with its
boxes and with square boxes of given sides.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch
import torchvision
from fvcore.common.config import CfgNode
from torch import Tensor, nn

from matchrcnn.benchmarks import train
from matchrcnn.benchmarks.gpu import TINY_OVERRIDES
from matchrcnn.config import ConfigError
from matchrcnn.modeling.heads.landmark import DECODERS, landmark_decoder
from matchrcnn.utils.atomic import write_json_atomic

RUNS = (
    ("matchrcnn", "torchvision", "Match R-CNN (ours), torchvision decoding"),
    ("matchrcnn", "vectorised", "Match R-CNN (ours), vectorised decoding"),
    ("torchvision", "torchvision", "torchvision Mask R-CNN + 294 kpts"),
)
"""(model, landmark decoder, row label) of each measurement."""
TINY = ["--size", "96", "--warmup", "1", "--iterations", "1", "--batch-sizes", "1,2"]
"""``--tiny``: small images, a ResNet-18 and narrow heads (the GPU check's), one timed step."""


def parse_args(argv: list[str], prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=str(train.DEFAULT_CONFIG), metavar="FILE")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto: CUDA when available, else CPU")
    parser.add_argument("--batch-sizes", type=train._batch_sizes, default=[1, 4], metavar="B,B",
                        help="images per model call, one measurement each (default 1,4)")
    parser.add_argument("--size", type=train._positive_int, default=None, metavar="PX",
                        help="shorter image side (default INPUT.MIN_SIZE_TEST)")
    parser.add_argument("--iterations", type=train._positive_int, default=10,
                        help="timed calls")
    parser.add_argument("--warmup", type=train._non_negative_int, default=2,
                        help="untimed calls before them")
    parser.add_argument("--amp", action="store_true", help="float16 autocast (CUDA only)")
    parser.add_argument("--threads", type=train._positive_int, default=None,
                        help="torch CPU threads (default: torch's own)")
    parser.add_argument("--tiny", action="store_true",
                        help="small images, narrow heads, one timed call: every path, fast (CI)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the images and weights")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the figures to this JSON file")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    if args.tiny:
        args = parser.parse_args([*argv[: len(argv) - len(args.opts)], *TINY, *TINY_OVERRIDES,
                                  *args.opts])
    misplaced = [opt for opt in args.opts if opt.startswith("--")]
    if misplaced:
        parser.error(f"options go before the KEY VALUE overrides: move {' '.join(misplaced)}")
    return args


BOX_SIDES = (32, 128, 512)
"""Square box sides (pixels) at which the decoders are timed alone."""


def garment_anchors(size: int) -> str:
    """Anchor sizes per FPN level (P2..P6) from a quarter of ``size`` to all of it."""
    return str([[max(1, round(size * fraction))] for fraction in (1 / 4, 3 / 8, 1 / 2, 3 / 4, 1)])


def benchmark_cfg(args: argparse.Namespace) -> CfgNode:
    """The training benchmark's config at ``--size``, keeping every detection, with
    garment-sized anchors (see the module notes); the overrides may set other anchors."""
    size = args.size or train.benchmark_cfg(args.config_file, args.opts, None).INPUT.MIN_SIZE_TEST
    fixed = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
             "MODEL.ANCHOR_GENERATOR.SIZES", garment_anchors(size)]
    return train.benchmark_cfg(args.config_file, [*fixed, *args.opts], size)


def images_of(batch: int, size: int, seed: int, device: torch.device) -> list[Tensor]:
    generator = torch.Generator().manual_seed(seed)
    height, width = train.image_shape(size)
    return [torch.rand(3, height, width, generator=generator).to(device) for _ in range(batch)]


def inference_call(model: nn.Module, images: list[Tensor], amp: bool) -> Callable[[], None]:
    """One eval-mode prediction of ``images`` per call."""
    model.eval()
    device = images[0].device

    def call() -> None:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=amp):
            model(images)

    return call


def measure_models(args: argparse.Namespace, cfg: CfgNode, device: torch.device) -> list[dict]:
    """ms per image of every run of ``RUNS`` at every batch size."""
    size = cfg.INPUT.MIN_SIZE_TEST
    results = []
    for name in ("matchrcnn", "torchvision"):
        torch.manual_seed(args.seed)
        model = train.build(name, cfg).to(device)
        for batch in args.batch_sizes:
            call = inference_call(model, images_of(batch, size, args.seed, device), args.amp)
            for run_model, decoder, label in RUNS:
                if run_model != name:
                    continue
                print(f"measuring {label}, batch {batch} ...", file=sys.stderr, flush=True)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                with landmark_decoder(decoder):
                    seconds = train.seconds_per_step(call, args.warmup, args.iterations, device)
                row = {"model": name, "decoder": decoder, "label": label, "batch": batch,
                       "ms_per_image": 1000 * seconds / batch,
                       "images_per_second": batch / seconds}
                if device.type == "cuda":
                    row["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
                results.append(row)
        del model
    return results


def measure_decoders(args: argparse.Namespace, cfg: CfgNode, device: torch.device) -> dict:
    """Each decoder alone on the heatmaps and boxes our model decodes for one image."""
    torch.manual_seed(args.seed)
    model = train.build("matchrcnn", cfg).to(device).eval()
    seen: list[tuple[Tensor, Tensor]] = []

    def record(maps: Tensor, boxes: Tensor) -> Tensor:
        seen.append((maps, boxes))
        return DECODERS["vectorised"](maps, boxes)

    with landmark_decoder(record):
        inference_call(model, images_of(1, cfg.INPUT.MIN_SIZE_TEST, args.seed, device),
                       args.amp)()
    maps, boxes = seen[0]
    cases = {"detected": boxes}
    corners = boxes[:, :2]
    for side in BOX_SIDES:
        cases[f"{side} px"] = torch.cat([corners, corners + side], dim=1)
    timings = {}
    for case, case_boxes in cases.items():
        timings[case] = {
            name: 1000 * train.seconds_per_step(
                lambda decoder=decoder, b=case_boxes: decoder(maps, b), args.warmup,
                args.iterations, device)
            for name, decoder in DECODERS.items()}
    sides = (boxes[:, 2:] - boxes[:, :2]).mean(0).tolist()
    return {"boxes": len(boxes), "maps": list(maps.shape[1:]),
            "mean_detected_size": [round(side, 1) for side in sides], "ms": timings}


def format_tables(results: list[dict], decoding: dict) -> list[str]:
    """The model table (speed relative to torchvision's model) and the decoder table."""
    baseline = {row["batch"]: row for row in results if row["model"] == "torchvision"}
    lines = [f"{'model':42s} {'batch':>5s} {'ms/image':>9s} {'images/s':>9s} "
             f"{'vs tv Mask R-CNN':>16s}" + ("  peak MiB" if "peak_mib" in results[0] else "")]
    for row in results:
        ratio = baseline[row["batch"]]["ms_per_image"] / row["ms_per_image"]
        line = (f"{row['label']:42s} {row['batch']:5d} {row['ms_per_image']:9.1f} "
                f"{row['images_per_second']:9.2f} {ratio:15.2f}x")
        if "peak_mib" in row:
            line += f"  {row['peak_mib']:8.0f}"
        lines.append(line)
    channels, height, width = decoding["maps"]
    mean_width, mean_height = decoding["mean_detected_size"]
    lines.append(f"landmark decoding alone, one image: {decoding['boxes']} boxes of {channels} "
                 f"{height}x{width} maps (detected boxes {mean_width:.0f}x{mean_height:.0f} px "
                 "on average)")
    lines.append(f"  {'boxes':10s} {'torchvision ms':>14s} {'vectorised ms':>14s} {'speed-up':>9s}")
    for case, ms in decoding["ms"].items():
        lines.append(f"  {case:10s} {ms['torchvision']:14.2f} {ms['vectorised']:14.2f} "
                     f"{ms['torchvision'] / ms['vectorised']:8.2f}x")
    return lines


def run_benchmark(args: argparse.Namespace, command: str) -> int:
    device = train.resolve_device(args.device, args.amp)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = benchmark_cfg(args)
    size = cfg.INPUT.MIN_SIZE_TEST
    results = measure_models(args, cfg, device)
    decoding = measure_decoders(args, cfg, device)
    header = {
        "date": str(date.today()), "device": train.describe_device(device),
        "device_type": device.type, "torch": torch.__version__,
        "torchvision": torchvision.__version__, "threads": torch.get_num_threads(),
        "command": command, "config": args.config_file, "image_size": train.image_shape(size),
        "detections_per_image": cfg.TEST.DETECTIONS_PER_IMAGE, "amp": args.amp,
        "warmup": args.warmup, "iterations": args.iterations,
    }
    height, width = header["image_size"]
    print(f"date {header['date']}  device {device.type}: {header['device']}  torch "
          f"{header['torch']}  torchvision {header['torchvision']}  threads {header['threads']}")
    print(f"config {args.config_file}  images {height}x{width}  "
          f"{header['detections_per_image']} detections per image  amp "
          f"{'on' if args.amp else 'off'}  {args.warmup} warmup + {args.iterations} timed calls")
    print(f"command: {command}")
    print("\n".join(format_tables(results, decoding)))
    if args.json:
        write_json_atomic(args.json, {**header, "results": results, "decoding": decoding})
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv, prog)
    command = " ".join(filter(None, [prog or "python -m matchrcnn.benchmarks.inference",
                                     shlex.join(argv)]))
    try:
        return run_benchmark(args, command)
    except (train.OptionError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
