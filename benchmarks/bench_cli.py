"""How long the `fashionlab` command takes to answer before doing any work.

Times, side by side and interleaved, whole processes of:
- `fashionlab --help` and `fashionlab runs EMPTY_DIR`: the light paths (target < 1.5 s);
- `fashionlab train --help`: a command whose module loads torch, for the ratio.
Prints the median of N runs of each and the ratios, plus the CPU model.

    python benchmarks/bench_cli.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from train_speed import cpu_name  # noqa: E402

TARGET_S = 1.5


def _command() -> list[str]:
    exe = shutil.which("fashionlab", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "fashionlab"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    base = _command()
    with tempfile.TemporaryDirectory() as empty:
        cases = {
            "fashionlab --help": [*base, "--help"],
            "fashionlab runs EMPTY": [*base, "runs", empty],
            "fashionlab train --help": [*base, "train", "--help"],
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.repeats):
            for name, cmd in cases.items():  # interleaved: drift hits every case alike
                start = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                times[name].append(time.perf_counter() - start)
    print(f"CPU: {cpu_name()}; {args.repeats} runs each, median wall time")
    heavy = statistics.median(times["fashionlab train --help"])
    for name, values in times.items():
        median = statistics.median(values)
        mark = ""
        if name != "fashionlab train --help":
            mark = "  ok" if median < TARGET_S else f"  OVER the {TARGET_S} s target"
        print(f"{name:<26} {median:6.2f} s   x{median / heavy:.2f} of train --help{mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
