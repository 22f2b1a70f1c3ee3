"""The vectorised retrieval protocol against the plain loop: on real ground truth, rule by rule."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from matchrcnn.evaluation.entries import EntriesError
from matchrcnn.evaluation.results import read_retrieval_results
from matchrcnn.evaluation.retrieval import (
    evaluate_retrieval,
    format_table,
    read_gallery_gt,
    read_query_gt,
)
from matchrcnn.evaluation.synthetic import random_retrieval_results

from .reference_retrieval import reference_retrieval

MISS_IMAGE = 999


def _subset(query_gt: list[dict], images: int) -> list[dict]:
    kept = sorted({item["query_image_id"] for item in query_gt})[:images]
    return [item for item in query_gt if item["query_image_id"] <= kept[-1]]


@pytest.mark.parametrize(("seed", "options"), [
    (0, {}),
    (1, {"empty_rate": 0.3, "extra_per_image": 2.0}),
    (2, {"hit_rate": 0.8, "detect_rate": 1.0}),
])
def test_equals_reference_on_random_submissions(val_query_gt, val_gallery_gt, seed, options):
    query_gt = _subset(val_query_gt, 1500)
    results = random_retrieval_results(query_gt, val_gallery_gt, seed, **options)
    ours = evaluate_retrieval(results, query_gt, val_gallery_gt).as_dict()
    assert ours == reference_retrieval(results, query_gt, val_gallery_gt)
    assert 0 < ours["top1"] <= ours["top5"] <= ours["top20"] < 1
    assert ours["missed"] > 0


@pytest.mark.slow
def test_equals_reference_at_full_validation_scale(val_query_gt, val_gallery_gt, tmp_path):
    results, _ = _with_inverted_boxes(random_retrieval_results(val_query_gt, val_gallery_gt,
                                                               seed=7), seed=8)
    paths = []
    for name, data in (("r", results), ("q", val_query_gt), ("g", val_gallery_gt)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(data))
    ours = evaluate_retrieval(*paths).as_dict()
    assert ours == reference_retrieval(*paths)
    assert ours["queries"] == sum(item["style"] > 0 for item in val_query_gt) == 12550


# --- each rule on hand-made cases --------------------------------------------------------------

def _query_gt(first_item_first: bool = True) -> list[dict]:
    style0 = {"query_image_id": 1, "style": 0, "cls": 1, "pair_id": 7, "bbox": [0, 0, 100, 100]}
    twin = {"query_image_id": 1, "style": 1, "cls": 2, "pair_id": 7, "bbox": [0, 0, 100, 100]}
    image1 = [style0, twin] if first_item_first else [twin, style0]
    return [*image1,
            {"query_image_id": 2, "style": 2, "cls": 3, "pair_id": 8, "bbox": [10, 10, 50, 50]},
            {"query_image_id": 3, "style": 1, "cls": 4, "pair_id": 9, "bbox": [0, 0, 40, 40]}]


GALLERY_GT = [
    {"gallery_image_id": 100, "style": 1, "pair_id": 7, "bbox": [0, 0, 80, 80]},
    {"gallery_image_id": 101, "style": 2, "pair_id": 8, "bbox": [5, 5, 60, 60]},
    {"gallery_image_id": 101, "style": 1, "pair_id": 8, "bbox": [100, 100, 160, 160]},
    {"gallery_image_id": 102, "style": 1, "pair_id": 9, "bbox": [0, 0, 10, 10]},
]


def _detection(image: int, box: list, cls: int, score: float,
               hits: dict[int, tuple[int, list]] | None = None) -> dict:
    """A detection whose retrieved list misses everywhere except at the ranks in ``hits``."""
    gallery_ids, gallery_boxes = [MISS_IMAGE] * 20, [[0, 0, 1, 1]] * 20
    for rank, (gallery_id, gallery_box) in (hits or {}).items():
        gallery_ids[rank], gallery_boxes[rank] = gallery_id, gallery_box
    return {"query_image_id": image, "query_bbox": box, "query_cls": cls, "query_score": score,
            "gallery_image_id": gallery_ids, "gallery_bbox": gallery_boxes}


def _both(results: list[dict], query_gt: list[dict], **options) -> dict:
    ours = evaluate_retrieval(results, query_gt, GALLERY_GT, **options).as_dict()
    if not options:
        assert ours == reference_retrieval(results, query_gt, GALLERY_GT)
    return ours


def test_identical_boxes_go_to_the_first_item():
    twin_hit = {0: (100, [0, 0, 80, 80])}
    results = [_detection(1, [0, 0, 100, 100], 2, 0.9, twin_hit)]
    first = _both(results, _query_gt(first_item_first=True))
    assert first["missed"] == 1 and first["top20"] == 0  # assigned to the style-0 item
    second = _both(results, _query_gt(first_item_first=False))
    assert second["missed"] == 0 and second["top1"] == 1 / 3


def test_detection_overlapping_nothing_goes_to_the_first_item():
    far = _detection(1, [500, 500, 510, 510], 2, 0.9, {3: (100, [0, 0, 80, 80])})
    assert _both([far], _query_gt(first_item_first=True))["top20"] == 0
    scored = _both([far], _query_gt(first_item_first=False))
    assert (scored["top1"], scored["top5"]) == (0, 1 / 3)


def test_equal_scores_take_the_first_detection_in_file_order():
    hit = _detection(2, [10, 10, 50, 50], 3, 0.5, {0: (101, [5, 5, 60, 60])})
    miss = _detection(2, [12, 12, 50, 50], 3, 0.5)
    assert _both([hit, miss], _query_gt())["top1"] == 1 / 3
    assert _both([miss, hit], _query_gt())["top20"] == 0


def test_wrong_class_and_images_without_detections_count_against_accuracy():
    wrong_class = _detection(2, [10, 10, 50, 50], 5, 0.9, {0: (101, [5, 5, 60, 60])})
    accuracy = _both([wrong_class], _query_gt())
    # items: the twin (image 1, no detection there), image 2's item (missed), image 3's (none)
    assert accuracy == {"top1": 0, "top5": 0, "top10": 0, "top15": 0, "top20": 0,
                        "queries": 3, "missed": 1}


@pytest.mark.parametrize(("box", "pair_style_item", "correct"), [
    ([5, 5, 60, 32.5], True, True),  # IoU exactly 0.5 counts
    ([5, 5, 60, 32], True, False),  # just under 0.5
    ([100, 100, 160, 160], False, False),  # same pair, other style in that image
])
def test_match_needs_pair_style_and_half_iou(box, pair_style_item, correct):
    results = [_detection(2, [10, 10, 50, 50], 3, 0.9, {7: (101, box)})]
    accuracy = _both(results, _query_gt())
    assert accuracy["top5"] == 0
    assert accuracy["top10"] == (1 / 3 if correct else 0)


def test_gt_box_mode_scores_each_item_with_its_own_box():
    query_gt = [*_query_gt(),
                {"query_image_id": 2, "style": 1, "cls": 3, "pair_id": 9,
                 "bbox": [10, 10, 50, 50]}]  # a twin of image 2's item: same box and class
    results = [
        _detection(1, [0, 0, 100, 100], 2, 0.9, {0: (100, [0, 0, 80, 80])}),
        _detection(2, [10, 10, 50, 50], 3, 0.4, {0: (101, [5, 5, 60, 60])}),
        _detection(2, [10, 10, 50, 50], 3, 0.8,
                   {2: (101, [5, 5, 60, 60]), 7: (102, [0, 0, 10, 10])}),
    ]
    accuracy = evaluate_retrieval(results, query_gt, GALLERY_GT, gt_boxes=True).as_dict()
    # queries: the twin of image 1 (top-1), both image-2 twins with the 0.8 entry (ranks 2 and 7)
    # and image 3's item (no entry in its image: wrong, not missed)
    assert accuracy == {"top1": 1 / 4, "top5": 2 / 4, "top10": 3 / 4, "top15": 3 / 4,
                        "top20": 3 / 4, "queries": 4, "missed": 0}


def test_gt_box_mode_rejects_entries_without_a_ground_truth_box():
    results = [_detection(2, [10, 10, 50, 50], 3, 0.4), _detection(2, [11, 10, 50, 50], 3, 0.4)]
    with pytest.raises(EntriesError, match=r"entry 1: query_bbox and query_cls match no"):
        evaluate_retrieval(results, _query_gt(), GALLERY_GT, gt_boxes=True)


def test_paths_lists_and_arrays_give_the_same_numbers(tmp_path: Path):
    results = [_detection(2, [10, 10, 50, 50], 3, 0.9, {1: (101, [5, 5, 60, 60])})]
    files = []
    for name, data in (("r.json", results), ("q.json", _query_gt()), ("g.json", GALLERY_GT)):
        files.append(tmp_path / name)
        files[-1].write_text(json.dumps(data))
    from_files = evaluate_retrieval(*files)
    from_arrays = evaluate_retrieval(read_retrieval_results(results), read_query_gt(_query_gt()),
                                     read_gallery_gt(GALLERY_GT))
    assert from_files == from_arrays
    assert from_files.as_dict()["top5"] == 1 / 3
    table = format_table(from_files, "title")
    assert "top-1" in table and "0.3333" in table and "missed: 0" in table


def test_ground_truth_without_query_items_is_an_error():
    query_gt = [dict(item, style=0) for item in _query_gt()]
    with pytest.raises(ValueError, match="no query items"):
        evaluate_retrieval([], query_gt, GALLERY_GT)


# --- what the official script scores although the format forbids it --------------------------

def _invert(box: list) -> list:
    """The box with its x (or, when its width is 0, y) corners swapped: x2 < x1 or y2 < y1."""
    x1, y1, x2, y2 = box
    return [x2, y1, x1, y2] if x1 != x2 else [x1, y2, x2, y1]


def _with_inverted_boxes(results: list[dict], seed: int) -> tuple[list[dict], list[int]]:
    """A copy with some query boxes and some retrieved boxes inverted; the entries changed."""
    rng = np.random.default_rng(seed)
    inverted, changed = [], []
    for index, entry in enumerate(results):
        entry = dict(entry)
        query, gallery = rng.random() < 0.15, rng.random() < 0.1
        if query and entry["query_bbox"][:2] != entry["query_bbox"][2:]:
            entry["query_bbox"] = _invert(entry["query_bbox"])
        if gallery:
            boxes = [list(box) for box in entry["gallery_bbox"]]
            for rank in rng.choice(20, 5, replace=False):
                if boxes[rank][:2] != boxes[rank][2:]:
                    boxes[rank] = _invert(boxes[rank])
            entry["gallery_bbox"] = boxes
        if entry != results[index]:
            changed.append(index)
        inverted.append(entry)
    return inverted, changed


def test_inverted_boxes_on_the_real_validation_ground_truth_score_as_officially(
        val_query_gt, val_gallery_gt):
    query_gt = _subset(val_query_gt, 1500)
    results = random_retrieval_results(query_gt, val_gallery_gt, seed=11, hit_rate=0.6)
    inverted, changed = _with_inverted_boxes(results, seed=12)
    accuracy = evaluate_retrieval(inverted, query_gt, val_gallery_gt)
    assert accuracy.as_dict() == reference_retrieval(inverted, query_gt, val_gallery_gt)
    # the official treatment changes the numbers: it is not the same as reading the boxes fixed
    assert accuracy.as_dict() != evaluate_retrieval(results, query_gt, val_gallery_gt).as_dict()
    first = ", ".join(map(str, changed[:10]))
    assert accuracy.warnings == (
        f"<results>: {len(changed)} entries with a box with x2 < x1 or y2 < y1 ('query_bbox' or "
        f"'gallery_bbox'), scored as by the official script: IoU 0 with every ground-truth box, "
        f"so a query box goes to its image's first item and a retrieved box matches nothing: "
        f"entries {first}, ...",)
    with pytest.raises(EntriesError, match=rf"entry {changed[0]}: '(query|gallery)_bbox' has a "
                                           r"box with x2 < x1 or y2 < y1"):
        evaluate_retrieval(inverted, query_gt, val_gallery_gt, strict=True)


def test_an_inverted_query_box_goes_to_the_first_item_and_an_inverted_hit_misses():
    twin_hit = {0: (100, [0, 0, 80, 80])}
    inverted = _detection(1, [100, 0, 0, 100], 2, 0.9, twin_hit)  # x2 < x1, on the twin's box
    # the image's first item is the twin: it takes the detection and is found at top-1
    assert _both([inverted], _query_gt(first_item_first=False))["top1"] == 1 / 3
    # the first item is the style-0 item: the twin is missed
    assert _both([inverted], _query_gt(first_item_first=True))["missed"] == 1
    upright = _detection(2, [10, 10, 50, 50], 3, 0.9, {0: (101, [60, 5, 5, 60])})
    assert _both([upright], _query_gt())["top20"] == 0


def test_classes_outside_1_to_13_match_no_item(val_query_gt, val_gallery_gt):
    query_gt = _subset(val_query_gt, 300)
    results = random_retrieval_results(query_gt, val_gallery_gt, seed=13, hit_rate=0.6)
    odd = [dict(entry, query_cls=[0, 14, -3][i % 3]) if i % 7 == 0 else entry
           for i, entry in enumerate(results)]
    accuracy = evaluate_retrieval(odd, query_gt, val_gallery_gt)
    assert accuracy.as_dict() == reference_retrieval(odd, query_gt, val_gallery_gt)
    assert accuracy.as_dict() != evaluate_retrieval(results, query_gt, val_gallery_gt).as_dict()
    assert "with a 'query_cls' outside 1..13" in accuracy.warnings[0]
    with pytest.raises(EntriesError, match=r"entry 0: 'query_cls' \d+ is not a category id"):
        evaluate_retrieval(odd, query_gt, val_gallery_gt, strict=True)


def test_detections_of_images_outside_the_query_ground_truth_are_not_read():
    results = [_detection(2, [10, 10, 50, 50], 3, 0.9, {0: (101, [5, 5, 60, 60])}),
               _detection(42, [0, 0, 5, 5], 3, 0.9), _detection(43, [0, 0, 5, 5], 3, 0.9)]
    accuracy = evaluate_retrieval(results, _query_gt(), GALLERY_GT)
    assert accuracy.as_dict() == reference_retrieval(results, _query_gt(), GALLERY_GT)
    assert accuracy.as_dict() == evaluate_retrieval(results[:1], _query_gt(), GALLERY_GT).as_dict()
    assert accuracy.warnings == ("<results>: 2 entries for images not in the query ground "
                                 "truth, left out (the official script never reads them): "
                                 "entries 1, 2",)
    with pytest.raises(EntriesError, match=r"entry 1: 'query_image_id' 42 is not an image"):
        evaluate_retrieval(results, _query_gt(), GALLERY_GT, strict=True)
    submission = read_retrieval_results(results)
    assert evaluate_retrieval(submission, _query_gt(), GALLERY_GT).warnings == accuracy.warnings


def test_duplicate_detections_change_nothing(val_query_gt, val_gallery_gt):
    query_gt = _subset(val_query_gt, 300)
    results = random_retrieval_results(query_gt, val_gallery_gt, seed=14, hit_rate=0.6)
    doubled = [entry for entry in results for _ in range(2)] + results[:50]
    accuracy = evaluate_retrieval(doubled, query_gt, val_gallery_gt)
    assert accuracy == evaluate_retrieval(results, query_gt, val_gallery_gt)
    assert accuracy.as_dict() == reference_retrieval(doubled, query_gt, val_gallery_gt)
    assert accuracy.warnings == ()


def test_more_than_20_retrieved_entries_count_only_their_first_20(val_query_gt, val_gallery_gt):
    query_gt = _subset(val_query_gt, 300)
    results = random_retrieval_results(query_gt, val_gallery_gt, seed=15, hit_rate=0.6)
    # the first five entries again behind each list: hits past rank 20 must not count
    longer = [dict(entry, gallery_image_id=entry["gallery_image_id"] * 2,
                   gallery_bbox=entry["gallery_bbox"] * 2) for entry in results]
    accuracy = evaluate_retrieval(longer, query_gt, val_gallery_gt)
    assert accuracy == evaluate_retrieval(results, query_gt, val_gallery_gt)
    assert accuracy.as_dict() == reference_retrieval(longer, query_gt, val_gallery_gt)
    assert len(accuracy.warnings) == 2
    with pytest.raises(EntriesError, match=r"entry 0: 'gallery_image_id' has 40 items, expected"):
        evaluate_retrieval(longer, query_gt, val_gallery_gt, strict=True)


@pytest.mark.parametrize(("change", "message"), [
    ({"gallery_image_id": [101] * 19}, "'gallery_image_id' has 19 items, expected 20"),
    ({"gallery_bbox": [[5, 5, 60, 60]] * 19}, "'gallery_bbox' has 19 items, expected 20"),
    ({"query_score": None}, "missing key 'query_score'"),
])
def test_what_the_official_script_cannot_read_is_refused(change, message):
    # fewer than 20 entries: the official script stops (IndexError) at the first missing rank
    # it reaches; a missing key: KeyError
    entry = {k: v for k, v in {**_detection(2, [10, 10, 50, 50], 3, 0.9), **change}.items()
             if v is not None}
    with pytest.raises(EntriesError, match=rf"entry 0: {re.escape(message)}"):
        evaluate_retrieval([entry], _query_gt(), GALLERY_GT)


def test_importing_the_protocol_needs_no_coco_library():
    code = ("import sys, matchrcnn.evaluation.retrieval, matchrcnn.evaluation.results; "
            "print(sorted(m for m in sys.modules if m.startswith(('pycocotools', 'faster_coco'))))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "[]"
