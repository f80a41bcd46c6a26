"""benchmarks/speedrun.py: presets from studies/speedrun.yaml trained as user processes, timed,
stored so a second call resumes, tabulated and drawn; the ablation switches one trick off or
on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "speedrun.py"
SMALL = ["--set", "train_subset=256", "--set", "eval_subset=100", "--set", "epochs=1"]


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
    assert "optimizer=\"sgd\"" in runs[0]["command"]
    # fast-2min trains with Muon already: nothing to switch on, and the output says so
    assert "fast-2min: no 'with Muon' variant" in done.stdout
