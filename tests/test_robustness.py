"""Robustness scoring of runs and studies: results, determinism, CE, McNemar, the report,
training with corruptions, and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from fashionlab.cli import main
from fashionlab.errors import ConfigError, RunError
from fashionlab.robustness import corruption_errors, parse_severities, score_robustness
from fashionlab.robustness.sets import balanced_subset
from fashionlab.runs import load_predictions

SOME = ["gaussian_noise", "rotate", "contrast", "flip_lr"]


@pytest.fixture(scope="module")
def scored(tiny_run_dir, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("scored") / "run"
    shutil.copytree(tiny_run_dir, run)
    score_robustness(run, SOME, (1, 3, 5), items=100, quiet=True)
    return run


@pytest.mark.slow
def test_a_run_gets_accuracy_per_corruption_and_severity(scored):
    result = json.loads((scored / "robustness.json").read_text())
    assert set(result["corruptions"]) == {"gaussian_noise", "rotate", "contrast"}
    assert set(result["out_of_distribution"]) == {"flip_lr"}
    for entry in result["corruptions"].values():
        assert set(entry["severities"]) == {"1", "3", "5"}
        accs = [c["accuracy"] for c in entry["severities"].values()]
        assert entry["mean_accuracy"] == pytest.approx(np.mean(accs))
        assert all(len(c["sha256"]) == 64 for c in entry["severities"].values())
    assert result["items"] == 100
    means = [e["mean_accuracy"] for e in result["corruptions"].values()]
    assert result["mean_corruption_accuracy"] == pytest.approx(np.mean(means))
    # the clean row is the run's own test pass on the same items
    pred = load_predictions(scored)
    chosen = balanced_subset(pred["labels"], 100)
    clean = (pred["logits"][chosen].argmax(1) == pred["labels"][chosen]).mean()
    assert result["clean_accuracy"] == pytest.approx(clean)
    with np.load(scored / "robustness.npz") as npz:
        hits = (npz["rotate/3"] == npz["labels"]).mean()
    assert result["corruptions"]["rotate"]["severities"]["3"]["accuracy"] == pytest.approx(hits)


@pytest.mark.slow
def test_a_rerun_gives_the_same_bytes(scored, tmp_path):
    before = json.loads((scored / "robustness.json").read_text())
    npz_before = (scored / "robustness.npz").read_bytes()
    # the same request again reuses the stored results: nothing is rewritten...
    stamp = (scored / "robustness.json").stat().st_mtime_ns
    score_robustness(scored, SOME, (1, 3, 5), items=100, quiet=True, make_report=False)
    assert (scored / "robustness.json").stat().st_mtime_ns == stamp
    # ...and scored from scratch in a copy, the corrupted sets and predictions are the same
    again = tmp_path / "again"
    shutil.copytree(scored, again)
    (again / "robustness.json").unlink()
    score_robustness(again, SOME, (1, 3, 5), items=100, quiet=True, make_report=False)
    after = json.loads((again / "robustness.json").read_text())
    for name, entry in before["corruptions"].items():
        assert entry == after["corruptions"][name]
    assert (again / "robustness.npz").read_bytes() == npz_before


def test_the_report_shows_robustness_and_calibration(scored):
    html = (scored / "report.html").read_text()
    assert 'id="robustness"' in html and 'id="calibration"' in html
    md = (scored / "report.md").read_text()
    assert "Accuracy under corruption" in md and "Reliability diagram" in md
    assert "mean corruption accuracy" in md
    for fig in ("robustness.png", "corruptions.png", "reliability.png"):
        assert (scored / "figures" / fig).stat().st_size > 1000


def test_corruption_error_relative_to_a_reference():
    def result(accs):
        cells = {str(s): {"accuracy": a, "sha256": f"h{s}"} for s, a in enumerate(accs, 1)}
        return {"corruptions": {"noise": {"severities": cells}}}

    ce = corruption_errors(result([0.9, 0.8]), result([0.8, 0.6]))
    assert ce["ce"]["noise"] == pytest.approx((0.1 + 0.2) / (0.2 + 0.4))
    assert ce["mce"] == pytest.approx(ce["ce"]["noise"])
    other = result([0.9, 0.8])
    other["corruptions"]["noise"]["severities"]["1"]["sha256"] = "different"
    with pytest.raises(RunError, match="different images"):
        corruption_errors(result([0.9, 0.8]), other)


def test_a_run_against_a_reference_run(scored, tmp_path):
    ref = tmp_path / "ref"
    shutil.copytree(scored, ref)
    result = score_robustness(scored, ["rotate"], (2,), items=50, reference=ref, quiet=True,
                        make_report=False)  # fmt: skip
    assert result["reference"]["ce"]["rotate"] == pytest.approx(1.0)  # the same model


@pytest.mark.slow
def test_a_study_side_by_side_with_mcnemar(tmp_path, capsys):
    study = tmp_path / "study.yaml"
    study.write_text(
        "name: tiny-robust\nseeds: [1]\n"
        "overrides: {epochs: 1, train_subset: 256, eval_subset: 200}\n"
        "runs:\n  - {label: CNN, model: s2-cnn}\n"
        "  - label: CNN+noise\n    model: s2-cnn\n"
        "    overrides: {corruption_augment: [gaussian_noise, rotate], corruption_prob: 1.0}\n"
        "  - {label: NumPy, model: numpy-mlp, overrides: {model_args: {hidden: [16]}}}\n"
        "compare:\n  - {a: CNN+noise, b: CNN}\n"
        "robustness: {corruptions: [gaussian_noise, rotate, turn_left], severities: [2, 4], "
        "items: 100, reference: CNN}\n"
    )
    out = tmp_path / "out"
    assert main(["study", str(study), "--out", str(out), "--quiet"]) == 0
    result = json.loads((out / "robustness.json").read_text())
    assert set(result["labels"]) == {"CNN", "CNN+noise"}
    assert any("NumPy" in note for note in result["skipped"])
    assert result["labels"]["CNN"]["mce"]["mean"] == pytest.approx(1.0)
    [cmp] = result["comparisons"]
    assert set(cmp["per_corruption"]) == {"gaussian_noise", "rotate", "turn_left"}
    test = cmp["per_corruption"]["rotate"][0]
    assert 0 <= test["p_value"] <= 1 and test["a_only"] + test["b_only"] <= 200
    md = (out / "report.md").read_text()
    assert "McNemar per corruption" in md and "CNN+noise" in md
    # the augmented run really trained on other images than the plain one
    a = load_predictions(out / result["labels"]["CNN"]["runs"][0])["logits"]
    b = load_predictions(out / result["labels"]["CNN+noise"]["runs"][0])["logits"]
    assert not np.allclose(a, b)
    # and the CLI prints the side-by-side table
    assert main(["robustness", str(out), "--corruptions", "rotate", "--severities", "2",
                 "--items", "50", "--no-report"]) == 0  # fmt: skip
    assert "mean corruption accuracy" in capsys.readouterr().out


def test_training_with_corruptions_is_reproducible(tmp_path):
    from fashionlab.models import build_config
    from fashionlab.training import train

    overrides = {"epochs": 1, "train_subset": 128, "eval_subset": 50,
                 "corruption_augment": ["rotate", "jpeg"], "corruption_prob": 0.7}  # fmt: skip
    runs = [
        train(build_config("s2-cnn", overrides), tmp_path / str(i), quiet=True) for i in range(2)
    ]
    a, b = (load_predictions(r)["logits"] for r in runs)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("text", "expected"), [("1-5", (1, 2, 3, 4, 5)), ("3", (3,)), ("5,1,3", (1, 3, 5))]
)
def test_parse_severities(text, expected):
    assert parse_severities(text) == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--severities", "0-6"], "between 1 and 5"),
        (["--severities", "x"], "must look like"),
        (["--corruptions", "fog"], "unknown corruption 'fog'"),
        (["--items", "0"], "--items must be"),
        (["--items", "many"], "--items must be"),
        (["--seed", "-1"], "--seed must be"),
    ],
)
def test_bad_options_are_one_line_errors(tiny_run_dir, capsys, args, message):
    assert main(["robustness", str(tiny_run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_bad_folders(tmp_path, tiny_run_dir):
    with pytest.raises(RunError, match="no such folder"):
        score_robustness(tmp_path / "missing")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(tiny_run_dir, unfinished)
    (unfinished / "complete").unlink(missing_ok=True)
    for marker in unfinished.glob("*complete*"):
        marker.unlink()
    with pytest.raises(RunError, match="not complete"):
        score_robustness(unfinished, ["rotate"], (1,), items=10)
    with pytest.raises(ConfigError, match="no corruptions"):
        score_robustness(tiny_run_dir, [], (1,))


def test_a_corrupt_robustness_file_is_a_one_line_error_and_scoring_repairs_it(
    scored, tmp_path, capsys
):
    broken = tmp_path / "broken"
    shutil.copytree(scored, broken)
    (broken / "robustness.json").write_text("{not json")
    assert main(["report", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "robustness.json: not readable JSON" in err and err.count("\n") == 1
    score_robustness(broken, ["rotate"], (1,), items=20, quiet=True)
    assert json.loads((broken / "robustness.json").read_text())["items"] == 20
    assert (broken / "report.html").is_file()
