#!/usr/bin/env python3
"""Official DeepFashion2 box, mask and landmark AP of result files from any model.

  tools/eval_results.py --gt GT.json [--bbox F] [--segm F] [--landmarks F] [--breakdowns]
                        [--json] [--strict] [--backend faster|pycocotools]

GT.json is a COCO file written by tools/convert_deepfashion2.py (for the validation split:
--split validation). The result files are in the official formats: boxes
[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}], masks with "segmentation" a
compressed RLE of the image's size, landmarks with "keypoints" 294 x 3 numbers. Each task is
COCO's AP over the 13 categories; landmarks are scored twice with the 294 DeepFashion2 sigmas:
against visible + occluded ground-truth landmarks, and against visible ones only. Prints a table,
or with --json one object {"bbox", "segm", "landmarks", "landmarks_visible"} holding COCO's
summary numbers (null where there is nothing to measure). --breakdowns adds AP, AP50 and AP75 by
scale, occlusion, zoom_in and viewpoint (DeepFashion2's tables; under "breakdowns" in the JSON).

A malformed results file stops the run (exit 1), nothing scored, with one line per bad entry:
"problem: FILE: entry N: REASON". Entries for images that are not in GT.json, and entries of
categories outside 1..13, are left out with a warning line (COCOeval would never score them);
--strict refuses them as problems instead. Imports neither torch nor FAISS.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping

from matchrcnn.evaluation.cli import print_warnings, report_problems, run_scoring
from matchrcnn.evaluation.coco import (
    ATTRIBUTES,
    BACKENDS,
    check_attributes,
    evaluate_breakdowns,
    evaluate_results,
    load_coco_gt,
)
from matchrcnn.evaluation.entries import EntriesError
from matchrcnn.evaluation.results import CocoResults, load_coco_results

KINDS = ("bbox", "segm", "landmarks")
TASKS_OF_KIND = {"bbox": ("bbox",), "segm": ("segm",),
                 "landmarks": ("landmarks", "landmarks_visible")}
TITLES = {"bbox": "bbox", "segm": "segm", "landmarks": "landmarks (visible + occluded)",
          "landmarks_visible": "landmarks (visible only)"}
COLUMNS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", required=True, metavar="GT.json",
                        help="COCO ground truth from tools/convert_deepfashion2.py")
    parser.add_argument("--bbox", metavar="FILE", help="box results")
    parser.add_argument("--segm", metavar="FILE", help="mask results (compressed RLE)")
    parser.add_argument("--landmarks", metavar="FILE", help="landmark results")
    parser.add_argument("--breakdowns", action="store_true",
                        help="also AP by scale, occlusion, zoom_in and viewpoint")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--strict", action="store_true",
                        help="entries of other images or categories are problems, not left out")
    parser.add_argument("--backend", choices=BACKENDS, default="faster",
                        help="COCO implementation (identical numbers; default faster)")
    args = parser.parse_args(argv)
    if not any(getattr(args, kind) for kind in KINDS):
        parser.error("give at least one of --bbox, --segm and --landmarks")
    return args


def _value(value: float | None) -> str:
    return "     -" if value is None else f"{value:6.4f}"


def format_summary(metrics: Mapping[str, Mapping[str, float | None]], title: str) -> str:
    """AP, AP50, AP75 and AP by area, one row per task (landmarks have no small area)."""
    lines = [title, f"{'':32s}" + "  ".join(f"{name:>6s}" for name in COLUMNS)]
    for task, values in metrics.items():
        lines.append(f"{TITLES[task]:32s}" + "  ".join(_value(values.get(name))
                                                      for name in COLUMNS))
    return "\n".join(lines)


def format_breakdowns(breakdowns: Mapping[str, Mapping[str, Mapping[str, Mapping]]]) -> str:
    """Per task, AP, AP50 and AP75 of each attribute value (DeepFashion2's breakdowns)."""
    lines = []
    for task, by_attribute in breakdowns.items():
        lines += ["", f"{TITLES[task]}, by attribute",
                  f"{'':32s}" + "  ".join(f"{name:>6s}" for name in COLUMNS[:3])]
        for attribute, values in ATTRIBUTES.items():
            for position, name in enumerate(values.values()):
                label = f"{attribute if position == 0 else '':10s}{name}"
                lines.append(f"{label:32s}" + "  ".join(
                    _value(by_attribute[attribute][name][metric]) for metric in COLUMNS[:3]))
    return "\n".join(lines)


def load_all(args: argparse.Namespace, tasks: list[str],
             ) -> tuple[Mapping, dict[str, CocoResults], list[EntriesError]]:
    """The ground truth and every results file validated, and the faults of those that are not."""
    gt = load_coco_gt(args.gt, tasks)
    if args.breakdowns:
        check_attributes(gt, name=args.gt)
    loaded, failures = {}, []
    for kind in KINDS:
        path = getattr(args, kind)
        if path is None:
            continue
        try:
            loaded[kind] = load_coco_results(path, kind, gt, strict=args.strict)
        except EntriesError as error:
            failures.append(error)
    return gt, loaded, failures


def run(args: argparse.Namespace) -> int:
    tasks = [task for kind in KINDS if getattr(args, kind) for task in TASKS_OF_KIND[kind]]
    gt, loaded, failures = load_all(args, tasks)
    if failures:
        return report_problems(failures)
    print_warnings(line for results in loaded.values() for line in results.warnings)
    metrics = evaluate_results(gt, loaded, tasks, args.backend)
    breakdowns = (evaluate_breakdowns(gt, loaded, tasks, args.backend) if args.breakdowns
                  else None)
    if args.json:
        print(json.dumps({**metrics, **({"breakdowns": breakdowns} if breakdowns else {})}))
        return 0
    print(format_summary(metrics, f"DeepFashion2 AP against {args.gt}"))
    if breakdowns:
        print(format_breakdowns(breakdowns))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_scoring(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
