"""Small FashionAI, SAL-HG and VITON-family inputs written in each dataset's exact format."""

from __future__ import annotations

import csv
import importlib.util
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matchrcnn.data.layouts import FASHIONAI_CATEGORY_LANDMARKS, FASHIONAI_LANDMARKS

FASHIONAI_CATEGORIES = tuple(FASHIONAI_CATEGORY_LANDMARKS)


def write_image(path: Path, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (180, 120, 60)).save(path)


def _garment_points(rng: np.random.Generator, count: int, width: int, height: int) -> np.ndarray:
    """Points spread over a garment-sized region of the image."""
    x1, y1 = rng.integers(2, width // 4), rng.integers(2, height // 4)
    x2, y2 = rng.integers(3 * width // 4, width - 2), rng.integers(3 * height // 4, height - 2)
    return np.column_stack([rng.integers(x1, x2 + 1, count), rng.integers(y1, y2 + 1, count)])


def fashionai_rows(root: Path, count: int, seed: int = 0) -> list[list[str]]:
    """``count`` valid CSV rows (categories in turn) with their images under ``root``."""
    rng = np.random.default_rng(seed)
    rows = []
    for index in range(count):
        category = FASHIONAI_CATEGORIES[index % len(FASHIONAI_CATEGORIES)]
        width, height = int(rng.integers(64, 96)), int(rng.integers(64, 96))
        name = f"Images/{category}/{index:04d}{'abcdef'[index % 6]}.jpg"
        write_image(root / name, width, height)
        defined = FASHIONAI_CATEGORY_LANDMARKS[category]
        points = _garment_points(rng, len(defined), width, height)
        cells = dict.fromkeys(FASHIONAI_LANDMARKS, "-1_-1_-1")
        for landmark, (x, y) in zip(defined, points, strict=True):
            # reference landmarks stay visible so that every item can be normalised
            visible = "armpit" in landmark or "waistband" in landmark or rng.random() < 0.8
            cells[landmark] = f"{x}_{y}_{1 if visible else 0}"
        rows.append([name, category, *cells.values()])
    return rows


def write_fashionai_csv(path: Path, rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image_id", "image_category", *FASHIONAI_LANDMARKS])
        writer.writerows(rows)
    return path


def salhg_entries(images: Path, count: int, seed: int = 0, as_array: bool = False) -> list[dict]:
    """``count`` used entries of 32 landmarks (some occluded or absent), images under ``images``."""
    rng = np.random.default_rng(seed)
    entries = []
    for index in range(count):
        width, height = int(rng.integers(64, 96)), int(rng.integers(64, 96))
        name = f"{index:05d}_00.jpg"
        write_image(images / name, width, height)
        xy = _garment_points(rng, 32, width, height)
        attributes = rng.choice([1, 1, 1, 0, -1], size=32)
        attributes[:2] = 1
        points = [[int(x), int(y), int(a)] if a >= 0 else [0, 0, -1]
                  for (x, y), a in zip(xy, attributes, strict=True)]
        entries.append({"name": name, "used": True,
                        "points": np.array(points, dtype=np.float64) if as_array else points})
    return entries


def write_pickle(path: Path, data: object, protocol: int = pickle.HIGHEST_PROTOCOL) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


VITON_LAYOUTS = {
    # layout: (person path, garment path) of pair i, relative to the root; the pair-list line
    "viton": (lambda i: f"{i:06d}_0.jpg", lambda i: f"{i:06d}_1.jpg",
              lambda i: f"{i:06d}_0.jpg {i:06d}_1.jpg"),
    "viton-hd": (lambda i: f"image/{i:05d}_00.jpg", lambda i: f"cloth/{i:05d}_00.jpg",
                 lambda i: f"{i:05d}_00.jpg {i:05d}_00.jpg"),
    "dresscode": (lambda i: f"images/{i:06d}_0.jpg", lambda i: f"images/{i:06d}_1.jpg",
                  lambda i: f"{i:06d}_0.jpg {i:06d}_1.jpg"),
}


def write_viton(root: Path, layout: str, count: int) -> Path:
    """``count`` pairs in the layout's folders and pair-list format; returns the pair list."""
    person, garment, line = VITON_LAYOUTS[layout]
    for index in range(count):
        write_image(root / person(index), 48 + index, 64)
        write_image(root / garment(index), 40, 50 + index)
    pairs = root / "pairs.txt"
    pairs.write_text("".join(f"{line(index)}\n" for index in range(count)))
    return pairs


@pytest.fixture
def fashionai_split(tmp_path: Path) -> tuple[Path, Path]:
    """A FashionAI train folder as released: (CSV, images folder) with 10 rows."""
    root = tmp_path / "fashionai" / "train"
    csv_file = write_fashionai_csv(root / "Annotations" / "train.csv", fashionai_rows(root, 10))
    return csv_file, root


TOOL = Path(__file__).resolve().parents[2] / "tools" / "convert_dataset.py"


def run_tool(*args: str) -> int:
    """tools/convert_dataset.py's main, in this process (its output goes to capsys)."""
    spec = importlib.util.spec_from_file_location("convert_dataset_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(arg) for arg in args])
