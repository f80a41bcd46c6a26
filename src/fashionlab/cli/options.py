"""Options shared by several commands (light: no library imports, for a fast --help)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_data_options(parser: argparse.ArgumentParser) -> None:
    """--data-dir, shared by every command that loads the dataset. (--no-verify exists only on
    `data info`: a run trained or evaluated on unverified data would not be comparable.)"""
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder with the four IDX files (default: FASHIONLAB_DATA, the cache, "
        "/usr/share/datasets/fashion-mnist, then a download)",
    )


def add_tracking_options(parser: argparse.ArgumentParser) -> None:
    """--log, for every command that trains."""
    parser.add_argument(
        "--log",
        action="append",
        default=None,
        metavar="TRACKER",
        help="also log each run to tensorboard (event files in the run folder) or mlflow "
        "(MLFLOW_TRACKING_URI, else mlflow.db beside the runs); repeatable or "
        "comma-separated, e.g. --log tensorboard,mlflow (default: none)",
    )
