"""Benchmark: how long `fashionlab study` takes to plan a large study before anything runs.

A study file is untrusted input and may raise `max_runs` up to its ceiling (10,000); planning
(every run's config resolved and validated, twin runs found) must stay linear so that ceiling
plans in about a second on 2 cores. Plans 1,000, 2,500, 5,000 and 10,000 runs of two models
over a learning-rate grid and prints seconds per plan and per 1,000 runs: linear planning keeps
the last column flat.

Run (from the repository root):

    .venv/bin/python benchmarks/bench_planning.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from fashionlab._platform import cpu_description
from fashionlab.studies.spec import load_study, plan_study

SIZES = (1_000, 2_500, 5_000, 10_000)
GRID = [round(0.001 * (i + 1), 4) for i in range(50)]  # 50 points x 2 models = 100 labels


def plan_seconds(runs: int, folder: Path) -> float:
    spec = {
        "name": "big",
        "max_runs": runs,
        "seeds": list(range(runs // (2 * len(GRID)))),
        "runs": [{"model": m, "grid": {"lr": GRID}} for m in ("s4-ann", "s2-ann")],
    }
    path = folder / "big.yaml"
    path.write_text(json.dumps(spec))
    started = time.perf_counter()
    planned = plan_study(load_study(path), folder / "out")
    seconds = time.perf_counter() - started
    assert len(planned) == runs, len(planned)
    return seconds


def main() -> None:
    print(f"CPU {cpu_description()}")
    with tempfile.TemporaryDirectory(prefix="bench-planning-") as tmp:
        plan_seconds(1_000, Path(tmp))  # warm-up: imports, the model registry
        print(f"{'runs':>7}  {'seconds':>8}  {'s per 1,000 runs':>16}")
        for runs in SIZES:
            seconds = plan_seconds(runs, Path(tmp))
            print(f"{runs:>7,}  {seconds:>8.2f}  {1000 * seconds / runs:>16.3f}")


if __name__ == "__main__":
    main()
