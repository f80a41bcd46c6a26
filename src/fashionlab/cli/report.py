"""`fashionlab report PATH`: (re)write report.html and report.md of a run or study folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from fashionlab.cli.commands import COMMANDS
from fashionlab.cli.options import add_data_options


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help=COMMANDS["report"],
        description="Draws the figures that are missing or out of date (into <run>/figures/), "
        "then writes report.html (images embedded, opens offline) and report.md (images in "
        "figures/) into the folder. Prints the path of report.html.",
    )
    parser.add_argument("path", type=Path, help="a run folder or a study folder (study.json)")
    add_data_options(parser)
    parser.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from fashionlab.report import write_report

    print(write_report(args.path, data_dir=args.data_dir))
    return 0
