"""Distributed data parallel: the process group torchrun describes (NCCL on CUDA, gloo on CPU) and the
few collectives the engine needs. One process is a world of size 1 and every helper is then a no-op."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from voxflow.errors import VoxflowError

# How long a process waits in a collective for the others (the main one validates and writes checkpoints).
TIMEOUT = timedelta(minutes=60)


@dataclass
class DistContext:
    """This process's place in the world and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def expected_world_size(cfg: dict) -> int:
    """Processes a training config asks for: ``gpus`` (CUDA; 1 when device is cuda), else ``nproc`` (CPU)."""
    device, gpus, nproc = str(cfg.get("device", "cpu")), cfg.get("gpus"), int(cfg.get("nproc", 1))
    if gpus is not None and int(gpus) > 0:
        if device == "cpu":
            raise VoxflowError(f"gpus: {gpus} GPUs asked for with device: cpu; set device: cuda "
                               "(or nproc for several CPU processes)")
        if int(gpus) > 1 and device.startswith("cuda:"):
            raise VoxflowError(f"device: {device!r} names one GPU but gpus: {gpus}; use device: cuda")
        return int(gpus)
    if device.startswith("cuda"):
        if gpus is not None:
            raise VoxflowError("gpus: must be at least 1 with device: cuda")
        return 1
    return nproc


def resolve_device(name: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto``; in a world of several CUDA processes, ``cuda:<local rank>``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() and torch.cuda.device_count() > local_rank else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise VoxflowError(f"device: {name!r} requested but CUDA is not available on this machine")
    if name.startswith("cuda") and world_size > 1:
        if local_rank >= torch.cuda.device_count():
            raise VoxflowError(f"device: process {local_rank} has no GPU ({torch.cuda.device_count()} visible)")
        name = f"cuda:{local_rank}"
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise VoxflowError(f"device: invalid device {name!r}") from exc


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value else default
    except ValueError as exc:
        raise VoxflowError(f"environment variable {name}={value!r} is not an integer") from exc


def setup(cfg: dict) -> DistContext:
    """Join the process group torchrun set up (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``), once per process.

    The world must have as many processes as the config asks for (``expected_world_size``).
    """
    world, rank, local = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    expected = expected_world_size(cfg)
    if world != expected:
        raise VoxflowError(
            f"the config asks for {expected} training process(es) (gpus/nproc) but {world} were started; "
            f"launch with: torchrun --standalone --nproc_per_node={expected} scripts/train.py ..."
        )
    device = resolve_device(str(cfg.get("device", "cpu")), local, world)
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device, timeout=TIMEOUT)
        else:
            dist.init_process_group("gloo", timeout=TIMEOUT)
    return DistContext(rank=rank, world_size=world, local_rank=local, device=device)


def shutdown() -> None:
    """Leave the process group (if any)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_sum(ctx: DistContext, values: list[float]) -> list[float]:
    """Element-wise sum of ``values`` over the world (float64)."""
    if not ctx.distributed:
        return [float(v) for v in values]
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_have(ctx: DistContext, have: bool) -> bool:
    """True when every process has ``have`` (e.g. one more batch): the ranks agree to stop together."""
    if not ctx.distributed:
        return have
    t = torch.tensor([1 if have else 0], dtype=torch.int32, device=ctx.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def gather_objects(ctx: DistContext, obj) -> list:
    """``obj`` of every process, in rank order (on every process)."""
    if not ctx.distributed:
        return [obj]
    out = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def wrap(ctx: DistContext, module: nn.Module) -> nn.Module:
    """``module`` in DistributedDataParallel when there are several processes (rank 0's weights win)."""
    if not ctx.distributed:
        return module
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def check_in_sync(ctx: DistContext, module: nn.Module, where: str) -> None:
    """Raise if the processes' parameters differ (they must stay identical under DDP)."""
    if not ctx.distributed:
        return
    with torch.no_grad():
        params = [p.detach().double() for p in module.parameters()]
        total = torch.stack([p.sum() for p in params]).sum()
        absolute = torch.stack([p.abs().sum() for p in params]).sum()
    local = torch.stack([total, absolute]).to(ctx.device)
    lo, hi = local.clone(), local.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise VoxflowError(f"{where}: the {ctx.world_size} training processes' weights differ "
                           f"(checksums {lo.tolist()} vs {hi.tolist()})")
