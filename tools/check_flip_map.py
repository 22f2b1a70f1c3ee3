#!/usr/bin/env python3
"""Check a landmark flip map against converted DeepFashion2 annotations.

  tools/check_flip_map.py --annotations datasets/deepfashion2/annotations/train.json
  tools/check_flip_map.py --annotations A.json --pairs my_flip_pairs.json --json report.json
  tools/check_flip_map.py --annotations A.json --write-pairs settled.json   (then INPUT.FLIP_PAIRS)

For every item seen from the front (``viewpoint`` 2; ``--viewpoints 1,2`` adds flat shop items),
each pair of the flip map whose two landmarks are both labelled is counted once: do its two points
lie on opposite sides of the item's vertical centre line (the middle of its box)? A true mirror
pair does far more often than not; a pair that does so less often than ``--threshold`` (default
0.5) over at least ``--min-items`` items is contradicted by the data.

Sides alone cannot tell two pairings apart that both cross the centre line, and the disputed pairs
of the shipped table (short_sleeved_outwear's neckline: 2-26 / 4-6, or 2-6 / 4-26) may be such a
case. So each pair is also given its mirror error: the distance between one landmark and the other
one's mirror image across the centre line, in units of the box's longer side (capped at 1),
averaged over the items. A true pair's is small; a wrong partner at another height is far off.
Both versions of the disputed pairs are scored, whichever map is checked; the data supports the
version whose pairs all cross the centre line and whose mirror error is clearly the smaller
(``--margin``: at most this share of the other's), and the checked map's pairs of the losing
version count as contradicted. ``--write-pairs FILE`` writes the checked map with the disputed
pairs of the version the data supports, for INPUT.FLIP_PAIRS.

The file is the converter's COCO form (tools/convert_deepfashion2.py), read as a stream: memory
does not grow with the split. Exit status: 0 when no pair is contradicted, 1 when some are, 2 for
a file that cannot be read.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import ijson

from matchrcnn.data.categories import (
    CATEGORY_NAMES,
    NUM_LANDMARKS,
    flip_pairs_document,
    landmark_slice,
)
from matchrcnn.utils.atomic import write_text_atomic

FRONTAL = 2


class FlipCheckError(ValueError):
    """An annotation or flip-pair file that cannot be read; the message names it."""


@dataclass
class PairCount:
    """How often a pair's two landmarks were both labelled, on opposite sides, how far apart."""

    pair: tuple[int, int]
    items: int = 0
    opposite: int = 0
    error_sum: float = 0.0

    @property
    def share(self) -> float | None:
        return self.opposite / self.items if self.items else None

    @property
    def mirror_error(self) -> float | None:
        return self.error_sum / self.items if self.items else None


def read_pairs(path: Path | None) -> list[tuple[int, int]]:
    """The pairs of a flip-pair file (the package's table when ``path`` is None)."""
    if path is None:
        document = flip_pairs_document()
    else:
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise FlipCheckError(f"{path}: cannot be read as JSON: {error}") from error
    pairs = document.get("pairs") if isinstance(document, dict) else None
    if not isinstance(pairs, list) or not all(
            isinstance(p, list) and len(p) == 2 and all(isinstance(s, int) and 0 <= s
                                                        < NUM_LANDMARKS for s in p)
            for p in pairs):
        raise FlipCheckError(f"{path}: expected {{\"pairs\": [[slot, slot], ...]}} with 0-based "
                             f"slots below {NUM_LANDMARKS}")
    for a, b in pairs:
        if category_of(a) != category_of(b):
            raise FlipCheckError(f"{path}: pair [{a}, {b}] joins slots of two categories")
    return [(a, b) for a, b in pairs]


def category_of(slot: int) -> int:
    """The category id whose slice of the 294 slots holds ``slot``."""
    return next(c for c in range(1, len(CATEGORY_NAMES) + 1)
                if landmark_slice(c).start <= slot < landmark_slice(c).stop)


def disputed_pairs() -> dict[str, list[tuple[int, int]]]:
    """The two versions of the table's disputed pairs: {"table": [...], "alternative": [...]}."""
    disputed = flip_pairs_document()["disputed"]
    return {version: [tuple(pair) for pair in disputed[f"{version}_pairs"]]
            for version in ("table", "alternative")}


