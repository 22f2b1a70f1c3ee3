#!/usr/bin/env python3
"""Score a DeepFashion2 consumer-to-shop retrieval submission by the official protocol.

Each query item (a user-image item with style > 0) takes the best-scoring detection of its class
among those assigned to it by highest box IoU, and is correct at top-k when one of the first k
retrieved entries shows a shop image of its pair_id and style with a box of IoU >= 0.5. Prints
top-1/5/10/15/20 accuracy as a table, or with --json one object {"top1", "top5", "top10",
"top15", "top20", "queries", "missed"}: queries counts the query items, missed those whose image
has detections of which none went to the item with its class. A malformed file stops the run
(exit 1) with every bad entry named.

--gt-boxes: the ground-truth-box mode. Queries were made from the ground-truth boxes: every
entry carries the exact box and class of an item of its image, and each item is scored with the
best-scoring entry carrying its own box and class (items with none are wrong).
"""

from __future__ import annotations

import argparse
import json
import sys

from matchrcnn.evaluation.retrieval import evaluate_retrieval, format_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="retrieval results JSON to score")
    parser.add_argument("--query-gt", required=True, help="query ground truth JSON")
    parser.add_argument("--gallery-gt", required=True, help="gallery ground truth JSON")
    parser.add_argument("--gt-boxes", action="store_true",
                        help="ground-truth-box mode (see above) instead of detected boxes")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        accuracy = evaluate_retrieval(args.results, args.query_gt, args.gallery_gt,
                                      gt_boxes=args.gt_boxes)
    except ValueError as error:  # EntriesError included: a malformed input file
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(accuracy.as_dict()))
    else:
        mode = "ground-truth boxes" if args.gt_boxes else "detected boxes"
        print(format_table(accuracy, f"DeepFashion2 retrieval ({mode}): {args.results}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
