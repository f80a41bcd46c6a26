"""Across hosts, for real: two Linux network namespaces joined by a veth pair stand in for two
machines (their own addresses and interfaces, traffic only over the veth), and real torchrun
nodes run in them with c10d rendezvous and gloo over that link.

The namespaces, the veth pair and every process are created and removed by the test, also when
it fails; every wait is bounded. Skipped, with the reason, where namespaces cannot be made
(not root, or no `ip`). The folders are shared between the two "hosts" as a cluster's shared
file system would be: the data and the runs folder.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import left_in_temp
from safetensors.torch import load_file

from fashionlab.runs import load_history

SMALL = ["--train-subset", "768", "--eval-subset", "256", "--batch-size", "64", "--quiet"]
WAIT_S = 240  # the most any one process may take before the test kills it


@dataclass
class Host:
    namespace: str
    interface: str
    address: str

    def command(self, argv: list[str], env: dict[str, str] | None = None) -> list[str]:
        settings = {"GLOO_SOCKET_IFNAME": self.interface, "OMP_NUM_THREADS": "1", **(env or {})}
        return ["ip", "netns", "exec", self.namespace, "env",
                *(f"{k}={v}" for k, v in settings.items()), *argv]  # fmt: skip

    def kill_all(self) -> None:
        """SIGKILL every process in this host's namespace (a node losing power)."""
        pids = subprocess.run(["ip", "netns", "pids", self.namespace], capture_output=True,
                              text=True).stdout.split()  # fmt: skip
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _can_make_namespaces() -> str | None:
    """None when this runner can create network namespaces, else why not."""
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"fl-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.fixture
def two_hosts() -> Iterator[tuple[Host, Host]]:
    reason = _can_make_namespaces()
    if reason:
        pytest.skip(reason)
    tag = os.getpid() % 100_000
    subnet = f"10.{200 + tag % 50}.{tag % 250}"
    hosts = (
        Host(f"fl-{tag}-a", f"fl{tag}a", f"{subnet}.1"),
        Host(f"fl-{tag}-b", f"fl{tag}b", f"{subnet}.2"),
    )
    try:
        for host in hosts:
            _ip("netns", "add", host.namespace)
            _ip("-n", host.namespace, "link", "set", "lo", "up")
        a, b = hosts
        _ip("link", "add", a.interface, "netns", a.namespace, "type", "veth",
            "peer", "name", b.interface, "netns", b.namespace)  # fmt: skip
        for host in hosts:
            _ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", host.interface)
            _ip("-n", host.namespace, "link", "set", host.interface, "up")
        yield hosts
    finally:
        for host in hosts:
            host.kill_all()
            subprocess.run(["ip", "netns", "del", host.namespace], capture_output=True)


def _node(
    host: Host, rendezvous: Host, train_args: list[str], port: int, temp: Path | None = None
) -> list[str]:
    # Both namespaces share this machine's hostname, so the launcher cannot tell by name which
    # node hosts the rendezvous store: say so (a real cluster's hosts have their own names).
    is_host = int(host is rendezvous)
    env = {"TMPDIR": str(temp)} if temp else None  # to see what the node leaves there
    return host.command([
        sys.executable, "-m", "fashionlab", "train", *train_args,
        "--nnodes", "2", "--rdzv-endpoint", f"{rendezvous.address}:{port}",
        "--rdzv-id", f"job{port}", "--rdzv-conf", f"is_host={is_host}",
        "--local-addr", host.address,
    ], env=env)  # fmt: skip


def _start_nodes(
    hosts: tuple[Host, Host], train_args: list[str], port: int, temp: Path | None = None
):
    a, _ = hosts
    return [
        subprocess.Popen(_node(h, a, train_args, port, temp), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)  # fmt: skip
        for h in hosts
    ]


def _wait(procs: list[subprocess.Popen], timeout: float = WAIT_S) -> list[str]:
    outputs = []
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        outputs.append(out)
    return outputs


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model.safetensors")