def frontal_items(path: Path, viewpoints: Sequence[int]) -> Iterator[dict]:
    """The file's annotations whose viewpoint is one of ``viewpoints``, one at a time."""
    try:
        with open(path, "rb") as handle:
            for number, annotation in enumerate(ijson.items(handle, "annotations.item",
                                                            use_float=True)):
                if "viewpoint" not in annotation or "keypoints" not in annotation:
                    raise FlipCheckError(f"{path}: annotation {annotation.get('id', number)} has "
                                         "no viewpoint or keypoints: not the converter's COCO "
                                         "form (tools/convert_deepfashion2.py)")
                if annotation["viewpoint"] in viewpoints:
                    yield annotation
    except OSError as error:
        raise FlipCheckError(f"{path}: cannot be read: {error}") from error
    except ijson.JSONError as error:
        raise FlipCheckError(f"{path}: not valid JSON: {error}") from error


def count_pairs(items: Iterable[dict],
                pairs: Iterable[tuple[int, int]]) -> tuple[dict[tuple[int, int], PairCount], int]:
    """Per pair, over the items: both labelled, on opposite sides of the box's middle, and the
    mirror error (module doc); and how many items were read."""
    counts = {pair: PairCount(pair) for pair in pairs}
    seen = 0
    for item in items:
        seen += 1
        keypoints = item["keypoints"]
        x, _, width, height = item["bbox"]
        centre, size = x + width / 2, max(width, height, 1e-6)
        for (a, b), count in counts.items():
            if keypoints[3 * a + 2] > 0 and keypoints[3 * b + 2] > 0:
                (xa, ya), (xb, yb) = keypoints[3 * a: 3 * a + 2], keypoints[3 * b: 3 * b + 2]
                count.items += 1
                count.opposite += (xa - centre) * (xb - centre) < 0
                count.error_sum += min(math.hypot(xa - (2 * centre - xb), ya - yb) / size, 1.0)
    return counts, seen


def describe(pair: tuple[int, int]) -> tuple[str, str]:
    """(category name, "i-j" 1-based within the category) of a pair of global slots."""
    category_id = category_of(pair[0])
    start = landmark_slice(category_id).start
    return CATEGORY_NAMES[category_id - 1], f"{pair[0] - start + 1}-{pair[1] - start + 1}"


def verdict(count: PairCount, threshold: float, min_items: int) -> str:
    if count.items < min_items:
        return "too few"
    return "contradicted" if count.share < threshold else "ok"


def report(counts: dict, checked: list[tuple[int, int]], threshold: float, min_items: int,
           margin: float) -> dict:
    """The checked pairs' rows, the contradicted ones, and the disputed pairs' verdict."""
    def row(pair):
        count = counts[pair]
        category, within = describe(pair)
        return {"category": category, "pair": within, "slots": list(pair),
                "items": count.items, "opposite_share": count.share,
                "mirror_error": count.mirror_error,
                "verdict": verdict(count, threshold, min_items)}

    rows = [row(pair) for pair in checked]
    versions = {name: [row(pair) for pair in pairs] for name, pairs in disputed_pairs().items()}
    supported = supported_version(versions, margin)
    for name, pairs in disputed_pairs().items():
        if supported not in (None, name):  # the checked map's version lost to the other one
            for r in rows:
                if tuple(r["slots"]) in pairs:
                    r["verdict"] = "contradicted"
    return {"pairs": rows, "contradicted": [r for r in rows if r["verdict"] == "contradicted"],
            "disputed": {**versions, "supported": supported}}


def supported_version(versions: dict[str, list[dict]], margin: float) -> str | None:
    """The disputed version all of whose pairs cross the centre line and whose mean mirror error
    is at most ``margin`` times the other's; None when the data settles neither."""
    if not all(r["verdict"] != "too few" for rows in versions.values() for r in rows):
        return None
    errors = {name: sum(r["mirror_error"] for r in rows) / len(rows)
              for name, rows in versions.items()}
    for name, rows in versions.items():
        others = [errors[other] for other in versions if other != name]
        if all(r["verdict"] == "ok" for r in rows) and all(errors[name] <= margin * e
                                                           for e in others):
            return name
    return None


