"""`fashionlab evaluate RUN`: reload the weights, recompute test metrics, compare with stored."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fashionlab.cli.commands import COMMANDS
from fashionlab.cli.options import add_data_options
from fashionlab.errors import RunError
from fashionlab.training import evaluate_run


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help=COMMANDS["evaluate"]
    )
    parser.add_argument("run", type=Path, help="run folder")
    parser.add_argument("--json", action="store_true", help="print all metrics as JSON")
    parser.add_argument(
        "--device",
        default="cpu",
        help="where to compute (cpu, cuda, cuda:N, mps, auto; default cpu); the precision is "
        "the one the run recorded",
    )
    add_data_options(parser)
    parser.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    metrics = evaluate_run(args.run, data_dir=args.data_dir, device=args.device)
    if args.json:
        print(json.dumps(metrics, indent=2, default=float))
    else:
        for key in ("test_accuracy", "test_loss", "macro_f1", "weighted_f1", "ece", "brier"):
            print(f"{key:<16} {metrics[key]:.4f}")
        if metrics["temperature"] is None:
            print(f"({metrics['calibration']['note']})")
        else:
            print(f"{'temperature':<16} {metrics['temperature']:.4f}  (fitted on validation)")
            for key in ("ece_calibrated", "nll_calibrated", "brier_calibrated"):
                print(f"{key:<16} {metrics[key]:.4f}")
        if metrics["matches_stored"]:
            print("matches stored metrics")
        elif metrics["compared"]:
            print("DIFFERS from stored")
    if not metrics["compared"]:
        raise RunError(
            f"{args.run}: metrics.json holds no test metrics to compare with; "
            "the run may not have finished (try 'fashionlab train --resume')"
        )
    if not metrics["matches_stored"]:
        raise RunError(
            f"{args.run}: recomputed metrics differ from metrics.json: {metrics['mismatches']}"
        )
    return 0
