"""Bad input: a clear error naming what is wrong, and no file touched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from matchrcnn.retrieval import (
    EmptyGalleryError,
    Gallery,
    GalleryError,
    GalleryMismatchError,
    MatchMetric,
    ShopImage,
    exact_search,
    search,
)
from tests.retrieval.conftest import (
    DIM,
    FINGERPRINT,
    make_head,
    make_images,
    new_gallery,
    snapshot,
)


@pytest.fixture
def built(tmp_path: Path) -> Path:
    with new_gallery(tmp_path / "g") as gallery:
        gallery.add_images(make_images(4))
    return tmp_path / "g"


def test_empty_gallery_search(tmp_path: Path) -> None:
    with new_gallery(tmp_path / "g") as gallery:
        for function in (search, exact_search):
            with pytest.raises(EmptyGalleryError, match=r"gallery .*/g holds no items"):
                function(gallery, np.zeros((1, DIM)))
        gallery.add_images(make_images(1, items=0))
        with pytest.raises(EmptyGalleryError):
            search(gallery, np.zeros((1, DIM)))


def test_gallery_of_another_model(built: Path) -> None:
    before = snapshot(built)
    with pytest.raises(GalleryMismatchError, match=r"built by model ffffffffffffffff\.\.\., "
                                                   r"not by this model \(0123"):
        Gallery.open(built, "0123" * 16, DIM, writable=True)
    with pytest.raises(GalleryMismatchError, match=rf"holds {DIM}-d embeddings but the model "
                                                   r"gives 8-d"):
        Gallery.open(built, FINGERPRINT, 8, writable=True)
    other = MatchMetric.from_head(make_head("negative", dim=8))
    with pytest.raises(GalleryMismatchError, match="8-d"):
        Gallery.open_or_create(built, FINGERPRINT, other)
    with pytest.raises(GalleryMismatchError, match="not by this model"):
        Gallery.open_or_create(built, "0" * 64, MatchMetric.from_head(make_head("negative")))
    with pytest.raises(GalleryMismatchError, match="similarity head"):
        Gallery.open_or_create(built, FINGERPRINT, MatchMetric.from_head(make_head("mixed")))
    assert snapshot(built) == before


def test_embeddings_of_another_size(built: Path) -> None:
    before = snapshot(built)
    with Gallery.open(built, writable=True) as gallery:
        wrong = make_images(2, start=10, dim=8)
        with pytest.raises(GalleryMismatchError, match=r"000010.jpg: its embeddings are 8-d but "
                                                       rf"gallery .* holds {DIM}-d"):
            gallery.add_images([*make_images(1, start=20), *wrong])
        with pytest.raises(GalleryMismatchError, match=rf"shape \(3, 8\), gallery .* holds "
                                                       rf"{DIM}-d"):
            search(gallery, np.zeros((3, 8)))
        with pytest.raises(GalleryMismatchError, match=r"expected \(queries, 24\)"):
            search(gallery, np.zeros(DIM))
    assert snapshot(built) == before


def test_bad_search_arguments(built: Path) -> None:
    with Gallery.open(built) as gallery:
        queries = np.zeros((2, DIM))
        with pytest.raises(ValueError, match="topk must be a positive integer"):
            search(gallery, queries, 0)
        with pytest.raises(ValueError, match="same_category has 1 entries for 2 queries"):
            search(gallery, queries, same_category=[1])
        with pytest.raises(ValueError, match=r"category ids 1\.\.13 or None, got \[14\]"):
            search(gallery, queries, same_category=[1, 14])
        with pytest.raises(ValueError, match="must be finite"):
            search(gallery, np.full((1, DIM), np.nan))
        assert search(gallery, np.zeros((0, DIM))) == []


def test_not_a_gallery(tmp_path: Path, built: Path) -> None:
    with pytest.raises(GalleryError, match=r"holds no gallery \(gallery.sqlite is missing\)"):
        Gallery.open(tmp_path / "nothing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "gallery.sqlite").write_bytes(b"not a database at all" * 100)
    with pytest.raises(GalleryError, match=r"junk/gallery\.sqlite: not a"):
        Gallery.open(tmp_path / "junk")
    before = snapshot(built)
    with pytest.raises(GalleryError, match="already holds a gallery"):
        new_gallery(built)
    assert snapshot(built) == before


@pytest.mark.parametrize(("change", "message"), [
    ({"boxes": [[0, 0, 1]]}, r"boxes have shape \(1, 3\)"),
    ({"boxes": [[5, 0, 1, 1]]}, "x2 >= x1"),
    ({"categories": [14]}, r"categories must be integers in 1\.\.13"),
    ({"categories": [1.5]}, "categories must be integers"),
    ({"scores": [np.nan]}, "must be finite"),
    ({"embeddings": np.zeros((2, DIM))}, r"embeddings have shape \(2, 24\), expected \(1, D\)"),
    ({"styles": [-1]}, "styles must be 1 integers >= 0"),
    ({"image_id": "7"}, "image_id must be an integer or None"),
    ({"path": ""}, "path must be a non-empty string"),
])
def test_malformed_shop_images(change: dict, message: str) -> None:
    fields = {"path": "a.jpg", "image_id": 1, "boxes": [[0, 0, 1, 1]], "categories": [1],
              "scores": [0.5], "embeddings": np.zeros((1, DIM)), "styles": [1]}
    with pytest.raises(ValueError, match=message):
        ShopImage(**{**fields, **change})


def test_from_prediction_keeps_confident_detections() -> None:
    prediction = {"boxes": np.array([[0, 0, 5, 5], [1, 1, 4, 4]], np.float32),
                  "labels": np.array([3, 4]), "scores": np.array([0.9, 0.2], np.float32),
                  "embeddings": np.ones((2, DIM), np.float32)}
    image = ShopImage.from_prediction("x.jpg", np.int64(9), prediction, 0.5,
                                      pair_id=np.int32(2), styles=[1, 2])
    assert len(image) == 1 and image.categories.tolist() == [3] and image.styles.tolist() == [1]
    assert type(image.image_id) is int and type(image.pair_id) is int  # bindable by SQLite
    with pytest.raises(ValueError, match=r"lacks \['embeddings'\].*MATCH_ON"):
        ShopImage.from_prediction("x.jpg", 9, {k: prediction[k] for k in
                                               ("boxes", "labels", "scores")}, 0.5)
