"""Study backends (sequential, process pool, Ray) and `fashionlab tune` (Ray Tune + ASHA)."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fashionlab.cli import main
from fashionlab.errors import ConfigError
from fashionlab.studies import load_study, plan_study, run_study
from fashionlab.studies.backends import check_backend, threads_per_worker, waves

TINY_STUDY = """\
name: tiny
seeds: [1]
overrides: {train_subset: 600, eval_subset: 200, epochs: 1}
runs:
  - label: A
    model: mlp
    overrides: {model_args: {hidden: [16]}}
  - label: B
    model: mlp
    overrides: {model_args: {hidden: [24]}}
compare:
  - {a: A, b: B}
"""
TUNE_SECTION = """\
tune:
  run: A
  num_samples: 2
  grace_period: 1
  space:
    lr: {loguniform: [1.0e-4, 1.0e-2]}
    batch_size: {choice: [32, 64]}
"""


@pytest.fixture
def study_file(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_STUDY + TUNE_SECTION)
    return path


def test_backend_choices_are_checked_before_anything_runs(monkeypatch) -> None:
    with pytest.raises(ConfigError, match="unknown backend 'dask'"):
        check_backend("dask", 1, None)
    with pytest.raises(ConfigError, match="workers"):
        check_backend("local", 0, None)
    with pytest.raises(ConfigError, match="--address is for --backend ray"):
        check_backend("local", 1, "ray://head:10001")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"fashionlab\[ray\]"):
        check_backend("ray", 1, None)


def test_feature_runs_wait_for_the_runs_they_read(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nseeds: [1, 2]\nruns:\n  - {label: cnn, model: s1-cnn5}\n"
        "  - {label: feat, model: numpy-mlp, features_from: cnn}\n"
    )
    first, second = waves(plan_study(load_study(path), tmp_path))
    assert {r.label for r in first} == {"cnn"} and {r.label for r in second} == {"feat"}
    assert threads_per_worker(2, cores=2) == 1 and threads_per_worker(3, cores=2) == 1
    assert threads_per_worker(1, cores=8) == 8


def test_tune_section_is_validated(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_STUDY + "tune:\n  space:\n    learning_rate: {uniform: [0, 1]}\n")
    with pytest.raises(ConfigError, match="learning_rate"):
        load_study(bad)
    bad.write_text(TINY_STUDY + "tune:\n  space:\n    lr: {normal: [0, 1]}\n")
    with pytest.raises(ConfigError, match="loguniform"):
        load_study(bad)
    bad.write_text(TINY_STUDY + "tune:\n  space:\n    lr: {uniform: [-1.0, 1.0]}\n")
    from fashionlab.studies.tune import tune_study

    with pytest.raises(ConfigError, match="lr: Input should be greater than 0"):
        tune_study(bad, tmp_path / "out")  # an invalid extreme fails before Ray starts
    plain = tmp_path / "plain.yaml"
    plain.write_text(TINY_STUDY)
    assert main(["tune", str(plain)]) == 2  # one-line error: no tune section


def _tracked(store: Path, experiment: str) -> dict[str, str]:
    """Run name -> status of the MLflow runs of `experiment` in the SQLite store."""
    if importlib.util.find_spec("mlflow") is None:
        return {}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    return {r.info.run_name: r.info.status for r in client.search_runs([experiment_id])}


def _accuracies(out: Path) -> dict[str, float]:
    summary = json.loads((out / "study.json").read_text())
    return {row["label"]: row["test_accuracy"]["mean"] for row in summary["rows"]}


@pytest.mark.extra("track")
@pytest.mark.slow
def test_process_pool_gives_the_same_runs_as_sequential(study_file, tmp_path, one_torch_thread):
    seq = run_study(study_file, tmp_path / "seq", quiet=True, make_report=False)
    pool = run_study(study_file, tmp_path / "pool", quiet=True, make_report=False, workers=2,
                     loggers="mlflow")  # fmt: skip
    for name in ("A-seed1", "B-seed1"):
        assert (pool / name / "complete").exists()
    # Two worker processes logged to one SQLite store at once.
    assert _tracked(pool / "mlflow.db", "tiny") == {"A-seed1": "FINISHED", "B-seed1": "FINISHED"}
    # Same config and seed, one thread each: the same numbers, whichever backend ran them.
    assert _accuracies(seq) == _accuracies(pool)
    assert json.loads((pool / "study.json").read_text())["backend"]["workers"] == 2


# Every test that starts Ray runs on the same pytest-xdist worker, one after another: two Ray
# clusters on one 2-core machine would each wait on the other.
RAY_GROUP = pytest.mark.xdist_group("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
@RAY_GROUP
def test_ray_backend_runs_a_study_end_to_end(study_file, tmp_path, local_ray):
    out = run_study(study_file, tmp_path / "ray", quiet=True, backend="ray", workers=2,
                    loggers="mlflow")  # fmt: skip
    for name in ("A-seed1", "B-seed1"):
        assert (out / name / "complete").exists()
    assert _tracked(out / "mlflow.db", "tiny") == {"A-seed1": "FINISHED", "B-seed1": "FINISHED"}
    assert (out / "report.html").is_file()
    backend = json.loads((out / "study.json").read_text())["backend"]
    assert backend["name"] == "ray"
    assert len(backend["data"]) == 1  # the one node verified the data it found


@pytest.mark.slow
@RAY_GROUP
def test_ray_study_stops_before_any_trial_when_a_node_lacks_the_data(
    study_file, tmp_path, local_ray
):
    empty = tmp_path / "no-data"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"Ray node \S+ cannot load Fashion-MNIST: .*Every node"):
        run_study(study_file, tmp_path / "ray", quiet=True, backend="ray", data_dir=empty)
    assert not (tmp_path / "ray" / "A-seed1").exists()  # no trial started


@pytest.mark.slow
@RAY_GROUP
def test_tune_searches_the_space_and_writes_the_best(study_file, tmp_path, local_ray):
    from fashionlab.studies.tune import tune_study

    summary = tune_study(study_file, tmp_path / "tune", {"epochs": 2}, workers=2, quiet=True,
                         loggers="mlflow")  # fmt: skip
    assert len(summary["trials"]) == 2 and summary["failed"] == 0
    tracked = _tracked(tmp_path / "tune" / "mlflow.db", "tiny-tune")
    assert sorted(tracked) == sorted(t["trial"] for t in summary["trials"])
    assert "RUNNING" not in tracked.values()  # a trial ASHA stopped is closed as KILLED
    best = summary["best"]
    assert 1e-4 <= best["config"]["lr"] <= 1e-2 and best["config"]["batch_size"] in (32, 64)
    assert best["val_loss"] == min(t["val_loss"] for t in summary["trials"])
    saved = json.loads((tmp_path / "tune" / "tune.json").read_text())
    assert saved["best"] == best
    trial_dirs = list((tmp_path / "tune" / "tune").iterdir())
    assert len(trial_dirs) == 2 and all((d / "config.yaml").exists() for d in trial_dirs)


def _free_port() -> int:

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


@pytest.mark.extra("ray")
@pytest.mark.parametrize("scheme", ["ray://127.0.0.1:{port}", "127.0.0.1:{port}"])
def test_no_cluster_at_the_address_is_one_line_and_quick(scheme, study_file, tmp_path, capsys):
    import time

    address = scheme.format(port=_free_port())
    started = time.monotonic()
    code = main(["study", str(study_file), "--backend", "ray", "--address", address,
                 "--out", str(tmp_path / "out")])  # fmt: skip
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2 and f"no Ray cluster at {address}" in err and "refused" in err.lower()
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing was started or written
    assert elapsed < 30  # a hang guard, not a speed target: Ray itself retries for minutes


def test_cluster_addresses_and_timeout_are_checked(monkeypatch):
    from fashionlab.studies.cluster import check_reachable, connect_timeout, parse_address

    assert parse_address("ray://head") == ("head", 10001)
    assert parse_address("head") == ("head", 6379)
    assert parse_address("10.0.0.2:7000") == ("10.0.0.2", 7000)
    assert parse_address("auto") is None
    for bad in ("http://head:1", "head:port", "ray://:10001", "head:70000"):
        with pytest.raises(ConfigError, match="expected ray://HOST"):
            parse_address(bad)
    with pytest.raises(ConfigError, match="unknown host"):
        check_reachable("no-such-host.invalid:6379", timeout=2)
    monkeypatch.setenv("FASHIONLAB_RAY_TIMEOUT", "0.5")
    assert connect_timeout() == 0.5
    monkeypatch.setenv("FASHIONLAB_RAY_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="FASHIONLAB_RAY_TIMEOUT='soon'"):
        connect_timeout()


@contextlib.contextmanager
def _server(answer: bytes | None) -> Iterator[int]:
    """A TCP server on a free port that sends `answer` to each connection (None: says nothing
    and keeps it open); yields the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            if answer is None:
                held.append(connection)
            else:
                connection.sendall(answer)
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()
        for connection in held:
            connection.close()


