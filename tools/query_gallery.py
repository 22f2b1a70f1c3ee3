#!/usr/bin/env python3
"""Find the garments of a photo in a shop gallery.

  tools/query_gallery.py --config-file C --weights W --gallery GALLERY_DIR --image PHOTO
                         [--topk 20] [--same-category] [--out DIR]

Detects the garments in PHOTO (the --max-items best of those scoring at least --min-score),
retrieves the --topk gallery items the match network scores highest for each (of the garment's
own category only with --same-category), prints them as a table, and writes DIR/results.json (per
detected item: box, category, score, and the retrieved entries with image path and id, box and
match score) and DIR/query.png (the photo with masks, boxes and landmarks, and per item a strip of
its retrieved shop crops). The gallery must have been built by the same model
(tools/build_gallery.py). Photos are read upright (EXIF orientation applied); one of more than
--max-pixels pixels is refused. One detection per garment: class-agnostic suppression is on
(TEST.CLASS_AGNOSTIC_NMS.ENABLED False among the overrides turns it off).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from matchrcnn.data.images import read_image
from matchrcnn.inference.defaults import tool_opts
from matchrcnn.retrieval.cli import (
    add_max_pixels,
    add_model_arguments,
    add_opts,
    load_model,
    run_tool,
)
from matchrcnn.retrieval.gallery import Gallery
from matchrcnn.retrieval.query import hits_table, query_photo, require_items, results_document
from matchrcnn.retrieval.visualize import write_query_png
from matchrcnn.utils.atomic import write_text_atomic
from matchrcnn.utils.errors import UsageError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--gallery", required=True, metavar="GALLERY_DIR")
    parser.add_argument("--image", required=True, metavar="PHOTO", help="the query photo")
    parser.add_argument("--topk", type=int, default=20, help="items retrieved per garment")
    parser.add_argument("--same-category", action="store_true",
                        help="retrieve only items of the garment's own category")
    parser.add_argument("--min-score", type=float, default=0.5,
                        help="query the garments detected with at least this score")
    parser.add_argument("--max-items", type=int, default=10,
                        help="query at most this many garments, the best-scoring (default 10)")
    parser.add_argument("--out", default="output/query", metavar="DIR",
                        help="where results.json and query.png go (default output/query)")
    add_max_pixels(parser)
    add_opts(parser)
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    for flag, value in (("--topk", args.topk), ("--max-items", args.max_items)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    photo = read_image(args.image, args.max_pixels, upright=True)
    with Gallery.open(args.gallery) as gallery:
        require_items(gallery)
        model = load_model(args.config_file, args.weights, tool_opts(args.opts))
        gallery.require_model(model.fingerprint, model.embed_dim)
        items = query_photo(model, gallery, photo, args.topk, args.same_category, args.min_score,
                            args.max_items)
        document = results_document(args.image, gallery, items, args.topk, args.same_category,
                                    args.min_score, args.max_items)
    print(hits_table(items) if items else
          f"no garment detected with a score of at least {args.min_score}")
    out = Path(args.out)
    write_text_atomic(out / "results.json", json.dumps(document, indent=2))
    write_query_png(out / "query.png", photo, items)
    print(f"wrote {out / 'results.json'} and {out / 'query.png'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_tool(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
