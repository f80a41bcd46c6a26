"""Reading IDX files (the MNIST container format), gzipped or raw, with strict checks.

Format: big-endian; two zero bytes, a type byte, a byte with the number of dimensions, one
uint32 per dimension, then the data. Only what we can trust is returned: the header must be
well-formed and the file must hold exactly the bytes it declares.
"""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np

from fashionlab._read import open_regular
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


# The largest IDX file a user may load with --no-verify (Fashion-MNIST's largest is 47 MB).
MAX_IDX_BYTES = 1 << 30
_CHUNK = 1 << 20
_HEAD = 4 + 4 * 255  # the longest IDX header


def read_idx_bytes(path: str | Path, max_bytes: int = MAX_IDX_BYTES) -> bytes:
    """The decompressed bytes of an IDX file (gzip is detected by its magic, not its name).

    Bounded: only a regular file is read (not a FIFO, a device, or a link to one), a gzip is
    decompressed as a stream, and reading stops one byte past the size its header declares or
    at `max_bytes`, whichever is smaller, so a small file cannot expand into gigabytes."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected an IDX file")
    try:
        with open_regular(path) as handle:
            return _read_bounded(handle, path, max_bytes)
    except ValueError:
        raise DataError(f"{path}: not a regular file; expected an IDX file") from None
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_bounded(handle, path: Path, max_bytes: int) -> bytes:
    first = handle.read(2)
    if not first:
        raise DataError(f"{path}: file is empty")
    gz = first == b"\x1f\x8b"
    inflate = zlib.decompressobj(wbits=31) if gz else None
    out = bytearray() if gz else bytearray(first)
    pending = first if gz else b""
    limit = max_bytes + 1  # until the header says how much there should be
    known = False
    while len(out) < limit:
        if inflate is not None and inflate.unconsumed_tail:
            chunk = inflate.unconsumed_tail
        else:
            chunk = pending or handle.read(_CHUNK)
            pending = b""
            if not chunk:
                break
        if inflate is None:
            out += chunk[: limit - len(out)]
        else:
            try:
                # At most a chunk of output per step: the header, read first, sets the limit.
                step = _CHUNK if known else _HEAD
                out += inflate.decompress(chunk, min(limit - len(out), step))
            except zlib.error as exc:
                raise DataError(
                    f"{path}: corrupt or truncated gzip ({exc}); delete it and fetch the data again"
                ) from None
        if inflate is not None and inflate.eof:
            break
        declared = None if known else _declared_size(bytes(out[:_HEAD]))
        if declared is not None:
            known = True
            if declared > max_bytes:
                raise DataError(
                    f"{path}: its header declares {declared:,} bytes, more than the "
                    f"{max_bytes:,} allowed for this file"
                )
            limit = declared + 1  # one more: enough to tell "trailing bytes" apart
    if inflate is not None and len(out) < limit and not inflate.eof:
        raise DataError(
            f"{path}: corrupt or truncated gzip (the stream ends early); delete it and fetch "
            "the data again"
        )
    if len(out) > max_bytes:
        raise DataError(f"{path}: larger than the {max_bytes:,} bytes allowed for this file")
    return bytes(out[:limit])


def _declared_size(head: bytes) -> int | None:
    """The total size an IDX header declares, once enough of it is there (None before, or for
    a malformed header, which `parse_idx` then reports)."""
    if len(head) < 4 or head[:2] != b"\x00\x00" or head[2] not in IDX_DTYPES or head[3] == 0:
        return None
    header_size = 4 + 4 * head[3]
    if len(head) < header_size:
        return None
    shape = struct.unpack(f">{head[3]}I", head[4:header_size])
    return header_size + math.prod(shape) * IDX_DTYPES[head[2]].itemsize


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
