"""The training loop: pair batches in, losses out, checkpoints, metrics and evaluation around it.

One process per device; under DDP each rank draws its own pair batches (the sampler is seeded by
rank). Everything that decides a step's outcome (weights, optimizer, scheduler, grad scaler, every
rank's RNG states, the batch sequence) is checkpointed or a pure function of (seed, rank,
iteration), so ``--resume`` continues exactly where the last checkpoint left off, under DDP too.
Evaluation runs on every rank, each on its shard of the test split
(``matchrcnn.engine.evaluation``).
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from fvcore.common.config import CfgNode
from torch.utils.data import DataLoader, Dataset

from matchrcnn.config import ConfigError, save_cfg
from matchrcnn.data.catalog import DatasetCatalog, check_layout
from matchrcnn.data.images import ImageInputError
from matchrcnn.data.mapper import DatasetMapper
from matchrcnn.data.records import ConcatRecords
from matchrcnn.data.samplers import ImageBatchSampler, PairBatchSampler, has_pairs
from matchrcnn.engine.checkpoint import Checkpointer
from matchrcnn.engine.metrics import MetricsWriter

logger = logging.getLogger("matchrcnn")


class NonFiniteLossError(FloatingPointError):
    """A loss term became NaN or infinite; the run stops before it can write a bad checkpoint."""


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def dataset_records(names: tuple[str, ...] | list[str]) -> Sequence[dict]:
    """The records of every named split as one sequence, kept in their compact stores."""
    parts = [DatasetCatalog.get(name) for name in names]
    return parts[0] if len(parts) == 1 else ConcatRecords(parts)


class MappedDataset(Dataset):
    """Records through a mapper, keyed by (record index, iteration drawn for): the iteration
    decides the record's random flip. An image that cannot be used (ImageInputError: unreadable,
    or not the size its annotation says) yields None (and a log line).
    """

    def __init__(self, records: Sequence[dict], mapper: DatasetMapper) -> None:
        self.records, self.mapper = records, mapper

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: tuple[int, int]):
        index, iteration = key
        try:
            return self.mapper(self.records[index], iteration)
        except ImageInputError as error:
            logger.warning("skipping image: %s", error)
            return None


def collate_skipping_failures(batch: list) -> tuple[list, list, int]:
    """(images, targets, number of images skipped because they failed to decode)."""
    kept = [sample for sample in batch if sample is not None]
    return [image for image, _ in kept], [target for _, target in kept], len(batch) - len(kept)


def build_train_loader(cfg: CfgNode, records: Sequence[dict], rank: int, world_size: int,
                       start_iter: int, pin_memory: bool = False,
                       ) -> Iterator[tuple[list, list, int]]:
    per_device = images_per_process(cfg, world_size)
    batches = _batch_sampler(cfg, records, per_device, rank).iterate(start_iter)
    keyed = ([(index, iteration) for index in batch]
             for iteration, batch in enumerate(batches, start_iter))
    loader = DataLoader(
        MappedDataset(records, DatasetMapper.from_config(cfg, is_train=True)),
        batch_sampler=keyed,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=collate_skipping_failures,
        pin_memory=pin_memory,
        # Its own generator: creating the loader must not draw from the global torch RNG, or a
        # resumed run would diverge from an uninterrupted one.
        generator=torch.Generator().manual_seed(cfg.SEED),
    )
    return iter(loader)


def images_per_process(cfg: CfgNode, world_size: int) -> int:
    """SOLVER.IMS_PER_BATCH per process; ConfigError where it cannot train as configured.

    The match loss compares the items of one process's batch, so with the match network on each
    process needs room for a consumer/shop pair group: too few images per process are refused
    rather than trained with a match loss that is always zero. Checked before processes start.
    """
    total = cfg.SOLVER.IMS_PER_BATCH
    per_device = total // world_size
    if per_device < 1 or total % world_size:
        raise ConfigError(f"SOLVER.IMS_PER_BATCH={total} must be a positive multiple of the "
                          f"number of processes ({world_size})")
    unrelated = cfg.DATALOADER.PAIR_SAMPLER.UNRELATED_FRACTION
    if cfg.MODEL.MATCH_ON and not 0.0 <= unrelated < 1.0:
        raise ConfigError(f"DATALOADER.PAIR_SAMPLER.UNRELATED_FRACTION={unrelated} must lie in "
                          "[0, 1) with MODEL.MATCH_ON: the match loss needs pairs")
    if cfg.MODEL.MATCH_ON and per_device < _images_for_one_group(unrelated):
        raise ConfigError(
            f"SOLVER.IMS_PER_BATCH={total} over {world_size} process(es) gives {per_device} "
            f"image(s) per process, too few for a consumer/shop pair group with "
            f"DATALOADER.PAIR_SAMPLER.UNRELATED_FRACTION={unrelated}: the match loss would always "
            f"be 0. Raise SOLVER.IMS_PER_BATCH to at least "
            f"{_images_for_one_group(unrelated) * world_size} for {world_size} process(es) "
            "(or lower UNRELATED_FRACTION)"
        )
    return per_device


def _batch_sampler(cfg: CfgNode, records: Sequence[dict], per_device: int,
                   rank: int) -> PairBatchSampler | ImageBatchSampler:
    """Pair batches for datasets with consumer/shop pairs; random images for the others."""
    if has_pairs(records):
        return PairBatchSampler(records, per_device,
                                cfg.DATALOADER.PAIR_SAMPLER.UNRELATED_FRACTION, seed=cfg.SEED,
                                rank=rank)
    if cfg.MODEL.MATCH_ON:
        raise ConfigError(f"MODEL.MATCH_ON needs consumer/shop pairs (source and pair_id per "
                          f"image), which DATASETS.TRAIN {list(cfg.DATASETS.TRAIN)} lacks; set "
                          "MODEL.MATCH_ON False")
    return ImageBatchSampler(len(records), per_device, seed=cfg.SEED, rank=rank)


def _images_for_one_group(unrelated_fraction: float) -> int:
    """The fewest images per process whose batch holds one pair group (PairBatchSampler.groups)."""
    images = 2
    while round(images * (1.0 - unrelated_fraction)) < 2:
        images += 1
    return images


OPTIMIZERS = ("SGD", "AdamW")


def build_optimizer(cfg: CfgNode, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SOLVER.OPTIMIZER over the trainable parameters, at BASE_LR and WEIGHT_DECAY."""
    params = [p for p in model.parameters() if p.requires_grad]
    solver = cfg.SOLVER
    if solver.OPTIMIZER == "SGD":
        return torch.optim.SGD(params, lr=solver.BASE_LR, momentum=solver.MOMENTUM,
                               weight_decay=solver.WEIGHT_DECAY)
    if solver.OPTIMIZER == "AdamW":
        return torch.optim.AdamW(params, lr=solver.BASE_LR, weight_decay=solver.WEIGHT_DECAY)
    raise ValueError(f"SOLVER.OPTIMIZER must be one of {OPTIMIZERS}, got {solver.OPTIMIZER!r}")


