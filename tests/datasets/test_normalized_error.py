"""FashionAI's normalized error on hand-computed cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from matchrcnn.data.layouts import FASHIONAI
from matchrcnn.evaluation.entries import EntriesError
from matchrcnn.evaluation.normalized_error import landmark_entries, normalized_error

BLOUSE, OUTWEAR, DRESS, SKIRT, TROUSERS = range(1, 6)


def _points(**landmarks: tuple[float, float, int]) -> np.ndarray:
    points = np.zeros((FASHIONAI.num_slots, 3))
    for name, point in landmarks.items():
        points[FASHIONAI.slot_index(name)] = point
    return points


def _annotation(index: int, category: int, points: np.ndarray) -> dict:
    return {"id": index, "image_id": index, "category_id": category, "bbox": [0, 0, 100, 100],
            "area": 10000.0, "iscrowd": 0, "keypoints": points.ravel().tolist(),
            "num_keypoints": int((points[:, 2] > 0).sum())}


def _result(image_id: int, category: int, points: np.ndarray, score: float) -> dict:
    return {"image_id": image_id, "category_id": category,
            "keypoints": points.ravel().tolist(), "score": score}


def ground_truth() -> dict:
    items = [
        # a blouse: armpits 20 apart; the occluded neckline_right (v = 1) is not scored
        (BLOUSE, _points(armpit_left=(10, 50, 2), armpit_right=(30, 50, 2),
                         neckline_left=(15, 10, 2), neckline_right=(25, 10, 1))),
        # a skirt: waistband ends 50 apart
        (SKIRT, _points(waistband_left=(0, 0, 2), waistband_right=(40, 30, 2),
                        hemline_left=(5, 80, 2))),
        # trousers without their right waistband end: no reference length
        (TROUSERS, _points(waistband_left=(0, 0, 2), crotch=(20, 40, 2))),
        # a dress that nothing was predicted for
        (DRESS, _points(armpit_left=(10, 50, 2), armpit_right=(30, 50, 2))),
    ]
    annotations = [_annotation(i, c, p) for i, (c, p) in enumerate(items, start=1)]
    return {"images": [{"id": i, "width": 100, "height": 100, "file_name": f"{i}.jpg"}
                       for i in range(1, 5)],
            "annotations": annotations, "categories": FASHIONAI.coco_categories()}


def results() -> list[dict]:
    blouse = _points(neckline_left=(18, 14, 0.9),  # 5 off: 5 / 20 = 0.25
                     neckline_right=(90, 90, 0.9),  # occluded in the truth: ignored
                     armpit_left=(10, 50, 0.9),  # exact: 0
                     armpit_right=(30, 60, 0.9))  # 10 off: 10 / 20 = 0.5
    skirt = _points(waistband_left=(3, 4, 0.9),  # 5 off: 5 / 50 = 0.1
                    waistband_right=(40, 30, 0.9),  # exact: 0
                    hemline_left=(5, 105, 0.9))  # 25 off: 25 / 50 = 0.5
    return [
        _result(1, BLOUSE, blouse, 0.9),
        _result(1, BLOUSE, _points(), 0.5),  # a lower-scoring detection: not used
        _result(1, OUTWEAR, _points(), 0.95),  # another category: not used for the blouse
        _result(2, SKIRT, skirt, 0.8),
        _result(3, TROUSERS, _points(), 0.8),
    ]


def test_normalized_error_on_hand_computed_values(tmp_path: Path):
    gt_file = tmp_path / "gt.json"
    gt_file.write_text(json.dumps(ground_truth()))
    error = normalized_error(gt_file, results())
    assert error.ne == pytest.approx((0.25 + 0 + 0.5 + 0.1 + 0 + 0.5) / 6)
    assert error.per_category["blouse"] == pytest.approx(0.75 / 3)
    assert error.per_category["skirt"] == pytest.approx(0.6 / 3)
    assert error.per_category["dress"] is None and error.per_category["trousers"] is None
    assert (error.items, error.landmarks, error.no_reference, error.missed) == (2, 6, 1, 1)
    summary = error.as_dict()
    assert summary["NE"] == error.ne and summary["NE_skirt"] == pytest.approx(0.2)
    assert summary["missed"] == 1 and summary["no_reference"] == 1


def test_results_file_and_model_outputs_give_the_same_error(tmp_path: Path):
    entries = results()
    path = tmp_path / "landmarks.json"
    path.write_text(json.dumps(entries))
    from_file = normalized_error(ground_truth(), path)
    predictions = [{"image_id": 1, "labels": np.array([BLOUSE]), "scores": np.array([0.9]),
                    "landmarks": np.asarray(entries[0]["keypoints"]).reshape(1, -1, 3)},
                   {"image_id": 2, "labels": np.array([SKIRT]), "scores": np.array([0.8]),
                    "landmarks": np.asarray(entries[3]["keypoints"]).reshape(1, -1, 3)}]
    from_model = normalized_error(ground_truth(), landmark_entries(predictions))
    assert from_model.ne == pytest.approx(from_file.ne)


def test_landmark_entries_keep_only_the_predicted_category_slots():
    landmarks = np.arange(24 * 3, dtype=float).reshape(1, 24, 3) + 1
    [entry] = landmark_entries([{"image_id": 7, "labels": [SKIRT], "scores": [0.5],
                                 "landmarks": landmarks}])
    keypoints = np.asarray(entry["keypoints"]).reshape(24, 3)
    own = list(FASHIONAI.slots(SKIRT))
    assert np.array_equal(keypoints[own], landmarks[0, own])
    assert not np.delete(keypoints, own, axis=0).any()
    assert (entry["image_id"], entry["category_id"], entry["score"]) == (7, SKIRT, 0.5)


def test_malformed_results_are_named():
    short = results()
    short[3]["keypoints"] = short[3]["keypoints"][:-3]
    with pytest.raises(EntriesError, match=r"<results>: 1 malformed entry\n  entry 3: "
                       r"'keypoints' has 69 items, expected 72"):
        normalized_error(ground_truth(), short)
    unknown = results()
    unknown[1]["category_id"] = 6
    with pytest.raises(EntriesError, match=r"entry 1: 'category_id' is not a category id 1\.\.5 "
                       r"of the 'fashionai' layout"):
        normalized_error(ground_truth(), unknown)


def test_ground_truth_of_another_layout_is_refused():
    gt = ground_truth()
    gt["annotations"][1]["keypoints"] = [0] * 294 * 3
    with pytest.raises(EntriesError, match=r"entry 1: is not an item of the 'fashionai' layout "
                       r"\(category 4, 882 keypoint numbers\)"):
        normalized_error(gt, results())
