"""A study's twin runs (same network, recipe and initial weights under another model name) are
planned into their original's folder, trained once, and reported under both names."""

from __future__ import annotations

import json

from fashionlab.cli import main
from fashionlab.models import build_config
from fashionlab.studies import load_study, plan_study, run_study
from fashionlab.studies.scoreboard import build_scoreboard
from fashionlab.studies.twins import find_twins

TINY = "overrides: {epochs: 1, train_subset: 256, eval_subset: 300, batch_size: 64}\n"


def test_find_twins_needs_same_network_recipe_and_seed():
    cnn1, cnn2 = build_config("s4-cnn1"), build_config("s4-cnn2")
    assert find_twins([cnn1, cnn2]) == {1: 0}
    # Another seed, another learning rate, or another network: not twins.
    assert find_twins([cnn1, cnn2.model_copy(update={"seed": cnn1.seed + 1})]) == {}
    assert find_twins([cnn1, cnn2.model_copy(update={"lr": cnn1.lr * 2})]) == {}
    assert find_twins([build_config("s4-cnn3"), build_config("s2-cnn")]) == {}  # other recipes
    cnn3 = build_config("s4-cnn3")
    assert find_twins([cnn3, build_config("s2-cnn", cnn3.model_dump(exclude={"model"}))]) == {}
    # The same model twice is the same run, not a twin (the planner rejects duplicate labels).
    assert find_twins([cnn1, cnn1]) == {}


def test_shipped_s4_plans_cnn2_into_cnn1s_folder(tmp_path):
    planned = plan_study(load_study("studies/s4.yaml"), tmp_path / "s4")
    by_label = {p.label: p for p in planned}
    assert by_label["s4-cnn2"].same_as == "s4-cnn1"
    assert by_label["s4-cnn2"].run_dir == by_label["s4-cnn1"].run_dir
    assert all(p.same_as is None for p in planned if p.label != "s4-cnn2")


def test_twin_is_trained_once_and_reported_under_both_names(tmp_path, capsys):
    path = tmp_path / "twins.yaml"
    path.write_text(
        "name: twins\nseeds: [1, 2]\n" + TINY + "runs:\n"
        "  - {model: s4-cnn1}\n"
        "  - {model: s4-cnn2, reported: {test_accuracy: 0.5, train_test_gap: 0.0}}\n"
        "compare:\n"
        "  - {a: s4-cnn1, b: s4-cnn2, claim: same, kind: same}\n"
        "  - {a: s4-cnn1, b: s4-cnn2, claim: better}\n"
    )
    out = tmp_path / "out"
    assert main(["study", str(path), "--out", str(out), "--dry-run"]) == 0
    assert "= s4-cnn1" in capsys.readouterr().out
    run_study(path, out, quiet=True, make_report=False)
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        "s4-cnn1-seed1", "s4-cnn1-seed2",
    ]  # fmt: skip
    summary = json.loads((out / "study.json").read_text())
    assert summary["invocation"] == {
        "study_file": str(path), "seeds": None, "overrides": {}, "workers": 1, "only": None,
    }  # fmt: skip
    rows = {r["label"]: r for r in summary["rows"]}
    assert rows["s4-cnn2"]["same_as"] == "s4-cnn1"
    assert rows["s4-cnn2"]["test_accuracy"] == rows["s4-cnn1"]["test_accuracy"]
    # The last epoch's training accuracy and its gap to the test accuracy, per seed.
    gap = rows["s4-cnn1"]["train_test_gap"]["values"]
    train = rows["s4-cnn1"]["train_accuracy"]["values"]
    test = rows["s4-cnn1"]["test_accuracy"]["values"]
    assert gap == [a - b for a, b in zip(train, test, strict=True)]

    board = build_scoreboard(out)["studies"][0]
    same, better = board["claims"]
    assert same["verdict"].startswith("supported: s4-cnn2 builds the same layers")
    assert better["verdict"].startswith("contradicted:")
    numbers = {n["metric"]: n for n in board["numbers"]}
    assert numbers["test_accuracy"]["same_as"] == "s4-cnn1"
    assert numbers["train_test_gap"]["verdict"] in {
        "reproduced", "not reproduced: larger", "not reproduced: smaller",
    }  # fmt: skip
    # A second invocation finds everything complete and trains nothing.
    before = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    run_study(path, out, quiet=True, make_report=False)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")} == before
