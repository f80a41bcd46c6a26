"""Where the data comes from: explicit folder > cache > Debian package > download, the cache
kept verified and written atomically, and a user's own IDX data loaded only when asked."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fashionlab import _io as atomic
from fashionlab.data import encode_idx, load_fashion_mnist
from fashionlab.data import sources as sources_module
from fashionlab.data.sources import FILES, FIX_COMMAND, download_to_cache
from fashionlab.errors import DataError

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(
    not DEBIAN_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist"
)
STEMS = [stem for stem, _size, _digest in FILES.values()]
DIGESTS = {stem: digest for stem, _size, digest in FILES.values()}


def raw_sha256(path: Path) -> str:
    data = path.read_bytes()
    return hashlib.sha256(gzip.decompress(data) if path.suffix == ".gz" else data).hexdigest()


def make_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stems=STEMS) -> Path:
    """A file:// mirror holding copies of the Debian .gz files (the URL layout of the real one)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for stem in stems:
        shutil.copyfile(DEBIAN_DIR / f"{stem}.gz", mirror / f"{stem}.gz")
    monkeypatch.setenv("FASHIONLAB_MIRROR", mirror.as_uri())
    return mirror


pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ------------------------------------------------------------------ order of the sources


def test_explicit_dir_beats_cache_beats_debian(
    idx_dataset, isolated_sources, monkeypatch, capsys
) -> None:
    # Three different small datasets, told apart by their sizes.
    explicit = idx_dataset("explicit", n_train=30)
    idx_dataset("cache", n_train=40)
    debian = idx_dataset("debian", n_train=50)
    monkeypatch.setenv("FASHIONLAB_CACHE", str(explicit.parent / "cache"))
    monkeypatch.setattr(sources_module, "DEBIAN_DIR", debian)

    assert len(load_fashion_mnist(explicit, verify=False).train_labels) == 30
    assert len(load_fashion_mnist(verify=False).train_labels) == 40
    monkeypatch.setenv("FASHIONLAB_CACHE", str(explicit.parent / "empty-cache"))
    assert len(load_fashion_mnist(verify=False).train_labels) == 50
    capsys.readouterr()


