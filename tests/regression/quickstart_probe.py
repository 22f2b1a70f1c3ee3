"""The quickstart's first 20 training losses and a few predictions, on a seeded synthetic set.

Recorded once (``python -m tests.regression.quickstart_probe OUT.json``) and compared by
test_quickstart_regression.py, so that a refactor of the model (its branches, their builders,
their config keys) is shown to change nothing a user of an existing config would see.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from matchrcnn.config import setup_cfg
from matchrcnn.data import catalog
from matchrcnn.data.mapper import DatasetMapper
from matchrcnn.engine.evaluation import gt_boxes
from matchrcnn.engine.trainer import Trainer, seed_everything
from matchrcnn.modeling import build_model
from tests.synthetic_data import write_synthetic_datasets

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "synthetic" / "quickstart.yaml"
ITERATIONS = 20
PROBE_IMAGES = 3
TOP_DETECTIONS = 5


def quickstart_probe(workdir: Path) -> dict:
    """Train the quickstart config 20 iterations on 24 seeded images; its losses and predictions."""
    datasets = write_synthetic_datasets(workdir / "datasets", 24, size=320, seed=11)
    previous = os.environ.get(catalog.DATASETS_ENV)
    os.environ[catalog.DATASETS_ENV] = str(datasets)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = setup_cfg(CONFIG, [
            "OUTPUT_DIR", str(workdir / "run"), "SOLVER.MAX_ITER", str(ITERATIONS),
            "SOLVER.CHECKPOINT_PERIOD", "1000", "DATALOADER.NUM_WORKERS", "0",
            "DATASETS.TEST", "()", "MODEL.DEVICE", "cpu",
            "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
        ])
        records = catalog.DatasetCatalog.get("synthetic_validation")
        mapper = DatasetMapper(with_targets=False)
        chosen = [records[index] for index in range(PROBE_IMAGES)]
        seed_everything(cfg.SEED)
        model = build_model(cfg)
        images = [mapper(record)[0] for record in chosen]
        boxes = [gt_boxes(record) for record in chosen]
        initial = _predictions(model, images, boxes)
        Trainer(cfg, model).train()
        lines = (workdir / "run" / "metrics.json").read_text().splitlines()
        losses = [{key: value for key, value in json.loads(line).items()
                   if key.startswith("loss_")} for line in lines]
        return {"losses": losses, "initial": initial,
                "trained": _predictions(model, images, boxes)}
    finally:
        torch.set_num_threads(threads)
        if previous is None:
            os.environ.pop(catalog.DATASETS_ENV, None)
        else:
            os.environ[catalog.DATASETS_ENV] = previous


def _predictions(model: torch.nn.Module, images: list[torch.Tensor],
                 boxes: list[torch.Tensor]) -> list[dict]:
    """Per image: the top detections (all their outputs) and the embeddings of its items."""
    model.eval()
    predictions = []
    with torch.no_grad():
        for image, image_boxes in zip(images, boxes, strict=True):
            output = model([image])[0]
            top = output["scores"].argsort(descending=True)[:TOP_DETECTIONS]
            predictions.append({
                "detections": len(output["scores"]),
                "boxes": output["boxes"][top].tolist(),
                "scores": output["scores"][top].tolist(),
                "labels": output["labels"][top].tolist(),
                "landmarks": [_own_slots(landmarks) for landmarks in output["landmarks"][top]],
                "masks_mean": output["masks"][top].mean(dim=(1, 2, 3)).tolist(),
                "embeddings": output["embeddings"][top].tolist(),
                "gt_box_embeddings": model.embed_boxes([image], [image_boxes])[0].tolist(),
            })
    model.train()
    return predictions


def _own_slots(landmarks: torch.Tensor) -> list[list[float]]:
    """[slot, x, y, score] of the slots a detection has landmarks in (its category's)."""
    slots = torch.nonzero(landmarks[:, 2] > 0).squeeze(1)
    return [[int(slot), *landmarks[slot].tolist()] for slot in slots]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as scratch:
        result = quickstart_probe(Path(scratch))
    Path(sys.argv[1]).write_text(json.dumps(result))
