"""FashionAI's normalized error (NE) of predicted landmarks, the challenge's metric.

NE is a mean over landmarks, not over items: the sum, over scored items and their visible
ground-truth landmarks (COCO v = 2, FashionAI's v = 1), of the distance between the prediction
and the truth divided by the item's reference length, over the number of those landmarks. The
reference length is the ground-truth distance between the two reference landmarks of the item's
category (``layout.reference_pairs``: the armpits for blouse, outwear and dress, the waistband
ends for skirt and trousers). An item whose reference landmarks are not both labelled (v > 0), or
coincide, cannot be normalised: it is skipped and counted in ``no_reference``.

Each ground-truth item is scored with the highest-scoring landmark result of its image and its
category (the first in the results on ties): FashionAI shows one garment per image and gives its
category, so this is the challenge's pairing. An item without such a result is counted in
``missed`` and not scored. FashionAI defines no OKS sigmas, so its landmark evaluation is NE
only; no keypoint AP is reported for it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from matchrcnn.data.layouts import FASHIONAI, LandmarkLayout
from matchrcnn.evaluation.coco import load_coco_gt
from matchrcnn.evaluation.entries import Problems, Source, columns, load_entries

VISIBLE = 2


@dataclass(frozen=True)
class NormalizedError:
    """NE over every scored landmark and per category (None where nothing was scored)."""

    ne: float | None
    per_category: Mapping[str, float | None]
    items: int
    """Ground-truth items scored."""
    landmarks: int
    """Visible ground-truth landmarks scored."""
    no_reference: int
    missed: int

    def as_dict(self) -> dict:
        return {"NE": self.ne, **{f"NE_{name}": value for name, value in self.per_category.items()},
                "items": self.items, "landmarks": self.landmarks,
                "no_reference": self.no_reference, "missed": self.missed}


def landmark_entries(predictions: Sequence[Mapping], layout: LandmarkLayout = FASHIONAI,
                     ) -> list[dict]:
    """Landmark results ``{"image_id", "category_id", "keypoints", "score"}`` from per-image model
    outputs ("image_id", "labels" (N,), "scores" (N,), "landmarks" (N, slots, 3)); only each
    detection's own category slots are kept."""
    entries = []
    for prediction in predictions:
        landmarks = np.asarray(prediction["landmarks"], dtype=np.float64)
        labels = np.asarray(prediction["labels"]).tolist()
        scores = np.asarray(prediction["scores"], dtype=np.float64).tolist()
        for points, label, score in zip(landmarks, labels, scores, strict=True):
            keypoints = np.zeros((layout.num_slots, 3))
            own = list(layout.slots(int(label)))
            keypoints[own] = points[own]
            entries.append({"image_id": int(prediction["image_id"]), "category_id": int(label),
                            "keypoints": keypoints.ravel().tolist(), "score": float(score)})
    return entries


def read_landmark_results(source: Source, layout: LandmarkLayout = FASHIONAI) -> list[dict]:
    """Load and validate landmark results in ``layout`` (EntriesError naming each bad entry)."""
    entries, name = load_entries(source)
    problems = Problems(name)
    arrays = columns(entries, (("image_id", (), True), ("category_id", (), True),
                               ("keypoints", (3 * layout.num_slots,), False),
                               ("score", (), False)), problems)
    categories = arrays["category_id"]
    problems.add_rows((categories < 1) | (categories > layout.num_categories),
                      f"'category_id' is not a category id 1..{layout.num_categories} of the "
                      f"{layout.name!r} layout")
    problems.raise_if_any()
    return entries


def _best_results(results: list[dict]) -> dict[tuple[int, int], np.ndarray]:
    """(image_id, category_id) -> keypoints (slots, 3) of the highest-scoring result."""
    best: dict[tuple[int, int], tuple[float, np.ndarray]] = {}
    for entry in results:
        key = (int(entry["image_id"]), int(entry["category_id"]))
        if key not in best or entry["score"] > best[key][0]:
            best[key] = (entry["score"], np.asarray(entry["keypoints"], dtype=np.float64))
    return {key: keypoints.reshape(-1, 3) for key, (_, keypoints) in best.items()}


def normalized_error(coco_gt: str | os.PathLike | Mapping, results: Source,
                     layout: LandmarkLayout = FASHIONAI) -> NormalizedError:
    """NE of landmark results (a file, or a list as from ``landmark_entries``) on a COCO ground
    truth in ``layout`` (e.g. from tools/convert_dataset.py fashionai)."""
    if not layout.reference_pairs:
        raise ValueError(f"the {layout.name!r} layout defines no reference landmarks for NE")
    gt = load_coco_gt(coco_gt, ("landmarks",))
    best = _best_results(read_landmark_results(results, layout))
    problems = Problems(f"{coco_gt if not isinstance(coco_gt, Mapping) else '<ground truth>'}"
                        " annotations")
    sums = dict.fromkeys(layout.category_names, 0.0)
    counts = dict.fromkeys(layout.category_names, 0)
    items = no_reference = missed = 0
    for index, annotation in enumerate(gt["annotations"]):
        truth = np.asarray(annotation["keypoints"], dtype=np.float64)
        category_id = annotation["category_id"]
        if truth.shape != (3 * layout.num_slots,) or not 1 <= category_id <= layout.num_categories:
            problems.add(index, f"is not an item of the {layout.name!r} layout (category "
                         f"{category_id}, {truth.size} keypoint numbers)")
            continue
        truth = truth.reshape(-1, 3)
        category = layout.category_names[category_id - 1]
        first, second = (truth[layout.slot_index(name)]
                         for name in layout.reference_pairs[category])
        reference = float(np.hypot(*(first[:2] - second[:2])))
        if first[2] <= 0 or second[2] <= 0 or reference == 0:
            no_reference += 1
            continue
        predicted = best.get((annotation["image_id"], category_id))
        if predicted is None:
            missed += 1
            continue
        visible = truth[:, 2] == VISIBLE
        distances = np.hypot(*(predicted[visible, :2] - truth[visible, :2]).T)
        sums[category] += float(distances.sum()) / reference
        counts[category] += int(visible.sum())
        items += 1
    problems.raise_if_any()
    total = sum(counts.values())
    per_category = {name: sums[name] / counts[name] if counts[name] else None for name in sums}
    return NormalizedError(ne=sum(sums.values()) / total if total else None,
                           per_category=per_category, items=items, landmarks=total,
                           no_reference=no_reference, missed=missed)