def test_fashionlab_data_env_is_an_explicit_dir(
    idx_dataset, isolated_sources, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("FASHIONLAB_DATA", str(idx_dataset("mine", n_train=60)))
    monkeypatch.setattr(sources_module, "DEBIAN_DIR", idx_dataset("debian", n_train=50))
    assert len(load_fashion_mnist(verify=False).train_labels) == 60
    # A broken explicit folder is an error, never silently replaced by another source.
    broken = idx_dataset("broken")
    (broken / "train-labels-idx1-ubyte").unlink()
    monkeypatch.setenv("FASHIONLAB_DATA", str(broken))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.*file not found"):
        load_fashion_mnist(verify=False)
    capsys.readouterr()


def test_nothing_found_names_every_source_and_the_fix(isolated_sources, tmp_path) -> None:
    with pytest.raises(DataError) as info:
        load_fashion_mnist()
    message = str(info.value)
    assert "\n" not in message
    assert f"cache {isolated_sources}: not present" in message
    assert f"debian {tmp_path / 'no-debian'}: not present" in message
    assert f"download: download of {(tmp_path / 'no-mirror').as_uri()}/" in message
    assert FIX_COMMAND in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "fashionlab data fetch" in message


def test_damaged_debian_copy_is_reported_and_not_cached(
    idx_dataset, isolated_sources, monkeypatch, assert_no_partial_files
) -> None:
    debian = idx_dataset("debian", gz=True)
    (debian / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b\x08\x00truncated")
    monkeypatch.setattr(sources_module, "DEBIAN_DIR", debian)
    with pytest.raises(DataError, match="debian: .*t10k-images-idx3-ubyte.gz: corrupt or trunc"):
        load_fashion_mnist()
    # The download attempt may create the cache folder, but no file lands in it.
    assert not isolated_sources.exists() or list(isolated_sources.iterdir()) == []
    assert_no_partial_files(isolated_sources.parent)


# ------------------------------------------------------------------ the user's own data


def test_no_verify_loads_own_dataset_with_a_warning(idx_dataset, capsys) -> None:
    directory = idx_dataset("own", n_train=100, n_test=20, gz=True)
    data = load_fashion_mnist(directory, verify=False)
    assert capsys.readouterr().err.strip() == ("fashionlab: warning: checksum verification is OFF")
    assert data.verified is False
    assert data.source == str(directory.resolve())
    assert data.train_images.shape == (100, 28, 28) and data.test_images.shape == (20, 28, 28)
    assert data.train_labels.tolist() == [i % 10 for i in range(100)]
    # Remembered copies still warn: never silent.
    load_fashion_mnist(directory, verify=False)
    assert "verification is OFF" in capsys.readouterr().err


def test_verify_refuses_own_dataset(idx_dataset) -> None:
    directory = idx_dataset("own")
    with pytest.raises(DataError, match="checksum mismatch.*--no-verify"):
        load_fashion_mnist(directory, verify=True)


# ------------------------------------------------------------------ the cache


@needs_debian
def test_debian_load_repairs_a_damaged_cache(
    isolated_sources, monkeypatch, fashion, assert_no_partial_files
) -> None:
    monkeypatch.setattr(sources_module, "DEBIAN_DIR", DEBIAN_DIR)
    isolated_sources.mkdir(parents=True)
    # A stale, damaged copy (say, from a crash of an old version): it must not stick forever.
    (isolated_sources / "train-labels-idx1-ubyte").write_bytes(encode_idx(np.zeros(5, np.uint8)))
    data = load_fashion_mnist()
    assert data.source == str(DEBIAN_DIR)
    assert torch.equal(data.train_labels, fashion.train_labels)
    assert sorted(p.name for p in isolated_sources.iterdir()) == sorted(STEMS)
    for stem in STEMS:
        assert raw_sha256(isolated_sources / stem) == DIGESTS[stem]
    assert_no_partial_files(isolated_sources)


@needs_debian
def test_unwritable_cache_still_loads_from_debian_with_a_warning(
    tmp_path, isolated_sources, monkeypatch, fashion, capsys
) -> None:
    # We run as root, so chmod would not stop writes: a cache whose parent is a FILE does.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("FASHIONLAB_CACHE", str(blocker / "fashion-mnist"))
    monkeypatch.setattr(sources_module, "DEBIAN_DIR", DEBIAN_DIR)
    data = load_fashion_mnist()
    assert torch.equal(data.test_images, fashion.test_images)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("fashionlab: warning: ")
    assert str(blocker / "fashion-mnist") in err
    assert blocker.read_text() == "not a folder"


def test_unwritable_cache_with_nothing_else_is_an_error(tmp_path, isolated_sources, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = blocker / "fashion-mnist"
    monkeypatch.setenv("FASHIONLAB_CACHE", str(cache))
    with pytest.raises(DataError) as info:
        load_fashion_mnist()
    message = str(info.value)
    assert "\n" not in message
    assert f"{cache}: cannot write there (Not a directory)" in message
    with pytest.raises(DataError, match="cannot write there"):
        download_to_cache()


# ------------------------------------------------------------------ download


@needs_debian
def test_download_fills_the_cache_with_verified_files_atomically(
    tmp_path, isolated_sources, monkeypatch, fashion, assert_no_partial_files
) -> None:
    mirror = make_mirror(tmp_path, monkeypatch)
    replaced: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src, dst):
        replaced.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", spy)
    data = load_fashion_mnist()

    assert data.source == str(isolated_sources.resolve())
    assert torch.equal(data.train_images, fashion.train_images)
    assert torch.equal(data.test_labels, fashion.test_labels)
    # Stored decompressed (later loads skip gunzip), each verified against the published checksums.
    assert sorted(p.name for p in isolated_sources.iterdir()) == sorted(STEMS)
    for stem in STEMS:
        assert raw_sha256(isolated_sources / stem) == DIGESTS[stem]
    # Every file arrived by renaming a complete temp file that sat beside it.
    assert sorted(Path(dst).name for _src, dst in replaced) == sorted(STEMS)
    for src, dst in replaced:
        src_path, dst_path = Path(src), Path(dst)
        assert src_path.parent == dst_path.parent == isolated_sources
        assert src_path.name.startswith(f".{dst_path.name}.") and src_path.name.endswith(".tmp")
    assert_no_partial_files(isolated_sources)

    # Files already there and verified are not fetched again (the mirror is gone now).
    shutil.rmtree(mirror)
    assert download_to_cache() == isolated_sources


CORRUPT_PAYLOADS = {
    "html-error-page": b"<html><body>503 Service Unavailable</body></html>",
    "truncated-gzip": gzip.compress(bytes(range(256)) * 100)[:200],
    # Valid gzip header and trailer around garbage deflate data: zlib.error, not OSError.
    "damaged-deflate": gzip.compress(b"x" * 1000)[:10] + b"\xff" * 40 + b"\x00" * 8,
    "valid-idx-wrong-data": gzip.compress(encode_idx(np.zeros((3, 28, 28), np.uint8))),
}


@pytest.mark.parametrize("kind", list(CORRUPT_PAYLOADS))
def test_mirror_serving_a_corrupt_file_leaves_nothing_in_the_cache(
    kind, tmp_path, isolated_sources, monkeypatch, assert_no_partial_files
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "train-images-idx3-ubyte.gz").write_bytes(CORRUPT_PAYLOADS[kind])
    monkeypatch.setenv("FASHIONLAB_MIRROR", mirror.as_uri())
    with pytest.raises(DataError) as info:
        download_to_cache()
    message = str(info.value)
    assert "\n" not in message
    assert f"{mirror.as_uri()}/train-images-idx3-ubyte.gz" in message
    assert ("checksum mismatch" if kind == "valid-idx-wrong-data" else "corrupt gzip") in message
    assert list(isolated_sources.iterdir()) == []
    assert_no_partial_files(isolated_sources)


def test_mirror_failing_midway_keeps_only_verified_files(
    tmp_path, isolated_sources, monkeypatch, assert_no_partial_files
) -> None:
    # A small stand-in for the checksum table keeps this fast; the code path is the same.
    arrays = {
        key: np.full((3, 28, 28) if "images" in key else 3, i, np.uint8)
        for i, key in enumerate(FILES)
    }
    payloads = {FILES[key][0]: encode_idx(array) for key, array in arrays.items()}
    monkeypatch.setattr(
        sources_module,
        "FILES",
        {
            key: (stem, len(payloads[stem]), hashlib.sha256(payloads[stem]).hexdigest())
            for key, (stem, _size, _digest) in FILES.items()
        },
    )
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for stem in STEMS[:3]:
        (mirror / f"{stem}.gz").write_bytes(gzip.compress(payloads[stem]))
    # The first three files are good, the last one is damaged: what is kept is verified and
    # complete (so a retry resumes), and nothing of the damaged one is.
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(CORRUPT_PAYLOADS["truncated-gzip"])
    monkeypatch.setenv("FASHIONLAB_MIRROR", mirror.as_uri())
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz: corrupt gzip"):
        download_to_cache()
    assert sorted(p.name for p in isolated_sources.iterdir()) == sorted(STEMS[:3])
    for stem in STEMS[:3]:
        assert (isolated_sources / stem).read_bytes() == payloads[stem]
    assert_no_partial_files(isolated_sources)

    # A damaged file already in the cache is replaced by a good download, not trusted.
    (isolated_sources / STEMS[0]).write_bytes(b"garbage")
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(payloads[STEMS[3]]))
    download_to_cache()
    for stem in STEMS:
        assert (isolated_sources / stem).read_bytes() == payloads[stem]