def _one_node_two_processes(train_args: list[str], runs_dir: Path) -> Path:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "fashionlab", "train", *train_args, "--nproc",
                           "2", "--runs-dir", str(runs_dir)],
                          capture_output=True, text=True, env=env, timeout=WAIT_S)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return runs_dir / "s2-cnn-seed42"


@pytest.mark.slow
def test_two_nodes_train_the_same_weights_as_one_node(two_hosts, tmp_path: Path, fashion):
    train_args = ["--model", "s2-cnn", "--epochs", "1", *SMALL]
    reference = _one_node_two_processes(train_args, tmp_path / "one-node")

    temp = tmp_path / "temp"
    temp.mkdir()
    procs = _start_nodes(two_hosts, [*train_args, "--runs-dir", str(tmp_path / "two-nodes")],
                         port=29411, temp=temp)  # fmt: skip
    outputs = _wait(procs)
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-1500:] for o in outputs)
    assert left_in_temp(temp) == []  # the agents' log folders went with them
    run = tmp_path / "two-nodes" / "s2-cnn-seed42"
    assert (run / "complete").exists()
    one, two = _weights(reference), _weights(run)
    assert one.keys() == two.keys()
    for name in one:  # the same two ranks reduce the same gradients: bit-identical
        assert torch.equal(one[name], two[name]), name


@pytest.mark.slow
def test_a_node_that_dies_leaves_a_checkpoint_that_resume_continues(
    two_hosts, tmp_path: Path, fashion
):
    train_args = ["--model", "s2-cnn", "--epochs", "3", *SMALL]
    reference = _one_node_two_processes(train_args, tmp_path / "straight")

    runs_dir = tmp_path / "cluster"
    run = runs_dir / "s2-cnn-seed42"
    # The killed node cannot remove its temporary folder: keep it in this test's own.
    temp = tmp_path / "temp"
    temp.mkdir()
    procs = _start_nodes(two_hosts, [*train_args, "--runs-dir", str(runs_dir)], port=29412,
                         temp=temp)  # fmt: skip
    deadline = time.monotonic() + WAIT_S
    while len(load_history(run)) < 1 and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.2)
    assert len(load_history(run)) >= 1, "the first epoch never finished"
    two_hosts[1].kill_all()  # node b loses power after epoch 1
    outputs = _wait(procs, timeout=120)
    assert procs[0].returncode != 0, outputs[0][-1500:]  # the survivor gives up, bounded
    survivor = outputs[0].strip().splitlines()
    assert "Traceback" not in outputs[0], outputs[0][-3000:]
    assert survivor[-1].startswith("fashionlab: error: training process rank 0"), survivor[-1]
    done_epochs = len(load_history(run))
    assert 1 <= done_epochs < 3 and not (run / "complete").exists()
    assert (run / "checkpoint.pt").exists()

    procs = _start_nodes(two_hosts, ["--resume", str(run), "--quiet"], port=29413, temp=temp)
    outputs = _wait(procs)
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-1500:] for o in outputs)
    assert (run / "complete").exists() and len(load_history(run)) == 3
    straight, resumed = _weights(reference), _weights(run)
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name


RAY_STUDY = """\
name: spread
seeds: [1]
overrides: {train_subset: 12000, eval_subset: 500, epochs: 5}
runs:
  - {label: A, model: mlp, overrides: {model_args: {hidden: [64]}}}
  - {label: B, model: mlp, overrides: {model_args: {hidden: [96]}}}
"""


def _ray(host: Host, *args: str, temp: Path, auth: dict[str, str]) -> None:
    ray = str(Path(sys.executable).parent / "ray")
    done = subprocess.run(
        host.command([ray, "start", *args, "--node-ip-address", host.address, "--num-cpus", "1",
                      "--temp-dir", str(temp)], env={"RAY_USAGE_STATS_ENABLED": "0", **auth}),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-1500:] + done.stderr[-1500:]