def test_a_port_where_something_else_listens_is_one_line_and_quick():
    from fashionlab.studies.cluster import check_reachable

    with _server(b"HTTP/1.1 400 Bad Request\r\n\r\n") as port:  # a web server, say
        with pytest.raises(ConfigError, match="not a Ray cluster.*check the port"):
            check_reachable(f"127.0.0.1:{port}", timeout=2)
    with _server(None) as port:  # accepts, then silence
        with pytest.raises(ConfigError, match="no answer within 0.5 s"):
            check_reachable(f"127.0.0.1:{port}", timeout=0.5)
    settings_frame = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # how a gRPC server (Ray's GCS) answers
    with _server(settings_frame) as port:
        check_reachable(f"ray://127.0.0.1:{port}", timeout=2)


def test_a_cluster_without_a_free_cpu_is_one_line():
    from fashionlab.errors import RunError
    from fashionlab.studies.backends import require_free_cpu

    class Busy:
        def cluster_resources(self):
            return {"CPU": 4.0}

        def available_resources(self):
            return {"CPU": 0.0}

    with pytest.raises(RunError, match="no free CPU \\(4 in all, all in use\\)"):
        require_free_cpu(Busy(), "ray://head:10001")


def test_something_that_is_not_a_ray_cluster_is_one_line(monkeypatch):
    """A port that accepts connections but does not speak Ray: Ray's own ConnectionError
    becomes a one-line error."""
    ray = pytest.importorskip("ray", reason="the ray extra is not installed")
    from fashionlab.studies import backends

    def refuse(**kwargs):
        raise ConnectionError(f"Failed to connect to Ray cluster at {kwargs['address']}")

    monkeypatch.setattr(backends, "check_reachable", lambda address: None)  # it listens
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(ConfigError, match=r"cannot join a Ray cluster at 10\.0\.0\.9:6379: Fail"):
        with backends.ray_session("10.0.0.9:6379", quiet=True):
            pass


def _alive(pid: int) -> bool:
    try:  # an orphan that nobody reaps stays in /proc as a zombie: that one is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process table in /proc")
def test_pool_workers_end_when_the_study_is_killed(tmp_path: Path) -> None:
    study = tmp_path / "long.yaml"
    study.write_text(
        "name: long\nseeds: [1, 2]\n"
        "overrides: {train_subset: 600, eval_subset: 200, epochs: 2000}\nruns:\n  - {model: mlp}\n"
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "fashionlab", "study", str(study), "--workers", "2"]
    parent = subprocess.Popen([*command, "--quiet", "--out", str(out)])
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("*/history.csv"))) < 2:  # both workers are training
            assert parent.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        tasks = Path(f"/proc/{parent.pid}/task").iterdir()
        workers = [int(pid) for task in tasks for pid in (task / "children").read_text().split()]
        assert workers
        parent.send_signal(signal.SIGTERM)  # no chance to shut the pool down
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in workers), "orphaned workers are still training"
    finally:
        parent.kill()
        for pid in filter(_alive, workers):  # when the test fails, leave nothing behind
            os.kill(pid, signal.SIGKILL)
