"""`fashionlab data info|fetch`: where the data is, whether it is verified, what it holds."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from fashionlab._io import atomic_write_bytes
from fashionlab.cli.commands import COMMANDS
from fashionlab.cli.options import add_data_options
from fashionlab.data import CLASS_NAMES, encode_idx, load_fashion_mnist
from fashionlab.data.dataset import load_from_directory
from fashionlab.data.sources import FILES, download_to_cache
from fashionlab.errors import DataError


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help=COMMANDS["data"])
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="where the data was found, verification, class counts")
    add_data_options(info)
    info.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the checksum table (for your own MNIST-format IDX data)",
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(func=cmd_info)
    fetch = sub.add_parser("fetch", help="make sure a verified copy of the data exists")
    add_data_options(fetch)
    fetch.set_defaults(func=cmd_fetch)


def cmd_info(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    data = load_fashion_mnist(args.data_dir, verify=not args.no_verify)
    seconds = time.perf_counter() - started
    mean, std = _pixel_mean_std(data.train_images)
    summary = {
        "source": data.source,
        "verified": data.verified,
        "load_seconds": round(seconds, 3),
        "train": len(data.train_labels),
        "test": len(data.test_labels),
        "pixel_mean": round(mean, 4),
        "pixel_std": round(std, 4),
        "per_class": {
            name: {
                "train": int((data.train_labels == i).sum()),
                "test": int((data.test_labels == i).sum()),
            }
            for i, name in enumerate(CLASS_NAMES)
        },
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"source     {summary['source']}")
    print(
        f"verified   {'yes (SHA-256 of all four files)' if data.verified else 'NO (--no-verify)'}"
    )
    print(f"loaded in  {seconds:.2f} s")
    print(f"images     {summary['train']} train, {summary['test']} test, 28x28 uint8")
    print(f"pixels     mean {summary['pixel_mean']:.4f}  std {summary['pixel_std']:.4f} (train)")
    print(f"\n{'class':<14}{'train':>7}{'test':>7}")
    for name, counts in summary["per_class"].items():
        print(f"{name:<14}{counts['train']:>7}{counts['test']:>7}")
    return 0


def _pixel_mean_std(images: torch.Tensor) -> tuple[float, float]:
    """Mean and population std on [0, 1] from a 256-bin histogram: exact, and no float copy of
    the 47M pixels (which in float32 would also drift in the 5th decimal)."""
    counts = torch.bincount(images.reshape(-1), minlength=256).to(torch.float64)
    values = torch.arange(256, dtype=torch.float64) / 255.0
    n = counts.sum()
    mean = (counts * values).sum() / n
    var = (counts * (values - mean) ** 2).sum() / n
    return mean.item(), var.sqrt().item()


def cmd_fetch(args: argparse.Namespace) -> int:
    if args.data_dir is None:
        data = load_fashion_mnist()
        print(f"verified copy in {data.source}")
        return 0
    target = Path(args.data_dir).expanduser()
    try:
        load_from_directory(target)
    except DataError:
        # The user named this folder: fill it (verified, atomically) rather than elsewhere.
        _fill_directory(target)
        load_from_directory(target)
    print(f"verified copy in {target}")
    return 0


def _fill_directory(target: Path) -> None:
    """Write the four files into `target`: from a verified local copy (cache or Debian package)
    when there is one, since most of our machines have no internet; else from the mirror."""
    try:
        data = load_fashion_mnist(download=False)
    except DataError:
        download_to_cache(target)
        return
    arrays = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    for (stem, _size, _digest), array in zip(FILES.values(), arrays, strict=True):
        # Re-encoding uint8 tensors gives back the original IDX bytes (checked on reload).
        payload = encode_idx(array.numpy().astype(np.uint8))
        try:
            atomic_write_bytes(target / stem, payload)
        except OSError as exc:
            raise DataError(f"{target / stem}: cannot write ({exc.strerror or exc})") from None
