"""Where the Fashion-MNIST files come from, in the order we try them.

1. an explicit directory (`--data-dir` or `FASHIONLAB_DATA`): used alone, never silently skipped;
2. the user cache (`FASHIONLAB_CACHE`, else `$XDG_CACHE_HOME/fashionlab/fashion-mnist`);
3. the Debian/Ubuntu package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist`);
4. a download from the official mirror into the cache: verified in memory, then written
   decompressed through a temp file and a rename.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from fashionlab._io import user_cache_dir
from fashionlab._read import read_bytes
from fashionlab.errors import DataError

# SHA-256 of the decompressed IDX bytes (the .gz files differ between sources).
FILES = {
    "train-images": (
        "train-images-idx3-ubyte",
        47_040_016,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    "train-labels": (
        "train-labels-idx1-ubyte",
        60_008,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    "test-images": (
        "t10k-images-idx3-ubyte",
        7_840_016,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    "test-labels": (
        "t10k-labels-idx1-ubyte",
        10_008,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
}

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEFAULT_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
FIX_COMMAND = "sudo apt-get install dataset-fashion-mnist  (or: fashionlab data fetch)"


@dataclass(frozen=True)
class Source:
    kind: str  # "explicit", "cache", "debian", "download"
    path: Path


def cache_dir() -> Path:
    return user_cache_dir("fashion-mnist", "FASHIONLAB_CACHE")


def mirror_url() -> str:
    # Overridable so tests (and users behind a proxy mirror) can point elsewhere.
    return os.environ.get("FASHIONLAB_MIRROR", DEFAULT_MIRROR).rstrip("/")


def find_file(directory: Path, stem: str) -> Path:
    """`stem` or `stem.gz` inside `directory`; raw wins when both exist (no decompression)."""
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.exists():
            return candidate
    raise DataError(f"{directory / stem}[.gz]: file not found")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_to_cache(cache: Path | None = None, timeout: float = 30.0) -> Path:
    """Download the four files into `cache` (default: the user cache), stored decompressed.

    Each file is verified in memory (SHA-256 of the decompressed bytes) before it is written,
    and written atomically: a failure leaves no partial or unverified file behind. Files that
    are already there and verified are not downloaded again. They are stored decompressed
    because every later load would otherwise pay for gunzip again (most of a load's time).
    """
    from fashionlab._io import atomic_write_bytes

    cache = cache or cache_dir()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=cache, prefix=".probe.", suffix=".tmp")
        probe.close()
    except OSError as exc:
        raise DataError(
            f"{cache}: cannot write there ({exc.strerror or exc}); "
            "set FASHIONLAB_CACHE to a writable folder or pass --data-dir"
        ) from None
    base = mirror_url()
    for stem, size, digest in FILES.values():
        target = cache / stem
        if _raw_matches(target, size, digest):
            continue
        url = f"{base}/{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
                payload = response.read()
        # HTTPException: a connection cut mid-body raises IncompleteRead, not an OSError.
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise DataError(f"download of {url} failed: {reason}") from None
        try:
            data = gzip.decompress(payload)
        # zlib.error: damaged deflate data (as opposed to a cut-off stream, EOFError).
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"download of {url}: corrupt gzip ({exc})") from None
        if len(data) != size or sha256_hex(data) != digest:
            raise DataError(f"download of {url}: checksum mismatch; the mirror served bad data")
        try:
            atomic_write_bytes(target, data)
        except OSError as exc:
            raise DataError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return cache


def _raw_matches(path: Path, size: int, digest: str) -> bool:
    # A damaged or foreign file already in place just means "download it again".
    try:
        if not path.is_file() or path.stat().st_size != size:
            return False
        return sha256_hex(read_bytes(path, size)) == digest
    except (OSError, ValueError):  # ValueError: not a regular file
        return False
