"""A torch.profiler table of one training step of our model: where a step's time goes.

The step is the train benchmark's (matchrcnn/benchmarks/train.py: forward, backward, optimizer
step on a seeded in-memory batch of user/shop pairs), profiled after untimed warmup steps so
that one-off costs (allocator growth, kernel selection) stay out. Ops are ranked by their self
time on the device that trained (CUDA time on a GPU, CPU time on CPU): a parent op's total
counts its children again, its self time does not.
"""

from __future__ import annotations

import time

import torch
from fvcore.common.config import CfgNode
from torch.profiler import ProfilerActivity, profile

from matchrcnn.benchmarks.train import build, synthetic_batch, training_step

TOP_OPS = 15


def sort_key(device: torch.device) -> str:
    """The profiler's attribute that ranks ops on ``device``."""
    return "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"


def profile_training_step(cfg: CfgNode, device: torch.device, batch_size: int, amp: bool,
                          seed: int = 0, warmup: int = 2) -> dict:
    """Profile one step of our model at ``batch_size``; the top ops and torch's own table.

    Times are milliseconds summed over the op's calls in the step; ``profiled_step_ms`` is the
    step's wall time under the profiler (which slows it), ``self_cpu_ms`` and ``self_cuda_ms`` the
    busy time of all ops: a GPU that idles for the CPU shows far less CUDA time than wall time.
    """
    torch.manual_seed(seed)
    model = build("matchrcnn", cfg).to(device)
    images, targets = synthetic_batch(batch_size, cfg.INPUT.MIN_SIZE_TEST, seed)
    images = [image.to(device) for image in images]
    targets = [{key: value.to(device) for key, value in target.items()} for target in targets]
    step = training_step(model, cfg, (images, targets), amp)
    for _ in range(warmup):
        step()
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
        torch.cuda.synchronize(device)
    with profile(activities=activities) as profiler:
        started = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall_ms = 1000 * (time.perf_counter() - started)
    key = sort_key(device)
    averages = profiler.key_averages()
    ranked = sorted(averages, key=lambda event: getattr(event, key), reverse=True)[:TOP_OPS]
    return {
        "batch": batch_size, "sort_by": key, "amp": amp,
        "profiled_step_ms": wall_ms,
        "self_cpu_ms": sum(event.self_cpu_time_total for event in averages) / 1000,
        "self_cuda_ms": sum(event.self_device_time_total for event in averages) / 1000,
        "top": [_row(event) for event in ranked],
        "table": averages.table(sort_by=key, row_limit=TOP_OPS),
    }


def _row(event) -> dict:
    return {
        "op": event.key, "calls": event.count,
        "self_cuda_ms": event.self_device_time_total / 1000,
        "cuda_total_ms": event.device_time_total / 1000,
        "self_cpu_ms": event.self_cpu_time_total / 1000,
        "cpu_total_ms": event.cpu_time_total / 1000,
    }