def settled_map(checked: list[tuple[int, int]], supported: str | None,
                annotations: Path) -> dict:
    """The checked pairs, the disputed ones replaced by the ``supported`` version's (if any)."""
    versions = disputed_pairs()
    disputed = {pair for pairs in versions.values() for pair in pairs}
    pairs = ([p for p in checked if p not in disputed] + versions[supported] if supported
             else checked)
    note = (f"disputed pairs: the {supported} version, which {annotations} supports" if supported
            else f"disputed pairs as checked: {annotations} settles neither version")
    return {"description": f"Flip pairs checked by tools/check_flip_map.py; {note}.",
            "pairs": sorted([min(p), max(p)] for p in pairs)}


def format_report(result: dict, items: int) -> str:
    def lines(rows):
        for r in rows:
            share, error = ("-" if r[key] is None else f"{r[key]:.3f}"
                            for key in ("opposite_share", "mirror_error"))
            yield (f"  {r['category']:<22} {r['pair']:>6}  {r['items']:>7}  {share:>8}  "
                   f"{error:>6}  {r['verdict']}")

    header = (f"  {'category':<22} {'pair':>6}  {'items':>7}  {'opposite':>8}  {'mirror':>6}  "
              "verdict")
    text = [f"{items} items seen from the front", header, *lines(result["pairs"])]
    for version in ("table", "alternative"):
        text += [f"disputed pairs, {version} version:", *lines(result["disputed"][version])]
    supported = result["disputed"]["supported"]
    text.append(f"the data supports the {supported} version of the disputed pairs" if supported
                else "the data settles neither version of the disputed pairs")
    contradicted = result["contradicted"]
    text.append(f"{len(contradicted)} pair(s) contradicted: " + ", ".join(
        f"{r['category']} {r['pair']}" for r in contradicted) if contradicted
        else "no pair of the map is contradicted")
    return "\n".join(text)


def _viewpoints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected viewpoints such as 2 or 1,2, got {text!r}") from None
    if not set(values) <= {1, 2, 3}:
        raise argparse.ArgumentTypeError(f"viewpoints are 1, 2 or 3, got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--annotations", type=Path, required=True, metavar="FILE",
                        help="COCO file written by tools/convert_deepfashion2.py")
    parser.add_argument("--pairs", type=Path, metavar="FILE",
                        help="flip pairs to check ({\"pairs\": [[a, b], ...]}, 0-based slots); "
                             "default: the package's table")
    parser.add_argument("--viewpoints", type=_viewpoints, default=(FRONTAL,),
                        help="comma-separated viewpoints counted (default 2, frontal)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="a pair on opposite sides less often than this is contradicted")
    parser.add_argument("--min-items", type=int, default=20,
                        help="items a pair needs before it can be judged")
    parser.add_argument("--margin", type=float, default=0.5,
                        help="a disputed version wins when its mirror error is at most this share "
                             "of the other's")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the report here")
    parser.add_argument("--write-pairs", type=Path, metavar="FILE",
                        help="write the checked map, its disputed pairs as the data settles them "
                             "(for INPUT.FLIP_PAIRS)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        checked = read_pairs(args.pairs)
        scored = dict.fromkeys([*checked, *(p for ps in disputed_pairs().values() for p in ps)])
        counts, seen = count_pairs(frontal_items(args.annotations, args.viewpoints), scored)
    except FlipCheckError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result = report(counts, checked, args.threshold, args.min_items, args.margin)
    print(format_report(result, seen))
    if args.json:
        write_text_atomic(args.json, json.dumps({"items": seen, **result}, indent=1))
    if args.write_pairs:
        write_text_atomic(args.write_pairs, json.dumps(
            settled_map(checked, result["disputed"]["supported"], args.annotations), indent=1))
    return 1 if result["contradicted"] else 0


if __name__ == "__main__":
    sys.exit(main())
