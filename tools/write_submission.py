#!/usr/bin/env python3
"""Write DeepFashion2's four official results files for a split, for the evaluation server.

  tools/write_submission.py --config-file C --split deepfashion2_test --output-dir D \\
      MODEL.WEIGHTS W [KEY VALUE ...]

Runs the model once over every image of the split (a registered name: deepfashion2_test, which
needs no annotations, or any other) and writes, in D, results_bbox.json, results_segm.json,
results_landmarks.json and results_retrieval.json in the official formats. Retrieval uses
detected items on both sides: the shop images' detections scoring at least --min-score form the
gallery (in a temporary folder), and every detection in a consumer image is a query with its 20
best shop items, in the match network's order. Which images are consumer or shop comes from the
split (for deepfashion2_test, its released retrieval_test_{consumer,shop}_information.json).
The files are written as the images are done, atomically: all four appear at the end, or, if the
run fails, none (earlier files of the same names are kept). Images that cannot be read are
reported and skipped (their items count as missed). The detections follow the config, with
class-agnostic suppression off by default as in evaluation.

Score a split you hold the ground truth of with tools/eval_results.py (boxes, masks, landmarks)
and tools/eval_retrieval.py (retrieval).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from matchrcnn.config import setup_cfg
from matchrcnn.data.images import DEFAULT_MAX_PIXELS
from matchrcnn.inference.submission import (
    RESULT_FILES,
    SubmissionSettings,
    require_heads,
    split_records,
    write_submission,
)
from matchrcnn.retrieval.cli import run_tool
from matchrcnn.retrieval.inference import InferenceSettings
from matchrcnn.retrieval.model import RetrievalModel


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, metavar="FILE",
                        help="the model's config (e.g. configs/deepfashion2/...yaml)")
    parser.add_argument("--split", required=True,
                        help="a registered split, e.g. deepfashion2_test")
    parser.add_argument("--output-dir", required=True, metavar="DIR",
                        help="where the four results files go")
    parser.add_argument("--min-score", type=float, default=0.5,
                        help="shop detections scoring at least this are gallery items "
                             "(default 0.5, as tools/eval_retrieval.py)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per model call")
    parser.add_argument("--workers", type=int, default=2, help="image decoding threads")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                        help=f"skip images of more than N pixels (default {DEFAULT_MAX_PIXELS:,})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="KEY VALUE config overrides: MODEL.WEIGHTS FILE, MODEL.DEVICE ...")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    settings = SubmissionSettings(
        args.min_score, inference=InferenceSettings(args.batch_size, args.workers,
                                                    args.max_pixels),
        progress=not args.no_progress)
    records = split_records(args.split)
    cfg = setup_cfg(args.config_file, args.opts)
    require_heads(cfg)
    model = RetrievalModel(cfg)

    def warn(_path: str, reason: str) -> None:
        tqdm.write(f"warning: skipped {reason}", file=sys.stderr)

    report = write_submission(model, records, args.output_dir, settings, on_failure=warn)
    print(f"{args.split}: {report.user_images} consumer, {report.shop_images} shop and "
          f"{report.other_images} other images, {len(report.failed)} unreadable; gallery of "
          f"{report.gallery_items} shop items (score >= {args.min_score})")
    for kind, count in report.entries.items():
        print(f"{Path(args.output_dir) / RESULT_FILES[kind]}: {count} entries")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
