"""`fashionlab runs [DIR]`: every run folder under DIR as a table, CSV or JSON."""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

from fashionlab.cli.commands import COMMANDS
from fashionlab.runs.table import COLUMNS, RunRow, list_runs


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "runs",
        help=COMMANDS["runs"],
        description="Lists every run folder under DIR (a study's runs, a tree of studies): "
        "name, model, seed, precision, epochs, test accuracy, macro-F1, training time, and "
        "whether it is complete, interrupted (resumable with train --resume) or failed (with "
        "the reason). Reads only config.yaml, metrics.json and the markers.",
    )
    parser.add_argument("dir", nargs="?", type=Path, default=Path("runs"),
                        help="the folder to look in (default: runs)")  # fmt: skip
    parser.add_argument(
        "--sort", metavar="COLUMN",
        help=f"sort by a column (descending with --desc, or --sort=-COLUMN): "
        f"{', '.join(COLUMNS)}",
    )  # fmt: skip
    parser.add_argument("--desc", action="store_true", help="sort in descending order")
    parser.add_argument(
        "--where", action="append", default=[], metavar="KEY=VALUE",
        help="keep runs whose config field (or column) equals VALUE; dotted keys reach into "
        "model_args (model_args.act=relu); repeatable, all must hold",
    )  # fmt: skip
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--depth", type=int, default=3,
                        help="how many folder levels below DIR to look (default 3)")  # fmt: skip
    parser.set_defaults(func=cmd_runs)


def _cell(value: object, column: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):  # seconds to a tenth, scores to four places, always
        return f"{value:.1f}" if column == "train_seconds" else f"{value:.4f}"
    return str(value)


def _table(rows: list[RunRow]) -> str:
    headers = [*COLUMNS, "problem"]
    body = [[_cell(getattr(r, c), c) for c in COLUMNS] + [r.problem] for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip() for b in body]
    return "\n".join(lines)


def cmd_runs(args: argparse.Namespace) -> int:
    sort = args.sort
    if sort and args.desc and not sort.startswith("-"):
        sort = "-" + sort
    rows = list_runs(args.dir, where=args.where, sort=sort, max_depth=max(args.depth, 0))
    if args.format == "json":
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    elif args.format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow([*COLUMNS, "problem", "path"])
        for r in rows:
            writer.writerow([("" if getattr(r, c) is None else getattr(r, c)) for c in COLUMNS]
                            + [r.problem, r.path])  # fmt: skip
        print(buffer.getvalue(), end="")
    elif rows:
        print(_table(rows))
    else:
        print(f"no run folders under {args.dir}")
    return 0
