"""Converter throughput: the parallel streaming converter against a plain single-process loop.

The converter is also timed with one worker, which separates what streaming the output saves (the
plain loop builds the whole COCO dict and writes it with one json.dump) from what the extra cores
add.

Builds a corpus of synthetic DeepFashion2 annotation files (a small generated set, its files copied
under new ids, its images hard-linked), converts it with both, checks the outputs hold the same
annotations, and prints files per second, the ratio, and where a single process spends its time
(JSON parsing, image headers, validation and placement, writing).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

from matchrcnn.data.categories import coco_categories
from matchrcnn.data.deepfashion2 import (
    _convert_item,
    convert_split,
    list_annotation_files,
    read_annotation_file,
    read_image_size,
    split_dirs,
)
from matchrcnn.data.synthetic import generate_dataset


def build_corpus(work_dir: Path, files: int, seed_images: int, size: int) -> Path:
    """``files`` annotation files under ``work_dir/corpus/train``, cycled from a generated set."""
    seed_root = work_dir / "seed"
    generate_dataset(seed_root, seed_images, size=size, seed=0)
    seed_annos, seed_images_dir = split_dirs(seed_root, "train")
    sources = list_annotation_files(seed_annos)
    root = work_dir / "corpus"
    annos_dir, image_dir = root / "train" / "annos", root / "train" / "image"
    annos_dir.mkdir(parents=True)
    image_dir.mkdir(parents=True)
    for index in range(files):
        source = sources[index % len(sources)]
        name = f"{index + 1:06d}"
        shutil.copyfile(source, annos_dir / f"{name}.json")
        os.link(seed_images_dir / f"{source.stem}.jpg", image_dir / f"{name}.jpg")
    return root


def plain_loop(root: Path, split: str, out: Path) -> int:
    """The straightforward converter: one process, everything in memory, one json.dump."""
    annos_dir, image_dir = split_dirs(root, split)
    images, annotations = [], []
    for path in sorted(annos_dir.glob("*.json")):
        result = read_annotation_file(path, image_dir)
        if result.image is None:
            continue
        images.append(result.image)
        for annotation in result.annotations:
            annotations.append({"id": len(annotations) + 1, **annotation})
    with open(out, "w", encoding="utf-8") as handle:
        json.dump({"categories": coco_categories(), "annotations": annotations,
                   "images": images}, handle)
    return len(annotations)


def stage_profile(root: Path, split: str, sample: int) -> dict[str, float]:
    """Seconds per file of each stage of the work, measured in one process on ``sample`` files."""
    annos_dir, image_dir = split_dirs(root, split)
    paths = list_annotation_files(annos_dir)[:sample]
    start = time.perf_counter()
    parsed = [json.loads(path.read_bytes()) for path in paths]
    parse = time.perf_counter() - start
    start = time.perf_counter()
    sizes = [read_image_size(image_dir / f"{path.stem}.jpg") for path in paths]
    headers = time.perf_counter() - start
    start = time.perf_counter()
    converted = [
        [_convert_item(value, *size) for key, value in data.items() if key.startswith("item")]
        for data, size in zip(parsed, sizes, strict=True)
    ]
    validate = time.perf_counter() - start
    start = time.perf_counter()
    for items in converted:
        for item in items:
            json.dumps(item)
    write = time.perf_counter() - start
    return {name: seconds / len(paths) for name, seconds in
            (("json parse", parse), ("image header", headers), ("validate + place", validate),
             ("serialise", write))}


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--files", type=int, default=50_000, help="annotation files to convert")
    parser.add_argument("--seed-images", type=int, default=500,
                        help="generated images whose files are cycled to build the corpus")
    parser.add_argument("--size", type=int, default=320, help="synthetic image size")
    parser.add_argument("--workers", type=int, default=None, help="converter processes")
    parser.add_argument("--work-dir", default=None, help="where to build the corpus (temporary)")
    args = parser.parse_args(argv)

    work_dir = Path(tempfile.mkdtemp(prefix="matchrcnn-convert-bench-", dir=args.work_dir))
    try:
        root = build_corpus(work_dir, args.files, args.seed_images, args.size)
        workers = args.workers or len(os.sched_getaffinity(0))

        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        summary = convert_split(root, "train", work_dir / "parallel.json", workers=workers)
        parallel = time.perf_counter() - start
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        start = time.perf_counter()
        convert_split(root, "train", work_dir / "one.json", workers=1)
        one_worker = time.perf_counter() - start

        start = time.perf_counter()
        plain_items = plain_loop(root, "train", work_dir / "plain.json")
        plain = time.perf_counter() - start
        plain_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert summary.items_out == plain_items and not summary.problems

        profile = stage_profile(root, "train", min(args.files, 5000))
        output_mb = (work_dir / "parallel.json").stat().st_size / 2**20
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    print(f"date {date.today()}  machine {platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    print(f"{args.files} annotation files, {plain_items} items, output {output_mb:.0f} MiB")
    print(f"plain single-process loop : {plain:8.1f} s  {args.files / plain:8.0f} files/s")
    print(f"converter, {workers} workers     : {parallel:8.1f} s  {args.files / parallel:8.0f} "
          f"files/s")
    print(f"converter, 1 worker       : {one_worker:8.1f} s  {args.files / one_worker:8.0f} "
          "files/s")
    print(f"speed-up over the plain loop: {plain / parallel:.2f}x; from the second core "
          f"(converter, {workers} workers vs 1): {one_worker / parallel:.2f}x")
    print(f"peak RSS growth: converter main process {(rss_after - rss_before) / 1024:.0f} MiB, "
          f"plain loop {(plain_rss - rss_after) / 1024:.0f} MiB beyond that")
    total = sum(profile.values())
    print("single-process time per file by stage:")
    for name, seconds in profile.items():
        print(f"  {name:18s} {seconds * 1e6:7.0f} us  {100 * seconds / total:5.1f}%")
    return 0
