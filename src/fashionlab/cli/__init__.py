"""The `fashionlab` command: a thin layer that parses arguments and calls the library.

Each sub-command lives in its own module in this package and exposes
`register(subparsers) -> None`, which adds its parser and sets `func` to a handler taking the
parsed namespace and returning an exit code. User errors (`FashionlabError`) become one line on
stderr and a non-zero exit; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from fashionlab import __version__
from fashionlab.errors import FashionlabError

# Order is the order shown in --help.
COMMAND_MODULES = [
    "data",
    "models",
    "train",
    "evaluate",
    "robustness",
    "audit",
    "study",
    "tune",
    "compare",
    "report",
    "predict",
    "serve",
    "export",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fashionlab",
        description="Image-classification studies on Fashion-MNIST: train, evaluate, inspect.",
    )
    parser.add_argument("--version", action="version", version=f"fashionlab {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"fashionlab.cli.{name}")
        except ModuleNotFoundError as exc:
            # A command whose module is not written yet is simply absent.
            if exc.name == f"fashionlab.cli.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The raw arguments, for commands that re-launch themselves (train --nproc under torchrun).
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FashionlabError as exc:
        print(f"fashionlab: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fashionlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
