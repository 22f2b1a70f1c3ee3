"""DeepFashion2's 13 categories and their slices of the shared 294-slot landmark vector.

Every module that places, evaluates or draws landmarks reads the layout from here, so that the
table in the dataset's paper is written down exactly once.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

CATEGORY_NAMES: tuple[str, ...] = (
    "short_sleeved_shirt",
    "long_sleeved_shirt",
    "short_sleeved_outwear",
    "long_sleeved_outwear",
    "vest",
    "sling",
    "shorts",
    "trousers",
    "skirt",
    "short_sleeved_dress",
    "long_sleeved_dress",
    "vest_dress",
    "sling_dress",
)
"""Category names in id order: category id ``i`` is ``CATEGORY_NAMES[i - 1]``."""

LANDMARK_COUNTS: tuple[int, ...] = (25, 33, 31, 39, 15, 15, 10, 14, 8, 29, 37, 19, 19)
"""Number of landmarks of each category, in id order."""

NUM_CATEGORIES = len(CATEGORY_NAMES)
NUM_LANDMARKS = sum(LANDMARK_COUNTS)
assert NUM_LANDMARKS == 294

_STARTS = tuple(sum(LANDMARK_COUNTS[:i]) for i in range(NUM_CATEGORIES))


def is_category_id(value: object) -> bool:
    """True for an int (not bool) naming one of the 13 categories."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= NUM_CATEGORIES


def landmark_count(category_id: int) -> int:
    """How many landmarks the category has."""
    _check(category_id)
    return LANDMARK_COUNTS[category_id - 1]


def landmark_slice(category_id: int) -> slice:
    """The category's slots in the 294-slot vector (0-based, end exclusive)."""
    _check(category_id)
    start = _STARTS[category_id - 1]
    return slice(start, start + LANDMARK_COUNTS[category_id - 1])


def category_name(category_id: int) -> str:
    _check(category_id)
    return CATEGORY_NAMES[category_id - 1]


def coco_categories() -> list[dict]:
    """The ``categories`` block of DeepFashion2's COCO files: 294 keypoint names "1".."294"."""
    names = [str(i) for i in range(1, NUM_LANDMARKS + 1)]
    return [
        {
            "id": i,
            "name": name,
            "supercategory": "clothes",
            "keypoints": list(names),
            "skeleton": [],
        }
        for i, name in enumerate(CATEGORY_NAMES, start=1)
    ]


@lru_cache(maxsize=1)
def keypoint_oks_sigmas() -> tuple[float, ...]:
    """The 294 per-landmark OKS sigmas of the official landmark evaluation, in slot order."""
    text = resources.files("matchrcnn.data").joinpath("kpt_oks_sigmas.json").read_text()
    sigmas = tuple(float(s) for s in json.loads(text))
    assert len(sigmas) == NUM_LANDMARKS
    return sigmas


FLIP_PAIRS_FILE = "deepfashion2_flip_pairs.json"
"""Package data: the mirror pairs of the 294 slots, with their sources and the one disputed pair."""


@lru_cache(maxsize=1)
def flip_pairs_document() -> dict:
    """The whole flip-pair file: ``pairs`` (0-based global slots), ``sources``, ``disputed``."""
    return json.loads(resources.files("matchrcnn.data").joinpath(FLIP_PAIRS_FILE).read_text())


def landmark_flip_pairs() -> tuple[tuple[int, int], ...]:
    """The 131 left/right pairs of the 294 slots (0-based); the 32 slots in none mirror to
    themselves. Derived from the official landmark figure and two public codebases that agree
    (the file's ``sources``); short_sleeved_outwear's neckline is disputed (``disputed``)."""
    return tuple((int(a), int(b)) for a, b in flip_pairs_document()["pairs"])


def _check(category_id: int) -> None:
    if not is_category_id(category_id):
        raise ValueError(f"category_id must be an int in 1..{NUM_CATEGORIES}, got {category_id!r}")
