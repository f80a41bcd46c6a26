"""`fashionlab tune FILE`: Ray Tune search over the `tune:` section of a study file."""

from __future__ import annotations

import argparse
from pathlib import Path

from fashionlab.cli.commands import COMMANDS
from fashionlab.cli.options import add_data_options, add_tracking_options
from fashionlab.config import parse_set_options
from fashionlab.studies.tune import tune_study


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "tune",
        help=COMMANDS["tune"],
        description="Samples the study's 'tune:' space (e.g. lr: {loguniform: [1e-4, 1e-2]}), "
        "trains each sample as a run of the named study run, stops weak trials early with "
        "ASHA, and writes <out>/tune.json with the best settings. Needs the ray extra: "
        "pip install 'fashionlab[ray]'.",
    )
    parser.add_argument("file", type=Path, help="study YAML with a 'tune:' section")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: runs/<study name>)"
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        dest="set_items",
        help="override a config field in every trial, e.g. --set epochs=3",
    )
    parser.add_argument("--num-samples", type=int, default=None, help="trials to sample")
    parser.add_argument("--workers", type=int, default=None, help="trials at the same time")
    parser.add_argument(
        "--address", default=None, help="Ray cluster address (default: local); see study --help"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    add_data_options(parser)
    add_tracking_options(parser)
    parser.set_defaults(func=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    summary = tune_study(
        args.file,
        args.out,
        parse_set_options(args.set_items),
        num_samples=args.num_samples,
        address=args.address,
        workers=args.workers,
        data_dir=args.data_dir,
        quiet=args.quiet,
        loggers=args.log,
    )
    best = summary["best"]
    print(f"best {summary['metric']} {best[summary['metric']]:.4f}: {best['config']}")
    return 0
