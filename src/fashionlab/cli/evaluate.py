"""`fashionlab evaluate RUN|STUDY`: reload the weights, recompute test metrics, compare with
the stored ones (every run of a study, one line each)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fashionlab.cli.commands import COMMANDS
from fashionlab.cli.options import add_data_options
from fashionlab.errors import RunError
from fashionlab.report import report_kind
from fashionlab.runs import load_metrics
from fashionlab.studies.evaluate import evaluate_study
from fashionlab.training import evaluate_run


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help=COMMANDS["evaluate"]
    )
    parser.add_argument("run", type=Path, help="run folder, or a study folder (all its runs)")
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
    if report_kind(args.run) == "study":
        return _evaluate_study(args)
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


def _evaluate_study(args: argparse.Namespace) -> int:
    results = evaluate_study(args.run, data_dir=args.data_dir, device=args.device)
    if args.json:
        print(json.dumps(results, indent=2, default=float))
    else:
        print(f"{'run':<36} {'precision':<9} {'test acc':>8}  stored")
        for name, metrics in results.items():
            used = load_metrics(args.run / name).get("precision_used", "?")
            verdict = "matches" if metrics["matches_stored"] else (
                "DIFFERS" if metrics["compared"] else "nothing stored")
            print(f"{name:<36} {used:<9} {metrics['test_accuracy']:>8.4f}  {verdict}")
    bad = [name for name, m in results.items() if not m["matches_stored"]]
    if bad:
        raise RunError(
            f"{args.run}: {len(bad)} run(s) do not match their stored metrics, first {bad[0]}; "
            f"see: fashionlab evaluate {args.run / bad[0]}"
        )
    return 0
