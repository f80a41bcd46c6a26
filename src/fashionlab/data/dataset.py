"""Loading Fashion-MNIST once into uint8 tensors, verified against the release's published
SHA-256 checksums (data.sources)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fashionlab.data import sources as _sources
from fashionlab.data.idx import parse_idx, read_idx_bytes
from fashionlab.data.sources import (
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


# Datasets already loaded in this process, by (source folder, verify). Loading is deterministic
# and the tensors are never modified in place by this package, so one copy is shared.
_LOADED: dict[tuple[str, bool], FashionMNIST] = {}


def load_from_directory(
    directory: str | Path, verify: bool = True, cache_decoded_to: Path | None = None
) -> FashionMNIST:
    """Read and check the four files in `directory`.

    `verify=False` skips the SHA-256 table (and so the 60k/10k counts) so that another
    MNIST-format dataset can be used; the structural checks (uint8 28x28 images, uint8 labels
    in 0..9, as many labels as images) always apply. With `cache_decoded_to` and `verify`, the
    verified, decompressed files are also written there (best effort) for faster later loads.
    """
    return _load(directory, verify, cache_decoded_to)[0]


def _load(
    directory: str | Path, verify: bool, cache_decoded_to: Path | None
) -> tuple[FashionMNIST, bool]:
    """`load_from_directory`, plus whether `cache_decoded_to` now holds verified raw copies."""
    directory = Path(directory).expanduser()
    if not directory.is_dir():
        raise DataError(
            f"{directory}: not a directory (expected a folder with the four IDX files; "
            f"'fashionlab data fetch --data-dir {directory}' creates one)"
        )
    paths: dict[str, Path] = {}
    raw: dict[str, bytes] = {}
    arrays: dict[str, np.ndarray] = {}
    # Structure first, checksums last: for a damaged file "truncated" or "bad magic" says more
    # than "checksum mismatch", and parsing is free (np.frombuffer makes views).
    for key, (stem, _size, _digest) in FILES.items():
        paths[key] = find_file(directory, stem)
        raw[key] = read_idx_bytes(paths[key])
        arrays[key] = parse_idx(raw[key], name=str(paths[key]))
    for split in ("train", "test"):
        _check_structure(
            paths[f"{split}-images"],
            arrays[f"{split}-images"],
            paths[f"{split}-labels"],
            arrays[f"{split}-labels"],
        )
    if verify:
        for key, (_stem, size, digest) in FILES.items():
            if len(raw[key]) != size or sha256_hex(raw[key]) != digest:
                raise DataError(
                    f"{paths[key]}: checksum mismatch (not the standard Fashion-MNIST file); "
                    "delete it and run 'fashionlab data fetch', or pass --no-verify for your "
                    "own IDX data"
                )
    cached = False
    if cache_decoded_to is not None and verify:
        cached = _write_decoded_copy(Path(cache_decoded_to), paths, raw)
    # np.frombuffer gives read-only arrays; torch wants writable memory, so copy once here.
    dataset = FashionMNIST(
        train_images=torch.from_numpy(arrays["train-images"].copy()),
        train_labels=torch.from_numpy(arrays["train-labels"].astype(np.int64)),
        test_images=torch.from_numpy(arrays["test-images"].copy()),
        test_labels=torch.from_numpy(arrays["test-labels"].astype(np.int64)),
        source=str(directory.resolve()),
        verified=verify,
    )
    return dataset, cached


def _write_decoded_copy(cache: Path, paths: dict[str, Path], raw: dict[str, bytes]) -> bool:
    """Keep decompressed, verified copies in the cache: the next load skips gzip, most of the
    time a load from .gz takes. Best effort: an unwritable cache only costs speed, so it is a
    warning, not an error. Returns whether the cache now holds all four verified files."""
    from fashionlab._io import atomic_write_bytes

    for key, (stem, _size, _digest) in FILES.items():
        target = cache / stem
        if _same_file(paths[key], target):
            continue
        # Overwrite whatever is there: we only get here when loading from the cache failed
        # (or it held .gz files), so an existing raw copy is damaged or stale.
        try:
            atomic_write_bytes(target, raw[key])
        except OSError as exc:
            print(
                f"fashionlab: warning: cannot keep a decoded copy at {target} "
                f"({exc.strerror or exc}); loads will stay slower (set FASHIONLAB_CACHE)",
                file=sys.stderr,
            )
            return False
    return True


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def _check_structure(
    img_path: Path, images: np.ndarray, lbl_path: Path, labels: np.ndarray
) -> None:
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{img_path}: images have shape {images.shape}, expected (N, 28, 28)")
    if images.dtype != np.uint8:
        raise DataError(f"{img_path}: element type {images.dtype}, expected uint8 (IDX type 0x08)")
    if labels.ndim != 1:
        raise DataError(f"{lbl_path}: labels have shape {labels.shape}, expected (N,)")
    # Float or wider labels would be truncated or wrapped silently by the int64 conversion.
    if labels.dtype != np.uint8:
        raise DataError(f"{lbl_path}: element type {labels.dtype}, expected uint8 (IDX type 0x08)")
    if len(images) != len(labels):
        raise DataError(
            f"{img_path}: {len(images)} images but {lbl_path.name} has {len(labels)} labels"
        )
    if len(labels) == 0:
        raise DataError(f"{lbl_path}: holds no items")
    bad = np.flatnonzero(labels > 9)
    if bad.size:
        first = int(bad[0])
        raise DataError(
            f"{lbl_path}: label {int(labels[first])} at item {first} outside 0..9 "
            f"({bad.size} such labels)"
        )


def candidate_sources(data_dir: str | Path | None = None) -> list[Source]:
    """The sources in the order they are tried (an explicit dir is the only one when given)."""
    explicit = data_dir or os.environ.get("FASHIONLAB_DATA")
    if explicit:
        return [Source("explicit", Path(explicit).expanduser())]
    # Looked up at call time so that tests (and embedders) can patch sources.DEBIAN_DIR.
    return [Source("cache", cache_dir()), Source("debian", _sources.DEBIAN_DIR)]


def load_fashion_mnist(
    data_dir: str | Path | None = None, verify: bool = True, download: bool = True
) -> FashionMNIST:
    """Find, verify and load Fashion-MNIST; loaded once per process and source.

    Sources: `data_dir` or FASHIONLAB_DATA (alone), else the cache, the Debian package, then a
    download into the cache. Raises `DataError` naming every source tried and the command that
    would fix it.
    """
    if not verify:
        print("fashionlab: warning: checksum verification is OFF", file=sys.stderr)
    failures = []
    for source in candidate_sources(data_dir):
        key = (str(source.path), verify)
        if key in _LOADED:
            return _LOADED[key]
        if source.kind != "explicit" and not source.path.is_dir():
            failures.append(f"{source.kind} {source.path}: not present")
            continue
        # The cache may hold downloaded .gz files; Debian only .gz: both get decoded copies.
        cache_to = cache_dir() if source.kind in ("cache", "debian") else None
        try:
            dataset, cached = _load(source.path, verify, cache_to)
        except DataError as exc:
            if source.kind == "explicit":
                raise
            failures.append(f"{source.kind}: {exc}")
            continue
        return _remember(key, dataset, cached, verify)
    if download:
        try:
            path = download_to_cache()
            dataset, cached = _load(path, verify, path)
            return _remember((str(path), verify), dataset, cached, verify)
        except DataError as exc:
            failures.append(f"download: {exc}")
    raise DataError(
        "Fashion-MNIST not found; tried " + "; ".join(failures) + f". Fix: {FIX_COMMAND}"
    )


def _remember(
    key: tuple[str, bool], dataset: FashionMNIST, cached: bool, verify: bool
) -> FashionMNIST:
    _LOADED[key] = dataset
    if cached:
        # The cache now holds exactly these verified bytes: a later call (which tries the cache
        # first) can reuse this copy instead of reading the files again.
        _LOADED[(str(cache_dir()), verify)] = dataset
    return dataset
