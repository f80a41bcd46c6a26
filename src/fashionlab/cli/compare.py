"""`fashionlab compare RUN_A RUN_B`: McNemar's test on two runs' test predictions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fashionlab.cli.commands import COMMANDS
from fashionlab.notebook.compare import compare_runs


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help=COMMANDS["compare"]
    )
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    out = compare_runs(args.run_a, args.run_b)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"A {args.run_a}: accuracy {out['accuracy_a']:.4f}")
    print(f"B {args.run_b}: accuracy {out['accuracy_b']:.4f}")
    print(
        f"only A right {out['only_a_right']}, only B right {out['only_b_right']}; "
        f"McNemar ({out['method']}) statistic {out['statistic']:.3f}, p = {out['p_value']:.4g}"
    )
    verdict = "significant" if out["p_value"] < 0.05 else "not significant"
    print(f"the difference is {verdict} at alpha 0.05")
    return 0
