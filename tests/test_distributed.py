"""Data-parallel training: the sharding rule, the torchrun launch, and real 2-process runs
(gloo on this CPU) that must match a single process and resume exactly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import left_in_temp
from safetensors.torch import load_file

from fashionlab.cli.train import without_launch_options
from fashionlab.data import BatchIterator
from fashionlab.errors import ConfigError
from fashionlab.runs import load_history
from fashionlab.training.distributed import DistContext, torchrun_command

SMALL = ["--train-subset", "768", "--eval-subset", "256", "--batch-size", "64", "--quiet"]


def test_rank_shards_are_disjoint_cover_the_epoch_and_split_each_global_batch() -> None:
    images = torch.arange(103).view(103, 1)  # 103: the last global batch (7) splits 4 + 3
    labels = torch.arange(103)

    def batches(rank: int, world: int) -> list[torch.Tensor]:
        gen = torch.Generator().manual_seed(5)
        it = BatchIterator(images, labels, 16, True, gen, rank=rank, world_size=world)
        return [y for _, y in it]

    single = batches(0, 1)
    ranks = [batches(r, 2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(single) == 7
    for whole, part0, part1 in zip(single, *ranks, strict=True):
        assert torch.equal(torch.cat([part0, part1]), whole)  # same global batch, split
    seen = torch.cat([torch.cat(r) for r in ranks])
    assert sorted(seen.tolist()) == list(range(103))  # disjoint and covering
    with pytest.raises(ValueError, match="rank 2"):
        BatchIterator(images, labels, 16, rank=2, world_size=2)


def test_single_process_context_is_a_no_op() -> None:
    ctx = DistContext()
    items = torch.arange(5)
    assert not ctx.enabled and ctx.is_main and ctx.shard(items) is items
    assert ctx.all_reduce_sum([1, 2.5]) == [1.0, 2.5] and ctx.all_gather_object("x") == ["x"]
    assert DistContext(rank=1, world_size=2).shard(items).tolist() == [3, 4]


def test_launch_command_line() -> None:
    argv = ["train", "--nproc", "2", "--model", "mlp", "--nproc=3", "--epochs", "1",
            "--nnodes", "2", "--rdzv-endpoint=h:1", "--rdzv-conf", "is_host=1", "--local-addr",
            "10.0.0.2", "--rdzv-timeout", "5", "--rdzv-id", "j"]  # fmt: skip
    assert without_launch_options(argv) == ["train", "--model", "mlp", "--epochs", "1"]
    cmd = torchrun_command(2, ["train", "--model", "mlp"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=2" in cmd and cmd[-4:] == ["fashionlab", "train", "--model", "mlp"]
    with pytest.raises(ConfigError, match="nproc"):
        torchrun_command(0, [])


def _fashionlab(
    *args: str, check: bool = True, temp: Path | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if temp is not None:  # the process's temporary folder (TMPDIR), to see what it leaves
        temp.mkdir()
        env["TMPDIR"] = str(temp)
    proc = subprocess.run(
        [sys.executable, "-m", "fashionlab", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if check:
        assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model.safetensors")


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path: Path, fashion):
    # No dropout and no augmentation: the only difference left is the order of floating-point
    # sums (DDP averages the two half-batch gradients instead of one whole-batch gradient).
    # fp32: bf16's coarser rounding would turn that reordering into differences above 1e-4.
    common = ["train", "--model", "mlp", "--set", "model_args={hidden: [64], dropout: 0}",
              "--epochs", "2", "--precision", "fp32"]  # fmt: skip
    _fashionlab(*common, *SMALL, "--runs-dir", str(tmp_path / "one"))
    temp = tmp_path / "temp"
    _fashionlab(*common, *SMALL, "--nproc", "2", "--runs-dir", str(tmp_path / "two"), temp=temp)
    assert left_in_temp(temp) == []  # torchrun's log folders went with it
    one, two = tmp_path / "one" / "mlp-seed42", tmp_path / "two" / "mlp-seed42"
    assert (two / "complete").exists()
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())
    assert json.loads((two / "env.json").read_text())["processes"] == 2
    for a, b in zip(load_history(one), load_history(two), strict=True):
        for key in ("train_loss", "val_loss", "val_accuracy"):
            assert a[key] == pytest.approx(b[key], abs=1e-4), key  # stated tolerance: 1e-4
    w1, w2 = _weights(one), _weights(two)
    for name in w1:
        torch.testing.assert_close(w1[name], w2[name], atol=1e-4, rtol=1e-4)
    m1 = json.loads((one / "metrics.json").read_text())
    m2 = json.loads((two / "metrics.json").read_text())
    assert m1["test_accuracy"] == pytest.approx(m2["test_accuracy"], abs=2 / 256)


@pytest.mark.slow
def test_two_process_run_stops_and_resumes_bit_identically(tmp_path: Path, fashion):
    # Dropout + flip augmentation: every rank's own random streams must survive the resume.
    common = ["train", "--model", "s3-base", "--epochs", "2", "--set", "hflip=true", *SMALL]
    _fashionlab(*common, "--nproc", "2", "--runs-dir", str(tmp_path / "straight"))
    paused = _fashionlab(
        *common, "--nproc", "2", "--stop-after", "1", "--runs-dir", str(tmp_path / "split")
    )
    run = tmp_path / "split" / "s3-base-seed42"
    assert not (run / "complete").exists() and len(load_history(run)) == 1, paused.stderr
    single = _fashionlab("train", "--resume", str(run), check=False)
    assert single.returncode != 0 and "--nproc 2" in single.stderr  # needs the same world
    _fashionlab("train", "--resume", str(run), "--nproc", "2", "--quiet")
    assert (run / "complete").exists()
    straight = _weights(tmp_path / "straight" / "s3-base-seed42")
    resumed = _weights(run)
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
