"""Does bf16 autocast cost accuracy? Each study trained twice, fp32 and bf16, same seeds.

    fashionlab study studies/S.yaml --seeds 42,43,44 --set precision=P --out runs/precision/S-P
    python benchmarks/precision_check.py runs/precision/S-fp32 runs/precision/S-bf16 [...]

(P = fp32, then bf16.) Pairs of study folders (fp32 first); for every run label in both,
the test accuracy per seed, mean ± std, the mean of the seed-matched differences (bf16 - fp32)
in points, and whether it is within the tolerance (0.3 points, the bar `precision: auto` must
clear to be a recipe's default), with the mean training seconds per run of each.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

TOLERANCE_POINTS = 0.3


def _rows(study: Path) -> dict[str, dict]:
    summary = json.loads((study / "study.json").read_text())
    return {row["label"]: row for row in summary["rows"]}


def _by_seed(row: dict, key: str) -> dict[int, float]:
    return dict(zip(row["seeds"], row[key]["values"], strict=True))


def _fmt(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {spread:.4f}"


def compare(fp32: Path, bf16: Path) -> list[list[str]]:
    table = []
    slow, fast = _rows(fp32), _rows(bf16)
    for label in [name for name in slow if name in fast]:
        a, b = _by_seed(slow[label], "test_accuracy"), _by_seed(fast[label], "test_accuracy")
        seeds = sorted(set(a) & set(b))
        if not seeds:
            continue
        diff = 100 * statistics.fmean(b[s] - a[s] for s in seeds)
        ta, tb = _by_seed(slow[label], "train_seconds"), _by_seed(fast[label], "train_seconds")
        table.append([
            label, ",".join(map(str, seeds)), _fmt([a[s] for s in seeds]),
            _fmt([b[s] for s in seeds]), f"{diff:+.2f}",
            "yes" if abs(diff) <= TOLERANCE_POINTS else "NO",
            f"{statistics.fmean(ta[s] for s in seeds):.0f} / "
            f"{statistics.fmean(tb[s] for s in seeds):.0f}",
        ])  # fmt: skip
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("studies", nargs="+", type=Path, help="fp32 and bf16 study folders")
    args = parser.parse_args(argv)
    if len(args.studies) % 2:
        parser.error("give study folders in pairs: fp32 first, then bf16")
    header = ["run", "seeds", "fp32 test acc", "bf16 test acc", "bf16 - fp32 (points)",
              f"within {TOLERANCE_POINTS}", "train s fp32 / bf16"]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for fp32, bf16 in zip(args.studies[::2], args.studies[1::2], strict=True):
        for row in compare(fp32, bf16):
            print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
