"""Experiment tracking: runs logged to TensorBoard and MLflow, read back through each backend's
own reader (TensorBoard's event accumulator, `mlflow.search_runs` on the SQLite store)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import fashionlab
from fashionlab.cli import main
from fashionlab.errors import ConfigError
from fashionlab.runs import load_history, load_metrics
from fashionlab.studies import run_study
from fashionlab.tracking import TrackingSettings, import_runs, parse_loggers

pytest.importorskip("mlflow", reason="the track extra is not installed")
pytest.importorskip("tensorboard", reason="the track extra is not installed")

SMALL = ["--train-subset", "256", "--eval-subset", "200", "--batch-size", "64"]
HISTORY_KEYS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds")


def _events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir / "tensorboard"))
    accumulator.Reload()
    return accumulator


def _hparams(accumulator) -> dict:
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = accumulator.PluginTagToContent("hparams")
    for raw in content.values():
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if data.HasField("session_start_info"):
            return dict(data.session_start_info.hparams)
    return {}


def _search(store: Path, experiment: str):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{store}")
    try:
        return mlflow.search_runs(experiment_names=[experiment], order_by=["tags.mlflow.runName"])
    finally:
        mlflow.set_tracking_uri(None)


def _client(store: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{store}")


@pytest.fixture(autouse=True)
def _no_outside_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def test_logger_names_are_checked():
    assert parse_loggers(None) == () and parse_loggers("none") == ()
    assert parse_loggers(["tensorboard,mlflow", "mlflow"]) == ("tensorboard", "mlflow")
    with pytest.raises(ConfigError, match="unknown logger 'wandb'; choose from tensorboard"):
        parse_loggers("wandb")


def test_bad_logger_on_the_command_line_is_one_line(tmp_path, capsys):
    code = main(["train", "--model", "s3-base", "--runs-dir", str(tmp_path), "--log", "wandb"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown logger 'wandb'" in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())  # refused before anything was written


def test_tensorboard_records_history_and_hparams(tmp_path):
    code = main(["train", "--model", "s3-base", "--epochs", "2", *SMALL, "-q",
                 "--runs-dir", str(tmp_path), "--log", "tensorboard"])  # fmt: skip
    assert code == 0
    run_dir = tmp_path / "s3-base-seed42"
    events = _events(run_dir)
    history = load_history(run_dir)
    for key in HISTORY_KEYS:
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        assert logged == [(row["epoch"], pytest.approx(row[key], rel=1e-5)) for row in history]
    metrics = load_metrics(run_dir)
    final = events.Scalars("final/test_accuracy")
    assert final[-1].value == pytest.approx(metrics["test_accuracy"], rel=1e-6)
    hparams = _hparams(events)
    assert hparams["lr"].number_value == pytest.approx(fashionlab.load_run(run_dir).config.lr)
    assert hparams["model"].string_value == "s3-base"
    assert not (tmp_path / "mlflow.db").exists()  # only what was asked for


def test_mlflow_run_resumed_and_read_back(tmp_path):
    """A paused run is KILLED in MLflow; resuming continues the same MLflow run to the end."""
    base = ["--model", "s3-base", "--epochs", "2", *SMALL, "-q", "--log", "mlflow"]
    assert main(["train", *base, "--runs-dir", str(tmp_path), "--stop-after", "1"]) == 0
    run_dir = tmp_path / "s3-base-seed42"
    store = tmp_path / "mlflow.db"
    paused = _search(store, "fashionlab")
    assert len(paused) == 1 and paused.status[0] == "KILLED"
    assert main(["train", "--resume", str(run_dir), "-q", "--log", "mlflow"]) == 0

    found = _search(store, "fashionlab")
    assert len(found) == 1
    row = found.iloc[0]
    metrics = load_metrics(run_dir)
    assert row.status == "FINISHED" and row["tags.mlflow.runName"] == "s3-base-seed42"
    assert row["metrics.test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert row["metrics.macro_f1"] == pytest.approx(metrics["macro_f1"])
    assert row["params.model"] == "s3-base" and row["params.epochs"] == "2"
    assert row["tags.fashionlab.run_dir"] == str(run_dir.resolve())
    client = _client(store)
    steps = [(m.step, m.value) for m in client.get_metric_history(row.run_id, "train_loss")]
    history = load_history(run_dir)
    assert steps == [(r["epoch"], pytest.approx(r["train_loss"], rel=1e-5)) for r in history]
    artifacts = {a.path for a in client.list_artifacts(row.run_id)}
    assert {"config.yaml", "metrics.json", "history.csv", "model.safetensors"} <= artifacts
    # The artefacts sit beside the store, not in ./mlruns of whatever the working folder is.
    assert (tmp_path / "mlflow-artifacts" / row.run_id).is_dir()
    # `fashionlab runs` does not mistake the stored copies for runs.
    assert [r.name for r in fashionlab.list_runs(tmp_path)] == ["s3-base-seed42"]


def test_both_loggers_from_python_and_a_numpy_run(tmp_path):
    run = fashionlab.train("numpy-mlp", tmp_path, log=["tensorboard", "mlflow"], epochs=2,
                           train_subset=500, eval_subset=200, quiet=True)  # fmt: skip
    events = _events(run.path)
    assert [e.step for e in events.Scalars("train_loss")] == [1, 2]
    found = _search(tmp_path / "mlflow.db", "fashionlab")
    assert found.status.tolist() == ["FINISHED"]
    assert found["metrics.test_accuracy"][0] == pytest.approx(run.metrics["test_accuracy"])


def test_a_broken_store_costs_the_run_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    run = fashionlab.train("s3-base", tmp_path, log="mlflow", epochs=1, train_subset=256,
                           eval_subset=200, quiet=True)  # fmt: skip
    assert run.complete
    err = capsys.readouterr().err
    assert err.count("mlflow logging stopped") == 1 and "track import" in err


def test_a_study_is_an_experiment_with_one_run_per_member(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\nseeds: [1, 2]\n"
        "overrides: {train_subset: 256, eval_subset: 200, epochs: 1}\n"
        "runs:\n  - {label: A, model: mlp, overrides: {model_args: {hidden: [16]}}}\n"
    )
    out = run_study(path, tmp_path / "tiny", quiet=True, make_report=False,
                    loggers=["mlflow", "tensorboard"])  # fmt: skip
    found = _search(out / "mlflow.db", "tiny")
    assert found["tags.mlflow.runName"].tolist() == ["A-seed1", "A-seed2"]
    assert set(found.status) == {"FINISHED"}
    assert found["params.seed"].tolist() == ["1", "2"]
    assert all((out / name / "tensorboard").is_dir() for name in ("A-seed1", "A-seed2"))


@pytest.fixture
def mixed_runs(tiny_run_dir: Path, tmp_path: Path) -> Path:
    """Two finished runs (one of them an older folder without a run_id), an interrupted one
    and one with a corrupt metrics.json."""
    root = tmp_path / "runs"
    shutil.copytree(tiny_run_dir, root / "good")
    old = shutil.copytree(tiny_run_dir, root / "old")
    env = json.loads((old / "env.json").read_text())
    env.pop("run_id", None)
    (old / "env.json").write_text(json.dumps(env))
    interrupted = shutil.copytree(tiny_run_dir, root / "interrupted")
    (interrupted / "complete").unlink()
    corrupt = shutil.copytree(tiny_run_dir, root / "corrupt")
    (corrupt / "metrics.json").write_text("{not json")
    return root


@pytest.mark.slow
def test_track_import_pushes_existing_runs_once(mixed_runs: Path, capsys):
    code = main(["track", "import", str(mixed_runs)])
    out = capsys.readouterr().out
    assert code == 1  # a folder failed, and the output says which
    outcomes = {Path(line.split()[0]).name: line.split()[1] for line in out.splitlines()[:-1]}
    assert outcomes == {"corrupt": "failed", "good": "imported", "interrupted": "skipped",
                        "old": "imported"}  # fmt: skip
    assert "not readable JSON" in out and "Traceback" not in out
    found = _search(mixed_runs / "mlflow.db", "fashionlab")
    assert found["tags.mlflow.runName"].tolist() == ["good", "old"]
    assert set(found.status) == {"FINISHED"}
    # The old folder without a run_id is identified by its path.
    assert found["tags.fashionlab.run_id"][1] == f"path:{(mixed_runs / 'old').resolve()}"
    good = load_metrics(mixed_runs / "good")
    assert found["metrics.test_accuracy"][0] == pytest.approx(good["test_accuracy"])

    again = import_runs(mixed_runs)  # nothing duplicated
    assert {r.path.name: r.outcome for r in again}["good"] == "already imported"
    assert len(_search(mixed_runs / "mlflow.db", "fashionlab")) == 2


def test_track_import_errors(tmp_path, capsys):
    assert main(["track", "import", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["track", "import", str(tmp_path)]) == 2
    assert "no run folders" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


def test_settings_use_the_tracking_uri_when_set(tmp_path, monkeypatch):
    settings = TrackingSettings.of("mlflow", tmp_path)
    assert settings.tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")
    assert settings.tracking_uri() == "http://mlflow.example:5000"
    assert settings.artifact_location() is None  # the server decides