def _driver(head: Host, port: int, study: Path, out: Path, auth: dict) -> subprocess.Popen:
    # --no-report: the report is not under test here, and its figures took a third of each study.
    return subprocess.Popen(
        head.command([sys.executable, "-m", "fashionlab", "study", str(study), "--backend",
                      "ray", "--address", f"{head.address}:{port}", "--workers", "2",
                      "--out", str(out), "--quiet", "--no-report"], env=auth),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def _rows(out: Path) -> list[tuple[str, list[float]]]:
    summary = json.loads((out / "study.json").read_text())
    return [(r["label"], r["test_accuracy"]["values"]) for r in summary["rows"]]


KILL_ATTEMPTS = 3


def _kill_worker_mid_study(
    head: Host, worker: Host, port: int, study: Path, out: Path, auth: dict
) -> set[str]:
    """Run the study into `out`, kill every process of the worker node once both trials have
    finished an epoch (so one is running on each node: each has one CPU), wait for the study to
    end, and return the runs that were already complete at the kill."""
    second = _driver(head, port, study, out, auth)
    runs = [out / "A-seed1", out / "B-seed1"]
    deadline = time.monotonic() + WAIT_S
    while not all(load_history(r) for r in runs) and time.monotonic() < deadline:
        assert second.poll() is None, second.communicate()[0][-2000:]
        time.sleep(0.05)
    done = {r.name for r in runs if (r / "complete").exists()}
    assert len(done) < 2, "both finished before the kill"
    worker.kill_all()
    output = _wait([second])[0]
    assert second.returncode == 0, output[-2500:]
    return done


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # with the other Ray tests: see test_backends
def test_a_ray_study_across_two_nodes_survives_losing_one(two_hosts, tmp_path: Path, fashion):
    """One cluster (a head and a worker node, Ray token auth), two studies of the same file:
    the first spreads its two trials over both nodes; in the second the worker node is killed
    once both trials have finished an epoch, and its trial is retried on the head and resumes
    its run folder. The second study must equal the first, run by run. When the worker's trial
    happens to finish before the kill, nothing is retried and that study is run again."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    head, worker = two_hosts
    port = 6390
    study = tmp_path / "spread.yaml"
    study.write_text(RAY_STUDY)
    # Ray's socket paths must stay under 108 bytes: short temporary folders, removed after.
    temps = [Path(tempfile.mkdtemp(prefix="flray", dir="/tmp")) for _ in range(2)]
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    whole = tmp_path / "whole"  # shared folders both nodes write to
    try:
        _ray(head, "--head", "--port", str(port), "--include-dashboard", "false",
             temp=temps[0], auth=auth)  # fmt: skip
        _ray(worker, "--address", f"{head.address}:{port}", temp=temps[1], auth=auth)
        first = _driver(head, port, study, whole, auth)
        output = _wait([first])[0]
        assert first.returncode == 0, output[-2500:]

        for attempt in range(KILL_ATTEMPTS):
            hurt = tmp_path / f"hurt{attempt}"
            done_at_kill = _kill_worker_mid_study(head, worker, port, study, hurt, auth)
            after = json.loads((hurt / "study.json").read_text())["backend"]["nodes"]
            on_worker = {run for run, node in after.items() if node == worker.address}
            # Only a trial that had finished before the node died can report from it.
            assert on_worker <= done_at_kill, (after, done_at_kill)
            if not on_worker:
                break  # the worker's trial was mid-run and finished on the head
            # The worker's trial beat the head's to the end, so nothing was retried: the worker
            # node joins again (a fresh temporary folder: the dead node's sockets stay) and the
            # study runs again.
            temps.append(Path(tempfile.mkdtemp(prefix="flray", dir="/tmp")))
            _ray(worker, "--address", f"{head.address}:{port}", temp=temps[-1], auth=auth)
        else:
            pytest.fail(f"in {KILL_ATTEMPTS} tries the worker's trial always finished first")
    finally:
        for host in two_hosts:
            host.kill_all()
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)
    backend = json.loads((whole / "study.json").read_text())["backend"]
    assert sorted(backend["data"]) == sorted([head.address, worker.address])  # both verified
    spread = backend["nodes"]
    assert sorted(spread) == ["A-seed1", "B-seed1"]
    assert sorted(spread.values()) == sorted([head.address, worker.address])  # one each
    assert set(after.values()) == {head.address}  # the killed trial finished on the head
    assert _rows(hurt) == _rows(whole)  # the same runs, the same results
