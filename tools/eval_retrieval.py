#!/usr/bin/env python3
"""Score DeepFashion2 consumer-to-shop retrieval by the official protocol: a submission file, or a
model run end to end on a split.

  tools/eval_retrieval.py --results R.json --query-gt Q.json --gallery-gt G.json [--gt-boxes]
                          [--strict]
  tools/eval_retrieval.py --config-file C --weights W --split NAME [--gallery DIR] [--out DIR]

Each query item (a user-image item with style > 0) takes the best-scoring detection of its class
among those assigned to it by highest box IoU, and is correct at top-k when one of the first k
retrieved entries shows a shop image of its pair_id and style with a box of IoU >= 0.5. Prints
top-1/5/10/15/20 accuracy as a table, or with --json one object {"top1", "top5", "top10",
"top15", "top20", "queries", "missed"}: queries counts the query items, missed those whose image
has detections of which none went to the item with its class.

A file is scored exactly as the official deepfashion2_retrieval_test.py scores it. What that
script scores although the format forbids it is scored the same way, with one warning line per
kind on stderr giving the count and the first entries: boxes with x2 < x1 or y2 < y1 (IoU 0 with
every box: a query box goes to its image's first item, a retrieved box matches nothing), a
query_cls outside 1..13 (it matches no item), more than 20 retrieved entries (only the first 20
count) and detections of images outside the query ground truth (never read). --strict refuses
them instead. A malformed file (a missing key, fewer than 20 retrieved entries, a value of the
wrong type, NaN) stops the run (exit 1), nothing scored, with one line per bad entry:
"problem: FILE: entry N: REASON".

--gt-boxes: the ground-truth-box mode. Queries were made from the ground-truth boxes: every
entry carries the exact box and class of an item of its image, and each item is scored with the
best-scoring entry carrying its own box and class (items with none are wrong).

Model mode (--config-file, --weights, --split, a registered split such as synthetic_validation):
indexes the split's shop images into the gallery (--gallery, default OUT/gallery; made if absent,
completed if a build stopped, refused if another model built it), detects the garments in its user
images and searches the gallery for each detection, writes the official results file
OUT/retrieval_results.json, scores it against the split's retrieval ground truth and writes the
accuracy to OUT/retrieval_accuracy.json. Every detection is a query (the protocol picks the best
per item); --min-score applies to the gallery's items.

Scoring files imports neither torch nor FAISS; model mode loads them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from matchrcnn.evaluation.cli import print_warnings, run_scoring
from matchrcnn.evaluation.retrieval import evaluate_retrieval, format_table

RESULTS_FILE = "retrieval_results.json"
ACCURACY_FILE = "retrieval_accuracy.json"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    files = parser.add_argument_group("scoring a results file")
    files.add_argument("--results", help="retrieval results JSON to score")
    files.add_argument("--query-gt", help="query ground truth JSON")
    files.add_argument("--gallery-gt", help="gallery ground truth JSON")
    files.add_argument("--gt-boxes", action="store_true",
                       help="ground-truth-box mode (see above) instead of detected boxes")
    files.add_argument("--strict", action="store_true",
                       help="refuse what the official script scores although the format forbids "
                            "it (see above)")
    # Model mode's arguments are spelled out here rather than taken from matchrcnn.retrieval.cli,
    # whose import loads torch and FAISS: scoring files and --help need neither.
    model = parser.add_argument_group("running a model on a split")
    model.add_argument("--config-file", metavar="FILE",
                       help="the model's config (e.g. configs/synthetic/quickstart.yaml)")
    model.add_argument("--weights", metavar="FILE",
                       help="trained weights (a checkpoint such as model_final.pth)")
    model.add_argument("--split", help="a registered split with shop and user images")
    model.add_argument("--gallery", metavar="DIR", help="gallery directory (default OUT/gallery)")
    model.add_argument("--out", metavar="DIR",
                       help="output directory (default output/eval_retrieval/SPLIT)")
    model.add_argument("--min-score", type=float, default=0.5,
                       help="gallery items: detections scoring at least this (default 0.5)")
    model.add_argument("--same-category", action="store_true",
                       help="search only gallery items of the detection's own category")
    model.add_argument("--batch-size", type=int, default=4, help="images per model call")
    model.add_argument("--workers", type=int, default=2, help="image decoding threads")
    model.add_argument("--max-pixels", type=int, metavar="N",
                       help="refuse images of more than N pixels (width x height; default: the "
                            "limit of tools/build_gallery.py --max-pixels)")
    model.add_argument("--index", metavar="KIND",
                       help="FAISS index kind, as in tools/build_gallery.py --index; default: "
                            "flat for a new gallery, an existing gallery keeps its own")
    model.add_argument("--index-setting", action="append", default=[], metavar="KEY=VALUE",
                       help="an index setting (nlist, m, nbits, nprobe, train_size, hnsw_m, "
                            "ef_construction, ef_search, rerank); repeat for several")
    model.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("opts", nargs=argparse.REMAINDER,
                        help="model mode: KEY VALUE config overrides, e.g. MODEL.DEVICE cpu")
    args = parser.parse_args(argv)
    model_mode = [args.config_file, args.weights, args.split]
    file_mode = [args.results, args.query_gt, args.gallery_gt]
    if any(model_mode) and any(file_mode):
        parser.error("give either --results/--query-gt/--gallery-gt or "
                     "--config-file/--weights/--split, not both")
    if any(model_mode) and not all(model_mode):
        parser.error("model mode needs --config-file, --weights and --split")
    if not any(model_mode) and not all(file_mode):
        parser.error("give --results, --query-gt and --gallery-gt (or run a model with "
                     "--config-file, --weights and --split)")
    if args.opts and not any(model_mode):
        parser.error(f"unrecognized arguments: {' '.join(args.opts)}")
    return args


def score(results: str, query_gt: str, gallery_gt: str, gt_boxes: bool, as_json: bool,
          strict: bool = False) -> dict:
    accuracy = evaluate_retrieval(results, query_gt, gallery_gt, gt_boxes=gt_boxes, strict=strict)
    print_warnings(accuracy.warnings)
    if as_json:
        print(json.dumps(accuracy.as_dict()))
    else:
        mode = "ground-truth boxes" if gt_boxes else "detected boxes"
        print(format_table(accuracy, f"DeepFashion2 retrieval ({mode}): {results}"))
    return accuracy.as_dict()


def run_model(args: argparse.Namespace) -> int:
    from matchrcnn.data.catalog import DatasetCatalog, DatasetFilesError, MetadataCatalog
    from matchrcnn.data.images import DEFAULT_MAX_PIXELS
    from matchrcnn.evaluation.results import write_results
    from matchrcnn.retrieval.build import BuildSettings, build_gallery
    from matchrcnn.retrieval.cli import Interrupted, index_config, load_model
    from matchrcnn.retrieval.evaluate import detected_retrieval_entries
    from matchrcnn.retrieval.gallery import Gallery
    from matchrcnn.retrieval.inference import InferenceSettings
    from matchrcnn.retrieval.sources import split_sources
    from matchrcnn.utils.atomic import write_json_atomic
    from matchrcnn.utils.errors import UsageError

    if args.split not in DatasetCatalog.names():
        raise UsageError(f"--split {args.split}: not a registered split (registered: "
                         f"{', '.join(DatasetCatalog.names())})")
    records = DatasetCatalog.get(args.split)
    files = MetadataCatalog.get(args.split).files
    shops, users = split_sources(records, "shop"), split_sources(records, "user")
    if not shops or not users:
        raise UsageError(f"--split {args.split}: retrieval needs shop and user images; it holds "
                         f"{len(shops)} shop and {len(users)} user images")
    for path in (files.query_gt, files.gallery_gt):
        if not Path(path).is_file():
            raise DatasetFilesError(f"{path} is missing: convert the split with its retrieval "
                                    f"ground truth: {files.convert_command()}")
    out = Path(args.out or Path("output") / "eval_retrieval" / args.split)
    gallery_dir = Path(args.gallery or out / "gallery")
    config = index_config(args.index, args.index_setting)
    max_pixels = DEFAULT_MAX_PIXELS if args.max_pixels is None else args.max_pixels
    inference = InferenceSettings(args.batch_size, args.workers, max_pixels)
    settings = BuildSettings(args.min_score, inference=inference, progress=not args.no_progress)
    model = load_model(args.config_file, args.weights, args.opts)

    def warn(_path: str, reason: str) -> None:
        print(f"warning: skipped {reason}", file=sys.stderr)

    with Gallery.open_or_create(gallery_dir, model.fingerprint, model.metric, config) as gallery:
        try:
            report = build_gallery(gallery, model, shops, settings, on_failure=warn)
        except KeyboardInterrupt:
            raise Interrupted(f"gallery {gallery_dir} keeps the {gallery.image_count} images "
                              f"indexed so far; run the same command again to continue") from None
        print(f"gallery {gallery_dir}: {gallery.image_count} shop images "
              f"({report.indexed} indexed now), {gallery.item_count} items", file=sys.stderr)
        entries = detected_retrieval_entries(model, gallery, users, inference,
                                             args.same_category, not args.no_progress, warn)
    results = out / RESULTS_FILE
    write_results(results, entries)
    accuracy = score(str(results), str(files.query_gt), str(files.gallery_gt), False, args.json)
    write_json_atomic(out / ACCURACY_FILE, {**accuracy, "split": args.split,
                                            "detections": len(entries),
                                            "gallery": str(gallery_dir)})
    return 0


def run_files(args: argparse.Namespace) -> int:
    score(args.results, args.query_gt, args.gallery_gt, args.gt_boxes, args.json, args.strict)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.config_file:
        return run_scoring(lambda: run_files(args))
    from matchrcnn.retrieval.cli import run_tool

    return run_tool(lambda: run_model(args))


if __name__ == "__main__":
    sys.exit(main())
