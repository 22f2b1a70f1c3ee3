#!/usr/bin/env python3
"""Index shop images into a gallery: FAISS for the embeddings, SQLite for everything about them.

  tools/build_gallery.py --config-file C --weights W --images synthetic_validation --out DIR
  tools/build_gallery.py --config-file C --weights W --images path/to/shop/photos --out DIR

--images is a folder (every image file under it) or a registered dataset split such as
synthetic_validation or deepfashion2_validation (its shop images, with their image ids, pair_ids
and the style of the ground-truth item each detection covers). Detections scoring at least
--min-score become gallery items. Running the command again appends only images not indexed yet,
so an interrupted build continues where it stopped; images that cannot be read are reported and
recorded, and the build goes on. A gallery belongs to the model that built it: another model's
--out is refused before anything is touched. --index ivfpq or hnsw (with --index-setting
KEY=VALUE) selects an approximate index for large galleries. One item per garment:
class-agnostic suppression is on (TEST.CLASS_AGNOSTIC_NMS.ENABLED False among the overrides turns
it off; either way the gallery serves queries made with it on or off).
"""

from __future__ import annotations

import argparse
import sys

from matchrcnn.inference.defaults import tool_opts
from matchrcnn.retrieval.build import BuildSettings, build_gallery
from matchrcnn.retrieval.cli import (
    Interrupted,
    add_index_arguments,
    add_max_pixels,
    add_model_arguments,
    add_opts,
    index_config,
    load_model,
    run_tool,
)
from matchrcnn.retrieval.gallery import Gallery
from matchrcnn.retrieval.index import describe
from matchrcnn.retrieval.inference import InferenceSettings
from matchrcnn.retrieval.sources import resolve_sources


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--images", required=True, metavar="DIR_OR_SPLIT",
                        help="a folder of shop images, or a registered split's name")
    parser.add_argument("--out", required=True, metavar="GALLERY_DIR", help="gallery directory")
    parser.add_argument("--min-score", type=float, default=0.5,
                        help="keep detections scoring at least this (default 0.5)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per model call")
    parser.add_argument("--commit-every", type=int, default=64,
                        help="images per gallery transaction (default 64)")
    parser.add_argument("--workers", type=int, default=2, help="image decoding threads")
    add_max_pixels(parser)
    add_index_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_opts(parser)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    images, what = resolve_sources(args.images)
    config = index_config(args.index, args.index_setting)
    settings = BuildSettings(args.min_score, args.commit_every,
                             InferenceSettings(args.batch_size, args.workers, args.max_pixels),
                             progress=not args.no_progress)
    model = load_model(args.config_file, args.weights, tool_opts(args.opts))
    with Gallery.open_or_create(args.out, model.fingerprint, model.metric, config) as gallery:
        try:
            report = build_gallery(
                gallery, model, images, settings,
                on_failure=lambda _path, reason: print(f"warning: skipped {reason}",
                                                       file=sys.stderr))
        except KeyboardInterrupt:
            raise Interrupted(f"gallery {args.out} keeps the {gallery.image_count} images "
                              f"indexed so far; run the same command again to continue") from None
        print(f"{what}: {report.requested} images, {report.already_indexed} already indexed, "
              f"{report.indexed} indexed now with {report.items} items (score >= "
              f"{args.min_score}), {len(report.failed)} unreadable")
        kind = describe(gallery.index)["kind"]
        if kind != gallery.index_config.kind:
            kind += (f" (becomes {gallery.index_config.kind} at "
                     f"{gallery.index_config.training_threshold} items)")
        print(f"gallery {args.out}: {gallery.image_count} images, {gallery.item_count} items, "
              f"{kind} index, model {gallery.fingerprint[:16]}...")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
