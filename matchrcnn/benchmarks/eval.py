"""Evaluation at validation scale: retrieval against the reference loop, AP with both backends.

Retrieval: a seeded random submission (about 20,000 detections of 20 retrieved entries) over the
real DeepFashion2 validation retrieval ground truth (tests/evaluation/data, or --query-gt and
--gallery-gt) is written to a temporary directory and scored from the files, best of --repeat runs
each: as a user runs it, tools/eval_retrieval.py --json as a whole process (interpreter start and
imports included), beside the plain loop of tests/evaluation/reference_retrieval.py (found when
run from the repository) as a whole process too; then in this process evaluate_retrieval and the
loop from the files, the project's readers alone (files to checked arrays), and both from memory,
without the files. The official deepfashion2_retrieval_test.py is not run: it is Python 2 with
its paths written into it, and the project carries no copy of it.
AP: seeded synthetic ground truth in DeepFashion2's COCO form (--images images, 1.72 items each,
polygons, 294 landmarks) and official-format results perturbed from it; every task is timed with
each backend (validation of the results included) and the numbers are compared.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from types import ModuleType
from typing import Any

from matchrcnn.evaluation.coco import BACKENDS, TASKS, evaluate_results
from matchrcnn.evaluation.results import read_retrieval_results
from matchrcnn.evaluation.retrieval import evaluate_retrieval, read_gallery_gt, read_query_gt
from matchrcnn.evaluation.synthetic import (
    random_retrieval_results,
    synthetic_coco_ground_truth,
    synthetic_coco_results,
)

REPOSITORY = Path(__file__).resolve().parents[2]
REPOSITORY_TESTS = REPOSITORY / "tests" / "evaluation"
TOOL = REPOSITORY / "tools" / "eval_retrieval.py"


def _reference_module() -> ModuleType | None:
    """The reference loop kept in the tests, when this runs from a repository checkout."""
    path = REPOSITORY_TESTS / "reference_retrieval.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("reference_retrieval", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_json(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def _best_of(repeat: int, run: Callable[[], Any]) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = run()
        best = min(best, time.perf_counter() - start)
    return best, value


def _process(command: list[str]) -> dict:
    """What a command prints as its last line, as JSON (it fails loudly if the command fails)."""
    run = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


def _processes(args: argparse.Namespace, paths: list[Path]) -> tuple[float, dict, float]:
    """Whole-process seconds of the tool and of the reference loop, and the tool's numbers;
    both are files of the repository checkout, like the reference module."""
    files = [str(path) for path in paths]
    tool = [sys.executable, str(TOOL), "--results", files[0], "--query-gt", files[1],
            "--gallery-gt", files[2], "--json"]
    tool_seconds, printed = _best_of(args.repeat, lambda: _process(tool))
    loop = [sys.executable, "-c", "import json, sys; sys.path.insert(0, sys.argv[1]); "
            "from reference_retrieval import reference_retrieval; "
            "print(json.dumps(reference_retrieval(*sys.argv[2:])))",
            str(REPOSITORY_TESTS), *files]
    loop_seconds, _ = _best_of(args.repeat, lambda: _process(loop))
    return tool_seconds, printed, loop_seconds


def _retrieval(args: argparse.Namespace) -> bool:
    query_gt, gallery_gt = _load_json(args.query_gt), _load_json(args.gallery_gt)
    if args.query_images:
        kept = sorted({item["query_image_id"] for item in query_gt})[:args.query_images]
        query_gt = [item for item in query_gt if item["query_image_id"] <= kept[-1]]
    results = random_retrieval_results(query_gt, gallery_gt, args.seed,
                                       extra_per_image=args.extra_per_image)
    reference = _reference_module()
    with tempfile.TemporaryDirectory(prefix="matchrcnn-eval-bench-") as work:
        paths = [Path(work) / name for name in ("results.json", "query.json", "gallery.json")]
        for path, data in zip(paths, (results, query_gt, gallery_gt), strict=True):
            path.write_text(json.dumps(data), encoding="utf-8")
        size_mb = paths[0].stat().st_size / 2**20
        if reference is None:
            print("reference loop and tools/eval_retrieval.py not found: run from the repository")
            return False
        tool, printed, loop = _processes(args, paths)
        ours_files, accuracy = _best_of(args.repeat, lambda: evaluate_retrieval(*paths))
        readers = (read_retrieval_results, read_query_gt, read_gallery_gt)
        reading, _ = _best_of(args.repeat, lambda: [
            reader(path) for reader, path in zip(readers, paths, strict=True)])
        load, loaded = _best_of(args.repeat, lambda: [_load_json(path) for path in paths])
        reference_files, expected = _best_of(
            args.repeat, lambda: reference.reference_retrieval(*paths))
    arrays = (read_retrieval_results(results), read_query_gt(query_gt),
              read_gallery_gt(gallery_gt))
    ours_memory, _ = _best_of(args.repeat, lambda: evaluate_retrieval(*arrays))
    print(f"retrieval: {len(query_gt)} query ground-truth items ({accuracy.queries} with "
          f"style > 0), {len(gallery_gt)} gallery items, {len(results)} detections x 20 "
          f"entries, results file {size_mb:.1f} MiB; best of {args.repeat}")
    print(f"  tools/eval_retrieval.py --json, whole process {tool:7.3f} s")
    print(f"  reference loop, whole process                {loop:8.3f} s  "
          f"ours {loop / tool:6.1f}x faster")
    print(f"  json.load of the three files                 {load:8.3f} s")
    print(f"  project's readers, files -> checked arrays   {reading:8.3f} s")
    print(f"  evaluate_retrieval, files -> numbers         {ours_files:8.3f} s")
    print(f"  evaluate_retrieval, arrays in memory         {ours_memory:8.3f} s")
    reference_memory, _ = _best_of(args.repeat, lambda: reference.reference_retrieval(*loaded))
    print(f"  reference loop, files -> numbers             {reference_files:8.3f} s  "
          f"ours {reference_files / ours_files:6.1f}x faster")
    print(f"  reference loop, lists in memory              {reference_memory:8.3f} s  "
          f"ours {reference_memory / ours_memory:6.1f}x faster")
    identical = accuracy.as_dict() == expected == printed
    print(f"  numbers identical to the reference (tool and in process): "
          f"{'yes' if identical else 'NO'} {json.dumps(accuracy.as_dict())}")
    return identical


def _coco(args: argparse.Namespace) -> bool:
    start = time.perf_counter()
    ground_truth = synthetic_coco_ground_truth(args.images, args.seed)
    results = synthetic_coco_results(ground_truth, args.seed + 1)
    built = time.perf_counter() - start
    print(f"AP: {args.images} images, {len(ground_truth['annotations'])} items, "
          f"{len(results['bbox'])} results per task (built in {built:.0f} s)")
    print(f"  {'task':18s}" + "".join(f"{backend:>14s}" for backend in args.backends)
          + "  identical  AP")
    all_identical = True
    for task in TASKS:
        seconds, metrics = [], []
        for backend in args.backends:
            start = time.perf_counter()
            metrics.append(evaluate_results(ground_truth, results, [task], backend)[task])
            seconds.append(time.perf_counter() - start)
        identical = all(m == metrics[0] for m in metrics)
        all_identical &= identical
        print(f"  {task:18s}" + "".join(f"{s:12.2f} s" for s in seconds)
              + f"  {'yes' if identical else 'NO':9s}  {metrics[0]['AP']:.4f}")
    return all_identical


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="retrieval runs, best one kept")
    parser.add_argument("--query-gt", type=Path,
                        default=REPOSITORY_TESTS / "data" / "val_query_gt.json.gz",
                        help="query ground truth (.json or .json.gz)")
    parser.add_argument("--gallery-gt", type=Path,
                        default=REPOSITORY_TESTS / "data" / "val_gallery_gt.json.gz",
                        help="gallery ground truth (.json or .json.gz)")
    parser.add_argument("--query-images", type=int, default=0,
                        help="keep only the first N query images (0: all)")
    parser.add_argument("--extra-per-image", type=float, default=0.7,
                        help="extra detections per query image (0.7 gives ~20,000 in all)")
    parser.add_argument("--images", type=int, default=32_000, help="synthetic AP images")
    parser.add_argument("--backends", type=lambda s: s.split(","), default=list(BACKENDS),
                        help="comma-separated, from " + ",".join(BACKENDS))
    parser.add_argument("--skip-retrieval", action="store_true")
    parser.add_argument("--skip-ap", action="store_true")
    args = parser.parse_args(argv)
    unknown = set(args.backends) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backends {sorted(unknown)}")
    if not args.skip_retrieval and not (args.query_gt.exists() and args.gallery_gt.exists()):
        parser.error(f"retrieval ground truth not found: {args.query_gt}, {args.gallery_gt}")

    print(f"date {date.today()}  machine {platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}")
    ok = True
    if not args.skip_retrieval:
        ok &= _retrieval(args)
    if not args.skip_ap:
        ok &= _coco(args)
    return 0 if ok else 1
