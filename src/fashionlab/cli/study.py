"""`fashionlab study FILE`: run (or resume) a study, aggregate it, write its report."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fashionlab.cli.commands import COMMANDS
from fashionlab.cli.options import add_data_options, add_tracking_options
from fashionlab.config import parse_set_options
from fashionlab.runs import is_complete
from fashionlab.studies import load_study, plan_study, run_study, select_runs


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "study",
        help=COMMANDS["study"],
        description="Runs everything in the study that is not already complete (an interrupted "
        "study resumes), then writes study.json and report.html/report.md, and prints where "
        "the report (with --no-report: study.json) is.",
    )
    parser.add_argument("file", type=Path, help="study YAML, e.g. studies/s0.yaml")
    parser.add_argument(
        "--out", type=Path, default=None, help="study folder (default: runs/<study name>)"
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        dest="set_items",
        help="override a config field in every run, e.g. --set epochs=1",
    )
    parser.add_argument(
        "--seeds",
        type=lambda s: [int(x) for x in s.split(",")],
        default=None,
        help="comma-separated seeds replacing the file's, e.g. 1,2,3",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="validate and list the runs without training"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: aggregate and report the runs that are complete so far (the "
        "others are listed as missing), e.g. while a long study runs",
    )
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="write study.json but not the report (its figures take about a second each): "
        "for scripts and clusters; --report-only writes it later",
    )
    parser.add_argument(
        "--only",
        type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
        default=None,
        metavar="LABELS",
        help="comma-separated run labels, * and ? as wildcards: train only those runs (and the "
        "CNN runs their features come from), then report every complete run, e.g. "
        "--only 'mlp-784-128-*,cnn5-16x5-*'",
    )
    parser.add_argument("--overwrite", action="store_true", help="delete the study folder first")
    parser.add_argument(
        "--backend",
        choices=["local", "ray"],
        default="local",
        help="local: this machine (one run at a time, or --workers processes); ray: Ray Tune "
        "trials on a local Ray instance or the cluster at --address",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="runs at the same time, each with cores/N threads (default: 1 for local, the "
        "CPU count for ray)",
    )
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster address, e.g. ray://head:10001 or head:6379 (ray only); an "
        "unreachable one is an error within FASHIONLAB_RAY_TIMEOUT seconds (default 10)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    add_data_options(parser)
    add_tracking_options(parser)
    parser.set_defaults(func=cmd_study)


def cmd_study(args: argparse.Namespace) -> int:
    overrides = parse_set_options(args.set_items)
    if args.dry_run:
        study = load_study(args.file)
        if args.seeds:
            study.seeds = args.seeds
            for spec in study.runs:
                spec.seeds = None
        out = args.out or Path("runs") / study.name
        planned = plan_study(study, out, overrides, source=str(args.file))
        if args.only:
            planned = select_runs(planned, args.only, source=str(args.file))
        for run in planned:
            state = "complete" if is_complete(run.run_dir) else "to run"
            if run.same_as is not None:
                state = f"= {run.same_as}"  # a twin: trained once, under the other name
            print(f"{run.label:<48} seed {run.seed:<6} {state:<9} {run.run_dir}")
        return 0
    out = run_study(
        args.file,
        args.out,
        overrides,
        quiet=args.quiet,
        data_dir=args.data_dir,
        overwrite=args.overwrite,
        seeds=args.seeds,
        backend=args.backend,
        workers=args.workers or (1 if args.backend == "local" else os.cpu_count() or 1),
        address=args.address,
        loggers=args.log,
        report_only=args.report_only,
        only=args.only,
        make_report=not args.no_report,
    )
    print(out / ("study.json" if args.no_report else "report.html"))
    return 0
