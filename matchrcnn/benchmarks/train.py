"""Training speed and memory: our Match R-CNN against torchvision's Mask R-CNN with keypoints.

Both models are built from one config: the same backbone (build_backbone: depth, norm, FPN width
and norm, frozen stages), anchors, RPN settings, RoI sampling, poolers (roi_pooler), box and mask
heads (build_box_head, build_mask_head), head widths and detections per image. torchvision's model
is its MaskRCNN with a KeypointRCNN head of 294 keypoints in place of our category-sliced landmark
stream (that head has no norm: MODEL.ROI_LANDMARK_HEAD.NORM is ours alone), and no match network.
Both train on the same seeded in-memory batch at the same image size; a timed step is forward,
backward and the SGD step (with gradient clipping when the config enables it), as in the trainer.
The backbone starts from random weights: speed does not depend on them, and nothing is downloaded.

Each (model, batch size) runs in a fresh child process of this module, so its peak memory is its
own: torch.cuda.max_memory_allocated on CUDA; on CPU, the child's peak RSS above its RSS once torch
is imported. ``--inference`` adds the latency per image at batch 1, in eval mode, for both.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch
import torchvision
from fvcore.common.config import CfgNode
from torch import Tensor, nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.models.detection.rpn import RPNHead

from matchrcnn.config import ConfigError, get_cfg, merge_file, merge_overrides
from matchrcnn.data.categories import NUM_CATEGORIES, NUM_LANDMARKS, landmark_count, landmark_slice
from matchrcnn.engine.trainer import build_optimizer, optimizer_step
from matchrcnn.modeling import build_backbone, build_model
from matchrcnn.modeling.matchrcnn import build_box_head, build_mask_head, roi_pooler

REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPOSITORY / "configs" / "synthetic" / "quickstart.yaml"
MODELS = {
    "matchrcnn": "Match R-CNN (ours)",
    "torchvision": "torchvision Mask R-CNN + 294 kpts",
}
RESULT_MARKER = "BENCHMARK-RESULT "
"""Prefix of the one stdout line by which a child process hands back its measurement."""


class OptionError(ValueError):
    """Options that cannot be measured as given (exit code 2)."""


class MeasurementError(RuntimeError):
    """A child measurement that failed (exit code 1); the message carries its stderr."""


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _batch_sizes(text: str) -> list[int]:
    try:
        return [_positive_int(part) for part in text.split(",")]
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"must be a comma list of positive integers such as 2,4, got {text!r}"
        ) from error


def parse_args(argv: list[str], prog: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", default=str(DEFAULT_CONFIG), metavar="FILE")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="auto: CUDA when available, else CPU")
    parser.add_argument("--batch-sizes", type=_batch_sizes, default=[2, 4], metavar="B,B",
                        help="images per training step, one measurement each (default 2,4)")
    parser.add_argument("--size", type=_positive_int, default=None, metavar="PX",
                        help="shorter image side, for both models (default INPUT.MIN_SIZE_TEST)")
    parser.add_argument("--iterations", type=_positive_int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=_non_negative_int, default=2,
                        help="untimed steps before them")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    parser.add_argument("--inference", action="store_true",
                        help="also time inference latency per image (batch 1)")
    parser.add_argument("--threads", type=_positive_int, default=None,
                        help="torch CPU threads of each measurement (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the weights")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="also write the figures to this JSON file")
    parser.add_argument("--single", choices=tuple(MODELS), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=("train", "inference"), default="train",
                        help=argparse.SUPPRESS)
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args(argv)
    misplaced = [opt for opt in args.opts if opt.startswith("--")]
    if misplaced:
        parser.error(f"options go before the KEY VALUE overrides: move {' '.join(misplaced)}")
    return args


def resolve_device(name: str, amp: bool) -> torch.device:
    """The device to measure on; OptionError for CUDA without a GPU or AMP without CUDA."""
    cuda = torch.cuda.is_available()
    if name == "cuda" and not cuda:
        raise OptionError("--device cuda: no CUDA device is available here "
                          "(torch.cuda.is_available() is False)")
    device = torch.device("cuda" if name == "cuda" or (name == "auto" and cuda) else "cpu")
    if amp and device.type != "cuda":
        raise OptionError(f"--amp needs a CUDA device, and this run is on {device.type}: "
                          "mixed precision is measured on CUDA only; drop --amp")
    return device


def image_shape(size: int) -> tuple[int, int]:
    """(height, width) of the synthetic images: portrait 4:3 with ``size`` as the shorter side."""
    return size * 4 // 3, size


def benchmark_cfg(config_file: str, opts: list[str], size: int | None) -> CfgNode:
    """The config file and overrides, with random backbone weights and both sizes set to ``size``.

    Train and test sizes are made equal and the images are generated at that size, so both
    models resize by a factor of 1.
    """
    cfg = get_cfg()
    merge_file(cfg, config_file)
    cfg.MODEL.BACKBONE.PRETRAINED = ""
    merge_overrides(cfg, opts)
    size = size or cfg.INPUT.MIN_SIZE_TEST
    longer = image_shape(size)[0]
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (size,), longer
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = size, longer
    cfg.freeze()
    return cfg


def synthetic_batch(batch_size: int, size: int, seed: int) -> tuple[list[Tensor], list[dict]]:
    """Random images and targets in the models' input format, made from ``seed``.

    Images 2k and 2k+1 are the user and shop photos of pair k+1 and show the same items
    (categories and styles, boxes of their own), so the match loss has positive pairs.
    """
    generator = torch.Generator().manual_seed(seed)
    height, width = image_shape(size)
    images, targets = [], []
    for index in range(batch_size):
        if index % 2 == 0:
            count = int(torch.randint(1, 4, (), generator=generator))
            categories = torch.randint(1, NUM_CATEGORIES + 1, (count,), generator=generator)
        images.append(torch.rand(3, height, width, generator=generator))
        targets.append(_target(generator, categories.tolist(), (height, width),
                               pair_id=index // 2 + 1, is_shop=index % 2 == 1))
    return images, targets


def _target(generator: torch.Generator, categories: list[int], shape: tuple[int, int],
            pair_id: int, is_shop: bool) -> dict[str, Tensor]:
    count = len(categories)
    boxes = torch.stack([_random_box(generator, *shape) for _ in categories])
    masks = torch.zeros(count, *shape, dtype=torch.uint8)
    keypoints = torch.zeros(count, NUM_LANDMARKS, 3)
    for index, (box, category) in enumerate(zip(boxes, categories, strict=True)):
        x1, y1, x2, y2 = (int(v) for v in box)
        masks[index, y1:y2, x1:x2] = 1
        keypoints[index, landmark_slice(category)] = _random_landmarks(
            generator, box, landmark_count(category))
    return {
        "boxes": boxes,
        "labels": torch.tensor(categories, dtype=torch.int64),
        "masks": masks,
        "keypoints": keypoints,
        "pair_ids": torch.full((count,), pair_id, dtype=torch.int64),
        "styles": torch.arange(1, count + 1),
        "is_shop": torch.tensor(is_shop),
    }


def _random_box(generator: torch.Generator, height: int, width: int) -> Tensor:
    """An XYXY box at least a quarter of the image wide and high, starting in its top-left half."""
    x1 = int(torch.randint(0, width // 2, (), generator=generator))
    y1 = int(torch.randint(0, height // 2, (), generator=generator))
    x2 = int(torch.randint(x1 + width // 4, width + 1, (), generator=generator))
    y2 = int(torch.randint(y1 + height // 4, height + 1, (), generator=generator))
    return torch.tensor([x1, y1, x2, y2], dtype=torch.float32)


def _random_landmarks(generator: torch.Generator, box: Tensor, count: int) -> Tensor:
    """(count, 3) points inside ``box``, each visible (2) or occluded (1)."""
    xy = box[:2] + torch.rand(count, 2, generator=generator) * (box[2:] - box[:2])
    visibility = torch.randint(1, 3, (count, 1), generator=generator).float()
    return torch.cat([xy, visibility], dim=1)


def build_torchvision_model(cfg: CfgNode) -> MaskRCNN:
    """torchvision's MaskRCNN plus a 294-keypoint KeypointRCNN head, set up as ``cfg`` sets ours."""
    model_cfg, box_cfg, mask_cfg = cfg.MODEL, cfg.MODEL.ROI_BOX_HEAD, cfg.MODEL.ROI_MASK_HEAD
    rpn_cfg, roi_cfg = model_cfg.RPN, model_cfg.ROI_HEADS
    backbone = build_backbone(cfg)
    channels, classes = backbone.out_channels, roi_cfg.NUM_CLASSES + 1
    anchors = _anchor_generator(model_cfg.ANCHOR_GENERATOR)
    box_resolution = box_cfg.POOLER_RESOLUTION
    mask_dim = mask_cfg.CONV_DIM if mask_cfg.NUM_CONV else channels
    model = MaskRCNN(
        backbone,
        min_size=tuple(cfg.INPUT.MIN_SIZE_TRAIN),
        max_size=cfg.INPUT.MAX_SIZE_TRAIN,
        image_mean=list(model_cfg.PIXEL_MEAN),
        image_std=list(model_cfg.PIXEL_STD),
        rpn_anchor_generator=anchors,
        rpn_head=RPNHead(channels, anchors.num_anchors_per_location()[0]),
        rpn_pre_nms_top_n_train=rpn_cfg.PRE_NMS_TOPK_TRAIN,
        rpn_pre_nms_top_n_test=rpn_cfg.PRE_NMS_TOPK_TEST,
        rpn_post_nms_top_n_train=rpn_cfg.POST_NMS_TOPK_TRAIN,
        rpn_post_nms_top_n_test=rpn_cfg.POST_NMS_TOPK_TEST,
        rpn_nms_thresh=rpn_cfg.NMS_THRESH,
        rpn_bg_iou_thresh=rpn_cfg.IOU_THRESHOLDS[0],
        rpn_fg_iou_thresh=rpn_cfg.IOU_THRESHOLDS[1],
        rpn_batch_size_per_image=rpn_cfg.BATCH_SIZE_PER_IMAGE,
        rpn_positive_fraction=rpn_cfg.POSITIVE_FRACTION,
        box_roi_pool=roi_pooler(model_cfg, box_cfg),
        box_head=build_box_head(box_cfg, channels, (box_resolution, box_resolution)),
        box_predictor=FastRCNNPredictor(box_cfg.FC_DIM, classes),
        box_score_thresh=roi_cfg.SCORE_THRESH_TEST,
        box_nms_thresh=roi_cfg.NMS_THRESH_TEST,
        box_detections_per_img=cfg.TEST.DETECTIONS_PER_IMAGE,
        box_bg_iou_thresh=roi_cfg.IOU_THRESHOLDS[0],
        box_fg_iou_thresh=roi_cfg.IOU_THRESHOLDS[-1],
        box_batch_size_per_image=roi_cfg.BATCH_SIZE_PER_IMAGE,
        box_positive_fraction=roi_cfg.POSITIVE_FRACTION,
        bbox_reg_weights=tuple(box_cfg.BBOX_REG_WEIGHTS),
        mask_roi_pool=roi_pooler(model_cfg, mask_cfg),
        mask_head=build_mask_head(mask_cfg, channels),
        mask_predictor=MaskRCNNPredictor(mask_dim, mask_cfg.CONV_DIM, classes),
    )
    heads = model.roi_heads
    if not model_cfg.MASK_ON:
        heads.mask_roi_pool = heads.mask_head = heads.mask_predictor = None
    if model_cfg.LANDMARK_ON:
        landmark_cfg = model_cfg.ROI_LANDMARK_HEAD
        heads.keypoint_roi_pool = roi_pooler(model_cfg, landmark_cfg)
        heads.keypoint_head = KeypointRCNNHeads(channels,
                                                [landmark_cfg.CONV_DIM] * landmark_cfg.NUM_CONVS)
        heads.keypoint_predictor = KeypointRCNNPredictor(landmark_cfg.CONV_DIM, NUM_LANDMARKS)
    return model


