"""Predictor: images from arrays or files to numpy predictions, one or a list in same-size batches,
with weights from MODEL.WEIGHTS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from matchrcnn.data.categories import NUM_LANDMARKS
from matchrcnn.modeling import Predictor, WeightsError, build_model
from matchrcnn.modeling.predictor import MASK_THRESHOLD, predictions_to_numpy, same_size_batches

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


def _images() -> list[np.ndarray]:
    """Five photos in two sizes, the sizes interleaved."""
    rng = np.random.default_rng(3)
    shapes = [(96, 128), (112, 96), (96, 128), (96, 128), (112, 96)]
    return [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in shapes]


def test_a_list_gives_each_image_what_it_gives_alone_in_its_order(tiny_cfg, tmp_path) -> None:
    torch.manual_seed(0)
    predictor = Predictor(tiny_cfg, batch_size=2)
    images = _images()
    path = tmp_path / "third.png"
    Image.fromarray(images[2]).save(path)
    calls = []
    hook = predictor.model.backbone.register_forward_hook(
        lambda _, inputs, __: calls.append(inputs[0].shape[0]))
    many = predictor([*images[:2], path, *images[3:]])
    hook.remove()
    assert sorted(calls) == [1, 2, 2]  # (0, 2), (3,) of one size; (1, 4) of the other
    assert isinstance(many, list) and len(many) == len(images)
    for image, batched in zip(images, many, strict=True):
        alone = predictor(image)
        assert isinstance(alone, dict) and batched.keys() == alone.keys()
        assert batched["masks"].shape[1:] == image.shape[:2]
        np.testing.assert_allclose(batched["scores"], alone["scores"], atol=1e-5)
        np.testing.assert_allclose(batched["boxes"], alone["boxes"], atol=1e-3)
        np.testing.assert_allclose(batched["embeddings"], alone["embeddings"], atol=1e-4)


def test_masks_can_be_left_out_and_an_empty_list_gives_nothing(tiny_cfg, image) -> None:
    predictor = Predictor(tiny_cfg)
    output = predictor(image, with_masks=False)
    assert "masks" not in output and len(output["boxes"]) > 0
    assert predictor([]) == []


def test_amp_is_ignored_on_cpu(tiny_cfg, image) -> None:
    torch.manual_seed(0)
    plain = Predictor(tiny_cfg)(image)
    tiny_cfg.TEST.AMP.ENABLED = True
    torch.manual_seed(0)
    predictor = Predictor(tiny_cfg)
    assert predictor.amp is False
    for key, value in predictor(image).items():
        np.testing.assert_array_equal(value, plain[key], err_msg=key)


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True])
def test_a_bad_batch_size_is_refused(tiny_cfg, batch_size) -> None:
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        Predictor(tiny_cfg, batch_size=batch_size)


def test_predictions_to_numpy_thresholds_masks_and_returns_float32() -> None:
    output = {
        "boxes": torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float16),
        "labels": torch.tensor([3]),
        "masks": torch.tensor([[[[0.2, 0.5], [0.7, 0.49]]]], dtype=torch.float16),
    }
    converted = predictions_to_numpy(output)
    assert converted["boxes"].dtype == np.float32 and converted["labels"].dtype == np.int64
    np.testing.assert_array_equal(converted["masks"], [[[False, True], [True, False]]])
    assert MASK_THRESHOLD == 0.5
    assert set(predictions_to_numpy(output, with_masks=False)) == {"boxes", "labels"}


def test_same_size_batches_keep_order_within_a_size() -> None:
    sizes = [(2, 3), (4, 5), (2, 3), (2, 3), (4, 5)]
    assert same_size_batches(sizes, 2) == [[0, 2], [3], [1, 4]]
    assert same_size_batches(sizes, 10) == [[0, 2, 3], [1, 4]]
    assert same_size_batches([], 4) == []
