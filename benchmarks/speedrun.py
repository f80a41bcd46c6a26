"""Speed-run records and the ablation of their tricks, timed end to end.

    python benchmarks/speedrun.py --presets fast-2min,fast-10min --seeds 0,1,2 \\
        --out runs/speedrun-records --figure docs/speedrun.png
    python benchmarks/speedrun.py --presets fast-2min --ablate --seeds 0,1,2 \\
        --out runs/speedrun-ablation

Each (preset, seed) is one `fashionlab train` process, exactly as a user would start it, with
the preset's overrides from `studies/speedrun.yaml`; its wall time is measured around the
whole process: interpreter start, data load and check, training, the test pass with
test-time augmentation, and writing the run folder. `--ablate` also trains each preset with
one trick at a time switched off (`ABLATIONS`) and each unused one switched on
(`ADDITIONS`). Finished runs are kept in
OUT/results.json and skipped on the next call, so an interrupted measurement resumes; a run
cut off mid-way (a killed process, or `--stop-after`, which splits runs longer than a sitting)
continues from its last finished epoch (`fashionlab train --resume`), and its wall time is the
sum of its segments (OUT/segments.json), each restart adding its start-up. Prints a table per
preset and variant (mean ± std of test accuracy over the seeds, wall time per run) and, with
`--figure`, draws accuracy against wall time.

Run it on a quiet machine: the wall times are the result.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from fashionlab._io import atomic_write_json
from fashionlab._platform import cpu_description
from fashionlab.config import parse_set_options
from fashionlab.runs.folder import is_complete
from fashionlab.studies.spec import load_study
from fashionlab.training.checkpoint import CHECKPOINT

STUDY = Path(__file__).resolve().parent.parent / "studies" / "speedrun.yaml"

# One trick off at a time: the override that removes it from a preset.
ABLATIONS: dict[str, dict] = {
    "no whitening init": {"whiten_init": False},
    "no dirac init": {"dirac_init": False},
    "no norm lr scale": {"norm_lr_scale": 1.0},
    "no low-res epochs": {"low_res": None, "low_res_epochs": 0},
    "no EMA": {"ema_decay": 0.0},
    "no label smoothing": {"label_smoothing": 0.0},
    "no shift TTA": {"tta_shift": False},
    "no Muon": {"optimizer": "sgd"},
}

# One trick on at a time, for the tricks a preset does not use yet.
ADDITIONS: dict[str, dict] = {
    "with Muon": {"optimizer": "muon"},
    "with alternating flips": {"hflip_mode": "alternate"},
}


def presets() -> dict[str, tuple[str, dict]]:
    study = load_study(STUDY)
    return {(run.label or run.model): (run.model, dict(run.overrides)) for run in study.runs}


def variants(overrides: dict, ablate: bool) -> dict[str, dict]:
    """The preset itself, and with `ablate` each trick it uses switched off and each trick it
    does not use switched on."""
    out = {"preset": overrides}
    if not ablate:
        return out
    from fashionlab.models import build_config

    defaults = build_config("fast")  # the recipe's values, where the preset says nothing
    for name, change in {**ABLATIONS, **ADDITIONS}.items():
        changed = {**overrides, **change}
        if any(changed.get(k) != overrides.get(k, getattr(defaults, k)) for k in change):
            out[name] = changed
    return out


def set_options(overrides: dict) -> list[str]:
    """`overrides` as `fashionlab train` options: one `--set key=value` each."""
    options = []
    for key, value in overrides.items():
        options += ["--set", f"{key}={json.dumps(value)}"]  # JSON is YAML: --set reads it
    return options


TRAIN = [sys.executable, "-m", "fashionlab", "train"]


def train_command(model: str, overrides: dict, seed: int, runs_dir: Path, name: str) -> list[str]:
    command = [*TRAIN, "--model", model, "--seed", str(seed)]
    command += ["--runs-dir", str(runs_dir), "--name", name, "--quiet"]
    return command + set_options(overrides)


def settled_segments(segments: list[dict], saved_at: float) -> list[dict]:
    """The sittings of a run about to continue from the checkpoint written at `saved_at`, each
    with its seconds: one that was killed (no seconds) counts until then, since the resumed run
    redoes whatever came after."""
    return [
        {**segment, "seconds": max(0.0, saved_at - segment["started"])}
        if segment.get("seconds") is None
        else segment
        for segment in segments
    ]


def run_one(
    command: list[str], run_dir: Path, segments: list[dict], save: Callable[[], None],
    stop_after: int | None,
) -> dict | None:  # fmt: skip
    """Train (or continue) one run and return its record, or None when `stop_after` left it
    unfinished. `segments` (this run's list in OUT/segments.json, changed in place and written
    with `save` before and after each process) keeps the wall time of every sitting."""
    if not is_complete(run_dir):
        checkpoint = run_dir / CHECKPOINT
        if checkpoint.exists():
            segments[:] = settled_segments(segments, checkpoint.stat().st_mtime)
            command = [*TRAIN, "--resume", str(run_dir), "--quiet"]
        else:  # a fresh start: no earlier sitting left anything that counts
            segments.clear()
            if run_dir.exists() and any(run_dir.iterdir()):  # cut off within its first epoch
                command = [*command, "--overwrite"]
        if stop_after:
            command = [*command, "--stop-after", str(stop_after)]
        segments.append({"started": time.time(), "seconds": None})
        save()
        started = time.perf_counter()
        finished = subprocess.run(command)
        segments[-1]["seconds"] = time.perf_counter() - started
        save()
        if finished.returncode != 0:
            sys.exit(
                f"{run_dir.name}: fashionlab train exited with status {finished.returncode}; "
                "the same command continues it"
            )
        if not is_complete(run_dir):
            return None
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "wall_seconds": sum(s["seconds"] or 0.0 for s in segments),
        "segments": len(segments),
        "test_accuracy": metrics["test_accuracy"],
        "train_seconds": metrics["train_seconds"],
        "precision": metrics.get("precision_used"),
    }


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def _fmt(values: list[float], digits: int = 4) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {spread:.{digits}f}"


def _by_preset_and_variant(results: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for entry in results:
        groups.setdefault((entry["preset"], entry["variant"]), []).append(entry)
    return groups


def table(results: list[dict]) -> list[str]:
    groups = _by_preset_and_variant(results)
    lines = [
        "| preset | variant | seeds | test accuracy | wall s per run (min-max) | vs preset |",
        "|---|---|---|---|---|---|",
    ]
    for (preset, variant), entries in groups.items():
        acc = [e["test_accuracy"] for e in entries]
        wall = [e["wall_seconds"] for e in entries]
        base = groups.get((preset, "preset"))
        delta = ""
        if base and variant != "preset":
            base_acc = statistics.fmean(b["test_accuracy"] for b in base)
            delta = f"{100 * (statistics.fmean(acc) - base_acc):+.2f} pts"
        lines.append(
            f"| {preset} | {variant} | {','.join(str(e['seed']) for e in entries)} | {_fmt(acc)} "
            f"| {statistics.fmean(wall):.0f} ({min(wall):.0f}-{max(wall):.0f}) | {delta} |"
        )
    return lines


def figure(results: list[dict], path: Path) -> None:
    from fashionlab.viz._common import new_figure, save_png

    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot(1, 1, 1)
    groups = _by_preset_and_variant(results)
    for (preset, variant), entries in groups.items():
        minutes = [e["wall_seconds"] / 60 for e in entries]
        acc = [100 * e["test_accuracy"] for e in entries]
        label = preset if variant == "preset" else f"{preset}, {variant}"
        marker = "o" if variant == "preset" else "x"
        ax.scatter(minutes, acc, s=12, alpha=0.35, marker=marker)
        ax.errorbar(
            statistics.fmean(minutes),
            statistics.fmean(acc),
            yerr=statistics.stdev(acc) if len(acc) > 1 else 0,
            fmt=marker,
            capsize=3,
            label=label,
        )
    for target_minutes, target in ((2, 94.0), (10, 95.0), (30, 95.5)):
        ax.plot([target_minutes], [target], marker="*", color="grey", markersize=10)
    ax.set_xscale("log")
    ax.set_xlabel("wall time per run, end to end (minutes, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"Speed-run presets on {cpu_description()}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    save_png(fig, path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", required=True, help="labels in studies/speedrun.yaml")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--ablate", action="store_true", help="also each trick switched off or on")
    parser.add_argument(
        "--variants",
        help="only these variants (comma-separated names, e.g. 'preset,no Muon'; naming a trick's "
        "variant implies --ablate)",
    )
    parser.add_argument("--figure", type=Path, help="write accuracy vs wall time here (PNG)")
    parser.add_argument("--report-only", action="store_true", help="train nothing; tabulate")
    parser.add_argument(
        "--stop-after",
        type=int,
        metavar="EPOCHS",
        help="train at most this many epochs of each run in this call; the same command "
        "continues them (for runs longer than a sitting)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one more override for every run (a smoke test: train_subset=512)",
    )
    args = parser.parse_args()
    known = presets()
    chosen = args.presets.split(",")
    unknown = [p for p in chosen if p not in known]
    if unknown:
        sys.exit(f"unknown preset(s) {unknown}; {STUDY.name} has {sorted(known)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.stop_after is not None and args.stop_after < 1:
        sys.exit(f"--stop-after must be >= 1 epoch, got {args.stop_after}")
    wanted = args.variants.split(",") if args.variants else None
    names = {"preset", *ABLATIONS, *ADDITIONS}
    if wanted and not set(wanted) <= names:
        sys.exit(f"unknown variant(s) {sorted(set(wanted) - names)}; known: {sorted(names)}")
    # Naming a trick's variant asks for it: without this, `--variants 'preset,no Muon'` with no
    # `--ablate` trained the preset alone and said nothing.
    ablate = args.ablate or bool(wanted and set(wanted) - {"preset"})
    extra = parse_set_options(args.set)
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "results.json"
    results = json.loads(store.read_text())["runs"] if store.exists() else []
    done = {(e["preset"], e["variant"], e["seed"]) for e in results}
    segments_store = args.out / "segments.json"
    segments = json.loads(segments_store.read_text()) if segments_store.exists() else {}
    unfinished = []
    cpu = cpu_description()
    for preset in chosen:
        model, overrides = known[preset]
        overrides = {**overrides, **extra}
        planned = variants(overrides, ablate)
        for variant in sorted(set(wanted or ()) - set(planned)):
            print(f"{preset}: no '{variant}' variant (the preset is already that way)", flush=True)
        for variant, settings in planned.items():
            if wanted and variant not in wanted:
                continue
            for seed in seeds:
                if args.report_only or (preset, variant, seed) in done:
                    continue
                name = f"{preset}-{_slug(variant)}-seed{seed}"
                command = train_command(model, settings, seed, args.out, name)
                print(f"{preset} / {variant} / seed {seed}", flush=True)
                record = run_one(
                    command,
                    args.out / name,
                    segments.setdefault(name, []),
                    lambda: atomic_write_json(segments_store, segments),
                    args.stop_after,
                )
                if record is None:
                    unfinished.append(name)
                    print(f"  stopped after --stop-after {args.stop_after} epochs", flush=True)
                    continue
                entry = {"preset": preset, "variant": variant, "seed": seed, "cpu": cpu}
                entry |= record
                entry["command"] = " ".join(command[1:])
                results.append(entry)
                atomic_write_json(store, {"runs": results})
                print(
                    f"  {entry['test_accuracy']:.4f} in {entry['wall_seconds']:.0f} s", flush=True
                )
    chosen_results = [e for e in results if e["preset"] in chosen]
    print(f"CPU: {cpu}")
    print("\n".join(table(chosen_results)))
    resumed = [e for e in chosen_results if e.get("segments", 1) > 1]
    if resumed:
        print(
            f"{len(resumed)} run(s) trained in several sittings: their wall time is the sum of "
            "the sittings, each restart adding its start-up"
        )
    if unfinished:
        print(f"unfinished: {', '.join(unfinished)}; the same command continues them")
    if args.figure:
        figure(chosen_results, args.figure)
        print(f"figure: {args.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
