"""`fashionlab runs`: a row per run folder, broken ones marked; and the light CLI start-up."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fashionlab.cli import main
from fashionlab.errors import ConfigError
from fashionlab.runs.table import list_runs, parse_where


@pytest.fixture
def run_tree(tiny_run_dir: Path, tmp_path: Path) -> Path:
    """A real finished run and copies of it broken in each way a folder can be broken."""
    root = tmp_path / "runs"
    study = root / "study"
    good = shutil.copytree(tiny_run_dir, study / "good")
    shutil.copytree(tiny_run_dir, root / "better")
    metrics = json.loads((root / "better" / "metrics.json").read_text())
    metrics["test_accuracy"] = 0.99  # a second complete run, to sort by
    (root / "better" / "metrics.json").write_text(json.dumps(metrics))
    interrupted = shutil.copytree(good, study / "interrupted")
    (interrupted / "complete").unlink()
    (interrupted / "checkpoint.pt").write_bytes(b"state")
    corrupt = shutil.copytree(good, study / "corrupt-metrics")
    (corrupt / "metrics.json").write_text("{not json")
    dead = shutil.copytree(good, study / "dead")
    (dead / "complete").unlink()
    (dead / "checkpoint.pt").unlink(missing_ok=True)
    bad_yaml = shutil.copytree(good, root / "bad-yaml")
    (bad_yaml / "config.yaml").write_text("model: [unclosed\n")
    (root / "not-a-run").mkdir()
    (root / "not-a-run" / "notes.txt").write_text("hello")
    return root


def test_every_row_right_and_broken_ones_marked(run_tree: Path, tiny_run_dir: Path):
    rows = {r.name: r for r in list_runs(run_tree)}
    assert set(rows) == {"good", "better", "interrupted", "corrupt-metrics", "dead", "bad-yaml"}
    stored = json.loads((tiny_run_dir / "metrics.json").read_text())
    good = rows["good"]
    assert good.state == "complete" and good.model == "s3-base" and good.seed == 42
    assert good.test_accuracy == stored["test_accuracy"] and good.macro_f1 == stored["macro_f1"]
    assert good.precision == stored["precision_used"] and good.epochs == stored["epochs_run"]
    assert good.train_seconds == stored["train_seconds"]
    assert rows["interrupted"].state == "interrupted-resumable"
    assert rows["corrupt-metrics"].state == "failed"
    assert "metrics.json unreadable" in rows["corrupt-metrics"].problem
    assert rows["dead"].state == "failed" and "no checkpoint" in rows["dead"].problem
    assert rows["bad-yaml"].state == "failed" and "config.yaml" in rows["bad-yaml"].problem


def test_a_run_held_by_another_command_is_running_not_resumable(run_tree: Path, capsys):
    from fashionlab.runs import claim_folder

    folder = run_tree / "study" / "interrupted"
    with claim_folder(folder):  # a training in another process holds it like this
        rows = {r.name: r for r in list_runs(run_tree)}
        assert rows["interrupted"].state == "running"
        assert main(["runs", str(run_tree), "--where", "state=running"]) == 0
        assert "interrupted" in capsys.readouterr().out
    assert {r.name: r for r in list_runs(run_tree)}["interrupted"].state == (
        "interrupted-resumable"
    )


def test_times_have_one_format(run_tree: Path, capsys):
    for seconds in (0.25, 3.0, 12.5, 1234.56):
        metrics_path = run_tree / "better" / "metrics.json"
        metrics = json.loads(metrics_path.read_text())
        metrics_path.write_text(json.dumps({**metrics, "train_seconds": seconds}))
        assert main(["runs", str(run_tree), "--where", "name=better"]) == 0
        row = capsys.readouterr().out.splitlines()[1].split()
        assert f"{seconds:.1f}" in row, row


def test_sort_and_where(run_tree: Path):
    names = [r.name for r in list_runs(run_tree, sort="-test_accuracy")]
    assert names[:2] == ["better", "good"]  # rows without an accuracy go last
    assert {r.name for r in list_runs(run_tree, where=["state=complete"])} == {"good", "better"}
    assert [r.name for r in list_runs(run_tree, where=["seed=42", "name=good"])] == ["good"]
    assert list_runs(run_tree, where=["seed=7"]) == []
    assert {r.name for r in list_runs(run_tree, where=["model_args.unknown=1"])} == set()
    with pytest.raises(ConfigError, match="cannot sort by"):
        list_runs(run_tree, sort="nope")
    with pytest.raises(ConfigError, match="key=value"):
        parse_where(["seed"])


def test_runs_cli_formats(run_tree: Path, capsys):
    assert main(["runs", str(run_tree), "--sort=-test_accuracy"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert main(["runs", str(run_tree), "--sort", "test_accuracy", "--desc"]) == 0
    assert capsys.readouterr().out.splitlines() == table
    assert table[0].split()[:3] == ["name", "model", "seed"]
    assert table[1].startswith("better") and "complete" in table[1]
    assert main(["runs", str(run_tree), "--format", "csv", "--where", "state=failed"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert {r["name"] for r in rows} == {"corrupt-metrics", "dead", "bad-yaml"}
    assert all(r["problem"] for r in rows)
    assert main(["runs", str(run_tree), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 6 and "config" not in data[0]


def test_runs_cli_errors_and_empty(tmp_path: Path, capsys):
    assert main(["runs", str(tmp_path)]) == 0
    assert "no run folders" in capsys.readouterr().out
    code = main(["runs", str(tmp_path / "missing")])
    err = capsys.readouterr().err
    assert code != 0 and "no such folder" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["--help"], ["runs", "EMPTY"]])
def test_light_commands_do_not_import_torch(argv: list[str], tmp_path: Path):
    argv = [str(tmp_path) if a == "EMPTY" else a for a in argv]
    code = (
        "import sys\n"
        "from fashionlab.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_help_lists_every_command(capsys):
    from fashionlab.cli.commands import COMMANDS

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in COMMANDS)
