#!/usr/bin/env python3
"""Convert FashionAI, SAL-HG or VITON-family pair annotations to the project's formats.

  convert_dataset.py fashionai --csv FILE --images DIR --out FILE.json   COCO keypoints (24 slots)
  convert_dataset.py salhg --pkl FILE --images DIR --out FILE.json       COCO keypoints (32 slots)
  convert_dataset.py viton --pairs FILE --root DIR --out OUTDIR          retrieval ground truth

Every problem is printed as ``problem: FILE: ITEM: REASON``. By default bad rows, entries or
lines are skipped and counted in the closing summary; with --strict any problem fails the run
(exit 1) and nothing is written. Outputs are written atomically. SAL-HG pickles are loaded with a
restricted unpickler: a pickle that names anything but plain data is refused.
"""

from __future__ import annotations

import argparse
import sys

from matchrcnn.data.deepfashion2 import ConversionError, Problem
from matchrcnn.data.fashionai import convert_fashionai
from matchrcnn.data.salhg import convert_salhg
from matchrcnn.data.viton import PAIR_LAYOUTS, convert_pairs


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    datasets = parser.add_subparsers(dest="dataset", required=True, metavar="DATASET")
    fashionai = datasets.add_parser("fashionai", help="FashionAI keypoints CSV -> COCO keypoints")
    fashionai.add_argument("--csv", required=True, help="the split's CSV (e.g. train.csv)")
    fashionai.add_argument("--images", required=True,
                           help="folder the CSV's image_id paths are relative to")
    fashionai.add_argument("--out", required=True, help="COCO JSON file to write")
    salhg = datasets.add_parser("salhg", help="SAL-HG landmark pickle -> COCO keypoints")
    salhg.add_argument("--pkl", required=True, help="a SAL-HG pickle (e.g. hd_train_person.pkl)")
    salhg.add_argument("--images", required=True, help="folder holding the images it names")
    salhg.add_argument("--out", required=True, help="COCO JSON file to write")
    viton = datasets.add_parser("viton", help="VITON / VITON-HD / DressCode pairs -> retrieval "
                                "ground truth")
    viton.add_argument("--pairs", required=True, help="pair list: 'person garment' per line")
    viton.add_argument("--root", required=True, help="folder the pair list's images are under")
    viton.add_argument("--out", required=True, metavar="OUTDIR",
                       help="writes OUTDIR/query_gt.json, gallery_gt.json and images.json")
    viton.add_argument("--layout", default="auto", choices=("auto", *PAIR_LAYOUTS),
                       help="where person and garment images lie under --root (default: auto)")
    viton.add_argument("--category-id", type=int, default=1,
                       help="DeepFashion2 category id given to every item (default 1)")
    for sub in (fashionai, salhg, viton):
        sub.add_argument("--strict", action="store_true", help="fail on any problem")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)

    def report(problem: Problem) -> None:
        print(f"problem: {problem}", file=sys.stderr)

    try:
        if args.dataset == "fashionai":
            summary = convert_fashionai(args.csv, args.images, args.out, args.strict, report)
        elif args.dataset == "salhg":
            summary = convert_salhg(args.pkl, args.images, args.out, args.strict, report)
        else:
            summary = convert_pairs(args.pairs, args.root, args.out, args.layout,
                                    args.category_id, args.strict, report)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(summary.describe())
    written = (f"{args.out}/{{query_gt,gallery_gt,images}}.json" if args.dataset == "viton"
               else args.out)
    print(f"wrote {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