def _anchor_generator(anchor_cfg: CfgNode) -> AnchorGenerator:
    sizes = tuple(tuple(level) for level in anchor_cfg.SIZES)
    ratios = tuple(tuple(level) for level in anchor_cfg.ASPECT_RATIOS)
    return AnchorGenerator(sizes, ratios * len(sizes) if len(ratios) == 1 else ratios)


def build(name: str, cfg: CfgNode) -> nn.Module:
    """The model named ``name`` ("matchrcnn" or "torchvision"), in training mode, on CPU."""
    return build_model(cfg) if name == "matchrcnn" else build_torchvision_model(cfg)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_step(step: Callable[[], None], warmup: int, iterations: int,
                     device: torch.device) -> float:
    """Mean wall time of ``iterations`` calls of ``step`` made after ``warmup`` untimed ones."""
    for _ in range(warmup):
        step()
    _synchronize(device)
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    _synchronize(device)
    return (time.perf_counter() - start) / iterations


def training_step(model: nn.Module, cfg: CfgNode, batch: tuple[list[Tensor], list[dict]],
                  amp: bool) -> Callable[[], None]:
    """One SGD step on ``batch`` per call, done as the trainer does it (scaler, clipping)."""
    device = batch[0][0].device
    optimizer = build_optimizer(cfg, model)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    model.train()

    def step() -> None:
        with torch.autocast(device_type=device.type, enabled=amp):
            outputs = model(*batch)
        total = sum(value for name, value in outputs.items() if name.startswith("loss_"))
        optimizer_step(cfg, model, optimizer, scaler, total)

    return step


