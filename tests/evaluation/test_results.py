"""Writers of the four official result formats and the readers' errors on malformed files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from matchrcnn.data.categories import NUM_LANDMARKS, landmark_slice
from matchrcnn.evaluation.entries import EntriesError
from matchrcnn.evaluation.results import (
    box_results,
    landmark_results,
    mask_results,
    read_coco_results,
    read_retrieval_results,
    retrieval_results,
    write_results,
)


def _prediction(rng: np.random.Generator, image_id: int, count: int) -> dict:
    corner = rng.uniform(0, 40, (count, 2))
    masks = np.zeros((count, 60, 80), dtype=bool)
    for index, (x, y) in enumerate(corner.astype(int)):
        masks[index, y:y + 10, x:x + 15] = True
    return {
        "image_id": image_id,
        "boxes": torch.tensor(np.concatenate([corner, corner + 12.5], axis=1), dtype=torch.float32),
        "labels": torch.tensor(rng.integers(1, 14, count)),
        "scores": torch.tensor(rng.random(count), dtype=torch.float32),
        "masks": masks,
        "landmarks": rng.uniform(0, 60, (count, NUM_LANDMARKS, 3)),
        "gallery_image_ids": rng.integers(1, 1000, (count, 20)),
        "gallery_boxes": np.tile(np.array([1.0, 2.0, 30.0, 40.0]), (count, 20, 1)),
    }


@pytest.fixture
def predictions() -> list[dict]:
    rng = np.random.default_rng(0)
    return [_prediction(rng, 3, 2), _prediction(rng, 5, 0), _prediction(rng, 8, 3)]


def test_box_results_are_coco_xywh(predictions):
    entries = box_results(predictions)
    assert [e["image_id"] for e in entries] == [3, 3, 8, 8, 8]
    boxes = predictions[2]["boxes"].double().numpy()
    assert entries[2]["bbox"] == [*boxes[0, :2], *(boxes[0, 2:] - boxes[0, :2])]
    assert entries[2]["category_id"] == int(predictions[2]["labels"][0])
    assert entries[2]["score"] == float(predictions[2]["scores"][0])


def test_landmark_results_keep_only_the_predicted_category(predictions):
    entries = landmark_results(predictions)
    for entry, label, points in zip(entries[:2], predictions[0]["labels"].tolist(),
                                    predictions[0]["landmarks"], strict=True):
        keypoints = np.asarray(entry["keypoints"]).reshape(NUM_LANDMARKS, 3)
        own = landmark_slice(label)
        assert np.array_equal(keypoints[own], points[own])
        assert np.count_nonzero(keypoints) == np.count_nonzero(points[own])


def test_mask_results_decode_to_the_predicted_masks(predictions):
    entries = mask_results(predictions)
    assert all(isinstance(e["segmentation"]["counts"], str) for e in entries)
    decoded = mask_utils.decode(entries[3]["segmentation"])
    assert decoded.shape == (60, 80)
    assert np.array_equal(decoded.astype(bool), predictions[2]["masks"][1])
    soft = dict(predictions[2], masks=predictions[2]["masks"] * np.float32(0.7))
    assert mask_results([soft], threshold=0.8)[0]["segmentation"]["counts"] != \
        mask_results([soft], threshold=0.5)[0]["segmentation"]["counts"]


def test_written_files_read_back_equal(predictions, tmp_path: Path):
    for task, writer in (("bbox", box_results), ("segm", mask_results),
                         ("landmarks", landmark_results)):
        path = tmp_path / f"{task}.json"
        write_results(path, writer(predictions))
        entries = read_coco_results(path, task)
        assert len(entries) == 5
    path = tmp_path / "retrieval.json"
    write_results(path, retrieval_results(predictions))
    submission = read_retrieval_results(path, query_image_ids=[3, 5, 8])
    assert submission.gallery_box.shape == (5, 20, 4)
    assert np.array_equal(submission.gallery_image_id[2], predictions[2]["gallery_image_ids"][0])
    assert np.array_equal(submission.query_box[2], predictions[2]["boxes"][0].double().numpy())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bbox.json", "landmarks.json", "retrieval.json", "segm.json"]


@pytest.mark.parametrize(("change", "message"), [
    ({"boxes": np.zeros((2, 5))}, "prediction 0: 'boxes' has shape (2, 5), expected (2, 4)"),
    ({"labels": np.array([0, 3])}, "prediction 0: labels must lie in 1..13"),
    ({"scores": np.array([0.5, np.nan])}, "prediction 0: 'scores' holds non-finite values"),
    ({"gallery_image_ids": np.zeros((2, 19))}, "'gallery_image_ids' has shape (2, 19)"),
])
def test_bad_predictions_are_named(predictions, change, message):
    with pytest.raises(ValueError) as error:
        retrieval_results([dict(predictions[0], **change)])
    assert message in str(error.value)


def test_non_finite_values_are_never_written(tmp_path: Path):
    with pytest.raises(ValueError):
        write_results(tmp_path / "x.json", [{"score": math.inf}])
    assert not list(tmp_path.iterdir())


# --- a corpus of malformed files ---------------------------------------------------------------

RETRIEVAL_ENTRY = {"query_image_id": 1, "query_bbox": [1, 2, 30, 40], "query_cls": 3,
                   "query_score": 0.5, "gallery_image_id": list(range(20)),
                   "gallery_bbox": [[0, 0, 5.5, 6]] * 20}
BOX_ENTRY = {"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.25}
LANDMARK_ENTRY = {"image_id": 1, "category_id": 2, "keypoints": [0.0] * 882, "score": 0.25}
MASK_ENTRY = {"image_id": 1, "category_id": 2, "score": 0.25,
              "segmentation": {"size": [60, 80], "counts": "PPYo1"}}
GROUND_TRUTH = {"images": [{"id": 1, "height": 60, "width": 80}]}


RETRIEVAL_CASES = {
    "missing_key": ({"query_score": None}, "missing key 'query_score'"),
    "few_retrieved": ({"gallery_image_id": list(range(12))},
                      "'gallery_image_id' has 12 items, expected 20"),
    "few_boxes": ({"gallery_bbox": [[0, 0, 1, 1]] * 19},
                  "'gallery_bbox' has 19 items, expected 20"),
    "short_box": ({"gallery_bbox": [[0, 0, 1, 1]] * 3 + [[0, 0, 1]] + [[0, 0, 1, 1]] * 16},
                  "'gallery_bbox' [3] has 3 items, expected 4"),
    "nan_box": ({"query_bbox": [1, 2, float("nan"), 40]}, "'query_bbox' holds a non-finite number"),
    "infinite_score": ({"query_score": float("inf")}, "'query_score' holds a non-finite number"),
    "string_score": ({"query_score": "high"}, "'query_score' must be a number, got 'high'"),
    "bad_class": ({"query_cls": 14}, "'query_cls' 14 is not a category id 1..13"),
    "float_id": ({"query_image_id": 1.5}, "'query_image_id' must be an integer, got 1.5"),
    "unknown_image": ({"query_image_id": 4242},
                      "'query_image_id' 4242 is not an image of the query ground truth"),
    "flipped_box": ({"gallery_bbox": [[5, 0, 1, 1]] * 20},
                    "'gallery_bbox' has a box with x2 < x1 or y2 < y1"),
    "not_an_object": ([1, 2], "must be a JSON object, got list"),
}


def _file_with_bad_entry(tmp_path: Path, base: dict, change) -> Path:
    if isinstance(change, dict):
        bad = {k: v for k, v in {**base, **change}.items() if v is not None}
    else:
        bad = change
    path = tmp_path / "results.json"
    path.write_text(json.dumps([base, bad, base]))
    return path


OFFICIALLY_SCORED = {"bad_class", "unknown_image", "flipped_box"}
"""Corpus cases the official script scores: refused only when strict (scored in test_retrieval)."""


@pytest.mark.parametrize("case", sorted(RETRIEVAL_CASES))
def test_malformed_retrieval_entries_are_named(tmp_path, case):
    change, message = RETRIEVAL_CASES[case]
    path = _file_with_bad_entry(tmp_path, RETRIEVAL_ENTRY, change)
    with pytest.raises(EntriesError) as error:
        read_retrieval_results(path, query_image_ids=[1, 2], strict=True)
    text = str(error.value)
    assert text.startswith(f"{path}: 1 malformed entry")
    assert f"entry 1: {message}" in text
    assert (error.value.name, error.value.entries) == (str(path), [(1, message)])
    if case not in OFFICIALLY_SCORED:
        with pytest.raises(EntriesError) as lenient:
            read_retrieval_results(path, query_image_ids=[1, 2])
        assert lenient.value.entries == [(1, message)]


@pytest.mark.parametrize(("case", "warning", "kept"), [
    ("bad_class", "1 entry with a 'query_cls' outside 1..13, scored as by the official script: "
                  "such a detection matches no item's class: entry 1", 3),
    ("flipped_box", "1 entry with a box with x2 < x1 or y2 < y1 ('query_bbox' or 'gallery_bbox'), "
                    "scored as by the official script", 3),
    ("unknown_image", "1 entry for images not in the query ground truth, left out (the "
                      "official script never reads them): entry 1", 2),
])
def test_what_the_official_script_scores_is_read_with_one_warning(tmp_path, case, warning, kept):
    change, _ = RETRIEVAL_CASES[case]
    path = _file_with_bad_entry(tmp_path, RETRIEVAL_ENTRY, change)
    submission = read_retrieval_results(path, query_image_ids=[1, 2])
    assert len(submission) == kept
    assert len(submission.warnings) == 1
    assert submission.warnings[0].startswith(f"{path}: {warning}")


def test_lists_longer_than_20_are_cut_to_20_unless_strict(tmp_path):
    longer = dict(RETRIEVAL_ENTRY, gallery_image_id=list(range(100, 125)),
                  gallery_bbox=[[0, 0, 5.5, 6]] * 20 + [[1, 1, 2, 2]] * 5)
    path = tmp_path / "results.json"
    path.write_text(json.dumps([RETRIEVAL_ENTRY, longer, longer]))
    submission = read_retrieval_results(path)
    assert submission.gallery_image_id.shape == (3, 20)
    assert submission.gallery_image_id[1].tolist() == list(range(100, 120))
    assert submission.warnings == (
        f"{path}: 2 entries listing more than 20 'gallery_image_id', of which only the first 20 "
        f"are scored (as by the official script): entries 1, 2",
        f"{path}: 2 entries listing more than 20 'gallery_bbox', of which only the first 20 "
        f"are scored (as by the official script): entries 1, 2")
    with pytest.raises(EntriesError, match=r"entry 1: 'gallery_image_id' has 25 items, expe"):
        read_retrieval_results(path, strict=True)
    broken = dict(longer, gallery_bbox=[[0, 0, 5.5, 6]] * 24 + [[1, 1]])
    path.write_text(json.dumps([RETRIEVAL_ENTRY, broken]))
    with pytest.raises(EntriesError, match=r"entry 1: 'gallery_bbox' \[24\] has 2 items"):
        read_retrieval_results(path)


COCO_CASES = {
    "bbox_missing_score": ("bbox", BOX_ENTRY, {"score": None}, "missing key 'score'"),
    "bbox_three_numbers": ("bbox", BOX_ENTRY, {"bbox": [1, 2, 3]}, "'bbox' has 3 items"),
    "bbox_negative_size": ("bbox", BOX_ENTRY, {"bbox": [1, 2, -3, 4]},
                           "'bbox' has a negative width or height"),
    "bbox_category": ("bbox", BOX_ENTRY, {"category_id": 0}, "'category_id' 0 is not a category"),
    "bbox_unknown_image": ("bbox", BOX_ENTRY, {"image_id": 9},
                           "'image_id' 9 is not an image of the ground truth"),
    "landmarks_length": ("landmarks", LANDMARK_ENTRY, {"keypoints": [0.0] * 881},
                         "'keypoints' has 881 items, expected 882"),
    "landmarks_nan": ("landmarks", LANDMARK_ENTRY, {"keypoints": [float("nan")] * 882},
                      "'keypoints' holds a non-finite number"),
    "segm_polygon": ("segm", MASK_ENTRY, {"segmentation": [[1, 2, 3, 4, 5, 6]]},
                     "'segmentation' must be a compressed RLE"),
    "segm_size": ("segm", MASK_ENTRY, {"segmentation": {"size": [80, 60], "counts": "PPYo1"}},
                  "'segmentation' size [80, 60] is not image 1's [height, width] [60, 80]"),
}


@pytest.mark.parametrize("case", sorted(COCO_CASES))
def test_malformed_coco_entries_are_named(tmp_path, case):
    task, base, change, message = COCO_CASES[case]
    path = _file_with_bad_entry(tmp_path, base, change)
    with pytest.raises(EntriesError) as error:
        read_coco_results(path, task, GROUND_TRUTH)
    assert f"entry 1: {message}" in str(error.value)
    assert str(error.value).startswith(str(path))


@pytest.mark.parametrize(("text", "message"), [
    ("[{", "not valid JSON"),
    ('{"image_id": 1}', "holds a JSON list of entries, not a dict"),
])
def test_files_that_are_not_lists_of_entries(tmp_path, text, message):
    path = tmp_path / "results.json"
    path.write_text(text)
    with pytest.raises(EntriesError, match=message):
        read_coco_results(path, "bbox")
    with pytest.raises(EntriesError, match="cannot read"):
        read_retrieval_results(tmp_path / "absent.json")


def test_many_bad_entries_are_counted_beyond_the_first_ten(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps([dict(BOX_ENTRY, score=None)] * 25))
    with pytest.raises(EntriesError) as error:
        read_coco_results(path, "bbox")
    lines = str(error.value).splitlines()
    assert lines[0] == f"{path}: 25 malformed entries"
    assert lines[-1] == "  ... and 15 more"
    assert len(lines) == 12
