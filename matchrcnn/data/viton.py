"""Read VITON / VITON-HD / DressCode pair lists as consumer-to-shop retrieval ground truth.

A pair list has one ``person_image garment_image`` pair per line. The person image is a query
(a consumer image), the garment image a gallery item (a shop image), and each query has one
positive: the garment it wears. The lists give no boxes, so every item is its whole image, and no
DeepFashion2 category, so every item gets ``category_id`` (1, short_sleeved_shirt, unless told).

Image paths by layout, relative to the root given (``--root``):
- ``viton``: ``NAME`` for both (the root is VITON's ``data/women_top``: ``ID_0.jpg`` person,
  ``ID_1.jpg`` garment);
- ``viton-hd``: ``image/NAME`` (person) and ``cloth/NAME`` (garment), root = ``<split>/``;
- ``dresscode``: ``images/NAME`` for both, root = one category folder.
``auto`` picks viton-hd when the root holds ``image/`` and ``cloth/``, dresscode when it holds
``images/``, else viton.

Output (OUTDIR): ``query_gt.json`` and ``gallery_gt.json`` in DeepFashion2's official retrieval
ground-truth form, and ``images.json``, a COCO file of every image (file names relative to the
root; person images have source "user", garment images "shop"), for running a model on them
and building a gallery. Image ids number person and garment images
together, in order of first appearance; pair_id is the garment's image id, style is 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from matchrcnn.data.categories import NUM_CATEGORIES, coco_categories, is_category_id
from matchrcnn.data.deepfashion2 import ConversionError, ItemError, Problem, read_image_size
from matchrcnn.data.landmark_coco import ReadSummary, write_coco
from matchrcnn.utils.atomic import write_json_atomic

PAIR_LAYOUTS: dict[str, tuple[str, str]] = {
    "viton": ("", ""),
    "viton-hd": ("image", "cloth"),
    "dresscode": ("images", "images"),
}
"""Per layout, the folders (under the root) of person images and of garment images."""
STYLE = 1
"""Every item takes part in its pair: DeepFashion2's style > 0."""


def detect_layout(root: Path) -> str:
    """The layout a root's folders show: viton-hd, dresscode, or viton."""
    if (root / "image").is_dir() and (root / "cloth").is_dir():
        return "viton-hd"
    if (root / "images").is_dir():
        return "dresscode"
    return "viton"


class _Images:
    """Image ids in order of first appearance, with each image's COCO entry."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.entries: dict[str, dict] = {}

    def look_up(self, relative: str, source: str) -> dict:
        """The image's COCO entry, known or read anew (not kept yet); ItemError if unusable."""
        known = self.entries.get(relative)
        if known is not None:
            if known["source"] != source:
                raise ItemError(f"{relative} is listed both as a person and as a garment image")
            return known
        width, height = read_image_size(self.root / relative)
        return {"file_name": relative, "width": width, "height": height, "source": source}

    def keep(self, entry: dict) -> None:
        """Give a new entry the next id; known entries keep theirs."""
        if entry["file_name"] not in self.entries:
            self.entries[entry["file_name"]] = {"id": len(self.entries) + 1, **entry}


def _whole_image(entry: dict) -> list[float]:
    return [0.0, 0.0, float(entry["width"]), float(entry["height"])]


def convert_pairs(
    pairs_file: str | os.PathLike,
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    layout: str = "auto",
    category_id: int = 1,
    strict: bool = False,
    on_problem: Callable[[Problem], None] | None = None,
) -> ReadSummary:
    """Convert a pair list (images under ``root``) to retrieval ground truth in ``out_dir``.

    Bad lines are reported through ``on_problem`` and skipped; blank lines are ignored. A person
    listed again with another garment is a problem (a person wears one garment); a garment worn
    by several persons is not. With ``strict`` any problem raises ConversionError and nothing is
    written.
    """
    pairs_file, root, out_dir = Path(pairs_file), Path(root), Path(out_dir)
    if layout == "auto":
        layout = detect_layout(root)
    if layout not in PAIR_LAYOUTS:
        raise ConversionError(f"unknown pair layout {layout!r}; choose auto or one of "
                              f"{', '.join(PAIR_LAYOUTS)}")
    if not is_category_id(category_id):
        raise ConversionError(f"category_id must be a DeepFashion2 category id 1..{NUM_CATEGORIES},"
                              f" got {category_id!r}")
    try:
        lines = pairs_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConversionError(f"{pairs_file}: cannot be read: {error}") from error
    person_dir, garment_dir = PAIR_LAYOUTS[layout]
    images = _Images(root)
    summary = ReadSummary(str(pairs_file), "pairs", on_problem=on_problem)
    worn: dict[str, tuple[str, int]] = {}
    for line_number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        summary.read += 1
        item = f"line {line_number}"
        fields = line.split()
        if len(fields) != 2:
            summary.skip(item, f"expected 'person_image garment_image', got {len(fields)} "
                         f"field(s): {line.strip()!r:.80}")
            continue
        person = str(Path(person_dir, fields[0]).as_posix())
        garment = str(Path(garment_dir, fields[1]).as_posix())
        try:
            if person == garment:
                raise ItemError(f"the person and the garment are the same image {person}")
            if person in worn:
                before, at = worn[person]
                raise ItemError(f"person {person} was already paired with {before} on line {at}")
            found = [images.look_up(person, "user"), images.look_up(garment, "shop")]
        except ItemError as error:
            summary.skip(item, str(error))
            continue
        for entry in found:
            images.keep(entry)
        worn[person] = (garment, line_number)
        summary.converted += 1
    summary.fail_if_strict(strict)
    _write(out_dir, images, worn, category_id, f"{pairs_file.name} ({layout} layout)")
    return summary


def _write(out_dir: Path, images: _Images, worn: dict[str, tuple[str, int]], category_id: int,
           description: str) -> None:
    entries = images.entries
    query_gt, gallery_gt, annotations = [], [], []
    for relative, entry in entries.items():
        is_person = entry["source"] == "user"
        pair_id = entries[worn[relative][0]]["id"] if is_person else entry["id"]
        entry["pair_id"] = pair_id
        x, y, w, h = _whole_image(entry)
        if is_person:
            query_gt.append({"query_image_id": entry["id"], "style": STYLE, "cls": category_id,
                             "pair_id": pair_id, "bbox": [x, y, w, h]})
        else:
            gallery_gt.append({"gallery_image_id": entry["id"], "style": STYLE,
                               "pair_id": pair_id, "bbox": [x, y, w, h]})
        annotations.append({"image_id": entry["id"], "category_id": category_id,
                            "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0,
                            "pair_id": pair_id, "style": STYLE, "source": entry["source"]})
    write_coco(out_dir / "images.json", f"VITON-family pairs from {description}",
               coco_categories(), list(entries.values()), annotations)
    write_json_atomic(out_dir / "query_gt.json", query_gt)
    write_json_atomic(out_dir / "gallery_gt.json", gallery_gt)
