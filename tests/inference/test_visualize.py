"""The one drawer: masks blended at the photo's resolution, boxes, captions and landmarks on
top, each garment in its colour."""

from __future__ import annotations

import numpy as np

from matchrcnn.visualize import (
    MASK_ALPHA,
    Garment,
    category_colour,
    draw_garments,
    prediction_garments,
)


def _prediction() -> dict[str, np.ndarray]:
    masks = np.zeros((2, 60, 80), bool)
    masks[0, 10:40, 10:40] = True
    landmarks = np.zeros((2, 294, 3), np.float32)
    landmarks[0, 30] = (50.0, 45.0, 0.9)  # a long_sleeved_shirt slot (25..57)
    return {"boxes": np.array([[10, 10, 40, 40], [45, 5, 75, 55]], np.float32),
            "labels": np.array([2, 8]), "scores": np.array([0.91, 0.5], np.float32),
            "masks": masks, "landmarks": landmarks}


def test_detections_take_their_category_s_colour_and_caption() -> None:
    garments = prediction_garments(_prediction())
    assert [g.colour for g in garments] == [category_colour(2), category_colour(8)]
    assert [g.caption for g in garments] == ["long_sleeved_shirt 0.91", "trousers 0.50"]
    assert prediction_garments(_prediction(), ("a", "b"))[1].caption == "8 0.50"


def test_the_picture_shows_mask_box_and_landmarks_at_the_photo_s_size() -> None:
    photo = np.full((60, 80, 3), 255, np.uint8)
    picture = np.asarray(draw_garments(photo, prediction_garments(_prediction())))
    colour, other = np.array(category_colour(2)), np.array(category_colour(8))
    assert picture.shape == photo.shape
    assert np.abs(picture[30, 30].astype(int)
                  - ((1 - MASK_ALPHA) * 255 + MASK_ALPHA * colour)).max() <= 1  # mask
    assert (picture[39, 25] == colour).all()  # the box's bottom edge
    assert (picture[45, 50] == colour).all()  # the landmark
    assert (picture[30, 75] == other).all()  # the second box's right edge
    assert (picture[58, 2] == 255).all()  # nothing else touched


def test_scaling_keeps_the_geometry() -> None:
    photo = np.zeros((20, 30, 3), np.uint8)
    garment = Garment((5.0, 5.0, 10.0, 10.0), (255, 0, 0), "")
    picture = np.asarray(draw_garments(photo, [garment], scale=2.0))
    assert picture.shape == (40, 60, 3)
    assert (picture[10:21, 10] == (255, 0, 0)).all()
