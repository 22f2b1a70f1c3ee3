"""Evaluate a model on the first of DATASETS.TEST with the project's evaluation suite.

Box, mask and landmark AP come from ``matchrcnn.evaluation.coco`` on in-memory predictions;
landmark AP only in DeepFashion2's layout, FashionAI's normalized error in its own
(``matchrcnn.evaluation.normalized_error``), no landmark metric for SAL-HG (it defines none).
Retrieval is scored in the ground-truth-box mode: every item of the split's user images is embedded
from its ground-truth box, ranked against every item of its shop images by the match network's
same-minus-different logit, and the top 20 are scored by the official protocol
(``evaluate_retrieval(..., gt_boxes=True)``), next to the accuracy a random ranking would reach.
Results go to ``OUTPUT_DIR/eval_results.json`` (fractions in [0, 1]).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from fvcore.common.config import CfgNode

from matchrcnn.data.catalog import DatasetCatalog, MetadataCatalog, check_layout
from matchrcnn.data.layouts import DEEPFASHION2
from matchrcnn.data.mapper import DatasetMapper
from matchrcnn.evaluation.coco import evaluate_coco
from matchrcnn.evaluation.normalized_error import landmark_entries, normalized_error
from matchrcnn.evaluation.results import RETRIEVED
from matchrcnn.evaluation.retrieval import TOP_K, evaluate_retrieval
from matchrcnn.modeling.matchrcnn import landmark_layout
from matchrcnn.utils.atomic import write_json_atomic

logger = logging.getLogger("matchrcnn")
EVAL_RESULTS = "eval_results.json"


@torch.no_grad()
def run_inference(model: torch.nn.Module, records: list[dict], batch_size: int = 4,
                  gt_embeddings: bool = True) -> tuple[list[dict], list[torch.Tensor]]:
    """Per-image predictions (numpy, masks as (N, H, W) bool) and ground-truth-box embeddings."""
    model.eval()
    device = next(model.parameters()).device
    mapper = DatasetMapper(with_targets=False)
    predictions: list[dict] = [{} for _ in records]
    embeddings: list[torch.Tensor] = [torch.empty(0) for _ in records]
    for batch in same_size_batches(records, batch_size):
        chunk = [records[index] for index in batch]
        images = [mapper(record)[0].to(device) for record in chunk]
        for index, record, output in zip(batch, chunk, model(images), strict=True):
            prediction = {key: value.cpu().numpy() for key, value in output.items()}
            if "masks" in prediction:
                prediction["masks"] = prediction["masks"][:, 0] > 0.5
            prediction["image_id"] = record["image_id"]
            predictions[index] = prediction
        if gt_embeddings:
            boxes = [_gt_boxes(record).to(device) for record in chunk]
            for index, embedding in zip(batch, model.embed_boxes(images, boxes), strict=True):
                embeddings[index] = embedding.cpu()
    return predictions, embeddings if gt_embeddings else []


def same_size_batches(records: list[dict], batch_size: int) -> list[list[int]]:
    """Record indices in batches whose images all have one size, in order within each size.

    A batch pads its images to the largest; with GroupNorm the padding enters the statistics, so a
    prediction would depend on which images shared its batch.
    """
    by_size: dict[tuple[int, int], list[int]] = {}
    for index, record in enumerate(records):
        by_size.setdefault((record["height"], record["width"]), []).append(index)
    return [indices[start : start + batch_size] for indices in by_size.values()
            for start in range(0, len(indices), batch_size)]


def _gt_boxes(record: dict) -> torch.Tensor:
    boxes = torch.tensor([a["bbox"] for a in record["annotations"]], dtype=torch.float32)
    boxes = boxes.reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    return boxes


@torch.no_grad()
def gt_box_retrieval_results(records: list[dict], embeddings: list[torch.Tensor],
                             similarity: torch.nn.Module) -> list[dict]:
    """Official retrieval result entries: each user item's 20 best shop items (GT boxes)."""
    def items(source: str) -> tuple[list, list, list, torch.Tensor]:
        ids, boxes, classes, vectors = [], [], [], []
        for record, vector in zip(records, embeddings, strict=True):
            if record["source"] != source:
                continue
            for annotation, row in zip(record["annotations"], vector, strict=True):
                x, y, w, h = annotation["bbox"]
                ids.append(record["image_id"])
                boxes.append([x, y, x + w, y + h])
                classes.append(annotation["category_id"])
                vectors.append(row)
        return ids, boxes, classes, torch.stack(vectors) if vectors else torch.zeros(0)

    query_ids, query_boxes, query_classes, queries = items("user")
    gallery_ids, gallery_boxes, _, gallery = items("shop")
    if len(gallery_ids) == 0 or len(query_ids) == 0:
        raise ValueError("retrieval evaluation needs user and shop images in the test split")
    entries = []
    for start in range(0, len(queries), 256):
        logits = similarity.pairwise(queries[start : start + 256], gallery)
        margin = logits[..., 1] - logits[..., 0]
        order = margin.argsort(dim=1, descending=True)[:, :RETRIEVED].tolist()
        for offset, ranked in enumerate(order):
            # A gallery smaller than 20 items repeats its last entry, which changes no rank.
            ranked = ranked + [ranked[-1]] * (RETRIEVED - len(ranked))
            index = start + offset
            entries.append({
                "query_image_id": query_ids[index], "query_bbox": query_boxes[index],
                "query_cls": query_classes[index], "query_score": 1.0,
                "gallery_image_id": [gallery_ids[g] for g in ranked],
                "gallery_bbox": [gallery_boxes[g] for g in ranked],
            })
    return entries


