"""Start one training process per device: spawned by ``--num-gpus N``, or by torchrun.

Under torchrun (RANK, WORLD_SIZE, LOCAL_RANK in the environment, multi-node through its
rendezvous) the process group is initialised from the environment. ``--num-gpus N`` with N > 1
spawns N local workers that meet on a free loopback port. NCCL is used on CUDA, gloo on CPU.
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


def _backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _bind_device(local_rank: int) -> None:
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)


def _spawned_worker(local_rank: int, main: Callable, world_size: int, url: str, args: tuple):
    dist.init_process_group(_backend(), init_method=url, world_size=world_size, rank=local_rank)
    _bind_device(local_rank)
    try:
        main(*args, process=ProcessInfo(local_rank, local_rank, world_size))
    finally:
        dist.destroy_process_group()


def launch(main: Callable, num_gpus: int = 1, args: tuple = ()):
    """Run ``main(*args, process=ProcessInfo)`` once per device (its result when not spawned)."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        info = ProcessInfo(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", 0)),
                           int(os.environ["WORLD_SIZE"]))
        if info.world_size > 1:
            dist.init_process_group(_backend(), init_method="env://")
        _bind_device(info.local_rank)
        try:
            return main(*args, process=info)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
    if num_gpus > 1:
        url = f"tcp://127.0.0.1:{_free_port()}"
        mp.spawn(_spawned_worker, nprocs=num_gpus, args=(main, num_gpus, url, args), join=True)
        return None
    return main(*args, process=ProcessInfo())