def inference_step(model: nn.Module, image: Tensor, amp: bool) -> Callable[[], None]:
    """One eval-mode prediction of ``image`` per call."""
    model.eval()

    def step() -> None:
        with torch.no_grad(), torch.autocast(device_type=image.device.type, enabled=amp):
            model([image])

    return step


def _peak_rss_kib() -> int:
    """The process's peak resident set size so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(args: argparse.Namespace) -> dict:
    """The child's one measurement: model ``args.single``, phase ``args.phase``, one batch size."""
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    baseline_kib = _peak_rss_kib()
    cfg = benchmark_cfg(args.config_file, args.opts, args.size)
    torch.manual_seed(args.seed)
    model = build(args.single, cfg).to(device)
    batch_size = args.batch_sizes[0]
    images, targets = synthetic_batch(batch_size, cfg.INPUT.MIN_SIZE_TEST, args.seed)
    images = [image.to(device) for image in images]
    targets = [{key: value.to(device) for key, value in target.items()} for target in targets]
    if args.phase == "train":
        step = training_step(model, cfg, (images, targets), args.amp)
    else:
        step = inference_step(model, images[0], args.amp)
    seconds = seconds_per_step(step, args.warmup, args.iterations, device)
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mib = (_peak_rss_kib() - baseline_kib) / 1024
    return {"model": args.single, "phase": args.phase, "batch": batch_size,
            "images_per_second": batch_size / seconds, "ms_per_image": 1000 * seconds / batch_size,
            "peak_mib": peak_mib, "threads": torch.get_num_threads()}


