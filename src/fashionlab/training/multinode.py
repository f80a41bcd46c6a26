"""Data-parallel training across machines on torchrun's own launcher (c10d rendezvous, gloo on
CPU), with its failures as one-line errors within a bounded time.

`fashionlab train --nnodes N --rdzv-endpoint HOST:PORT ...`, run on every node, is
`torchrun --nnodes N --rdzv-backend c10d --rdzv-endpoint HOST:PORT -m fashionlab train ...`
with `--max-restarts 0`, except for what a user sees when something goes wrong: a node that
never joins, an endpoint nobody answers at, a training process that dies. torchrun waits up to
ten minutes for a missing node and prints pages of C++ frames; here every wait is the
rendezvous timeout (seconds, `--rdzv-timeout` or FASHIONLAB_RDZV_TIMEOUT) and each failure is
one line.

The launcher runs in a process of its own (`python -m fashionlab.training.multinode`), started
with PyTorch's C++ log level at FATAL: c10d's store client logs each failed connection attempt
with a stack trace, and that level is read once, when torch loads. The training processes get
the user's own level back.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from fashionlab._env import seconds_from_env
from fashionlab.errors import ConfigError

TIMEOUT_ENV = "FASHIONLAB_RDZV_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
_CPP_LOG_LEVEL = "TORCH_CPP_LOG_LEVEL"
_USER_CPP_LOG_LEVEL = "FASHIONLAB_USER_TORCH_CPP_LOG_LEVEL"  # unset = the user had none


def default_timeout() -> float:
    """The rendezvous timeout in seconds: FASHIONLAB_RDZV_TIMEOUT, else 60."""
    return seconds_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT_S, 86_400)


@dataclass(frozen=True)
class NodeSettings:
    """One node's part in a multi-node job: the same on every node except `local_addr` and
    `rdzv_conf`'s is_host."""

    nnodes: int
    endpoint: str  # HOST:PORT of the rendezvous, on the first node
    nproc_per_node: int = 1
    run_id: str = "fashionlab"
    local_addr: str | None = None  # this node's address as the others reach it
    timeout_s: float = DEFAULT_TIMEOUT_S
    rdzv_conf: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        if self.nnodes < 1:
            raise ConfigError(f"--nnodes must be >= 1, got {self.nnodes}")
        if self.nproc_per_node < 1:
            raise ConfigError(f"--nproc must be >= 1, got {self.nproc_per_node}")
        if not 0 < self.timeout_s <= 86_400:
            raise ConfigError(f"--rdzv-timeout must be in (0, 86400] seconds, got {self.timeout_s}")
        host, _, port = self.endpoint.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                f"--rdzv-endpoint {self.endpoint!r} is not HOST:PORT (e.g. 10.0.0.1:29400); "
                "give the first node's address and a free port"
            )
        if not self.run_id or any(c.isspace() for c in self.run_id):
            raise ConfigError(f"--rdzv-id {self.run_id!r} must be a non-empty word")


def parse_rdzv_conf(items: Sequence[str] | None) -> dict[str, str]:
    """torchrun's `--rdzv-conf` syntax: KEY=VALUE pairs, comma-separated or repeated."""
    conf: dict[str, str] = {}
    for item in items or []:
        for pair in filter(None, item.split(",")):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"--rdzv-conf {pair!r} is not KEY=VALUE, e.g. is_host=1")
            conf[key.strip()] = value.strip()
    return conf


def launch_nodes(settings: NodeSettings, fashionlab_args: Sequence[str]) -> int:
    """Run `fashionlab <args>` as this node's part of `settings`' job; returns the exit code
    (0 when every process of this node finished)."""
    settings.check()
    env = dict(os.environ)
    if _CPP_LOG_LEVEL in env:
        env[_USER_CPP_LOG_LEVEL] = env[_CPP_LOG_LEVEL]
    env[_CPP_LOG_LEVEL] = "FATAL"
    cores = os.cpu_count() or 1
    env.setdefault("OMP_NUM_THREADS", str(max(1, cores // settings.nproc_per_node)))
    command = [sys.executable, "-m", __name__, json.dumps(asdict(settings)), *fashionlab_args]
    return subprocess.call(command, env=env)


def _restore_user_log_level() -> None:
    """The training processes inherit this environment: give them the user's C++ log level."""
    user = os.environ.pop(_USER_CPP_LOG_LEVEL, None)
    if user is None:
        os.environ.pop(_CPP_LOG_LEVEL, None)
    else:
        os.environ[_CPP_LOG_LEVEL] = user


def _fail(message: str, code: int = 2) -> int:
    print(f"fashionlab: error: {message}", file=sys.stderr)
    return code


def run_node(settings: NodeSettings, fashionlab_args: Sequence[str], log_dir: str) -> int:
    """The launcher itself: rendezvous, start this node's processes, wait for them; the
    agent keeps its log folders under `log_dir`."""
    import torch  # noqa: F401  (loaded under the FATAL log level before it is handed back)

    _restore_user_log_level()
    from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import (
        RendezvousConnectionError,
        RendezvousError,
        RendezvousTimeoutError,
    )
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    # The agent logs every step and failure on its own; the one line below says what matters.
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    timeout = int(max(1, round(settings.timeout_s)))
    config = LaunchConfig(
        min_nodes=settings.nnodes,
        max_nodes=settings.nnodes,
        nproc_per_node=settings.nproc_per_node,
        run_id=settings.run_id,
        rdzv_endpoint=settings.endpoint,
        rdzv_backend="c10d",
        rdzv_configs={"join_timeout": timeout, "read_timeout": timeout, "timeout": timeout,
                      **settings.rdzv_conf},  # fmt: skip
        max_restarts=0,
        local_addr=settings.local_addr,
        logs_specs=DefaultLogsSpecs(log_dir=log_dir),
    )
    where = f"the rendezvous at {settings.endpoint} (id {settings.run_id!r})"
    try:
        elastic_launch(config, sys.executable)("-m", "fashionlab", *fashionlab_args)
    except RendezvousTimeoutError:
        return _fail(
            f"{where} did not gather {settings.nnodes} nodes within {timeout} s: start the same "
            f"command on every node (same --nnodes, --rdzv-endpoint and --rdzv-id), or raise "
            f"--rdzv-timeout / {TIMEOUT_ENV}"
        )
    except RendezvousConnectionError:
        return _fail(
            f"cannot reach {where} within {timeout} s: check the address and port, and start "
            "the node at that address first (it serves the rendezvous)"
        )
    except RendezvousError as exc:
        return _fail(f"{where} failed: {' '.join(str(exc).split())[:300]}")
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        code = failure.exitcode if failure.exitcode and failure.exitcode > 0 else 1
        return _fail(
            f"training process rank {rank} on this node stopped (exit code {failure.exitcode}); "
            "its message is above. A run that finished an epoch keeps its checkpoint: run the "
            "same command with `--resume RUN_DIR` in place of the training options on every "
            "node",
            code,
        )
    return 0


def main(argv: Sequence[str]) -> int:
    settings = NodeSettings(**json.loads(argv[0]))
    try:
        # Left to itself the agent makes a /tmp/torchelastic_* folder per launch and never
        # removes it: give it one that goes when the launch ends.
        logs = tempfile.TemporaryDirectory(prefix="fashionlab-node-", ignore_cleanup_errors=True)
        with logs:
            return run_node(settings, list(argv[1:]), logs.name)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
