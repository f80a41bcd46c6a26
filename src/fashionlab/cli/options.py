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
