"""Landmark layouts: which heatmap slots a model has and which of them each category uses.

The landmark head predicts one heatmap per slot; a detection of category ``c`` is decoded, trained
and scored on the slots ``layout.slots(c)`` only, in that order. DeepFashion2 gives each category
its own contiguous slice of 294 slots; FashionAI names 24 slots of which each category uses a
subset; SAL-HG's 32 unified slots are shared by every garment. Named layouts are registered here
and chosen by MODEL.ROI_LANDMARK_HEAD.LAYOUT.

A layout's ``flip_pairs`` say which slots trade places when an image is mirrored (left and right
cuff, ...): DeepFashion2's come from the package's table (categories.landmark_flip_pairs),
FashionAI's from its left/right landmark names. SAL-HG's layout numbers its 32 points without
saying which mirror which, so it has none and its images are not flipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from matchrcnn.data.categories import (
    CATEGORY_NAMES,
    LANDMARK_COUNTS,
    keypoint_oks_sigmas,
    landmark_flip_pairs,
)

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, eq=False)
class LandmarkLayout:
    """Slot names, per-category slot lists (category id ``i`` is entry ``i - 1``) and scoring."""

    name: str
    slot_names: tuple[str, ...]
    category_names: tuple[str, ...]
    category_slots: tuple[tuple[int, ...], ...]
    oks_sigmas: tuple[float, ...] | None = None
    """Per-slot OKS sigmas of an official keypoint AP; None where the dataset defines none."""
    reference_pairs: Mapping[str, tuple[str, str]] | None = None
    """Per category name, the two slots whose distance normalises landmark errors (FashionAI's
    normalized error); None where the dataset defines no such metric."""
    flip_pairs: tuple[tuple[int, int], ...] | None = None
    """Slot pairs (0-based) that swap under a horizontal flip; slots in none map to themselves.
    None where the dataset does not say which landmarks mirror which (no flip augmentation)."""

    def __post_init__(self) -> None:
        if len(self.category_slots) != len(self.category_names):
            raise ValueError(f"layout {self.name!r}: one slot list per category is needed")
        for name, slots in zip(self.category_names, self.category_slots, strict=True):
            if not slots or len(set(slots)) != len(slots):
                raise ValueError(f"layout {self.name!r}: {name} needs distinct slots")
            if min(slots) < 0 or max(slots) >= len(self.slot_names):
                raise ValueError(f"layout {self.name!r}: {name} names a slot outside 0..."
                                 f"{len(self.slot_names) - 1}")
        if self.oks_sigmas is not None and len(self.oks_sigmas) != len(self.slot_names):
            raise ValueError(f"layout {self.name!r}: one OKS sigma per slot is needed")
        for category, pair in (self.reference_pairs or {}).items():
            if category not in self.category_names or not set(pair) <= set(self.slot_names):
                raise ValueError(f"layout {self.name!r}: bad reference pair {category}: {pair}")
        if self.flip_pairs is not None:
            self._check_flip_pairs()

    def _check_flip_pairs(self) -> None:
        """Each slot in at most one pair, and a category's slots closed under the flip."""
        paired = [slot for pair in self.flip_pairs for slot in pair]
        if len(set(paired)) != len(paired) or any(a == b for a, b in self.flip_pairs):
            raise ValueError(f"layout {self.name!r}: flip pairs must name each slot at most once")
        if min(paired, default=0) < 0 or max(paired, default=0) >= self.num_slots:
            raise ValueError(f"layout {self.name!r}: a flip pair names a slot outside 0..."
                             f"{self.num_slots - 1}")
        flip = self.flip_indices
        for name, slots in zip(self.category_names, self.category_slots, strict=True):
            outside = sorted(flip[slot] for slot in slots if flip[slot] not in slots)
            if outside:
                raise ValueError(f"layout {self.name!r}: flipping {name} would move its "
                                 f"landmarks to slots {outside}, which it does not use")

    @property
    def num_slots(self) -> int:
        return len(self.slot_names)

    @property
    def num_categories(self) -> int:
        return len(self.category_names)

    @property
    def max_landmarks(self) -> int:
        """Rows of a packed tensor: the largest category's slot count."""
        return max(len(slots) for slots in self.category_slots)

    def slots(self, category_id: int) -> tuple[int, ...]:
        """The slots a category uses, in its landmark order."""
        if not (isinstance(category_id, int) and 1 <= category_id <= self.num_categories):
            raise ValueError(f"layout {self.name!r}: category_id must be an int in "
                             f"1..{self.num_categories}, got {category_id!r}")
        return self.category_slots[category_id - 1]

    @cached_property
    def flip_indices(self) -> tuple[int, ...] | None:
        """For each slot, the slot its landmark moves to under a horizontal flip (an involution,
        detectron2's ``keypoint_hflip_indices``); None without flip pairs."""
        if self.flip_pairs is None:
            return None
        indices = list(range(self.num_slots))
        for a, b in self.flip_pairs:
            indices[a], indices[b] = b, a
        return tuple(indices)

    def named_flip_pairs(self) -> list[tuple[str, str]]:
        """The flip pairs by slot name: detectron2's ``keypoint_flip_map`` metadata."""
        return [(self.slot_names[a], self.slot_names[b]) for a, b in self.flip_pairs or ()]

    def slot_index(self, name: str) -> int:
        return self.slot_names.index(name)

    @cached_property
    def slot_table(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(categories, max_landmarks) slot numbers padded with ``num_slots``, and the counts."""
        import torch

        table = torch.full((self.num_categories, self.max_landmarks), self.num_slots)
        for row, slots in enumerate(self.category_slots):
            table[row, : len(slots)] = torch.tensor(slots)
        counts = torch.tensor([len(slots) for slots in self.category_slots])
        return table, counts

    def coco_categories(self) -> list[dict]:
        """The ``categories`` block of a COCO keypoint file in this layout."""
        return [
            {"id": index, "name": name, "supercategory": "clothes",
             "keypoints": list(self.slot_names), "skeleton": []}
            for index, name in enumerate(self.category_names, start=1)
        ]


def _deepfashion2() -> LandmarkLayout:
    starts = [sum(LANDMARK_COUNTS[:i]) for i in range(len(LANDMARK_COUNTS))]
    return LandmarkLayout(
        name="deepfashion2",
        slot_names=tuple(str(i) for i in range(1, sum(LANDMARK_COUNTS) + 1)),
        category_names=CATEGORY_NAMES,
        category_slots=tuple(tuple(range(start, start + count))
                             for start, count in zip(starts, LANDMARK_COUNTS, strict=True)),
        oks_sigmas=keypoint_oks_sigmas(),
        flip_pairs=landmark_flip_pairs(),
    )


FASHIONAI_LANDMARKS: tuple[str, ...] = (
    "neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
    "armpit_left", "armpit_right", "waistline_left", "waistline_right", "cuff_left_in",
    "cuff_left_out", "cuff_right_in", "cuff_right_out", "top_hem_left", "top_hem_right",
    "waistband_left", "waistband_right", "hemline_left", "hemline_right", "crotch",
    "bottom_left_in", "bottom_left_out", "bottom_right_in", "bottom_right_out",
)
"""FashionAI's 24 landmark names, in the order of its CSV columns."""

_SLEEVES = ("cuff_left_in", "cuff_left_out", "cuff_right_in", "cuff_right_out")
_TOP = ("neckline_left", "neckline_right", "shoulder_left", "shoulder_right", "armpit_left",
        "armpit_right")
FASHIONAI_CATEGORY_LANDMARKS: dict[str, tuple[str, ...]] = {
    "blouse": (*_TOP[:2], "center_front", *_TOP[2:], *_SLEEVES, "top_hem_left", "top_hem_right"),
    "outwear": (*_TOP, "waistline_left", "waistline_right", *_SLEEVES, "top_hem_left",
                "top_hem_right"),
    "dress": (*_TOP[:2], "center_front", *_TOP[2:], "waistline_left", "waistline_right",
              *_SLEEVES, "hemline_left", "hemline_right"),
    "skirt": ("waistband_left", "waistband_right", "hemline_left", "hemline_right"),
    "trousers": ("waistband_left", "waistband_right", "crotch", "bottom_left_in",
                 "bottom_left_out", "bottom_right_in", "bottom_right_out"),
}
"""The landmarks each FashionAI category defines (13, 14, 15, 4 and 7), in column order."""


def _fashionai() -> LandmarkLayout:
    names = tuple(FASHIONAI_CATEGORY_LANDMARKS)
    armpits, waistband = ("armpit_left", "armpit_right"), ("waistband_left", "waistband_right")
    return LandmarkLayout(
        name="fashionai",
        slot_names=FASHIONAI_LANDMARKS,
        category_names=names,
        category_slots=tuple(tuple(FASHIONAI_LANDMARKS.index(landmark) for landmark in landmarks)
                             for landmarks in FASHIONAI_CATEGORY_LANDMARKS.values()),
        reference_pairs={"blouse": armpits, "outwear": armpits, "dress": armpits,
                         "skirt": waistband, "trousers": waistband},
        flip_pairs=tuple((index, FASHIONAI_LANDMARKS.index(name.replace("left", "right")))
                         for index, name in enumerate(FASHIONAI_LANDMARKS) if "left" in name),
    )


SALHG_NUM_LANDMARKS = 32


def _salhg() -> LandmarkLayout:
    return LandmarkLayout(
        name="salhg",
        slot_names=tuple(str(i) for i in range(1, SALHG_NUM_LANDMARKS + 1)),
        category_names=("upper_garment",),
        category_slots=(tuple(range(SALHG_NUM_LANDMARKS)),),
    )


DEEPFASHION2 = _deepfashion2()
FASHIONAI = _fashionai()
SALHG = _salhg()
LAYOUTS: dict[str, LandmarkLayout] = {
    layout.name: layout for layout in (DEEPFASHION2, FASHIONAI, SALHG)
}


def get_layout(name: str) -> LandmarkLayout:
    """The registered layout of that name; a clear error naming the registered ones."""
    if name not in LAYOUTS:
        raise ValueError(f"unknown landmark layout {name!r}; registered: {', '.join(LAYOUTS)}")
    return LAYOUTS[name]
