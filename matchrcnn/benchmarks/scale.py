"""Memory at DeepFashion2's full scale: the training split's records, loader workers, evaluation.

(a) records: a training split of 390,884 images and 636,624 items is written in DeepFashion2's
layout (annotation files; every image a hard link to one of a few JPEGs of DeepFashion2's typical
sizes, as records need no pixels), converted by the project's converter, then loaded as the
trainer loads it, in a fresh process: peak RSS there, then the PSS of that process and of 4 forked
DataLoader workers after each has rebuilt every record of its share (PSS divides shared pages among
the processes that map them, so their sum is the memory the five really take).
(b) evaluation: a validation split of 33,669 images and 54,910 items is written and converted the
same way; 20 detections per image (boxes, image-sized masks, 294 landmarks, and a 256-d
ground-truth-box embedding per item) are fed batch by batch to the evaluator, which then scores
every task (box, mask and landmark AP, ground-truth-box retrieval), in a fresh process: peak RSS.
(c) the time of each.

Each part runs in a subprocess of its own, so that each peak is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from matchrcnn.data.categories import NUM_CATEGORIES, category_name, landmark_count

IMAGE_SIZES = ((750, 1000), (800, 600), (640, 853), (1000, 750), (600, 800))
"""(width, height) of the template JPEGs: DeepFashion2's images are mostly 600 to 1000 px."""
POLYGON_POINTS = 40
LINKS_PER_FILE = 50_000


def _item(rng: np.random.Generator, category_id: int, width: int, height: int) -> dict:
    """One item in DeepFashion2's annotation schema: box, a 40-point polygon, its landmarks."""
    x1, y1 = (float(v) for v in rng.uniform(0, [width * 0.6, height * 0.6]))
    x2 = float(rng.uniform(x1 + 20, width))
    y2 = float(rng.uniform(y1 + 20, height))
    angles = np.linspace(0, 2 * np.pi, POLYGON_POINTS, endpoint=False)
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    polygon = np.stack([cx + rx * np.cos(angles), cy + ry * np.sin(angles)], axis=1).round(2)
    count = landmark_count(category_id)
    visibility = rng.integers(0, 3, count)
    points = np.stack([rng.integers(int(x1), int(x2), count), rng.integers(int(y1), int(y2), count),
                       visibility], axis=1)
    points[visibility == 0, :2] = 0
    return {
        "segmentation": [polygon.ravel().tolist()], "scale": int(rng.integers(1, 4)),
        "viewpoint": int(rng.integers(1, 4)), "zoom_in": int(rng.integers(1, 4)),
        "landmarks": points.ravel().tolist(), "style": int(rng.integers(0, 3)),
        "bounding_box": [round(x1), round(y1), round(x2), round(y2)],
        "category_id": category_id, "occlusion": int(rng.integers(1, 4)),
        "category_name": category_name(category_id),
    }


