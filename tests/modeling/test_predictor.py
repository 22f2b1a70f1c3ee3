"""Predictor: images from arrays or files to numpy predictions, with weights from MODEL.WEIGHTS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from matchrcnn.data.categories import NUM_LANDMARKS
from matchrcnn.modeling import Predictor, WeightsError, build_model

from .conftest import make_batch


@pytest.fixture
def image() -> np.ndarray:
    return (make_batch()[0][0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


@pytest.fixture
def weights(tiny_cfg, tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(5)
    state_dict = build_model(tiny_cfg).state_dict()
    path = tmp_path / "model.pth"
    torch.save({"model": state_dict, "iteration": 10}, path)
    return path, state_dict


def test_array_and_file_give_the_same_numpy_predictions(tiny_cfg, image, tmp_path) -> None:
    torch.manual_seed(0)
    predictor = Predictor(tiny_cfg)
    from_array = predictor(image)
    path = tmp_path / "photo.png"
    Image.fromarray(image).save(path)
    from_file = predictor(str(path))
    assert set(from_array) == {"boxes", "labels", "scores", "masks", "landmarks", "embeddings"}
    n = len(from_array["boxes"])
    assert n > 0
    height, width = image.shape[:2]
    assert from_array["masks"].shape == (n, height, width) and from_array["masks"].dtype == bool
    assert from_array["landmarks"].shape == (n, NUM_LANDMARKS, 3)
    assert from_array["embeddings"].shape == (n, tiny_cfg.MODEL.MATCH_HEAD.EMBED_DIM)
    assert from_array["labels"].dtype == np.int64
    for key, value in from_array.items():
        assert isinstance(value, np.ndarray)
        np.testing.assert_array_equal(value, from_file[key], err_msg=key)


def test_grey_images_are_accepted(tiny_cfg, image) -> None:
    output = Predictor(tiny_cfg)(image[..., 0])
    assert output["masks"].shape[1:] == image.shape[:2]


def test_model_weights_are_loaded(tiny_cfg, weights, image) -> None:
    path, state_dict = weights
    tiny_cfg.MODEL.WEIGHTS = str(path)
    torch.manual_seed(123)
    predictor = Predictor(tiny_cfg)
    for key, value in predictor.model.state_dict().items():
        assert torch.equal(value, state_dict[key]), key
    expected = build_model(tiny_cfg)
    expected.load_state_dict(state_dict)
    with torch.no_grad():
        direct = expected.eval()([torch.from_numpy(image).permute(2, 0, 1).float() / 255])[0]
    np.testing.assert_allclose(predictor(image)["scores"], direct["scores"].numpy(), rtol=1e-5)


def test_weights_of_another_model_are_refused(tiny_cfg, weights) -> None:
    path, _ = weights
    tiny_cfg.MODEL.WEIGHTS = str(path)
    tiny_cfg.MODEL.LANDMARK_ON = False
    tiny_cfg.MODEL.ROI_HEADS.NUM_CLASSES = 5
    with pytest.raises(WeightsError, match=r"model\.pth.*class count.*cls_score") as error:
        Predictor(tiny_cfg)
    assert "landmark_branch" in str(error.value)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((8, 8, 3), dtype=np.float32), "uint8"),
        (np.zeros((8, 8, 4), dtype=np.uint8), r"\(H, W, 3\)"),
        ([[0, 1]], "list"),
    ],
)
def test_bad_arrays_are_refused(tiny_cfg, bad, message) -> None:
    with pytest.raises(ValueError, match=message):
        Predictor(tiny_cfg)(bad)


def test_unreadable_file_is_named(tiny_cfg, tmp_path) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        Predictor(tiny_cfg)(path)
