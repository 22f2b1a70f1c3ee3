"""Evaluate a model on the first of DATASETS.TEST, on every rank, with the project's evaluator.

Every rank predicts its shard of the split, whole batches of it, and feeds the outputs to
``matchrcnn.evaluation.evaluator.DeepFashion2Evaluator``, which keeps them compactly, gathers them
on rank 0, scores them once and returns the numbers on every rank. Batches are formed over the
whole split (images of one size, in order) before they are dealt to the ranks, so each image is
predicted in the batch it would have in one process: a sharded evaluation equals a single-process
one digit for digit.

Box, mask and landmark AP in DeepFashion2's layout (its official sigmas), with the breakdowns by
scale, occlusion, zoom_in and viewpoint at the end of a run, FashionAI's normalized error in its
own, no landmark metric for SAL-HG (it defines none). Retrieval is scored in the
ground-truth-box mode, next to the accuracy a random ranking would reach. Results go to
``OUTPUT_DIR/eval_results.json`` (fractions in [0, 1]), written by rank 0.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.distributed as dist
from fvcore.common.config import CfgNode

from matchrcnn.config import ConfigError
from matchrcnn.data.catalog import DatasetCatalog, MetadataCatalog, check_layout
from matchrcnn.data.layouts import DEEPFASHION2
from matchrcnn.data.mapper import DatasetMapper
from matchrcnn.data.records import column
from matchrcnn.evaluation.evaluator import DeepFashion2Evaluator, EvaluationFiles
from matchrcnn.modeling.branches import landmark_layout
from matchrcnn.modeling.predictor import inference_autocast, predictions_to_numpy
from matchrcnn.modeling.predictor import same_size_batches as batches_of_sizes
from matchrcnn.retrieval.metric import MatchMetric
from matchrcnn.utils.atomic import write_json_atomic

logger = logging.getLogger("matchrcnn")
EVAL_RESULTS = "eval_results.json"
EVAL_BATCH_SIZE = 4


def same_size_batches(records: Sequence[dict], batch_size: int) -> list[list[int]]:
    """Record indices in batches whose images all have one size, in order within each size
    (the Predictor's rule: a prediction must not depend on the images that share its batch)."""
    sizes = zip(column(records, "height"), column(records, "width"), strict=True)
    return batches_of_sizes(sizes, batch_size)


def shard(batches: list[list[int]], rank: int, world_size: int) -> list[list[int]]:
    """This rank's batches: every world_size-th one, so the shards differ by one batch at most."""
    return batches[rank::world_size]


def gt_boxes(record: dict) -> torch.Tensor:
    """The record's item boxes, XYXY, in the file's pixels."""
    boxes = torch.tensor([a["bbox"] for a in record["annotations"]], dtype=torch.float32)
    boxes = boxes.reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def predict_batches(model: torch.nn.Module, records: Sequence[dict], batches: list[list[int]],
                    gt_embeddings: bool = True, amp: bool = False,
                    ) -> Iterator[tuple[list[dict], list[dict]]]:
    """(records, outputs) per batch, outputs as ``predictions_to_numpy`` gives them (masks
    thresholded on the device); ``amp``: float16 autocast on CUDA (TEST.AMP.ENABLED).

    With ``gt_embeddings`` each output also holds "gt_embeddings": the match embeddings of the
    image's ground-truth boxes, from the backbone pass of the predictions (one per batch).
    """
    model.eval()
    device = next(model.parameters()).device
    mapper = DatasetMapper(with_targets=False)
    for batch in batches:
        chunk = [records[index] for index in batch]
        images = [mapper(record)[0].to(device) for record in chunk]
        boxes = [gt_boxes(record).to(device) for record in chunk] if gt_embeddings else None
        with torch.inference_mode(), inference_autocast(device, amp):
            predictions = model.inference(images, boxes)
        outputs = []
        for prediction in predictions:
            if gt_embeddings:
                prediction["gt_embeddings"] = prediction.pop("box_embeddings")
            outputs.append(predictions_to_numpy(prediction))
        yield chunk, outputs


def build_evaluator(cfg: CfgNode, model: torch.nn.Module, name: str,
                    breakdowns: bool = False) -> DeepFashion2Evaluator:
    """The evaluator of split ``name`` for this model's heads."""
    metadata = MetadataCatalog.get(name)
    if getattr(metadata, "annotated", True) is False:
        raise ConfigError(f"split {name!r} has no annotations to evaluate against: write its "
                          "official result files with tools/write_submission.py")
    files = metadata.files
    tasks = ["bbox"]
    if cfg.MODEL.MASK_ON:
        tasks.append("segm")
    # Landmarks are scored where the split has them: keypoint AP in DeepFashion2's layout (its
    # official sigmas), FashionAI's normalized error where the layout defines one.
    layout = landmark_layout(cfg)
    if cfg.MODEL.LANDMARK_ON and getattr(metadata, "layout", None) is not None:
        check_layout([name], layout.name)
        if layout is DEEPFASHION2 or layout.reference_pairs:
            tasks.append("landmarks")
    metric = (MatchMetric.from_head(model.roi_heads.match_branch.similarity)
              if cfg.MODEL.MATCH_ON else None)
    return DeepFashion2Evaluator(
        EvaluationFiles(Path(files.json_file), files.query_gt, files.gallery_gt), tasks,
        layout=layout, match_metric=metric, breakdowns=breakdowns)


def evaluate_model(cfg: CfgNode, model: torch.nn.Module, iteration: int | None = None,
                   ) -> dict | None:
    """Evaluate on DATASETS.TEST[0]; rank 0 writes OUTPUT_DIR/eval_results.json.

    Under torch.distributed every rank must call it: each predicts its shard, and every rank
    returns the same results. None without a test set. The last evaluation of a run (and
    ``--eval-only``, ``iteration`` None) adds the breakdowns by attribute, which cost about 13
    times the AP alone; the periodic ones leave them out.
    """
    if not cfg.DATASETS.TEST:
        return None
    name = cfg.DATASETS.TEST[0]
    records = DatasetCatalog.get(name)
    final = iteration is None or iteration + 1 >= cfg.SOLVER.MAX_ITER
    evaluator = build_evaluator(cfg, model, name, breakdowns=final)
    distributed = dist.is_available() and dist.is_initialized()
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    batches = shard(same_size_batches(records, EVAL_BATCH_SIZE), rank, world_size)
    for chunk, outputs in predict_batches(model, records, batches, cfg.MODEL.MATCH_ON,
                                          amp=cfg.TEST.AMP.ENABLED):
        evaluator.process(chunk, outputs)
    results = evaluator.evaluate()
    results["iteration"] = iteration
    results["dataset"] = name
    if rank == 0:
        write_json_atomic(Path(cfg.OUTPUT_DIR) / EVAL_RESULTS, results)
    return results


def print_results(results: dict) -> None:
    """The headline numbers as a small table."""
    rows = []
    for task in ("bbox", "segm", "landmarks", "landmarks_visible"):
        if task in results:
            metrics = results[task]
            rows.append(f"{task:18s}" + "".join(
                f"  {key} {_fmt(metrics.get(key))}" for key in ("AP", "AP50", "AP75")))
    if "landmarks_ne" in results:
        rows.append(f"{'landmarks_ne':18s}  NE {_fmt(results['landmarks_ne']['NE'])} (lower is "
                    "better)")
    for key in ("retrieval", "retrieval_chance"):
        if key in results:
            rows.append(f"{key:18s}" + "".join(
                f"  {name} {_fmt(value)}" for name, value in results[key].items()))
    print(f"evaluation on {results.get('dataset')} (iteration {results.get('iteration')}):")
    print("\n".join(rows))


def _fmt(value: float | None) -> str:
    return "  n/a " if value is None else f"{value:.4f}"
