"""The real DeepFashion2 validation retrieval ground truth, gzipped in tests/evaluation/data."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"


def load_gz(name: str) -> list[dict]:
    with gzip.open(DATA / name, "rt", encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="session")
def val_query_gt() -> list[dict]:
    """15,752 items of 10,990 user images, in the released file's order."""
    return load_gz("val_query_gt.json.gz")


@pytest.fixture(scope="session")
def val_gallery_gt() -> list[dict]:
    """24,012 paired items of 21,390 shop images."""
    return load_gz("val_gallery_gt.json.gz")