def write_split(root: Path, split: str, images: int, items: int, seed: int) -> None:
    """``images`` annotation files holding ``items`` items in all, and their hard-linked images.

    Images come in pair groups of one user image and two shop images sharing a pair_id.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    annos, image_dir = root / split / "annos", root / split / "image"
    annos.mkdir(parents=True)
    image_dir.mkdir(parents=True)
    templates = []
    for index, (width, height) in enumerate(IMAGE_SIZES):
        path = root / f"template_{index}.jpg"
        Image.new("RGB", (width, height), (120, 110, 100)).save(path)
        templates.append(path)
    counts = np.ones(images, dtype=np.int64)
    counts[rng.choice(images, size=items - images, replace=items - images > images)] += 1
    for index in range(images):
        size = int(rng.integers(len(IMAGE_SIZES)))
        width, height = IMAGE_SIZES[size]
        annotation: dict = {"source": "user" if index % 3 == 0 else "shop",
                            "pair_id": index // 3 + 1}
        for item in range(int(counts[index])):
            category = int(rng.integers(1, NUM_CATEGORIES + 1))
            annotation[f"item{item + 1}"] = _item(rng, category, width, height)
        name = f"{index + 1:06d}"
        (annos / f"{name}.json").write_text(json.dumps(annotation))
        if index and index % LINKS_PER_FILE == 0:  # a file system caps the links of one inode
            templates = [Path(shutil.copy(path, root / f"template_{kind}_{index}.jpg"))
                         for kind, path in enumerate(templates)]
        os.link(templates[size], image_dir / f"{name}.jpg")


def _convert(root: Path, split: str, workers: int) -> Path:
    from matchrcnn.data.deepfashion2 import convert_split

    out = root / "annotations" / f"{split}.json"
    convert_split(root, split, out, root / "retrieval" / split, strict=True, workers=workers,
                  progress=False)
    return out


def _memory_kb(pid: int | str = "self") -> dict[str, int]:
    """RSS and PSS of a process, from /proc (Linux)."""
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                values[key.lower()] = int(rest.split()[0])
    return values


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _TouchRecords:
    """A DataLoader dataset that rebuilds records; the indices past the end report memory."""

    def __init__(self, records) -> None:
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int):
        if index >= len(self.records):
            return {"pid": os.getpid(), **_memory_kb()}
        return len(self.records[index]["annotations"])


def part_records(json_file: Path, image_root: Path, workers: int) -> dict:
    """In this (fresh) process: load the records as the trainer does, then fork loader workers."""
    from torch.utils.data import DataLoader  # imports torch, as the trainer's process has it

    from matchrcnn.data.records import load_coco_records

    baseline = _peak_mib()
    start = time.perf_counter()
    records = load_coco_records(json_file, image_root)
    load_seconds = time.perf_counter() - start
    peak = _peak_mib()
    items = int(records.annotation_counts().sum())
    # Round-robin: worker w gets indices w, w + workers, ...; one report index per worker last.
    indices = [*range(len(records)), *range(len(records), len(records) + workers)]
    loader = DataLoader(_TouchRecords(records), batch_size=None, sampler=indices,
                        num_workers=workers, prefetch_factor=2)
    start = time.perf_counter()
    reports, touched, main = [], 0, _memory_kb()
    for value in loader:
        if isinstance(value, dict):
            reports.append(value)
            if len(reports) == workers:
                main = _memory_kb()
        else:
            touched += int(value)
    loader_seconds = time.perf_counter() - start
    return {
        "images": len(records), "items": items, "touched_items": touched,
        "store_mib": records.nbytes / 2**20, "baseline_peak_rss_mib": baseline,
        "peak_rss_mib": peak, "load_seconds": load_seconds, "workers": workers,
        "main_pss_mib": main["pss"] / 1024,
        "worker_pss_mib": [report["pss"] / 1024 for report in reports],
        "total_pss_mib": (main["pss"] + sum(r["pss"] for r in reports)) / 1024,
        "loader_seconds": loader_seconds,
    }


def _detections(rng: np.random.Generator, record: dict, count: int) -> dict:
    """``count`` detections of one image: jittered copies of its items, then random boxes."""
    height, width = record["height"], record["width"]
    truth = np.array([a["bbox"] for a in record["annotations"]], dtype=np.float64)
    truth[:, 2:] += truth[:, :2]
    matched = min(count, len(truth))
    corners = np.sort(rng.uniform(0, 1, (count - matched, 2, 2)), axis=1) * [width, height]
    boxes = np.concatenate([truth[:matched] + rng.normal(0, 8, (matched, 4)),
                            corners.reshape(-1, 4)])
    boxes = np.clip(boxes, 0, [width - 1, height - 1, width - 1, height - 1]).astype(np.float32)
    labels = np.concatenate([[a["category_id"] for a in record["annotations"][:matched]],
                             rng.integers(1, NUM_CATEGORIES + 1, count - matched)]).astype(np.int64)
    landmarks = np.zeros((count, 294, 3), dtype=np.float32)
    landmarks[..., 0] = rng.uniform(0, width, (count, 294))
    landmarks[..., 1] = rng.uniform(0, height, (count, 294))
    landmarks[..., 2] = 1.0
    scores = rng.uniform(0.05, 1, count).astype(np.float32)
    return {"boxes": boxes, "labels": labels, "scores": scores,
            "masks": _mask_pool(height, width, count), "landmarks": landmarks}


_MASKS: dict[tuple[int, int, int], np.ndarray] = {}


def _mask_pool(height: int, width: int, count: int) -> np.ndarray:
    """``count`` image-sized masks (ellipses of many sizes), drawn once per image size: the
    evaluator encodes them afresh for every image, which is the cost being measured."""
    key = (height, width, count)
    if key not in _MASKS:
        import cv2

        rng = np.random.default_rng(count)
        masks = np.zeros((count, height, width), dtype=np.uint8)
        for mask in masks:
            x1, x2 = np.sort(rng.integers(0, width, 2))
            y1, y2 = np.sort(rng.integers(0, height, 2))
            axes = (max(int(x2 - x1) // 2, 1), max(int(y2 - y1) // 2, 1))
            cv2.ellipse(mask, (int(x1 + x2) // 2, int(y1 + y2) // 2), axes, 0, 0, 360, 1, -1)
        _MASKS[key] = masks.astype(bool)
    return _MASKS[key]


def part_evaluation(json_file: Path, image_root: Path, retrieval_dir: Path, detections: int,
                    seed: int) -> dict:
    """In this (fresh) process: feed the evaluator batch by batch, then score every task."""
    from matchrcnn.data.layouts import DEEPFASHION2
    from matchrcnn.data.records import load_coco_records
    from matchrcnn.evaluation.evaluator import DeepFashion2Evaluator, EvaluationFiles
    from matchrcnn.retrieval.metric import MatchMetric

    rng = np.random.default_rng(seed)
    records = load_coco_records(json_file, image_root)
    dim = 256
    metric = MatchMetric(-rng.uniform(0.5, 1.5, dim), 0.5)
    evaluator = DeepFashion2Evaluator(
        EvaluationFiles(json_file, retrieval_dir / "query_gt.json",
                        retrieval_dir / "gallery_gt.json"),
        ("bbox", "segm", "landmarks"), layout=DEEPFASHION2, match_metric=metric,
        distributed=False)
    baseline = _peak_mib()
    start = time.perf_counter()
    for first in range(0, len(records), 4):
        batch = [records[index] for index in range(first, min(first + 4, len(records)))]
        outputs = []
        for record in batch:
            output = _detections(rng, record, detections)
            output["gt_embeddings"] = rng.normal(0, 1, (len(record["annotations"]), dim))
            outputs.append(output)
        evaluator.process(batch, outputs)
    process_seconds = time.perf_counter() - start
    after_process = _peak_mib()
    start = time.perf_counter()
    results = evaluator.evaluate()
    score_seconds = time.perf_counter() - start
    return {
        "images": len(records), "items": int(records.annotation_counts().sum()),
        "detections": len(records) * detections, "baseline_peak_rss_mib": baseline,
        "peak_rss_after_process_mib": after_process, "peak_rss_mib": _peak_mib(),
        "process_seconds": process_seconds, "score_seconds": score_seconds,
        "bbox_AP": results["bbox"]["AP"], "retrieval_top20": results["retrieval"]["top20"],
    }


def _run_part(name: str, **kwargs: object) -> dict:
    command = [sys.executable, "-m", "matchrcnn.benchmarks.scale", "--part", name,
               "--part-args", json.dumps({k: str(v) if isinstance(v, Path) else v
                                          for k, v in kwargs.items()})]
    output = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-images", type=int, default=390_884)
    parser.add_argument("--train-items", type=int, default=636_624)
    parser.add_argument("--val-images", type=int, default=33_669)
    parser.add_argument("--val-items", type=int, default=54_910)
    parser.add_argument("--detections", type=int, default=20, help="per validation image")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers")
    parser.add_argument("--parts", default="records,evaluation",
                        help="comma-separated: records, evaluation")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default=None, help="where the splits are written (temp)")
    parser.add_argument("--out", default=None, help="also write the figures to this JSON file")
    parser.add_argument("--part", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--part-args", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.part:
        function = {"records": part_records, "evaluation": part_evaluation}[args.part]
        kwargs = json.loads(args.part_args)
        for key in ("json_file", "image_root", "retrieval_dir"):
            if key in kwargs:
                kwargs[key] = Path(kwargs[key])
        print(json.dumps(function(**kwargs)))
        return 0

    parts = args.parts.split(",")
    figures: dict = {"date": str(date.today()), "machine": f"{platform.machine()}, "
                     f"{os.cpu_count()} cores", "python": platform.python_version()}
    work_dir = Path(tempfile.mkdtemp(prefix="matchrcnn-scale-bench-", dir=args.work_dir))
    try:
        if "records" in parts:
            root = work_dir / "train_root"
            start = time.perf_counter()
            write_split(root, "train", args.train_images, args.train_items, args.seed)
            json_file = _convert(root, "train", workers=len(os.sched_getaffinity(0)))
            figures["records_prepare_seconds"] = time.perf_counter() - start
            figures["train_json_mib"] = json_file.stat().st_size / 2**20
            figures["records"] = _run_part("records", json_file=json_file,
                                           image_root=root / "train" / "image",
                                           workers=args.workers)
            shutil.rmtree(root)
        if "evaluation" in parts:
            root = work_dir / "val_root"
            write_split(root, "validation", args.val_images, args.val_items, args.seed + 1)
            json_file = _convert(root, "validation", workers=len(os.sched_getaffinity(0)))
            figures["evaluation"] = _run_part(
                "evaluation", json_file=json_file, image_root=root / "validation" / "image",
                retrieval_dir=root / "retrieval" / "validation", detections=args.detections,
                seed=args.seed)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print(json.dumps(figures, indent=1))
    if args.out:
        from matchrcnn.utils.atomic import write_json_atomic

        write_json_atomic(args.out, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
