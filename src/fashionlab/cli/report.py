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
    parser.add_argument(
        "--scoreboard",
        action="store_true",
        help="PATH holds study folders: write the reproduction scoreboard of all of them "
        "(reported numbers beside ours, claims with verdicts) to --out",
    )
    parser.add_argument(
        "--out", type=Path, help="with --scoreboard: the folder for README.md and scoreboard.json"
    )
    parser.add_argument(
        "--notes",
        type=Path,
        help="with --scoreboard: a YAML file of explanations, study -> row -> metric -> text, "
        "printed beside the numbers they name",
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="with --scoreboard: keep the studies already in OUT/scoreboard.json that are not "
        "under PATH (their run folders are elsewhere), replacing the ones that are",
    )
    add_data_options(parser)
    parser.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from fashionlab.errors import ConfigError
    from fashionlab.report import write_report

    if args.scoreboard:
        from fashionlab.studies.scoreboard import write_scoreboard

        if args.out is None:
            raise ConfigError("--scoreboard needs --out FOLDER for README.md and scoreboard.json")
        print(write_scoreboard(args.path, args.out, notes=args.notes, update=args.update))
        return 0
    if args.notes is not None or args.update:
        raise ConfigError("--notes and --update go with --scoreboard")
    if args.out is not None:
        raise ConfigError("--out goes with --scoreboard; a run's report is written into its folder")

    print(write_report(args.path, data_dir=args.data_dir))
    return 0