def chance_accuracy(query_gt: list[dict], gallery_items: list[tuple[int, int]]) -> dict:
    """Expected top-k accuracy of a random ranking of ``gallery_items`` ((pair_id, style) each)."""
    pool = len(gallery_items)
    counts: dict[tuple[int, int], int] = {}
    for key in gallery_items:
        counts[key] = counts.get(key, 0) + 1
    chance = {}
    queries = [q for q in query_gt if q["style"] > 0]
    for k in TOP_K:
        total = 0.0
        for query in queries:
            right = counts.get((query["pair_id"], query["style"]), 0)
            miss = np.prod([(pool - right - i) / (pool - i) for i in range(min(k, pool))])
            total += 1.0 - float(max(miss, 0.0))
        chance[f"top{k}"] = total / len(queries) if queries else 0.0
    return chance


def evaluate_model(cfg: CfgNode, model: torch.nn.Module, iteration: int | None = None,
                   ) -> dict | None:
    """Evaluate on DATASETS.TEST[0]; writes OUTPUT_DIR/eval_results.json. None without a test set.

    Runs on the main process only (rank 0); other ranks return None.
    """
    if not cfg.DATASETS.TEST or (torch.distributed.is_initialized()
                                 and torch.distributed.get_rank() != 0):
        return None
    name = cfg.DATASETS.TEST[0]
    records = DatasetCatalog.get(name)
    files = MetadataCatalog.get(name).files
    match_on = cfg.MODEL.MATCH_ON
    predictions, embeddings = run_inference(model, records, gt_embeddings=match_on)
    tasks = ["bbox"]
    if cfg.MODEL.MASK_ON:
        tasks.append("segm")
    # Landmarks are scored where the split has them: keypoint AP in DeepFashion2's layout (its
    # official sigmas), FashionAI's normalized error where the layout defines one.
    layout = landmark_layout(cfg)
    split_layout = getattr(MetadataCatalog.get(name), "layout", None)
    landmarks_on = cfg.MODEL.LANDMARK_ON and split_layout is not None
    if landmarks_on:
        check_layout([name], layout.name)
    if landmarks_on and layout is DEEPFASHION2:
        tasks += ["landmarks", "landmarks_visible"]
    results: dict = dict(evaluate_coco(files.json_file, predictions, tasks=tasks))
    if landmarks_on and layout.reference_pairs:
        entries = landmark_entries(predictions, layout)
        results["landmarks_ne"] = normalized_error(files.json_file, entries, layout).as_dict()
    if match_on:
        similarity = model.roi_heads.match_branch.similarity
        entries = gt_box_retrieval_results(records, embeddings, similarity)
        accuracy = evaluate_retrieval(entries, files.query_gt, files.gallery_gt, gt_boxes=True)
        results["retrieval"] = {f"top{k}": value for k, value in accuracy.top_k.items()}
        query_gt = json.loads(Path(files.query_gt).read_text())
        shop_items = [(r["pair_id"], a["style"]) for r in records if r["source"] == "shop"
                      for a in r["annotations"]]
        results["retrieval_chance"] = chance_accuracy(query_gt, shop_items)
    results["iteration"] = iteration
    results["dataset"] = name
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
