"""Loading Fashion-MNIST once into uint8 tensors, verified against DATA.md's checksums."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fashionlab.data.idx import parse_idx, read_idx_bytes
from fashionlab.data.sources import (
    DEBIAN_DIR,
    FILES,
    FIX_COMMAND,
    Source,
    cache_dir,
    download_to_cache,
    find_file,
    sha256_hex,
)
from fashionlab.errors import DataError

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
IMAGE_SHAPE = (28, 28)
EXPECTED_COUNTS = {"train": 60_000, "test": 10_000}


@dataclass
class FashionMNIST:
    """The whole dataset in memory: uint8 images (N, 28, 28) and int64 labels (N,)."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    source: str
    verified: bool
    class_names: tuple[str, ...] = field(default=CLASS_NAMES)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


_LOADED: dict[tuple[str, bool], FashionMNIST] = {}


def load_from_directory(
    directory: str | Path, verify: bool = True, cache_decoded_to: Path | None = None
) -> FashionMNIST:
    """Read and check the four files in `directory`.

    `verify=False` skips the SHA-256 table and the 60k/10k counts so that another MNIST-format
    dataset can be used; the structural checks (28x28 images, labels 0..9, counts match) stay.
    """
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory")
    arrays = {}
    raw_bytes = {}
    for key, (stem, size, digest) in FILES.items():
        path = find_file(directory, stem)
        data = read_idx_bytes(path)
        raw_bytes[stem] = data
        if verify and (len(data) != size or sha256_hex(data) != digest):
            raise DataError(
                f"{path}: checksum mismatch (not the standard Fashion-MNIST file); delete it and "
                "run 'fashionlab data fetch', or pass --no-verify for your own IDX data"
            )
        arrays[key] = (path, parse_idx(data, name=str(path)))
    for split in ("train", "test"):
        (img_path, images), (lbl_path, labels) = (
            arrays[f"{split}-images"],
            arrays[f"{split}-labels"],
        )
        _check_structure(split, img_path, images, lbl_path, labels, verify)
    resolved = str(directory.resolve())
    if cache_decoded_to is not None and verify:
        _write_decoded_copy(cache_decoded_to, raw_bytes)
    # np.frombuffer gives read-only arrays; torch wants writable memory, so copy once here.
    return FashionMNIST(
        train_images=torch.from_numpy(arrays["train-images"][1].copy()),
        train_labels=torch.from_numpy(arrays["train-labels"][1].astype(np.int64)),
        test_images=torch.from_numpy(arrays["test-images"][1].copy()),
        test_labels=torch.from_numpy(arrays["test-labels"][1].astype(np.int64)),
        source=resolved,
        verified=verify,
    )


def _write_decoded_copy(cache: Path, raw_bytes: dict[str, bytes]) -> None:
    """Keep decompressed, verified copies in the cache: the next load skips gzip (~0.4 s of the
    ~0.5 s a load takes). Best effort: an unwritable cache only costs speed."""
    from fashionlab.atomic import atomic_write_bytes

    try:
        for stem, data in raw_bytes.items():
            if not (cache / stem).exists():
                atomic_write_bytes(cache / stem, data)
    except OSError:
        pass


def _check_structure(split, img_path, images, lbl_path, labels, verify) -> None:
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{img_path}: images have shape {images.shape}, expected (N, 28, 28)")
    if images.dtype != np.uint8:
        raise DataError(f"{img_path}: element type {images.dtype}, expected uint8")
    if labels.ndim != 1:
        raise DataError(f"{lbl_path}: labels have shape {labels.shape}, expected (N,)")
    if len(images) != len(labels):
        raise DataError(
            f"{img_path}: {len(images)} images but {lbl_path.name} has {len(labels)} labels"
        )
    if len(labels) and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{lbl_path}: label {int(labels.max())} outside 0..9")
    if verify and len(labels) != EXPECTED_COUNTS[split]:
        raise DataError(f"{lbl_path}: {len(labels)} items, expected {EXPECTED_COUNTS[split]}")


def candidate_sources(data_dir: str | Path | None = None) -> list[Source]:
    """The sources in the order they are tried (an explicit dir is the only one when given)."""
    explicit = data_dir or os.environ.get("FASHIONLAB_DATA")
    if explicit:
        return [Source("explicit", Path(explicit).expanduser())]
    return [Source("cache", cache_dir()), Source("debian", DEBIAN_DIR)]


def load_fashion_mnist(
    data_dir: str | Path | None = None, verify: bool = True, download: bool = True
) -> FashionMNIST:
    """Find, verify and load Fashion-MNIST; loaded once per process and source.

    Raises `DataError` naming every source tried and the command that would fix it.
    """
    if not verify:
        print("fashionlab: warning: checksum verification is OFF", file=sys.stderr)
    sources = candidate_sources(data_dir)
    failures = []
    for source in sources:
        key = (str(source.path), verify)
        if key in _LOADED:
            return _LOADED[key]
        if source.kind != "explicit" and not source.path.is_dir():
            failures.append(f"{source.kind} {source.path}: not present")
            continue
        try:
            cache_to = cache_dir() if source.kind == "debian" else None
            dataset = load_from_directory(source.path, verify=verify, cache_decoded_to=cache_to)
        except DataError as exc:
            if source.kind == "explicit":
                raise
            failures.append(f"{source.kind}: {exc}")
            continue
        _LOADED[key] = dataset
        return dataset
    if download:
        try:
            path = download_to_cache()
            dataset = load_from_directory(path, verify=verify)
            _LOADED[(str(path), verify)] = dataset
            return dataset
        except DataError as exc:
            failures.append(f"download: {exc}")
    raise DataError(
        "Fashion-MNIST not found; tried " + "; ".join(failures) + f". Fix: {FIX_COMMAND}"
    )
