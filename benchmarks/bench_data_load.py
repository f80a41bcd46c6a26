"""How long loading + verifying Fashion-MNIST takes, by source.

Purpose: the loader verifies SHA-256 of all four files on every load and keeps decoded copies
in the cache so that later loads skip gunzip. This measures what that costs and saves, so a
change to the data layer can be compared before/after. Not a test: timings on our shared
machines are too noisy for a pass/fail threshold.

Each measurement runs in a fresh Python process (nothing remembered in memory), several times;
the medians are printed. Timed inside the process, around the load call only (imports
excluded); the whole process's wall time, imports included, is printed beside it. The files
are in the OS page cache after the first repeat, as they are in everyday use.

  debian-gz    load_from_directory(/usr/share/datasets/fashion-mnist): read .gz, gunzip, verify
  first-load   load_fashion_mnist() with an empty cache: the above, plus writing decoded copies
  cache        load_fashion_mnist() with the decoded cache filled: read raw files, verify

Command (from the repository root):

    .venv/bin/python benchmarks/bench_data_load.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

CHILD = """
import json, sys, time
from fashionlab.data import load_fashion_mnist, load_from_directory
mode = sys.argv[1]
start = time.perf_counter()
if mode == "debian-gz":
    data = load_from_directory(sys.argv[2], verify=True)
else:
    data = load_fashion_mnist()
seconds = time.perf_counter() - start
assert data.verified and len(data.train_labels) == 60000
print(json.dumps({"seconds": seconds, "source": data.source}))
"""


def run_child(mode: str, cache: Path) -> tuple[float, float, str]:
    """(load seconds inside the child, child process wall seconds, source it loaded from)."""
    env = dict(os.environ, FASHIONLAB_CACHE=str(cache))
    # An unreachable mirror: a benchmark must never fall back to a network download.
    env["FASHIONLAB_MIRROR"] = (cache.parent / "no-mirror").as_uri()
    env.pop("FASHIONLAB_DATA", None)
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(DEBIAN_DIR)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - started
    report = json.loads(result.stdout.strip().splitlines()[-1])
    return report["seconds"], wall, report["source"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per source (default 5)")
    args = parser.parse_args()
    if not DEBIAN_DIR.is_dir():
        print(f"{DEBIAN_DIR} missing: apt-get install dataset-fashion-mnist", file=sys.stderr)
        return 2

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-data-load-") as tmp:
        root = Path(tmp)
        for mode in ("debian-gz", "first-load", "cache"):
            loads, walls, sources = [], [], set()
            for i in range(args.repeats):
                cache = root / f"{mode}-{i}" / "fashion-mnist"
                if mode == "cache":
                    # Fill the cache as a user's first load would, outside the timing.
                    cache = root / "filled" / "fashion-mnist"
                    if not cache.exists():
                        run_child("first-load", cache)
                seconds, wall, source = run_child(mode, cache)
                loads.append(seconds)
                walls.append(wall)
                sources.add(source)
                if mode == "first-load":
                    shutil.rmtree(cache.parent)
            rows.append((mode, loads, walls, sources))

    print(f"Fashion-MNIST load + verify, {args.repeats} fresh processes per source")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print(f"{'source':<12}{'load+verify median':>20}{'(min-max)':>16}{'process wall':>15}")
    for mode, loads, walls, sources in rows:
        spread = f"({min(loads):.2f}-{max(loads):.2f})"
        print(
            f"{mode:<12}{statistics.median(loads):>18.3f} s{spread:>16}"
            f"{statistics.median(walls):>13.2f} s   from {', '.join(sorted(sources))}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
