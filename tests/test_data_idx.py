"""IDX reading and the checks on a dataset folder: the real data's facts, and every kind of
damaged input giving one clear DataError that names the file."""

from __future__ import annotations

import gzip
import hashlib
import re
import struct

import numpy as np
import pytest
import torch

from fashionlab.data import CLASS_NAMES, encode_idx, load_fashion_mnist, parse_idx, read_idx
from fashionlab.data.idx import IDX_DTYPES
from fashionlab.data.sources import FILES
from fashionlab.errors import DataError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ------------------------------------------------------------------ the real dataset

# Copied from the publisher's checksums on purpose (not imported from sources.FILES): a typo in the
# table the loader uses must make this test fail, not silently agree with itself.
DATA_MD_SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


def test_checksum_table_matches_data_md() -> None:
    assert {stem: digest for stem, _size, digest in FILES.values()} == DATA_MD_SHA256


def test_real_dataset_is_verified_and_cached(fashion, session_cache) -> None:
    assert fashion.verified is True
    # The first load decoded the Debian .gz files and kept verified raw copies in the cache.
    for stem, digest in DATA_MD_SHA256.items():
        assert hashlib.sha256((session_cache / stem).read_bytes()).hexdigest() == digest


def test_real_dataset_shapes_counts_and_labels(fashion) -> None:
    assert fashion.train_images.shape == (60_000, 28, 28)
    assert fashion.test_images.shape == (10_000, 28, 28)
    assert fashion.train_images.dtype == fashion.test_images.dtype == torch.uint8
    assert fashion.train_labels.dtype == fashion.test_labels.dtype == torch.int64
    assert fashion.train_labels.shape == (60_000,) and fashion.test_labels.shape == (10_000,)
    assert fashion.num_classes == len(CLASS_NAMES) == 10
    for labels, per_class in ((fashion.train_labels, 6_000), (fashion.test_labels, 1_000)):
        assert labels.min() == 0 and labels.max() == 9
        assert torch.bincount(labels, minlength=10).tolist() == [per_class] * 10


def test_real_dataset_pixel_statistics(fashion) -> None:
    # Exact statistics from the 256-bin histogram (a float32 sum over 47M pixels would drift).
    counts = torch.bincount(fashion.train_images.reshape(-1), minlength=256).double()
    values = torch.arange(256, dtype=torch.float64) / 255
    mean = (counts * values).sum() / counts.sum()
    std = ((counts * (values - mean) ** 2).sum() / counts.sum()).sqrt()
    assert round(mean.item(), 4) == 0.2860
    assert round(std.item(), 4) == 0.3530


def test_loading_again_reuses_the_loaded_copy(fashion) -> None:
    # Loaded once per process: the cache (tried first) now holds these very bytes.
    assert load_fashion_mnist() is fashion


# ------------------------------------------------------------------ the IDX format


@pytest.mark.parametrize("code,dtype", sorted(IDX_DTYPES.items()))
def test_encode_parse_round_trip_every_type(code: int, dtype: np.dtype) -> None:
    array = (np.arange(24) - 5).astype(dtype.newbyteorder("=")).reshape(2, 3, 4)
    data = encode_idx(array)
    assert data[:4] == bytes([0, 0, code, 3])
    back = parse_idx(data)
    assert back.dtype == array.dtype and back.dtype.isnative
    np.testing.assert_array_equal(back, array)


def test_encode_writes_big_endian_header_and_data() -> None:
    data = encode_idx(np.array([[1, 258]], dtype=np.int32))
    assert data == (b"\x00\x00\x0c\x02" + struct.pack(">II", 1, 2) + struct.pack(">ii", 1, 258))


def test_encode_rejects_types_idx_cannot_hold() -> None:
    with pytest.raises(ValueError, match="int64"):
        encode_idx(np.zeros(3, dtype=np.int64))


def test_read_idx_raw_and_gzip_give_the_same_array(tmp_path) -> None:
    array = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    raw, gz = tmp_path / "raw-file", tmp_path / "looks-raw-but-is-gz"
    raw.write_bytes(encode_idx(array))
    # gzip is recognised by its magic bytes, not by the file name.
    gz.write_bytes(gzip.compress(encode_idx(array)))
    np.testing.assert_array_equal(read_idx(raw), array)
    np.testing.assert_array_equal(read_idx(gz), array)


@pytest.mark.parametrize(
    "data,words",
    [
        (b"\x00\x00\x08", "too short for an IDX header"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated header"),
        (b"\x08\x03\x00\x00" + bytes(12), "bad magic bytes 0803"),
        (b"\x00\x00\x0a\x01\x00\x00\x00\x00", "unknown IDX element type 0x0a"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", "truncated"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02", "trailing bytes"),
        # A forged header declaring 2**128 elements: must not overflow into a small number.
        (b"\x00\x00\x08\x04" + b"\xff\xff\xff\xff" * 4, "truncated"),
    ],
)
def test_parse_idx_rejects_malformed_bytes(data: bytes, words: str) -> None:
    with pytest.raises(DataError, match="^my-file: ") as info:
        parse_idx(data, name="my-file")
    assert words in str(info.value)


# ------------------------------------------------------------------ damaged dataset folders


@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no-verify"])
def test_damaged_input_gives_one_line_error_naming_file(
    bad_dataset, verify: bool, session_cache, assert_no_partial_files, capsys
) -> None:
    directory, bad_file, words = bad_dataset
    before = sorted(session_cache.iterdir()) if session_cache.exists() else []
    with pytest.raises(DataError) as info:
        load_fashion_mnist(directory, verify=verify)
    message = str(info.value)
    assert "\n" not in message
    assert str(bad_file) in message, message
    assert words in message, message
    # An explicit folder is never copied into the cache, damaged or not.
    assert (sorted(session_cache.iterdir()) if session_cache.exists() else []) == before
    assert_no_partial_files(session_cache)
    assert_no_partial_files(directory)
    capsys.readouterr()  # the --no-verify warning is tested in test_data_sources


def test_checksum_mismatch_names_file_and_fix(idx_dataset) -> None:
    directory = idx_dataset()
    with pytest.raises(DataError) as info:
        load_fashion_mnist(directory)
    message = str(info.value)
    assert str(directory / "train-images-idx3-ubyte") in message
    assert "checksum mismatch" in message and "--no-verify" in message
    assert "\n" not in message


def test_explicit_path_that_is_not_a_directory(tmp_path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    for path in (not_a_dir, tmp_path / "missing"):
        with pytest.raises(DataError, match=f"^{re.escape(str(path))}: not a directory"):
            load_fashion_mnist(path)


def test_raw_file_wins_over_gz_in_the_same_folder(idx_dataset) -> None:
    # Both present: the raw file is read (no decompression), so a broken .gz beside it is moot.
    directory = idx_dataset()
    (directory / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8bbroken")
    data = load_fashion_mnist(directory, verify=False)
    assert data.train_images.shape == (100, 28, 28)
