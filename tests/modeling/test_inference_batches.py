"""Evaluation inference batches images of one size only, so no prediction depends on its batch;
each batch runs the backbone once, for the predictions and the ground-truth embeddings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from matchrcnn.data.mapper import DatasetMapper
from matchrcnn.engine.evaluation import gt_boxes, predict_batches, same_size_batches, shard
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


def test_shards_deal_whole_batches_to_the_ranks() -> None:
    batches = [[0, 2], [5], [1, 4], [3]]
    assert shard(batches, 0, 2) == [[0, 2], [1, 4]] and shard(batches, 1, 2) == [[5], [3]]
    assert shard(batches, 2, 3) == [[1, 4]] and shard(batches, 0, 1) == batches
    assert shard(batches, 4, 5) == []


def _predict(model, records: list[dict], batch_size: int, **kwargs) -> dict[int, dict]:
    """Image id -> its output, over every batch."""
    return {int(record["image_id"]): output
            for chunk, outputs in predict_batches(model, records,
                                                  same_size_batches(records, batch_size), **kwargs)
            for record, output in zip(chunk, outputs, strict=True)}


def test_predictions_do_not_depend_on_the_batch_size(tiny_cfg, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg)
    records = _records(tmp_path)
    alone = _predict(model, records, 1)
    batched = _predict(model, records, 4)
    assert sorted(batched) == [r["image_id"] for r in records]
    for image_id, one in alone.items():
        many = batched[image_id]
        assert one.keys() == many.keys()
        assert all(isinstance(value, np.ndarray) for value in one.values())
        assert one["masks"].dtype == bool and one["masks"].shape[1:] == (
            records[image_id - 1]["height"], records[image_id - 1]["width"])
        assert np.allclose(one["scores"], many["scores"], atol=1e-5)
        assert np.allclose(one["boxes"], many["boxes"], atol=1e-3)
        assert one["gt_embeddings"].shape == (1, 24) and one["gt_embeddings"].dtype == np.float32
        assert np.allclose(one["gt_embeddings"], many["gt_embeddings"], atol=1e-5)


def test_no_embeddings_when_not_asked(tiny_cfg, tmp_path: Path) -> None:
    outputs = _predict(build_model(tiny_cfg), _records(tmp_path)[:2], 4, gt_embeddings=False)
    assert len(outputs) == 2 and not any("gt_embeddings" in o for o in outputs.values())


def test_one_backbone_pass_per_batch_gives_the_two_pass_outputs(tiny_cfg, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_model(tiny_cfg).eval()
    records = _records(tmp_path)
    passes = []
    hook = model.backbone.register_forward_hook(lambda *_: passes.append(1))
    batches = same_size_batches(records, 4)
    outputs = [output for _, batch_outputs in predict_batches(model, records, batches)
               for output in batch_outputs]
    hook.remove()
    assert len(passes) == len(batches)
    mapper = DatasetMapper(with_targets=False)
    for record, output in zip([records[i] for batch in batches for i in batch], outputs,
                              strict=True):
        image = mapper(record)[0]
        with torch.no_grad():
            alone = model([image])[0]
        embedded = model.embed_boxes([image], [gt_boxes(record)])[0]
        np.testing.assert_allclose(output["scores"], alone["scores"].numpy(), atol=1e-5)
        np.testing.assert_array_equal(output["masks"], alone["masks"][:, 0].numpy() >= 0.5)
        np.testing.assert_allclose(output["landmarks"], alone["landmarks"].numpy(), atol=1e-3)
        np.testing.assert_allclose(output["gt_embeddings"], embedded.numpy(), atol=1e-5)
