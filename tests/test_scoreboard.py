"""The reproduction scoreboard from small fake study folders: every number verdict (within,
better, worse, missing run) and every claim verdict, the statistics across seeds, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy import stats

from fashionlab.cli import main
from fashionlab.evaluation.seeds import paired_seeds, seed_interval
from fashionlab.studies.scoreboard import build_scoreboard, claim_verdict, number_verdict

STUDY_YAML = """
name: fake
title: "Fake study"
seeds: [1, 2, 3]
runs:
  - model: s0-m1
    label: close
    reported: {test_accuracy: 0.90}
  - model: s0-m1
    label: ahead
    reported: {test_accuracy: 0.90}
  - model: s0-m1
    label: behind
    reported: {test_accuracy: 0.90, test_loss: 0.30}
  - model: s0-m1
    label: never-ran
    reported: {test_accuracy: 0.90}
"""


def _row(label: str, accuracies: list[float], reported: dict, loss: float = 0.25) -> dict:
    return {
        "label": label,
        "seeds": [1, 2, 3][: len(accuracies)],
        "precision": ["bf16"],
        "test_accuracy": {"values": accuracies},
        "test_loss": {"values": [loss] * len(accuracies)},
        "train_seconds": {"values": [100.0] * len(accuracies)},
        "reported": reported,
    }


def _seed_tests(*p_values: float) -> list[dict]:
    return [{"seed": i + 1, "p_value": p} for i, p in enumerate(p_values)]


def _fake_study(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(STUDY_YAML)
    summary = {
        "name": "fake",
        "title": "Fake study",
        "rows": [
            _row("close", [0.904, 0.906, 0.902], {"test_accuracy": 0.90}),
            _row("ahead", [0.915, 0.912, 0.914], {"test_accuracy": 0.90}),
            _row("behind", [0.890, 0.888, 0.889], {"test_accuracy": 0.90, "test_loss": 0.30}, 0.36),
        ],
        "comparisons": [
            {"a": "ahead", "b": "close", "claim": "ahead beats close", "kind": "better",
             "per_seed": _seed_tests(1e-5, 1e-4, 1e-6)},
            {"a": "close", "b": "behind", "claim": "close and behind score alike", "kind": "same",
             "per_seed": _seed_tests(1e-3, 1e-2, 1e-4)},
            {"a": "behind", "b": "ahead", "claim": "behind beats ahead",
             "per_seed": _seed_tests(1e-5, 1e-5, 1e-5)},
            {"a": "never-ran", "b": "close", "claim": "the missing one wins",
             "per_seed": []},
        ],
    }  # fmt: skip
    (folder / "study.json").write_text(json.dumps(summary))
    return folder


def test_number_verdicts_cover_within_better_worse_and_missing(tmp_path):
    _fake_study(tmp_path / "group" / "fake")
    board = build_scoreboard(tmp_path)
    (study,) = board["studies"]
    assert study["folder"] == "group/fake" and study["train_seconds"] == 900.0
    verdicts = {(n["label"], n["metric"]): n["verdict"] for n in study["numbers"]}
    assert verdicts == {
        ("close", "test_accuracy"): "reproduced",  # +0.4 points
        ("ahead", "test_accuracy"): "better",  # +1.37 points
        ("behind", "test_accuracy"): "not reproduced",  # -1.1 points
        ("behind", "test_loss"): "not reproduced",  # 0.36 against 0.30: 20% higher
        ("never-ran", "test_accuracy"): "missing",  # planned in study.yaml, no runs
    }
    close = next(n for n in study["numbers"] if n["label"] == "close")
    assert close["ours"]["n"] == 3 and close["difference_points"] == pytest.approx(0.4)
    assert close["ours"]["low"] < close["ours"]["mean"] < close["ours"]["high"]


@pytest.mark.parametrize(
    "ours, reported, metric, verdict",
    [
        (0.907, 0.900, "test_accuracy", "reproduced"),  # exactly the tolerance
        (0.9071, 0.900, "test_accuracy", "better"),
        (0.8929, 0.900, "macro_f1", "not reproduced"),
        (0.29, 0.30, "test_loss", "reproduced"),
        (0.20, 0.30, "test_loss", "better"),
        (None, 0.30, "test_loss", "missing"),
        (0.060, 0.068, "train_test_gap", "not reproduced: smaller"),  # no better direction
        (0.064, 0.068, "train_test_gap", "reproduced"),
    ],
)
def test_number_verdict_rules(ours, reported, metric, verdict):
    assert number_verdict(ours, reported, metric) == verdict


def test_claim_verdicts_use_both_tests(tmp_path):
    _fake_study(tmp_path / "fake")
    claims = {c["claim"]: c for c in build_scoreboard(tmp_path)["studies"][0]["claims"]}
    ahead = claims["ahead beats close"]
    assert ahead["verdict"] == "supported: on every seed and across seeds"
    assert ahead["difference_points"]["mean"] == pytest.approx(0.9667, abs=1e-4)
    assert ahead["wins"] == 3 and ahead["sign_p_value"] == pytest.approx(0.25)
    assert claims["close and behind score alike"]["verdict"].startswith("contradicted")
    assert claims["behind beats ahead"]["verdict"].startswith("contradicted")
    assert claims["the missing one wins"]["verdict"] == "missing"


def test_a_seed_where_b_wins_does_not_count_for_a():
    # S0 on the AMD EPYC: M1 significantly ahead on seeds 42 and 44, M2 on seed 43.
    verdict = claim_verdict("better", [4e-6, 0.023, 0.021], 0.43, 0.51, [True, False, True])
    assert verdict.startswith("not supported: a is significantly ahead on 2 of 3 seeds and b on 1")
    assert claim_verdict("better", [0.01, 0.01], 0.5, 0.04, [True, False]).startswith(
        "supported across seeds; significant on 1 of 2"
    )


@pytest.mark.parametrize(
    "kind, mcnemar_p, mean_diff, t_p, starts",
    [
        ("better", [0.01, 0.02, 0.2], 0.5, 0.03, "supported across seeds"),
        ("better", [0.01, 0.3, 0.2], 0.5, 0.2, "partly"),
        ("better", [0.3, 0.3, 0.2], 0.2, 0.4, "not significant"),
        ("better", [0.01], 0.5, None, "supported on the test set; one seed"),
        ("better", [0.3, 0.4], -0.1, 0.6, "not supported"),
        ("same", [0.5, 0.9, 0.3], 0.05, 0.7, "supported: no difference"),
        ("same", [0.01, 0.9, 0.3], 0.05, 0.7, "mostly supported: 1 of 3"),
        ("same", [0.5], 0.0, None, "supported: no difference"),
        ("better", [], 0.0, None, "missing"),
    ],
)
def test_claim_verdict_rules(kind, mcnemar_p, mean_diff, t_p, starts):
    assert claim_verdict(kind, mcnemar_p, mean_diff, t_p).startswith(starts)


def test_seed_statistics_match_scipy():
    values = [0.91, 0.915, 0.905, 0.912]
    interval = seed_interval(values)
    low, high = stats.t.interval(0.95, 3, loc=interval.mean, scale=stats.sem(values))
    assert interval.low == pytest.approx(low) and interval.high == pytest.approx(high)
    assert seed_interval([0.9]) == seed_interval([0.9]) and seed_interval([0.9]).std == 0.0
    a, b = [0.91, 0.92, 0.93], [0.90, 0.905, 0.925]
    paired = paired_seeds(a, b)
    assert paired.t_p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    assert paired.wins == 3 and paired.losses == 0 and paired.sign_p_value == pytest.approx(0.25)
    assert paired_seeds([0.9, 0.9], [0.9, 0.9]).t_p_value is None  # no spread: no t-test
    with pytest.raises(ValueError, match="equally long"):
        paired_seeds([0.9], [0.9, 0.8])


def test_cli_writes_the_scoreboard_and_refuses_bad_use(tmp_path, capsys):
    _fake_study(tmp_path / "runs" / "fake")
    out = tmp_path / "board"
    assert main(["report", "--scoreboard", str(tmp_path / "runs"), "--out", str(out)]) == 0
    text = (out / "README.md").read_text()
    assert "| ahead | test_accuracy | 90.00 | 91.37 ± 0.15 (n=3)" in text
    assert "| never-ran | test_accuracy | 90.00 | — |" in text and "missing" in text
    assert json.loads((out / "scoreboard.json").read_text())["tolerance_points"] == 0.7
    capsys.readouterr()
    assert main(["report", "--scoreboard", str(tmp_path / "runs")]) != 0
    assert main(["report", "--scoreboard", str(tmp_path / "nothing"), "--out", str(out)]) != 0
    assert main(["report", "--scoreboard", str(out), "--out", str(out)]) != 0  # no study there
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and "--out" in errors[0] and "not a folder" in errors[1]
    assert "no study folder" in errors[2]


def test_each_study_report_is_copied_with_the_figures_it_shows(tmp_path):
    study = _fake_study(tmp_path / "runs" / "fake")
    (study / "figures").mkdir()
    (study / "figures" / "shown.png").write_bytes(b"\x89PNG fake")
    (study / "figures" / "unused.png").write_bytes(b"\x89PNG other")
    (study / "report.md").write_text("# Fake\n![a](figures/shown.png)\n![b](figures/gone.png)\n")
    out = tmp_path / "board"
    assert main(["report", "--scoreboard", str(tmp_path / "runs"), "--out", str(out)]) == 0
    assert (out / "fake" / "report.md").read_text().startswith("# Fake")
    assert sorted(p.name for p in (out / "fake" / "figures").iterdir()) == ["shown.png"]
    assert "[fake/report.md](fake/report.md)" in (out / "README.md").read_text()


def test_notes_provenance_and_the_reproducing_command(tmp_path, capsys):
    study = _fake_study(tmp_path / "runs" / "fake")
    summary = json.loads((study / "study.json").read_text())
    summary["rows"][0]["runs"] = ["close-seed1"]
    summary["invocation"] = {
        "study_file": "studies/fake.yaml",
        "seeds": [1, 2, 3],
        "overrides": {"precision": "bf16", "epochs": 2},
        "workers": 2,
    }
    (study / "study.json").write_text(json.dumps(summary))
    (study / "close-seed1").mkdir()
    (study / "close-seed1" / "env.json").write_text(
        json.dumps({"cpu": "AMD EPYC (avx512_bf16, no AMX)", "threads": 1,
                    "torch": "2.13.0+cpu", "git_commit": "0123456789abcdef"})  # fmt: skip
    )
    notes = tmp_path / "notes.yaml"
    notes.write_text("fake:\n  behind:\n    test_loss: measured reason\n")
    out = tmp_path / "board"
    args = ["report", "--scoreboard", str(tmp_path / "runs"), "--out", str(out)]
    assert main([*args, "--notes", str(notes)]) == 0
    text = (out / "README.md").read_text()
    assert "- **behind, test_loss**: measured reason" in text
    assert "Trained on: AMD EPYC (avx512_bf16, no AMX); torch threads per run: 1" in text
    assert "code: 0123456789." in text
    folder = (tmp_path / "runs" / "fake").as_posix()
    command = (
        "fashionlab study studies/fake.yaml --seeds 1,2,3 --set precision=bf16 --set epochs=2 "
        f"--workers 2 --out {folder}"
    )
    assert f"Command: `{command}`" in text
    assert "Partial:" not in text
    # A study aggregated part-way (--report-only) says how far it got.
    summary["runs_complete"] = {"complete": 9, "planned": 12}
    (study / "study.json").write_text(json.dumps(summary))
    assert main([*args, "--notes", str(notes)]) == 0
    assert "**Partial: 9 of 12 runs are complete.**" in (out / "README.md").read_text()
    summary["invocation"]["only"] = ["close", "be*"]  # a slice trained with --only
    (study / "study.json").write_text(json.dumps(summary))
    assert main([*args, "--notes", str(notes)]) == 0
    assert "--set epochs=2 --only 'close,be*' --workers 2 --out" in (out / "README.md").read_text()
    # A note that names no number, or a malformed notes file, is a one-line error.
    capsys.readouterr()
    notes.write_text("fake:\n  behind:\n    test_los: typo\n")
    assert main([*args, "--notes", str(notes)]) != 0
    notes.write_text("[1, 2]\n")
    assert main([*args, "--notes", str(notes)]) != 0
    assert main(["report", str(study), "--notes", str(notes)]) != 0
    notes.write_text("fake: {behind: [unclosed\n")
    assert main([*args, "--notes", str(notes)]) != 0
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4 and "test_los is not a reported number" in errors[0]
    assert "notes must map study" in errors[1] and "--scoreboard" in errors[2]
    assert "cannot read the notes" in errors[3]


def test_copied_figures_are_compacted_and_still_images(tmp_path):
    import io

    import numpy as np
    from PIL import Image

    from fashionlab.studies.scoreboard import compact_png

    rng = np.random.default_rng(0)
    # A plot-like picture: few flat colours plus a little noise, saved as RGBA like matplotlib.
    base = rng.integers(0, 6, size=(120, 160))[..., None] * np.array([40, 30, 20, 0])
    pixels = (base + rng.integers(0, 2, size=(120, 160, 4))).astype(np.uint8)
    pixels[..., 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG")
    small = compact_png(buffer.getvalue())
    assert len(small) < len(buffer.getvalue())
    with Image.open(io.BytesIO(small)) as image:
        assert image.size == (160, 120)
    assert compact_png(b"\x89PNG not really") == b"\x89PNG not really"
    pixels[0, 0, 3] = 0  # transparency is kept as it is
    buffer = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buffer, "PNG")
    assert compact_png(buffer.getvalue()) == buffer.getvalue()


def test_figures_past_the_budget_are_named_not_copied(tmp_path):
    from fashionlab.studies.scoreboard import copy_report

    study = _fake_study(tmp_path / "runs" / "fake")
    (study / "figures").mkdir()
    for name in ("a", "b", "c"):
        (study / "figures" / f"{name}.png").write_bytes(b"\x89PNG" + bytes(96))  # 100 bytes
    (study / "report.md").write_text(
        "![first](figures/a.png)\n![second](figures/b.png)\n![third](figures/c.png)\n"
    )
    dest = tmp_path / "board" / "fake"
    copy_report(study, dest, budget=250)
    assert sorted(p.name for p in (dest / "figures").iterdir()) == ["a.png", "b.png"]
    text = (dest / "report.md").read_text()
    assert "![second](figures/b.png)" in text and "figures/c.png)" not in text
    assert "*third: not copied (size budget); `figures/c.png` in the study folder*" in text


def test_update_keeps_the_studies_whose_folders_are_elsewhere(tmp_path, capsys):
    _fake_study(tmp_path / "old-runs" / "fake")
    (tmp_path / "old-runs" / "fake" / "report.md").write_text("# Fake\n")
    other = _fake_study(tmp_path / "new-runs" / "other")
    summary = json.loads((other / "study.json").read_text())
    summary["name"], summary["title"] = "other", "Other study"
    (other / "study.json").write_text(json.dumps(summary))
    out = tmp_path / "board"
    notes = tmp_path / "notes.yaml"
    notes.write_text("fake:\n  behind:\n    test_loss: kept study, current note\n")
    board = ["report", "--scoreboard"]
    assert main([*board, str(tmp_path / "old-runs"), "--out", str(out)]) == 0
    update = [*board, str(tmp_path / "new-runs"), "--out", str(out), "--update"]
    assert main([*update, "--notes", str(notes)]) == 0
    text = (out / "README.md").read_text()
    assert "## Fake study (`fake`)" in text and "## Other study (`other`)" in text
    assert "[fake/report.md](fake/report.md)" in text  # the kept study's copy is still linked
    assert "- **behind, test_loss**: kept study, current note" in text
    names = [s["name"] for s in json.loads((out / "scoreboard.json").read_text())["studies"]]
    assert names == ["fake", "other"]
    # Without --update the scoreboard is what PATH holds; a broken one refuses --update.
    assert main([*board, str(tmp_path / "new-runs"), "--out", str(out)]) == 0
    assert "## Fake study" not in (out / "README.md").read_text()
    (out / "scoreboard.json").write_text("{not json")
    capsys.readouterr()
    assert main(update) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a scoreboard" in err[0] and "without --update" in err[0]
    assert main(["report", str(other), "--update"]) != 0
