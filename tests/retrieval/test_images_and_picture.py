"""Reading query and shop images (each failure named), the fingerprint's detection keys, and the
query picture."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matchrcnn.config.defaults import _C
from matchrcnn.data.images import ImageInputError, list_images, read_image
from matchrcnn.retrieval.fingerprint import model_fingerprint
from matchrcnn.retrieval.query import QueryItem
from matchrcnn.retrieval.records import Hit
from matchrcnn.retrieval.visualize import THUMB_HEIGHT, render_query, write_query_png
from matchrcnn.visualize import PALETTE
from tests.retrieval.conftest import DIM, make_head


def _jpeg(path: Path, size: tuple[int, int] = (40, 30), orientation: int | None = None) -> Path:
    image = Image.new("RGB", size, (10, 200, 30))
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    image.save(path, exif=exif)
    return path


def test_each_kind_of_bad_image_is_named(tmp_path: Path) -> None:
    photo = _jpeg(tmp_path / "photo.jpg")
    (tmp_path / "half.jpg").write_bytes(photo.read_bytes()[: photo.stat().st_size // 2])
    (tmp_path / "notes.jpg").write_text("text")
    for path, message in (
            (tmp_path / "none.jpg", r"none\.jpg: no such file$"),
            (tmp_path, r": not a file$"),
            (tmp_path / "half.jpg", r"half\.jpg: truncated or corrupt image data \(.+\)$"),
            (tmp_path / "notes.jpg", r"notes\.jpg: not an image file \(no known image format\)$"),
    ):
        with pytest.raises(ImageInputError, match=message):
            read_image(path)
    with pytest.raises(ImageInputError, match=r"photo\.jpg: 40x30 = 1,200 pixels, more than the "
                                              r"limit of 1,199 \(--max-pixels\)$"):
        read_image(photo, max_pixels=1199)
    assert read_image(photo, max_pixels=1200).shape == (30, 40, 3)


def test_photos_are_read_upright_and_dataset_images_as_stored(tmp_path: Path) -> None:
    rotated = _jpeg(tmp_path / "phone.jpg", orientation=6)  # stored sideways, shown rotated
    assert read_image(rotated).shape == (30, 40, 3)
    assert read_image(rotated, upright=True).shape == (40, 30, 3)
    grey = tmp_path / "grey.png"
    Image.new("L", (5, 4), 7).save(grey)
    assert read_image(grey).shape == (4, 5, 3)
    assert list_images(tmp_path) == [grey, rotated]


def test_detection_choices_do_not_change_the_fingerprint() -> None:
    state = make_head("negative").state_dict()
    cfg = _C.clone()
    base = model_fingerprint(state, DIM, cfg)
    for key, value in (("MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.3),
                       ("MODEL.ROI_HEADS.NMS_THRESH_TEST", 0.6),
                       ("MODEL.RPN.POST_NMS_TOPK_TEST", 50), ("MODEL.RPN.NMS_THRESH", 0.5)):
        other = cfg.clone()
        other.merge_from_list([key, value])
        assert model_fingerprint(state, DIM, other) == base, key
    other = cfg.clone()
    other.merge_from_list(["INPUT.MAX_SIZE_TEST", 1000])  # the image scale changes embeddings
    assert model_fingerprint(state, DIM, other) != base


def _hit(path: Path, rank: int) -> Hit:
    return Hit(rank, str(path), rank, (10.0, 5.0, 30.0, 25.0), 1, 0.9, 1, 1, 0.5, 0.62)


def test_query_picture_shows_the_photo_and_one_strip_per_item(tmp_path: Path) -> None:
    shop = tmp_path / "shop.png"
    Image.new("RGB", (40, 30), (0, 0, 255)).save(shop)
    photo = np.full((100, 120, 3), 255, np.uint8)
    mask = np.zeros((100, 120), bool)
    mask[20:60, 30:70] = True
    landmarks = np.zeros((294, 3), np.float32)
    landmarks[3] = (90, 80, 0.7)
    items = [QueryItem((30.0, 20.0, 70.0, 60.0), 2, 0.8, mask, landmarks,
                       [_hit(shop, 1), _hit(tmp_path / "gone.png", 2)]),
             QueryItem((5.0, 5.0, 20.0, 20.0), 7, 0.6, None, None, [_hit(shop, 3)])]
    picture = np.asarray(render_query(photo, items))  # the photo shown twice as large
    assert picture.shape[0] == 200 + 6 + 2 * (THUMB_HEIGHT + 14 + 6)
    red = np.array(PALETTE[0])
    assert np.abs(picture[80, 100].astype(int) - (0.55 * 255 + 0.45 * red)).max() <= 1  # mask
    assert (picture[160, 180] == red).all()  # landmark
    assert (picture[80, 60] == red).all()  # box edge
    strip = picture[206 + 14:206 + 14 + THUMB_HEIGHT]
    assert (strip == (0, 0, 255)).all(axis=2).any()  # the shop crop
    assert (strip == (128, 128, 128)).all(axis=2).any()  # the unreadable image's placeholder
    write_query_png(tmp_path / "out" / "query.png", photo, items)
    with Image.open(io.BytesIO((tmp_path / "out" / "query.png").read_bytes())) as written:
        assert written.format == "PNG" and written.size == (picture.shape[1], picture.shape[0])
