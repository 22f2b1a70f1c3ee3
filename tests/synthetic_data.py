"""The tiny synthetic DeepFashion2 that training tests share, and overrides that keep it small."""

from __future__ import annotations

from pathlib import Path

from matchrcnn.data.deepfashion2 import convert_split
from matchrcnn.data.synthetic import generate_dataset

TINY = [
    "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "160",
    "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "160",
    "DATALOADER.NUM_WORKERS", "0", "SOLVER.WARMUP_ITERS", "5", "SOLVER.STEPS", "(1000,)",
]
"""128 px images, no loader workers, a short warmup and no LR step: a CPU test config."""


def write_synthetic_datasets(root: Path, images: int, size: int, seed: int) -> Path:
    """A $MATCHRCNN_DATASETS folder holding ``synthetic`` with both splits converted, with their
    retrieval ground truth, as `make demo` prepares it."""
    synthetic = root / "synthetic"
    generate_dataset(synthetic, images, size=size, seed=seed, workers=1)
    for split in ("train", "validation"):
        convert_split(synthetic, split, synthetic / "annotations" / f"{split}.json",
                      synthetic / "retrieval" / split, strict=True, workers=1)
    return root
