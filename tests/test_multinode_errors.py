"""`fashionlab train --nnodes N`: its settings, and the failures a user meets before any
training starts (a node that never joins, an endpoint nobody answers at), each one line within
the rendezvous timeout. The two-node runs themselves are in test_multihost.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch.distributed as dist

from fashionlab.cli import main
from fashionlab.errors import ConfigError
from fashionlab.training.distributed import collective_timeout, is_peer_failure, peer_lost
from fashionlab.training.multinode import (
    TIMEOUT_ENV,
    NodeSettings,
    default_timeout,
    parse_rdzv_conf,
)

TRAIN = ["--model", "s2-cnn", "--epochs", "1", "--train-subset", "256", "--quiet"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_alone(tmp_path: Path, *options: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "fashionlab", "train", *TRAIN, "--runs-dir", str(tmp_path),
         "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-timeout",
         "3", *options],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return done, time.monotonic() - start


def test_settings_are_checked_with_a_message_that_says_what_to_give() -> None:
    NodeSettings(2, "10.0.0.1:29400").check()
    for bad, match in [
        (NodeSettings(0, "h:1"), "--nnodes"),
        (NodeSettings(2, "h:1", nproc_per_node=0), "--nproc"),
        (NodeSettings(2, "10.0.0.1"), "HOST:PORT"),
        (NodeSettings(2, "h:99999"), "HOST:PORT"),
        (NodeSettings(2, ":29400"), "HOST:PORT"),
        (NodeSettings(2, "h:1", timeout_s=0), "--rdzv-timeout"),
        (NodeSettings(2, "h:1", run_id="a b"), "--rdzv-id"),
    ]:
        with pytest.raises(ConfigError, match=match):
            bad.check()
    assert parse_rdzv_conf(["is_host=1,a=b", "c = d"]) == {"is_host": "1", "a": "b", "c": "d"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_rdzv_conf(["is_host"])


def test_timeouts_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.delenv("FASHIONLAB_DIST_TIMEOUT", raising=False)
    assert collective_timeout().total_seconds() == 1800
    monkeypatch.setenv("FASHIONLAB_DIST_TIMEOUT", "90")
    assert collective_timeout().total_seconds() == 90
    monkeypatch.setenv("FASHIONLAB_DIST_TIMEOUT", "never")
    with pytest.raises(ConfigError, match="FASHIONLAB_DIST_TIMEOUT='never'"):
        collective_timeout()
    monkeypatch.delenv(TIMEOUT_ENV, raising=False)
    assert default_timeout() == 60
    monkeypatch.setenv(TIMEOUT_ENV, "7.5")
    assert default_timeout() == 7.5
    for bad in ("soon", "0", "-3"):
        monkeypatch.setenv(TIMEOUT_ENV, bad)
        with pytest.raises(ConfigError, match=TIMEOUT_ENV):
            default_timeout()


def test_a_lost_peer_is_told_apart_from_a_bug() -> None:
    gloo = RuntimeError("[gloo/transport/tcp/pair.cc:553] Connection closed by peer [10.0.0.2]")
    assert is_peer_failure(gloo) and is_peer_failure(dist.DistError("store gone"))
    assert not is_peer_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_peer_failure(ValueError("gloo"))
    message = str(peer_lost(gloo, "runs/s2-cnn-seed42", 2))
    assert "epochs 1..2 are checkpointed" in message and "--resume runs/s2-cnn-seed42" in message
    assert "\n" not in message


@pytest.mark.slow
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ((), "did not gather 2 nodes within 3 s"),  # this node serves; nobody joins
        (("--rdzv-conf", "is_host=0"), "cannot reach the rendezvous"),  # nobody serves
    ],
)
def test_a_lone_node_fails_in_one_line_within_the_timeout(tmp_path, options, expected):
    done, seconds = _train_alone(tmp_path / "runs", *options)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("fashionlab: error: "), done.stderr[-2000:]
    assert expected in lines[0]
    assert seconds < 90  # the 3 s wait plus two interpreters' start-up on a busy machine
    assert not (tmp_path / "runs").exists()  # nothing written before the job formed


def test_launcher_options_need_each_other(tmp_path, capsys) -> None:
    runs = ["--runs-dir", str(tmp_path)]
    for options, match in [
        (["--nnodes", "2"], "--nnodes needs --rdzv-endpoint"),
        (["--rdzv-endpoint", "h:1"], "--rdzv-endpoint needs --nnodes"),
    ]:
        with pytest.raises(SystemExit, match=match):
            main(["train", *TRAIN, *runs, *options])
    assert main(["train", *TRAIN, *runs, "--nnodes", "2", "--rdzv-endpoint", "nope"]) == 2
    assert "is not HOST:PORT" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
