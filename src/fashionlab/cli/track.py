"""`fashionlab track import DIR`: existing run folders into MLflow."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from fashionlab.cli.commands import COMMANDS
from fashionlab.tracking import import_runs


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "track",
        help=COMMANDS["track"],
        description="Experiment tracking for runs trained without --log.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    imp = actions.add_parser(
        "import",
        help="push every complete run folder under DIR into MLflow",
        description="Replays each complete run folder under DIR (a run, a study, a tree of "
        "them) into MLflow: config as params, history as per-epoch metrics, final metrics, "
        "and its key files as artefacts. Runs already imported are skipped, so it can run "
        "again after more runs finish. The store is MLFLOW_TRACKING_URI, else DIR/mlflow.db.",
    )
    imp.add_argument("dir", type=Path, help="a run folder or a folder of runs (a study)")
    imp.add_argument(
        "--experiment",
        default=None,
        help="MLflow experiment (default: the study's name, else fashionlab)",
    )
    imp.add_argument(
        "--store-dir", type=Path, default=None, help="folder of the local mlflow.db (default: DIR)"
    )
    parser.set_defaults(func=cmd_track)


def cmd_track(args: argparse.Namespace) -> int:
    results = import_runs(args.dir, experiment=args.experiment, store_dir=args.store_dir)
    width = max(len(str(r.path)) for r in results)
    for r in results:
        print(f"{str(r.path):<{width}}  {r.outcome:<16} {r.detail}".rstrip())
    counts = Counter(r.outcome for r in results)
    print(", ".join(f"{n} {o}" for o, n in counts.items()))
    return 1 if counts.get("failed") else 0
