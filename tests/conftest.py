"""Shared fixtures: small DeepFashion2-layout splits written by hand, not by the generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matchrcnn.data.categories import NUM_CATEGORIES, category_name, landmark_count


def _random_item(rng: np.random.Generator, category_id: int, width: int, height: int) -> dict:
    x1, y1 = (int(v) for v in rng.integers(0, [width // 2, height // 2]))
    x2 = int(rng.integers(x1 + 4, width + 1))
    y2 = int(rng.integers(y1 + 4, height + 1))
    landmarks = []
    for _ in range(landmark_count(category_id)):
        v = int(rng.integers(0, 3))
        x, y = (int(rng.integers(x1, x2)), int(rng.integers(y1, y2))) if v else (0, 0)
        landmarks += [x, y, v]
    return {
        "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
        "scale": int(rng.integers(1, 4)),
        "viewpoint": int(rng.integers(1, 4)),
        "zoom_in": int(rng.integers(1, 4)),
        "landmarks": landmarks,
        "style": int(rng.integers(0, 3)),
        "bounding_box": [x1, y1, x2, y2],
        "category_id": category_id,
        "occlusion": int(rng.integers(1, 4)),
        "category_name": category_name(category_id),
    }


def write_df2_split(root: Path, split: str, image_ids: list[int], seed: int = 0) -> Path:
    """A valid split covering every category; image ids need not be contiguous."""
    rng = np.random.default_rng(seed)
    (root / split / "annos").mkdir(parents=True, exist_ok=True)
    (root / split / "image").mkdir(parents=True, exist_ok=True)
    category = 0
    for image_id in image_ids:
        width, height = int(rng.integers(40, 90)), int(rng.integers(40, 90))
        annotation: dict = {
            "source": "shop" if image_id % 3 == 0 else "user",
            "pair_id": image_id // 3 + 1,
        }
        for index in range(int(rng.integers(1, 4))):
            category = category % NUM_CATEGORIES + 1
            annotation[f"item{index + 1}"] = _random_item(rng, category, width, height)
        name = f"{image_id:06d}"
        (root / split / "annos" / f"{name}.json").write_text(json.dumps(annotation))
        image = Image.new("RGB", (width, height), (200, 100, 50))
        image.save(root / split / "image" / f"{name}.jpg")
    return root


@pytest.fixture
def df2_root(tmp_path: Path) -> Path:
    """A DeepFashion2-layout root: a 'validation' split of images 1..9, 20, 21 and 1000."""
    return write_df2_split(tmp_path / "df2", "validation", [*range(1, 10), 20, 21, 1000])