def build_lr_scheduler(cfg: CfgNode, optimizer: torch.optim.Optimizer):
    """Linear warmup from WARMUP_FACTOR, then multiply by GAMMA at each of STEPS."""
    warmup_iters, warmup_factor = cfg.SOLVER.WARMUP_ITERS, cfg.SOLVER.WARMUP_FACTOR
    steps, gamma = sorted(cfg.SOLVER.STEPS), cfg.SOLVER.GAMMA

    def factor(iteration: int) -> float:
        decay = gamma ** sum(iteration >= step for step in steps)
        if iteration < warmup_iters:
            alpha = iteration / warmup_iters
            return decay * (warmup_factor * (1 - alpha) + alpha)
        return decay

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def check_finite(losses: dict[str, torch.Tensor], iteration: int, last_checkpoint) -> None:
    for name, value in losses.items():
        if not torch.isfinite(value).all():
            kept = f"; the last good checkpoint {last_checkpoint} is intact" if last_checkpoint \
                else "; no checkpoint was written yet"
            raise NonFiniteLossError(
                f"iteration {iteration}: loss term {name} is {value.item()}{kept}"
            )


def clip_gradients(cfg: CfgNode, model: torch.nn.Module) -> None:
    clip = cfg.SOLVER.CLIP_GRADIENTS
    if not clip.ENABLED:
        return
    params = [p for p in model.parameters() if p.grad is not None]
    if clip.CLIP_TYPE == "value":
        torch.nn.utils.clip_grad_value_(params, clip.CLIP_VALUE)
    elif clip.CLIP_TYPE == "norm":
        torch.nn.utils.clip_grad_norm_(params, clip.CLIP_VALUE, clip.NORM_TYPE)
    else:
        raise ValueError(f"SOLVER.CLIP_GRADIENTS.CLIP_TYPE must be 'value' or 'norm', "
                         f"got {clip.CLIP_TYPE!r}")


