"""The notebook API: `fashionlab.train` -> `Run`, `load_run`, `study`, callbacks that stop a
run cleanly, and figures returned as objects."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

import fashionlab
import fashionlab.notebook
import fashionlab.training  # loaded: must not change what fashionlab.train is
from fashionlab import viz
from fashionlab.data import load_fashion_mnist
from fashionlab.errors import ConfigError, RunError
from fashionlab.runs import load_predictions

SMALL = {"train_subset": 256, "eval_subset": 200, "batch_size": 64}


class Recorder(fashionlab.Callback):
    """Records the hooks it saw and asks to stop after `stop_at` epochs."""

    def __init__(self, stop_at: int) -> None:
        self.stop_at, self.seen = stop_at, []

    def on_train_start(self, run):
        self.seen.append(("start", run.epoch))

    def on_epoch_end(self, run, row):
        self.seen.append(("epoch", row["epoch"]))
        if run.epoch >= self.stop_at:
            run.request_stop(f"enough after {run.epoch}")

    def on_train_end(self, run, metrics):
        self.seen.append(("end", metrics["epochs_run"]))


@pytest.fixture(scope="module")
def stopped(tmp_path_factory) -> tuple[fashionlab.Run, Recorder]:
    recorder = Recorder(stop_at=1)
    run = fashionlab.train(
        "s3-base", tmp_path_factory.mktemp("nb"), epochs=3, callbacks=[recorder], quiet=True,
        **SMALL,
    )  # fmt: skip
    return run, recorder


def test_a_callback_stops_the_run_cleanly(stopped):
    run, recorder = stopped
    assert recorder.seen == [("start", 0), ("epoch", 1), ("end", 1)]
    assert run.complete
    assert run.metrics["epochs_run"] == 1 and run.config.epochs == 3
    assert run.metrics["stopped_by_callback"] == "enough after 1"
    assert len(run.history) == 1


@pytest.mark.slow
def test_run_object_reads_the_folder_and_predicts(stopped):
    run, _ = stopped
    assert isinstance(run, os.PathLike) and os.fspath(run) == str(run.path)
    assert (run / "metrics.json").is_file()
    assert "s3-base" in repr(run) and "<table>" in run._repr_html_()
    model = run.model()
    assert isinstance(model, torch.nn.Module) and not model.training
    data = load_fashion_mnist()
    images = data.test_images[:50].numpy()
    stored = load_predictions(run.path)
    assert np.array_equal(run.predict(images), stored["logits"][:50].argmax(1))
    probs = run.predict(images[0], probabilities=True)
    assert probs.shape == (1, 10) and np.isclose(probs.sum(), 1.0)
    again = fashionlab.load_run(run.path)
    assert again.config == run.config and again.metrics == run.metrics
    assert run.report().is_file()


def test_train_takes_a_config_and_reports_bad_overrides(stopped, tmp_path):
    run, _ = stopped
    with pytest.raises(ConfigError, match="epochs"):
        fashionlab.train(run.config, tmp_path, epochs=-1)
    with pytest.raises(ConfigError, match="model name or a TrainConfig"):
        fashionlab.train(3, tmp_path)
    with pytest.raises(RunError, match="no such run folder"):
        fashionlab.load_run(tmp_path / "nothing")


def test_study_returns_its_table_and_runs(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: nb\nseeds: [1, 2]\n"
        "overrides: {epochs: 1, train_subset: 256, eval_subset: 200, batch_size: 64}\n"
        "runs:\n  - {label: ANN, model: s4-ann}\n"
    )
    result = fashionlab.study(spec, tmp_path / "out", quiet=True, make_report=False)
    (row,) = result.table
    assert row["label"] == "ANN" and row["n"] == 2
    runs = result.runs["ANN"]
    assert [r.config.seed for r in runs] == [1, 2]
    assert row["test_accuracy"] == pytest.approx(
        np.mean([r.metrics["test_accuracy"] for r in runs])
    )
    assert "<table>" in result._repr_html_()


def test_figures_without_a_path_are_returned(tmp_path):
    fig = viz.plot_confusion_matrix(np.eye(3, dtype=int) * 5)
    assert isinstance(fig, Figure)
    path = viz.plot_confusion_matrix(np.eye(3, dtype=int) * 5, tmp_path / "c.png")
    assert Path(path).is_file()


def test_the_facade_names_are_functions_even_after_the_packages_load():
    assert callable(fashionlab.train) and callable(fashionlab.study)
    assert fashionlab.train is fashionlab.notebook.train


def test_tab_completion_sees_the_lazy_names_before_their_first_use():
    import subprocess
    import sys

    code = "import fashionlab; names = dir(fashionlab); assert 'train' in names and 'Run' in names"
    code += "; import sys; assert 'fashionlab.notebook' not in sys.modules"  # still lazy
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_every_public_name_has_a_docstring_and_is_in_docs_api():
    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text()
    for name in fashionlab.__all__:
        if name == "__version__":
            continue
        obj = getattr(fashionlab, name)
        if callable(obj):
            assert obj.__doc__, f"fashionlab.{name} has no docstring"
        assert f"`{name}" in text or f"{name}(" in text, f"docs/api.md does not show {name}"
