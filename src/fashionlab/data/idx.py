"""Reading IDX files (the MNIST container format), gzipped or raw, with strict checks.

Format: big-endian; two zero bytes, a type byte, a byte with the number of dimensions, one
uint32 per dimension, then the data. Only what we can trust is returned: the header must be
well-formed and the file must hold exactly the bytes it declares.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

from fashionlab.errors import DataError

# IDX type byte -> big-endian NumPy dtype.
IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx_bytes(path: str | Path) -> bytes:
    """The decompressed bytes of an IDX file (gzip is detected by its magic, not its name)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected an IDX file")
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not raw:
        raise DataError(f"{path}: file is empty")
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:
            raise DataError(
                f"{path}: corrupt or truncated gzip ({exc}); delete it and fetch the data again"
            ) from None
    return raw


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes into a native-endian array, checking header and size."""
    if len(data) < 4:
        raise DataError(f"{name}: too short for an IDX header ({len(data)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0:
        raise DataError(
            f"{name}: bad magic bytes {data[:2].hex()} (expected 0000): not an IDX file"
        )
    if dtype_code not in IDX_DTYPES:
        raise DataError(f"{name}: unknown IDX element type 0x{dtype_code:02x}")
    if ndim == 0:
        raise DataError(f"{name}: IDX header declares zero dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(f"{name}: truncated header ({len(data)} bytes, needs {header_size})")
    shape = struct.unpack(f">{ndim}I", data[4:header_size])
    dtype = IDX_DTYPES[dtype_code]
    # Python ints: np.prod would silently wrap around in int64 for a forged header.
    expected = header_size + math.prod(shape) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "has trailing bytes"
        raise DataError(
            f"{name}: {kind}: header declares shape {tuple(shape)} ({expected} bytes) "
            f"but the file holds {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | Path) -> np.ndarray:
    """Read a gzipped or raw IDX file into a NumPy array."""
    return parse_idx(read_idx_bytes(path), name=str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of `array` (used to write test fixtures and user datasets)."""
    codes = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
    native = np.dtype(array.dtype).newbyteorder("=")
    if native not in codes:
        raise ValueError(f"dtype {array.dtype} has no IDX type code")
    header = struct.pack(">HBB", 0, codes[native], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_DTYPES[codes[native]]).tobytes()