def optimizer_step(cfg: CfgNode, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                   scaler: torch.amp.GradScaler, total: torch.Tensor) -> None:
    """Backward of ``total`` and one optimizer step, through the AMP scaler and any clipping."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(total).backward()
    if cfg.SOLVER.CLIP_GRADIENTS.ENABLED:
        scaler.unscale_(optimizer)
        clip_gradients(cfg, model)
    scaler.step(optimizer)
    scaler.update()


class Trainer:
    """Trains ``model`` by ``cfg``; ``train()`` runs from the resumed iteration to MAX_ITER."""

    def __init__(self, cfg: CfgNode, model: torch.nn.Module, resume: bool = False,
                 rank: int = 0, world_size: int = 1, evaluate=None) -> None:
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        images_per_process(cfg, world_size)
        self.output_dir = Path(cfg.OUTPUT_DIR)
        self.device = next(model.parameters()).device
        self.model = model
        if world_size > 1:
            # Every parameter gets a gradient in every step (the sampler guarantees pair groups),
            # so DDP need not search the graph for unused ones.
            self.model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            )
        self.optimizer = build_optimizer(cfg, model)
        self.scheduler = build_lr_scheduler(cfg, self.optimizer)
        self.amp = bool(cfg.SOLVER.AMP.ENABLED) and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.checkpointer = Checkpointer(self.output_dir, model, optimizer=self.optimizer,
                                         scheduler=self.scheduler, scaler=self.scaler)
        self.evaluate = evaluate
        self.start_iter = self.checkpointer.resume() if resume else 0
        self.skipped_images = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def train(self) -> dict | None:
        cfg = self.cfg
        if self.is_main:
            save_cfg(cfg, self.output_dir)
        max_iter = cfg.SOLVER.MAX_ITER
        if self.start_iter >= max_iter:
            logger.info("nothing to do: resumed at iteration %d of %d", self.start_iter, max_iter)
            return None
        if cfg.MODEL.LANDMARK_ON:
            check_layout(cfg.DATASETS.TRAIN, cfg.MODEL.ROI_LANDMARK_HEAD.LAYOUT)
        records = dataset_records(cfg.DATASETS.TRAIN)
        batches = build_train_loader(cfg, records, self.rank, self.world_size, self.start_iter,
                                     pin_memory=self.device.type == "cuda")
        metrics = MetricsWriter(self.output_dir, self.start_iter) if self.is_main else None
        progress = range(self.start_iter, max_iter)
        if self.is_main:
            from tqdm import tqdm

            progress = tqdm(progress, initial=self.start_iter, total=max_iter, desc="training",
                            unit="it", dynamic_ncols=True)
        results = None
        try:
            self.model.train()
            for iteration in progress:
                values = self.step(iteration, batches)
                if self.is_main:
                    progress.set_postfix(loss=f"{values['total_loss']:.3f}")
                    metrics.write(iteration, values)
                final = iteration + 1 == max_iter
                if final or (iteration + 1) % cfg.SOLVER.CHECKPOINT_PERIOD == 0:
                    self.checkpointer.save("model_final" if final else f"model_{iteration:07d}",
                                           iteration)
                period = cfg.TEST.EVAL_PERIOD
                if self.evaluate and (final or (period and (iteration + 1) % period == 0)):
                    results = self.evaluate(self.model_without_ddp, iteration)
                    if self.is_main and results:
                        metrics.write(iteration, _flatten(results))
                    self.model.train()
        finally:
            if metrics is not None:
                metrics.close()
        if self.skipped_images:
            logger.warning("%d training image(s) failed to decode and were skipped",
                           self.skipped_images)
        return results

    @property
    def model_without_ddp(self) -> torch.nn.Module:
        return self.model.module if hasattr(self.model, "module") else self.model

    def step(self, iteration: int, batches: Iterator) -> dict[str, float]:
        images, targets, skipped = next(batches)
        self.skipped_images += skipped
        while not images:  # every image of the batch failed to decode: draw the next one
            images, targets, skipped = next(batches)
            self.skipped_images += skipped
        images = [image.to(self.device, non_blocking=True) for image in images]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()}
                   for t in targets]
        with torch.autocast(device_type=self.device.type, enabled=self.amp):
            outputs = self.model(images, targets)
        losses = {name: value for name, value in outputs.items() if name.startswith("loss_")}
        check_finite(losses, iteration, self.checkpointer.last_checkpoint())
        optimizer_step(self.cfg, self.model, self.optimizer, self.scaler, sum(losses.values()))
        self.scheduler.step()
        metrics = getattr(self.model_without_ddp, "last_metrics", {})
        names = [*losses, *metrics]
        reduced = _reduce_mean([*(value.detach() for value in losses.values()),
                                *(torch.as_tensor(value, device=self.device)
                                  for value in metrics.values())])
        values = dict(zip(names[: len(losses)], reduced[: len(losses)], strict=True))
        values["total_loss"] = sum(values.values())
        for name, value in zip(names[len(losses):], reduced[len(losses):], strict=True):
            if math.isfinite(value):  # a match accuracy is NaN in a batch without such pairs
                values[name] = value
        values["lr"] = self.optimizer.param_groups[0]["lr"]
        values["skipped_images"] = float(self.skipped_images)
        return values


def _reduce_mean(values: list[torch.Tensor]) -> list[float]:
    """The mean over ranks of each scalar, in one all_reduce and one host sync."""
    if not values:
        return []
    stacked = torch.stack([value.float().reshape(()) for value in values])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(stacked)
        stacked /= dist.get_world_size()
    return stacked.tolist()


def _flatten(results: dict, prefix: str = "") -> dict[str, float]:
    flat = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}/"))
        elif isinstance(value, (int, float)):
            flat[name] = float(value)
    return flat
