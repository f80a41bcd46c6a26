"""Wall time of one small study under each backend, and of DDP with 2 processes vs 1.

Purpose: say what the parallel paths buy on this machine, all measured in one run so the
figures share the same machine load. Not a test: wall times on shared machines are noisy.

  study     a 4-run study (quickstart's MLP and CNN, 2 seeds, on a training subset) run three
            times into fresh folders: --backend local (one run at a time, all cores each),
            --workers 2 (process pool, cores/2 threads each) and --backend ray --workers 2
            (local Ray instance started and stopped by the command, as a user would run it).
  ddp       `fashionlab train` of s2-cnn with 1 process (all cores) and with --nproc 2
            (torchrun, gloo, cores/2 threads each), same global batch.

Every timing is the whole command in a fresh process (imports, data load, Ray start-up
included), the way a user meets it. Command (from the repository root):

    .venv/bin/python benchmarks/bench_distributed.py [--train-subset 6000] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "quickstart.yaml"


def timed(cmd: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-subset", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "fashionlab"]
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)  # each backend sets its own thread counts
    sets = [
        "--set", f"train_subset={args.train_subset}",
        "--set", "eval_subset=2000",
        "--set", f"epochs={args.epochs}",
    ]  # fmt: skip
    print(f"cores: {os.cpu_count()}; study: {STUDY.name} (4 runs), train_subset "
          f"{args.train_subset}, {args.epochs} epochs")  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="fashionlab-bench-"))
    try:
        backends = {
            "local, sequential": [],
            "local, process pool (2 workers)": ["--workers", "2"],
        }
        if not args.skip_ray:
            backends["ray, local instance (2 workers)"] = ["--backend", "ray", "--workers", "2"]
        results = {}
        for k, (name, extra) in enumerate(backends.items()):
            cmd = [*cli, "study", str(STUDY), "--out", str(work / f"s{k}"), "--quiet", *sets]
            results[name] = timed([*cmd, *extra], env)
            print(f"  {name:<36} {results[name]:7.1f} s", flush=True)
        base = results["local, sequential"]
        print("\nstudy wall time")
        print("| backend | wall s | vs sequential |\n|---|---|---|")
        for name, seconds in results.items():
            print(f"| {name} | {seconds:.1f} | {base / seconds:.2f}x |")

        train = [
            *cli, "train", "--model", "s2-cnn", "--quiet",
            "--train-subset", str(args.train_subset * 2), "--eval-subset", "2000",
            "--epochs", str(args.epochs),
        ]  # fmt: skip
        one = timed([*train, "--runs-dir", str(work / "ddp1")], env)
        two = timed([*train, "--runs-dir", str(work / "ddp2"), "--nproc", "2"], env)
        print("\nDDP, s2-cnn, same global batch")
        print("| processes | wall s | speed-up |\n|---|---|---|")
        print(f"| 1 | {one:.1f} | 1.00x |\n| 2 (torchrun, gloo) | {two:.1f} | {one / two:.2f}x |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
