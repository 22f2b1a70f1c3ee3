"""Evaluation inference batches images of one size only, so no prediction depends on its batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from matchrcnn.engine.evaluation import run_inference, same_size_batches
from matchrcnn.modeling import build_model

SIZES = [(96, 96), (72, 96), (96, 96), (96, 72), (72, 96), (96, 96)]


def _records(root: Path) -> list[dict]:
    rng = np.random.default_rng(0)
    records = []
    for index, (height, width) in enumerate(SIZES):
        path = root / f"{index}.png"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
        records.append({"file_name": str(path), "image_id": index + 1, "height": height,
                        "width": width,
                        "annotations": [{"bbox": [4.0, 6.0, 40.0, 50.0], "category_id": 1}]})
    return records


def test_batches_hold_one_size_each_and_cover_every_record_once() -> None:
    records = [{"height": h, "width": w} for h, w in SIZES]
    assert same_size_batches(records, 2) == [[0, 2], [5], [1, 4], [3]]


def test_predictions_do_not_depend_on_the_batch_size(tiny_cfg, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    records = _records(tmp_path)
    alone, alone_embeddings = run_inference(model, records, batch_size=1)
    batched, batched_embeddings = run_inference(model, records, batch_size=4)
    assert [p["image_id"] for p in batched] == [r["image_id"] for r in records]
    for one, many in zip(alone, batched, strict=True):
        assert one.keys() == many.keys()
        assert np.allclose(one["scores"], many["scores"], atol=1e-5)
        assert np.allclose(one["boxes"], many["boxes"], atol=1e-3)
    for one, many in zip(alone_embeddings, batched_embeddings, strict=True):
        assert one.shape == (1, 24)
        assert torch.allclose(one, many, atol=1e-5)


def test_no_embeddings_when_not_asked(tiny_cfg, tmp_path: Path) -> None:
    predictions, embeddings = run_inference(build_model(tiny_cfg), _records(tmp_path)[:2],
                                            gt_embeddings=False)
    assert len(predictions) == 2 and embeddings == []
