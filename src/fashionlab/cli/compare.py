"""`fashionlab compare RUN_A RUN_B`: McNemar's test on two runs' test predictions."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from fashionlab.cli.commands import COMMANDS
from fashionlab.errors import RunError
from fashionlab.evaluation import accuracy, mcnemar
from fashionlab.runs import load_predictions


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help=COMMANDS["compare"]
    )
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=cmd_compare)


def cmd_compare(args: argparse.Namespace) -> int:
    a, b = load_predictions(args.run_a), load_predictions(args.run_b)
    if not np.array_equal(a["labels"], b["labels"]):
        raise RunError(f"{args.run_a} and {args.run_b} were tested on different items")
    result = mcnemar(a["labels"], a["logits"], b["logits"])
    out = {
        "a": str(args.run_a),
        "b": str(args.run_b),
        "accuracy_a": accuracy(a["labels"], a["logits"]),
        "accuracy_b": accuracy(b["labels"], b["logits"]),
        "only_a_right": int(result.b),
        "only_b_right": int(result.c),
        "statistic": float(result.statistic),
        "p_value": float(result.p_value),
        "method": result.method,
    }
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