def child_command(args: argparse.Namespace, device: torch.device, size: int, model: str,
                  phase: str, batch: int) -> list[str]:
    """The command line that measures one (model, phase, batch) in a fresh process."""
    command = [sys.executable, "-m", "matchrcnn.benchmarks.train",
               "--config-file", str(Path(args.config_file).resolve()), "--device", device.type,
               "--batch-sizes", str(batch), "--size", str(size),
               "--iterations", str(args.iterations), "--warmup", str(args.warmup),
               "--seed", str(args.seed), "--single", model, "--phase", phase]
    if args.amp:
        command.append("--amp")
    if args.threads:
        command += ["--threads", str(args.threads)]
    return [*command, *args.opts]


def run_child(command: list[str]) -> dict:
    """Run one measurement process and return the figures it reports."""
    path = os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")]))
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": path})
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_MARKER):
            return json.loads(line[len(RESULT_MARKER):])
    tail = "\n".join(done.stderr.strip().splitlines()[-15:])
    raise MeasurementError(f"measurement failed (exit {done.returncode}): {shlex.join(command)}"
                           f"\n{tail}")


def describe_device(device: torch.device) -> str:
    """GPU name, CUDA and driver versions; or the CPU model and core count."""
    if device.type == "cuda":
        driver = nvidia_driver()
        return (f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
                + (f", driver {driver}" if driver else ""))
    return f"{_cpu_model()}, {os.cpu_count()} cores"


