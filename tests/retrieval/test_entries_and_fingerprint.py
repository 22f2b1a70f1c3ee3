"""Search results as official retrieval entries; the model fingerprint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from matchrcnn.config.defaults import _C
from matchrcnn.evaluation.results import read_retrieval_results
from matchrcnn.retrieval import Gallery, retrieval_entries, search
from matchrcnn.retrieval.fingerprint import model_fingerprint
from tests.retrieval.conftest import DIM, make_head, make_images, new_gallery


def test_entries_follow_the_official_format(tmp_path: Path) -> None:
    with new_gallery(tmp_path / "g") as gallery:
        gallery.add_images(make_images(4))  # 12 items: every ranking is padded to 20
        rng = np.random.default_rng(0)
        predictions = [
            {"image_id": 7, "boxes": np.array([[0, 0, 5, 5], [1, 1, 9, 9]], np.float32),
             "labels": np.array([1, 2]), "scores": np.array([0.9, 0.8], np.float32)},
            {"image_id": 8, "boxes": np.zeros((0, 4)), "labels": np.zeros(0, int),
             "scores": np.zeros(0)},
            {"image_id": 9, "boxes": np.array([[2, 2, 3, 3]]), "labels": np.array([5]),
             "scores": np.array([0.5])},
        ]
        queries = rng.normal(size=(3, DIM))
        rankings = search(gallery, queries, 20, same_category=[1, 2, 5])
    entries = retrieval_entries(predictions, rankings)
    submission = read_retrieval_results(entries)
    assert submission.query_image_id.tolist() == [7, 7, 9]
    assert submission.query_cls.tolist() == [1, 2, 5]
    first = rankings[0]
    assert submission.gallery_image_id[0].tolist() == (
        [hit.image_id for hit in first] + [first[-1].image_id] * (20 - len(first)))
    assert np.allclose(submission.gallery_box[0, 0], first[0].box)
    assert np.allclose(submission.query_box[1], [1, 1, 9, 9])


def test_entries_drop_detections_without_hits_and_check_counts(tmp_path: Path) -> None:
    with new_gallery(tmp_path / "g") as gallery:
        gallery.add_images([make_images(1, items=1)[0]])  # one item, of category 1
        prediction = {"image_id": 3, "boxes": np.array([[0, 0, 4, 4], [0, 0, 2, 2]]),
                      "labels": np.array([1, 2]), "scores": np.array([0.9, 0.8])}
        rankings = search(gallery, np.zeros((2, DIM)), 20, same_category=[1, 2])
        assert [len(ranked) for ranked in rankings] == [1, 0]
    entries = retrieval_entries([prediction], rankings)
    assert len(entries) == 1 and entries[0]["gallery_image_id"] == [1] * 20
    with pytest.raises(ValueError, match="1 rankings for 2 detections"):
        retrieval_entries([prediction], rankings[:1])


def test_entries_need_gallery_image_ids(tmp_path: Path) -> None:
    image = make_images(1, items=1)[0]
    anonymous = type(image)("shop/anonymous.jpg", None, image.boxes, image.categories,
                            image.scores, image.embeddings)
    with new_gallery(tmp_path / "g") as gallery:
        gallery.add_images([anonymous])
        rankings = search(gallery, np.zeros((1, DIM)))
    prediction = {"image_id": 1, "boxes": np.zeros((1, 4)), "labels": np.array([1]),
                  "scores": np.array([1.0])}
    with pytest.raises(ValueError, match=r"anonymous\.jpg\) has no image id"):
        retrieval_entries([prediction], rankings)


def test_fingerprint_follows_weights_and_inference_config() -> None:
    state = make_head("negative").state_dict()
    cfg = _C.clone()
    base = model_fingerprint(state, DIM, cfg)
    assert model_fingerprint(make_head("negative").state_dict(), DIM, cfg) == base
    changed = {name: tensor.clone() for name, tensor in state.items()}
    changed["fc.bias"][0] += 1e-6
    assert model_fingerprint(changed, DIM, cfg) != base
    assert model_fingerprint(state, DIM + 1, cfg) != base
    for key, value in (("MODEL.WEIGHTS", "/elsewhere/model.pth"), ("MODEL.DEVICE", "cuda"),
                       ("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 64),
                       ("INPUT.MIN_SIZE_TRAIN", (640,))):
        other = cfg.clone()
        other.merge_from_list([key, value])
        assert model_fingerprint(state, DIM, other) == base, key
    other = cfg.clone()
    other.merge_from_list(["INPUT.MIN_SIZE_TEST", 600])
    assert model_fingerprint(state, DIM, other) != base
    as_double = {name: tensor.double() for name, tensor in state.items()}
    assert model_fingerprint(as_double, DIM, cfg) != base
    assert model_fingerprint({"flag": torch.tensor([True])}, DIM) != model_fingerprint(
        {"flag": torch.tensor([False])}, DIM)


def test_gallery_reopens_with_its_settings(tmp_path: Path) -> None:
    with new_gallery(tmp_path / "g", signs="mixed") as gallery:
        metric = gallery.metric
    with Gallery.open(tmp_path / "g") as gallery:
        assert gallery.metric == metric and gallery.embed_dim == DIM
