"""Study files: validation with file/line errors, grids, resume, aggregation, McNemar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fashionlab.cli import main
from fashionlab.errors import ConfigError
from fashionlab.runs.folder import STUDY_MARKER
from fashionlab.studies import load_study, plan_study, run_study, select_runs

TINY = "overrides: {epochs: 1, train_subset: 256, eval_subset: 300, batch_size: 64}\n"


def write(tmp_path: Path, text: str, name: str = "study.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_studies_validate(tmp_path):
    for path in sorted(Path("studies").glob("*.yaml")):
        study = load_study(path)
        planned = plan_study(study, tmp_path / study.name, source=str(path))
        assert planned, path


def test_grid_is_a_cartesian_product(tmp_path):
    path = write(
        tmp_path,
        "name: g\nseeds: [1, 2]\nruns:\n  - model: s1-cnn5\n    grid:\n"
        "      model_args.pooling: [max, avg, global]\n"
        "      model_args.init: [default, he]\n",
    )
    planned = plan_study(load_study(path), tmp_path / "g")
    assert len(planned) == 3 * 2 * 2
    labels = {p.label for p in planned}
    assert "s1-cnn5[pooling=max][init=he]" in labels
    assert {p.config.model_args["pooling"] for p in planned} == {"max", "avg", "global"}


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "name: x\nruns:\n  - model: s0-m1\n    overides: {}\n",
            ":4: runs.0.overides: unknown key",
        ),
        (
            "name: x\nruns:\n  - model: s0-m1\n  - model: nope\n",
            ":4: runs[1]: unknown model 'nope'",
        ),
        ("name: x\nruns:\n  - model: s0-m1\n    overrides: {lr: -1}\n", ":3: runs[0]: lr:"),
        ("name: x\nseeds: []\nruns:\n  - model: s0-m1\n", "seeds"),
        (
            "name: x\nruns:\n  - model: s0-m1\ncompare:\n  - {a: s0-m1, b: s0-m9}\n",
            "not a run label",
        ),
        ("name: x\nruns: [\n", "not valid YAML"),
    ],
)
def test_config_errors_name_file_and_line(tmp_path, capsys, text, expected):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=None) as info:
        plan_study(load_study(path), tmp_path / "x", source=str(path))
    assert expected in str(info.value)
    assert str(path) in str(info.value)
    assert main(["study", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0]


def test_study_runs_resumes_and_aggregates(tmp_path):
    path = write(
        tmp_path,
        "name: tiny\nseeds: [1, 2]\n" + TINY + "runs:\n"
        "  - {label: MLP, model: s4-ann, reported: {test_accuracy: 0.9}}\n"
        "  - {label: CNN, model: s4-cnn1}\n  - {label: CNN2, model: s4-cnn2}\n"
        "compare:\n  - {a: CNN, b: MLP, claim: 'CNN wins'}\n",
    )
    out = run_study(path, tmp_path / "out", quiet=True, make_report=False)
    summary = json.loads((out / "study.json").read_text())
    rows = {r["label"]: r for r in summary["rows"]}
    assert set(rows) == {"MLP", "CNN", "CNN2"}
    assert rows["MLP"]["test_accuracy"]["n"] == 2
    assert rows["MLP"]["difference"]["test_accuracy"] == pytest.approx(
        rows["MLP"]["test_accuracy"]["mean"] - 0.9
    )
    (comparison,) = summary["comparisons"]
    assert [c["seed"] for c in comparison["per_seed"]] == [1, 2]
    assert 0 <= comparison["per_seed"][0]["p_value"] <= 1
    assert any("same network" in x["note"] for x in summary["identical_architectures"])

    # An interrupted study resumes: delete one run's completion marker, run again.
    stamp = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/model.safetensors")}
    (out / "CNN-seed2" / "complete").unlink()

    # --report-only trains nothing: the incomplete run is left out, the count says so.
    run_study(path, tmp_path / "out", quiet=True, make_report=False, report_only=True)
    assert not (out / "CNN-seed2" / "complete").exists()
    partial = json.loads((out / "study.json").read_text())
    assert partial["runs_complete"] == {"complete": 3, "planned": 4}  # CNN2 is CNN's twin
    rows = {r["label"]: r for r in partial["rows"]}
    assert rows["CNN"]["seeds"] == [1] and rows["MLP"]["test_accuracy"]["n"] == 2
    assert [c["seed"] for c in partial["comparisons"][0]["per_seed"]] == [1]

    run_study(path, tmp_path / "out", quiet=True, make_report=False)
    again = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/model.safetensors")}
    assert (out / "CNN-seed2" / "complete").exists()
    changed = sorted(name for name in stamp if stamp[name] != again[name])
    assert changed == ["CNN-seed2"]  # only the unfinished run was trained again
    assert json.loads((out / "study.json").read_text())["runs_complete"]["complete"] == 4


def test_report_only_refuses_a_folder_with_nothing_to_report(tmp_path, capsys):
    path = write(tmp_path, "name: r\nseeds: [1]\n" + TINY + "runs:\n  - {model: s4-ann}\n")
    args = ["study", str(path), "--report-only", "--quiet", "--out"]
    assert main([*args, str(tmp_path / "nowhere")]) != 0
    assert not (tmp_path / "nowhere").exists()  # nothing created
    (tmp_path / "begun").mkdir()
    (tmp_path / "begun" / STUDY_MARKER).touch()
    assert main([*args, str(tmp_path / "begun")]) != 0
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 2
    assert "is not a study folder; run the study first" in errors[0]
    assert "no run of the study" in errors[1] and "complete yet" in errors[1]


def test_only_selects_labels_and_the_runs_they_read(tmp_path):
    path = write(
        tmp_path,
        "name: o\nseeds: [1, 2]\nruns:\n  - {label: mlp, model: numpy-mlp}\n"
        "  - label: cnn\n    model: s1-cnn5\n    grid: {model_args.pooling: [max, avg]}\n"
        "  - {label: feat, model: numpy-mlp, features_from: 'cnn[pooling=avg]', seeds: [2]}\n",
    )
    planned = plan_study(load_study(path), tmp_path / "o")

    def picked(*patterns):
        return [(r.label, r.seed) for r in select_runs(planned, list(patterns))]

    # Brackets are literal, not fnmatch's character classes; plan order is kept.
    assert picked("cnn[pooling=max]") == [("cnn[pooling=max]", 1), ("cnn[pooling=max]", 2)]
    assert picked("cnn*") == [(r.label, r.seed) for r in planned if r.label.startswith("cnn")]
    # A feature run brings the CNN run it reads, under its own seed only.
    assert picked("fe?t") == [("cnn[pooling=avg]", 2), ("feat", 2)]
    with pytest.raises(ConfigError, match="--only 'cnn\\[pooling=global\\]' matches no run"):
        select_runs(planned, ["cnn[pooling=global]"])


def test_only_trains_a_slice_and_reports_the_rest_missing(tmp_path, capsys):
    path = write(
        tmp_path,
        "name: s\nseeds: [1, 2]\n" + TINY + "runs:\n  - {label: MLP, model: s4-ann}\n"
        "  - {label: CNN, model: s4-cnn1}\ncompare:\n  - {a: CNN, b: MLP}\n",
    )
    out = tmp_path / "out"
    args = ["study", str(path), "--only", "MLP", "--quiet", "--no-report", "--out", str(out)]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == str(out / "study.json")  # the one thing written
    assert not list(out.glob("report.*"))
    assert sorted(p.parent.name for p in out.glob("*/complete")) == ["MLP-seed1", "MLP-seed2"]
    summary = json.loads((out / "study.json").read_text())
    assert summary["runs_complete"] == {"complete": 2, "planned": 4}
    assert summary["invocation"]["only"] == ["MLP"]
    assert [r["label"] for r in summary["rows"]] == ["MLP"]
    assert main(["study", str(path), "--only", "CNN,nothing*", "--out", str(out)]) == 2
    assert "'nothing*' matches no run label" in capsys.readouterr().err
    assert not list(out.glob("CNN-*"))  # a bad pattern trains nothing


def test_evaluate_a_whole_study(tmp_path, capsys):
    path = write(tmp_path, "name: e\nseeds: [1, 2]\n" + TINY + "runs:\n  - {model: s4-ann}\n")
    out = run_study(path, tmp_path / "out", quiet=True, make_report=False)
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == ["s4-ann-seed1", "s4-ann-seed2"]
    assert all(line.endswith("matches") for line in lines[1:])
    metrics_file = out / "s4-ann-seed2" / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    metrics["test_accuracy"] += 0.01  # a stored figure the weights do not give
    metrics_file.write_text(json.dumps(metrics))
    assert main(["evaluate", str(out)]) == 2
    captured = capsys.readouterr()
    assert "DIFFERS" in captured.out and "first s4-ann-seed2" in captured.err


def test_compare_cli_runs_mcnemar(tmp_path, capsys):
    path = write(
        tmp_path, "name: c\nseeds: [1]\n" + TINY + "runs:\n  - {model: mlp}\n  - {model: s2-ann}\n"
    )
    out = run_study(path, tmp_path / "out", quiet=True, make_report=False)
    assert main(["compare", str(out / "mlp-seed1"), str(out / "s2-ann-seed1")]) == 0
    text = capsys.readouterr().out
    assert "McNemar" in text and "p =" in text
