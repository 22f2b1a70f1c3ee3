"""Start one training process per device: spawned by ``--num-gpus N``, or by torchrun.

Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the environment, multi-node through its
rendezvous) the process group is initialised from the environment. ``--num-gpus N`` with N > 1
spawns N local workers that meet on a free loopback port. The backend follows the device the run
trains on (``MODEL.DEVICE``), not what the machine has: NCCL for CUDA, gloo for CPU. Each worker
binds its GPU before it joins the group, so NCCL's communicators land on the right device.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


@dataclass(frozen=True)
class ProcessInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1


def backend_for(device_type: str) -> str:
    """The collective backend for processes that train on ``device_type`` ("cuda" or "cpu")."""
    return "nccl" if device_type == "cuda" else "gloo"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bind_device(device_type: str, local_rank: int) -> None:
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)


def _spawned_worker(local_rank: int, main: Callable, world_size: int, url: str, device_type: str,
                    args: tuple):
    _bind_device(device_type, local_rank)
    dist.init_process_group(backend_for(device_type), init_method=url, world_size=world_size,
                            rank=local_rank)
    try:
        main(*args, process=ProcessInfo(local_rank, local_rank, world_size))
    finally:
        dist.destroy_process_group()


def launch(main: Callable, num_gpus: int = 1, args: tuple = (), device_type: str = "cpu"):
    """Run ``main(*args, process=ProcessInfo)`` once per device (its result when not spawned).

    ``device_type`` is the kind of device the processes train on; it picks the backend.
    """
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        info = ProcessInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)),
                           int(os.environ["WORLD_SIZE"]))
        if info.world_size > 1:
            _bind_device(device_type, info.local_rank)
            dist.init_process_group(backend_for(device_type), init_method="env://")
        try:
            return main(*args, process=info)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
    if num_gpus > 1:
        url = f"tcp://127.0.0.1:{_free_port()}"
        mp.spawn(_spawned_worker, nprocs=num_gpus,
                 args=(main, num_gpus, url, device_type, args), join=True)
        return None
    return main(*args, process=ProcessInfo())


def process_device(name: str, process: ProcessInfo) -> torch.device:
    """The device one process trains on, from MODEL.DEVICE ("auto", "cpu", "cuda", "cuda:N").

    Several processes take one GPU each (their local rank); a single process keeps an explicit
    index, so ``MODEL.DEVICE cuda:1`` trains on the second GPU.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type != "cuda":
        return device
    if process.world_size > 1 or device.index is None:
        index = process.local_rank if process.world_size > 1 else 0
        return torch.device("cuda", index)
    return device
