"""How long does scoring one trained model on the whole corruption suite take?

For each run folder given (or each PyTorch run of a study folder; with none, a one-epoch run
of each of `--models` on 2,000 training images, in a temporary folder), with the command's
defaults (every corruption, severities 1-5, 1,000 class-balanced items): the seconds to build
the corrupted sets (once per test split, shared by every run of a study) and the seconds to
score the model on them (its recorded precision and test-time augmentation), beside the
target of 2 minutes per model. Nothing is written outside the run folders' robustness files.

    .venv/bin/python benchmarks/bench_robustness.py [RUN_OR_STUDY ...] [--items 1000]
        [--models s0-m1 s0-m2 s2-cnn fast]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from train_speed import cpu_name  # this folder: the one CPU-name helper of the benchmarks

from fashionlab.models import get_model_spec
from fashionlab.report.figures import data_key
from fashionlab.robustness.score import score_run, sets_for_run
from fashionlab.robustness.sets import DEFAULT_ITEMS, check_names
from fashionlab.runs import load_config

TARGET_SECONDS = 120.0


def run_folders(paths: list[Path]) -> list[Path]:
    found = []
    for path in paths:
        if (path / "study.json").is_file():
            rows = json.loads((path / "study.json").read_text())["rows"]
            found += [path / name for row in rows for name in row["runs"]]
        else:
            found.append(path)
    return [p for p in found if get_model_spec(load_config(p).model).framework == "torch"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", type=Path, nargs="*")
    parser.add_argument("--items", type=int, default=DEFAULT_ITEMS)
    parser.add_argument("--models", nargs="+", default=["s0-m1", "s0-m2", "s2-cnn", "fast"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = args.paths or [quick_run(model, Path(tmp)) for model in args.models]
        measure(paths, args.items)


def quick_run(model: str, parent: Path) -> Path:
    from fashionlab.models import build_config
    from fashionlab.training import train

    return train(build_config(model, {"epochs": 1, "train_subset": 2000}), parent, quiet=True)


def measure(paths: list[Path], items: int) -> None:
    names = check_names(None)
    print(f"CPU: {cpu_name()}, torch threads {torch.get_num_threads()}, items {items}")
    print(f"{'run':<28}{'model':<10}{'sets (s)':>10}{'score (s)':>11}{'total':>8}  target")
    built: dict[tuple, tuple] = {}
    for run in run_folders(paths):
        config = load_config(run)
        key = data_key(config)
        build_seconds = 0.0
        if key not in built:
            started = time.perf_counter()
            sets = sets_for_run(run, names, (1, 2, 3, 4, 5), items, 0)
            build_seconds = time.perf_counter() - started
            built[key] = sets
        started = time.perf_counter()
        score_run(run, built[key])
        score_seconds = time.perf_counter() - started
        total = build_seconds + score_seconds
        verdict = "ok" if total <= TARGET_SECONDS else "OVER"
        print(f"{run.name:<28}{config.model:<10}{build_seconds:>10.1f}{score_seconds:>11.1f}"
              f"{total:>8.1f}  {verdict} (<= {TARGET_SECONDS:.0f} s)")  # fmt: skip


if __name__ == "__main__":
    main()
