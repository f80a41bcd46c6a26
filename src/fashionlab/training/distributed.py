"""Data-parallel training on PyTorch's own engine: torchrun + DistributedDataParallel.

`torchrun --nproc-per-node N -m fashionlab train ...` starts N processes and sets RANK,
WORLD_SIZE and LOCAL_RANK; `init_distributed` turns those into a process group (gloo on CPU,
NCCL on CUDA) and a `DistContext` the trainer asks for its rank, its shard and the all-reduced
metrics. Without those variables everything is a single process and nothing here does any work,
so the single-process path stays exactly what it was.

`launch` is what `fashionlab train --nproc N` runs: torchrun in standalone mode (one machine,
a free rendezvous port) with the same arguments, and the cores split between the processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from fashionlab._env import seconds_from_env
from fashionlab.errors import ConfigError, RunError, one_line

# How gloo, NCCL and c10d word a lost peer: DDP's reducer re-raises their errors as plain
# RuntimeErrors, so the text is all there is to tell a dead node from a bug.
_PEER_FAILURE_MARKERS = ("gloo", "nccl", "c10d", "connection closed by peer", "connection reset")


class PeerLost(RunError):
    """Another process of a data-parallel job stopped (its node died or it failed)."""


def is_peer_failure(exc: BaseException) -> bool:
    """Whether `exc`, raised inside a data-parallel job, is the loss of another process."""
    if isinstance(exc, dist.DistError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(m in text for m in _PEER_FAILURE_MARKERS)


def peer_lost(exc: BaseException, run_dir: object, epochs_done: int) -> PeerLost:
    """The one-line error for a lost peer: what happened and how to continue."""
    saved = f"epochs 1..{epochs_done} are checkpointed" if epochs_done else "no epoch finished"
    return PeerLost(
        f"another process of this data-parallel job stopped ({one_line(exc, 160)}); {saved}. "
        f"Continue with the same command on every node, `--resume {run_dir}` in place of the "
        "training options"
    )


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: rank r of world_size (1 = not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints, writes the run folder and evaluates the test."""
        return self.rank == 0

    def shard(self, items: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of `items` (parts differ by at most one element, are
        disjoint, and together cover `items`)."""
        if not self.enabled:
            return items
        return items.tensor_split(self.world_size)[self.rank]

    def all_reduce_sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over all ranks (float64, so counts stay exact)."""
        if not self.enabled:
            return [float(v) for v in values]
        tensor = torch.tensor(list(values), dtype=torch.float64)
        if self.backend == "nccl":
            tensor = tensor.cuda()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.cpu().tolist()

    def all_gather_object(self, obj: Any) -> list[Any]:
        """`obj` from every rank, in rank order (e.g. each rank's RNG state for a checkpoint)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank (e.g. whether the run folder could be prepared)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()


COLLECTIVE_TIMEOUT_ENV = "FASHIONLAB_DIST_TIMEOUT"
DEFAULT_COLLECTIVE_TIMEOUT_S = 1800.0  # PyTorch's own default for gloo


def collective_timeout() -> timedelta:
    """How long a process waits for the others at a collective before giving up: a node that
    vanishes without closing its connections (power loss) is noticed only then. It must exceed
    the longest wait of a healthy job: the others wait while rank 0 tests and checkpoints."""
    return timedelta(
        seconds=seconds_from_env(COLLECTIVE_TIMEOUT_ENV, DEFAULT_COLLECTIVE_TIMEOUT_S, 86_400)
    )


def init_distributed(device_name: str = "auto") -> DistContext:
    """The process group torchrun asked for (WORLD_SIZE > 1), or a single-process context."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = torch.cuda.is_available() and device_name in ("auto", "cuda")
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=collective_timeout())
    return DistContext(rank, world_size, local_rank, backend)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed_launch() -> bool:
    """Whether this process is one rank of a torchrun job (before any process group exists)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """True unless torchrun started this process as a rank other than 0."""
    return int(os.environ.get("RANK", "0")) == 0


def torchrun_command(
    nproc: int, fashionlab_args: Sequence[str], log_dir: str | None = None
) -> list[str]:
    """The torchrun command line that runs `fashionlab <args>` on `nproc` local processes,
    keeping torchrun's own log folders under `log_dir` when given."""
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # one machine: a local rendezvous on a free port
        f"--nproc-per-node={nproc}",
        *([f"--log-dir={log_dir}"] if log_dir else []),
        "-m",
        "fashionlab",
        *fashionlab_args,
    ]


def launch(nproc: int, fashionlab_args: Sequence[str]) -> int:
    """Run `fashionlab <args>` under torchrun with `nproc` processes; returns its exit code.

    Each process gets cores // nproc threads (at least 1) unless OMP_NUM_THREADS is set:
    more threads than cores makes every process wait on the others."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # Left to itself, torchrun makes a /tmp/torchelastic_* folder per launch and never removes
    # it: give it one that goes when the launch ends.
    logs = tempfile.TemporaryDirectory(prefix="fashionlab-torchrun-", ignore_cleanup_errors=True)
    with logs:
        return subprocess.call(torchrun_command(nproc, fashionlab_args, logs.name), env=env)
