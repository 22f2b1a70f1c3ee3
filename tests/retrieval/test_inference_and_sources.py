"""Batching by image size, decoding errors passed on, and what a build indexes from a split or a
folder (ids, pair ids, the style of the ground-truth item each detection covers)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from matchrcnn.retrieval.inference import InferenceSettings, predict_images
from matchrcnn.retrieval.sources import SourceImage, folder_sources, resolve_sources, split_sources


class RecordingModel:
    """Stands in for RetrievalModel: records each batch's shapes, and "predicts" each image's
    mean pixel value so that every output can be traced to its input."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, ...]]] = []

    def predict(self, images: list[np.ndarray], with_masks: bool = True) -> list[dict]:
        self.batches.append([image.shape for image in images])
        return [{"mean": float(image.mean())} for image in images]


def _write(directory: Path, sizes: list[tuple[int, int]]) -> list[SourceImage]:
    directory.mkdir(parents=True, exist_ok=True)
    images = []
    for number, (width, height) in enumerate(sizes):
        path = directory / f"{number:03d}.png"
        Image.new("RGB", (width, height), (number, number, number)).save(path)
        images.append(SourceImage(str(path), number))
    return images


def test_batches_hold_one_size_and_every_image_comes_back_once(tmp_path: Path) -> None:
    sizes = [(40, 30), (30, 40), (40, 30), (40, 30), (30, 40), (50, 50), (40, 30), (40, 30)]
    images = _write(tmp_path, sizes)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    images.insert(3, SourceImage(str(tmp_path / "broken.png"), 99))
    model = RecordingModel()
    outcomes = list(predict_images(model, images, InferenceSettings(batch_size=3, workers=2)))
    assert sorted(source.image_id for source, _, _ in outcomes) == sorted(
        source.image_id for source in images)
    for source, prediction, error in outcomes:
        if source.image_id == 99:
            assert prediction is None and "broken.png: not an image file" in str(error)
        else:
            assert error is None and prediction["mean"] == source.image_id
    assert all(len(set(batch)) == 1 and len(batch) <= 3 for batch in model.batches)
    assert [len(batch) for batch in model.batches if batch[0] == (30, 40, 3)] == [3, 2]


def test_waiting_images_are_bounded_when_sizes_are_mixed(tmp_path: Path) -> None:
    images = _write(tmp_path, [(20 + number, 20) for number in range(9)])  # nine sizes
    model = RecordingModel()
    list(predict_images(model, images, InferenceSettings(batch_size=2, workers=1)))
    assert sum(map(len, model.batches)) == 9 and all(len(b) == 1 for b in model.batches)


def test_a_detection_takes_the_style_of_the_item_it_covers(tmp_path: Path) -> None:
    records = [
        {"image_id": 7, "file_name": str(tmp_path / "7.jpg"), "source": "shop", "pair_id": 3,
         "annotations": [{"bbox": [10, 10, 40, 40], "style": 2},
                         {"bbox": [60, 0, 20, 50], "style": 1}]},
        {"image_id": 8, "file_name": str(tmp_path / "8.jpg"), "source": "user", "pair_id": 3,
         "annotations": [{"bbox": [0, 0, 5, 5], "style": 1}]},
    ]
    (shop,) = split_sources(records)
    assert (shop.path, shop.image_id, shop.pair_id) == (str(tmp_path / "7.jpg"), 7, 3)
    boxes = np.array([[11, 11, 50, 49], [60, 0, 80, 50], [0, 60, 30, 90], [10, 10, 30, 30]])
    # IoU 0.93 with item 1; exactly item 2; nothing; 0.25 with item 1 (below 0.5)
    assert shop.styles_of(boxes).tolist() == [2, 1, 0, 0]
    assert [user.image_id for user in split_sources(records, "user")] == [8]
    assert SourceImage("x.jpg").styles_of(boxes) is None


def test_folders_and_unknown_names(tmp_path: Path) -> None:
    images = _write(tmp_path / "shop" / "nested", [(10, 10), (12, 10)])
    (tmp_path / "shop" / "readme.txt").write_text("not an image")
    found = folder_sources(tmp_path / "shop")
    assert [source.path for source in found] == [str(Path(i.path).resolve()) for i in images]
    assert all(source.image_id is None and source.pair_id is None for source in found)
    assert resolve_sources(str(tmp_path / "shop"))[1] == f"folder {tmp_path / 'shop'}"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty: the folder holds no image files \(\.jpg"):
        resolve_sources(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match=r"nothing_here: neither a folder nor a registered "
                                         r"dataset split \(registered: .*synthetic_validation"):
        resolve_sources("nothing_here")
