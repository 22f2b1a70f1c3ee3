#!/usr/bin/env python3
"""Convert a DeepFashion2 split (<root>/<split>/annos/*.json) to the official COCO form.

Every problem is printed with its file, item and reason. By default bad items (or whole files that
cannot be read) are skipped and counted in the closing summary; with --strict any problem fails the
run (exit 1) and nothing is written. Outputs are written atomically.
"""

from __future__ import annotations

import argparse
import sys

from matchrcnn.data.deepfashion2 import ConversionError, Problem, convert_split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="dataset root holding <split>/annos, image")
    parser.add_argument("--split", required=True, help="train, validation, ...")
    parser.add_argument("--out", required=True, help="COCO JSON file to write")
    parser.add_argument("--retrieval-gt", metavar="OUTDIR",
                        help="also write OUTDIR/query_gt.json and OUTDIR/gallery_gt.json")
    parser.add_argument("--strict", action="store_true", help="fail on any problem")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes to use (default: all available cores)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error("--workers must be >= 1")

    def report(problem: Problem) -> None:
        print(f"problem: {problem}", file=sys.stderr)

    try:
        summary = convert_split(
            args.root, args.split, args.out,
            retrieval_gt_dir=args.retrieval_gt, strict=args.strict, workers=args.workers,
            on_problem=report, progress=not args.no_progress,
        )
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary.describe())
    print(f"wrote {args.out}" + (f" and {args.retrieval_gt}/{{query,gallery}}_gt.json"
                                 if args.retrieval_gt else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
