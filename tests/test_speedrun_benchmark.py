"""benchmarks/speedrun.py: presets from studies/speedrun.yaml trained as user processes, timed,
stored so a second call resumes, tabulated and drawn; the ablation switches one trick off or
on."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "speedrun.py"
SMALL = ["--set", "train_subset=256", "--set", "eval_subset=100", "--set", "epochs=1"]

# Every test here runs the benchmark script in a subprocess, training: the whole module is slow.
pytestmark = pytest.mark.slow


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300
    )


def test_records_are_timed_stored_resumed_and_drawn(tmp_path: Path):
    out, png = tmp_path / "records", tmp_path / "curve.png"
    done = _run(
        "--presets", "fast-10min", "--seeds", "0", "--out", str(out), "--figure", str(png), *SMALL
    )
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["preset"], r["variant"], r["seed"]) for r in runs] == [("fast-10min", "preset", 0)]
    entry = runs[0]
    assert entry["wall_seconds"] > entry["train_seconds"] > 0 and 0 <= entry["test_accuracy"] <= 1
    assert "tta_shift=true" in entry["command"] and "train_subset=256" in entry["command"]
    assert png.stat().st_size > 10_000 and "| fast-10min | preset | 0 |" in done.stdout
    again = _run("--presets", "fast-10min", "--seeds", "0", "--out", str(out), *SMALL)
    assert again.returncode == 0 and "seed 0" not in again.stdout  # nothing retrained
    assert len(json.loads((out / "results.json").read_text())["runs"]) == 1


def test_ablation_variants_switch_one_trick_off_or_on():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import speedrun
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    preset = {"whiten_init": True, "low_res": 20, "low_res_epochs": 3, "tta_shift": True}
    found = speedrun.variants(preset, ablate=True)
    assert found["preset"] == preset
    assert found["no whitening init"] == {**preset, "whiten_init": False}
    assert found["no low-res epochs"] == {**preset, "low_res": None, "low_res_epochs": 0}
    assert "no dirac init" not in found  # the preset does not use it: nothing to switch off
    assert found["no EMA"]["ema_decay"] == 0.0  # the recipe's EMA, on unless the preset says
    assert found["with Muon"] == {**preset, "optimizer": "muon"}  # the recipe's is SGD
    assert found["with alternating flips"] == {**preset, "hflip_mode": "alternate"}
    assert "with Muon" not in speedrun.variants({"optimizer": "muon"}, ablate=True)
    assert list(speedrun.variants(preset, ablate=False)) == ["preset"]


def test_unknown_preset_is_one_line(tmp_path: Path):
    done = _run("--presets", "fast-1s", "--out", str(tmp_path))
    assert done.returncode != 0 and "unknown preset" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_naming_a_variant_trains_it_without_ablate_and_says_what_does_not_apply(tmp_path: Path):
    out = tmp_path / "records"
    done = _run(
        "--presets", "fast-2min", "--seeds", "0", "--out", str(out),
        "--variants", "no Muon,with Muon", *SMALL,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    runs = json.loads((out / "results.json").read_text())["runs"]
    assert [(r["variant"], r["seed"]) for r in runs] == [("no Muon", 0)]
    assert 'optimizer="sgd"' in runs[0]["command"]
    # fast-2min trains with Muon already: nothing to switch on, and the output says so
    assert "fast-2min: no 'with Muon' variant" in done.stdout


def test_runs_split_into_sittings_continue_and_sum_their_wall_time(tmp_path: Path):
    out, name = tmp_path / "records", "fast-10min-preset-seed0"
    # a sitting cut off within the run's first epoch: a run folder with no checkpoint yet
    (out / name).mkdir(parents=True)
    (out / name / ".fashionlab-run").touch()
    (out / name / "config.yaml").write_text("model: fast\n")
    killed = {"started": time.time() - 50, "seconds": None}
    (out / "segments.json").write_text(json.dumps({name: [killed]}))
    two_epochs = ["--presets", "fast-10min", "--seeds", "0", "--out", str(out), *SMALL[:4]]
    two_epochs += ["--set", "epochs=2"]

    first = _run(*two_epochs, "--stop-after", "1")
    assert first.returncode == 0, first.stderr[-2000:]
    assert f"unfinished: {name}" in first.stdout and not (out / "results.json").exists()
    segments = json.loads((out / "segments.json").read_text())[name]
    assert len(segments) == 1 and segments[0]["seconds"] > 0  # the cut-off sitting counts 0

    # a second sitting killed after the checkpoint it resumed from: it counts nothing either
    segments.append({"started": time.time(), "seconds": None})
    (out / "segments.json").write_text(json.dumps({name: segments}))
    second = _run(*two_epochs)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "1 run(s) trained in several sittings" in second.stdout
    entry = json.loads((out / "results.json").read_text())["runs"][0]
    sittings = json.loads((out / "segments.json").read_text())[name]
    assert entry["segments"] == 3 and sittings[1]["seconds"] == 0.0
    assert entry["wall_seconds"] == sum(s["seconds"] for s in sittings)
    assert entry["wall_seconds"] > entry["train_seconds"] > 0
    assert (out / name / "history.csv").read_text().count("\n") == 3  # header + 2 epochs


def test_a_bad_stop_after_is_one_line(tmp_path: Path):
    done = _run("--presets", "fast-10min", "--out", str(tmp_path), "--stop-after", "0")
    assert done.returncode != 0 and "--stop-after must be >= 1" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
