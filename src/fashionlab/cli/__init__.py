"""The `fashionlab` command: a thin layer that parses arguments and calls the library.

Each sub-command lives in its own module in this package and exposes
`register(subparsers) -> None`, which adds its parser and sets `func` to a handler taking the
parsed namespace and returning an exit code. Only the chosen sub-command's module is imported
(`commands.COMMANDS` lists them all with their help line), so `fashionlab --help` and light
commands never load torch. User errors (`FashionlabError`) become one line on
stderr and a non-zero exit; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fashionlab import __version__
from fashionlab.cli.commands import COMMANDS
from fashionlab.errors import FashionlabError


def _chosen(argv: list[str]) -> str | None:
    """The subcommand named in `argv` (the first word that is not an option), if known."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: the chosen subcommand's full parser (its module imported now)
    and a one-line entry for every other one, whose module stays unimported."""
    parser = argparse.ArgumentParser(
        prog="fashionlab",
        description="Image-classification studies on Fashion-MNIST: train, evaluate, inspect.",
    )
    parser.add_argument("--version", action="version", version=f"fashionlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(list(sys.argv[1:] if argv is None else argv))
    for name, text in COMMANDS.items():
        if name == chosen:
            importlib.import_module(f"fashionlab.cli.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=text)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        # Building the parser imports the chosen command's module: a missing optional
        # package (an extra) is a user error there too.
        parser = build_parser(argv)
        args = parser.parse_args(argv)
        # The raw arguments, for commands that re-launch themselves (train --nproc).
        args.argv = list(sys.argv[1:] if argv is None else argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except FashionlabError as exc:
        print(f"fashionlab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fashionlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