def nvidia_driver() -> str | None:
    """The NVIDIA driver version nvidia-smi reports (None without nvidia-smi)."""
    if not shutil.which("nvidia-smi"):
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True, check=False)
    return done.stdout.splitlines()[0].strip() if done.returncode == 0 and done.stdout else None


def _cpu_model() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "CPU"
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else "CPU"


def format_table(results: list[dict]) -> list[str]:
    """One row per measurement; our rows carry the speed and memory ratios to torchvision's."""
    lines = [f"{'model':34s} {'phase':9s} {'batch':>5s} {'images/s':>9s} {'ms/image':>9s} "
             f"{'peak MiB':>9s}  {'speed ours/tv':>13s}  {'mem ours/tv':>11s}"]
    baseline = {(r["phase"], r["batch"]): r for r in results if r["model"] == "torchvision"}
    for row in results:
        line = (f"{MODELS[row['model']]:34s} {row['phase']:9s} {row['batch']:5d} "
                f"{row['images_per_second']:9.3f} {row['ms_per_image']:9.1f} "
                f"{row['peak_mib']:9.1f}")
        other = baseline.get((row["phase"], row["batch"]))
        if row["model"] == "matchrcnn" and other:
            speed = row["images_per_second"] / other["images_per_second"]
            memory = row["peak_mib"] / other["peak_mib"] if other["peak_mib"] > 0 else float("nan")
            line += f"  {speed:12.2f}x  {memory:10.2f}x"
        lines.append(line)
    return lines


def measure_all(args: argparse.Namespace) -> tuple[torch.device, int, list[dict]]:
    """(device, image size, results): every (phase, batch size, model), each in its own process.

    Training at each of ``args.batch_sizes``, then with ``args.inference`` the latency at batch 1.
    """
    device = resolve_device(args.device, args.amp)
    size = benchmark_cfg(args.config_file, args.opts, args.size).INPUT.MIN_SIZE_TEST
    plan = [("train", batch) for batch in args.batch_sizes]
    plan += [("inference", 1)] if args.inference else []
    results = []
    for phase, batch in plan:
        for model in MODELS:
            print(f"measuring {MODELS[model]}, {phase}, batch {batch} ...", file=sys.stderr,
                  flush=True)
            results.append(run_child(child_command(args, device, size, model, phase, batch)))
    return device, size, results


def run_benchmark(args: argparse.Namespace, command: str) -> int:
    """Measure every (phase, batch size, model) in its own process, then print and save."""
    device, size, results = measure_all(args)
    header = {
        "date": str(date.today()), "device": describe_device(device),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "threads": sorted({r["threads"] for r in results}), "command": command,
        "config": args.config_file, "image_size": image_shape(size), "amp": args.amp,
        "warmup": args.warmup, "iterations": args.iterations,
    }
    height, width = header["image_size"]
    print(f"date {header['date']}  device {device.type}: {header['device']}  torch "
          f"{header['torch']}  torchvision {header['torchvision']}  threads "
          f"{','.join(map(str, header['threads']))}")
    print(f"config {args.config_file}  images {height}x{width}  amp {'on' if args.amp else 'off'}"
          f"  {args.warmup} warmup + {args.iterations} timed steps  seed {args.seed}")
    print(f"command: {command}")
    print("\n".join(format_table(results)))
    if args.json:
        args.json.write_text(json.dumps({**header, "results": results}, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv, prog)
    try:
        if args.single:
            print(RESULT_MARKER + json.dumps(measure(args)), flush=True)
            return 0
        command = " ".join(filter(None, [prog or "python -m matchrcnn.benchmarks.train",
                                         shlex.join(argv)]))
        return run_benchmark(args, command)
    except (OptionError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except MeasurementError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
