"""Every read of a file fashionlab did not just write itself goes through here.

Run folders, study folders, audits and uploads may come from someone else, so each reader:
- opens regular files only, without blocking (a FIFO, a device or a socket is refused at once,
  checked with `fstat` on the opened descriptor, not on a name that could change);
- reads at most a size cap chosen per kind of file, before parsing anything;
- parses within bounds (JSON nesting depth, CSV field size and row count, NumPy archives
  checked member by member before decompression, PyTorch files with `weights_only`);
- turns every failure into `UnreadableFile`, one line that names the file and what to do.

`tests/test_architecture.py` walks the package for `open(`, `json.load`, `np.load(`,
`torch.load(` and `safe_open(` outside this module, so a new reader cannot bypass it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import warnings
import zipfile
from collections.abc import Mapping
from typing import Any, BinaryIO

from fashionlab.errors import FashionlabError, one_line

KiB = 1 << 10
MiB = 1 << 20
# Size caps by kind of file: generous for what fashionlab writes, far below what hurts.
SMALL_TEXT = 1 * MiB  # config.yaml, study files, metrics.json, env.json, model.json
LARGE_JSON = 64 * MiB  # study.json, scoreboards (every run's per-class numbers)
HISTORY_CSV = 16 * MiB  # one row per epoch
ARRAYS = 512 * MiB  # predictions.npz, cached features, NumPy model archives
WEIGHTS = 256 * MiB  # model.safetensors, checkpoint.pt (models are capped at 50M parameters)
FIGURE = 64 * MiB  # a PNG fashionlab drew
# JSON nested deeper than this is not something fashionlab wrote (its files nest 5 deep).
MAX_JSON_DEPTH = 64
MAX_CSV_FIELD = 64 * KiB
MAX_CSV_ROWS = 1_000_000


class UnreadableFile(FashionlabError, ValueError):
    """A file that is missing, not a regular file, too large or malformed; the message names
    it. A ValueError too, so callers that caught the old `ValueError` still do."""


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """`open(path, "rb")` for a regular file only (`UnreadableFile` otherwise; a missing file
    is FileNotFoundError). Opened without blocking, so a FIFO handed over as a file fails at
    once instead of waiting for a writer."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnreadableFile(f"{path}: not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, limit: int) -> bytes:
    """The whole content of a regular file of at most `limit` bytes. A missing file is
    FileNotFoundError (callers decide whether that is an error); everything else that stops
    the read is `UnreadableFile`."""
    try:
        with open_regular(path) as handle:
            data = handle.read(limit + 1)
    except (FileNotFoundError, UnreadableFile):
        raise
    except OSError as exc:  # permission, a folder, an I/O error
        raise UnreadableFile(f"{path}: cannot read it ({exc.strerror or one_line(exc)})") from None
    if len(data) > limit:
        raise UnreadableFile(f"{path}: larger than {_size(limit)}; refused")
    return data


def read_text(path: str | os.PathLike, limit: int = SMALL_TEXT) -> str:
    """A text file's content (UTF-8) within `limit` bytes."""
    data = read_bytes(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile(f"{path}: not UTF-8 text") from None


def read_json(path: str | os.PathLike, limit: int = SMALL_TEXT, expect: type = dict) -> Any:
    """A JSON document within `limit` bytes and MAX_JSON_DEPTH levels, of type `expect`."""
    text = read_text(path, limit)
    try:
        value = json.loads(text)
    except RecursionError:
        raise UnreadableFile(f"{path}: JSON nested too deeply; refused") from None
    except ValueError as exc:
        raise UnreadableFile(f"{path}: not readable JSON ({one_line(exc, 120)})") from None
    if _depth_over(value, MAX_JSON_DEPTH):
        raise UnreadableFile(f"{path}: JSON nested more than {MAX_JSON_DEPTH} levels; refused")
    if not isinstance(value, expect):
        raise UnreadableFile(
            f"{path}: expected a JSON {_json_kind(expect)}, found {_json_kind(type(value))}"
        )
    return value


def _depth_over(value: Any, limit: int) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return False


def _json_kind(kind: type) -> str:
    return {dict: "object", list: "array", str: "string"}.get(kind, kind.__name__)


def read_csv_rows(
    path: str | os.PathLike, limit: int = HISTORY_CSV, max_rows: int = MAX_CSV_ROWS
) -> list[dict[str, str]]:
    """A CSV file with a header row, as one dict per row, parsed row by row within bounds."""
    text = read_text(path, limit)
    rows: list[dict[str, str]] = []
    previous = csv.field_size_limit(MAX_CSV_FIELD)
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        for row in reader:
            if len(rows) >= max_rows:
                raise UnreadableFile(f"{path}: more than {max_rows:,} rows; refused")
            if None in row or None in row.values():
                raise UnreadableFile(
                    f"{path}:{reader.line_num}: the row does not match the header"
                )
            rows.append(row)
    except csv.Error as exc:
        raise UnreadableFile(f"{path}: not valid CSV ({one_line(exc, 120)})") from None
    finally:
        csv.field_size_limit(previous)
    return rows


def load_npz(
    path: str | os.PathLike, limit: int = ARRAYS, unpacked_limit: int = ARRAYS
) -> dict[str, Any]:
    """Every array of a `.npz` archive, without pickles; each member's declared size is
    checked before it is decompressed, so a small archive cannot unpack to gigabytes."""
    import numpy as np

    data = read_bytes(path, limit)
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise UnreadableFile(f"{path}: not an .npz archive")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            # Both the members' sizes and the shapes their .npy headers declare: NumPy
            # allocates the declared shape before it reads a byte of a member.
            members = archive.infolist()
            stored = sum(info.file_size for info in members)
            declared = 0
            for info in members:
                with archive.open(info) as member:
                    declared += _declared_bytes(member)
            if max(stored, declared) > unpacked_limit:
                raise UnreadableFile(
                    f"{path}: its arrays unpack to more than {_size(unpacked_limit)}; refused"
                )
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except UnreadableFile:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise UnreadableFile(f"{path}: corrupt ({one_line(exc, 120)})") from None


def npy_header(stream: BinaryIO) -> tuple[tuple[int, ...], Any]:
    """(shape, dtype) that an .npy stream's header declares, read before any of its data:
    NumPy allocates the declared shape before it reads, so callers check it first. A header
    NumPy cannot parse is a ValueError (NumPy itself raises several kinds)."""
    import numpy as np

    try:
        if np.lib.format.read_magic(stream) == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(stream)
    except Exception as exc:  # noqa: BLE001 - ValueError, SyntaxError, EOFError, ...
        raise ValueError(f"not an .npy header ({one_line(exc, 120)})") from None
    return tuple(shape), dtype


def _declared_bytes(member: BinaryIO) -> int:
    """The bytes an .npy member's header says its array holds."""
    shape, dtype = npy_header(member)
    product = 1
    for side in shape:
        product *= side
    return product * dtype.itemsize


def torch_load(path: str | os.PathLike, limit: int = WEIGHTS, map_location: Any = "cpu") -> Any:
    """`torch.load(weights_only=True)` of a regular file within `limit` bytes: tensors and
    plain containers only, never code. PyTorch's warnings about a refused file are kept out
    of the user's terminal: the refusal is the message."""
    import pickle

    import torch

    data = read_bytes(path, limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise UnreadableFile(f"{path}: not a file of tensors ({one_line(exc, 160)})") from None


def safetensors_header(path: str | os.PathLike, limit: int = 16 * MiB) -> dict[str, Any]:
    """The JSON header of a `.safetensors` file (names, dtypes, shapes), read without loading
    any tensor: the first 8 bytes give its length, which must fit the file and `limit`."""
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(8)
            if len(head) < 8:
                raise UnreadableFile(f"{path}: truncated (no safetensors header)")
            length = int.from_bytes(head, "little")
            if length > min(limit, size - 8):
                raise UnreadableFile(f"{path}: its header claims {length:,} bytes; refused")
            raw = handle.read(length)
    except (FileNotFoundError, UnreadableFile):
        raise
    except OSError as exc:
        raise UnreadableFile(f"{path}: cannot read it ({exc.strerror or one_line(exc)})") from None
    try:
        header = json.loads(raw)
    except (RecursionError, ValueError):
        raise UnreadableFile(f"{path}: its safetensors header is not valid JSON") from None
    if not isinstance(header, dict) or _depth_over(header, 4):
        raise UnreadableFile(f"{path}: its safetensors header is not a mapping of tensors")
    return header


def load_safetensors(path: str | os.PathLike, limit: int = WEIGHTS) -> dict[str, Any]:
    """Every tensor of a `.safetensors` file within `limit` bytes (PyTorch tensors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    data = read_bytes(path, limit)
    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise UnreadableFile(f"{path}: corrupt weights ({one_line(exc, 160)})") from None


def check_fields(
    values: Mapping[str, Any], expected: Mapping[str, type | tuple[type, ...]], where: str
) -> None:
    """Refuse `values` (read from `where`) when a key in `expected` holds a value of another
    type: a file edited by hand must be a one-line error, not a TypeError deep in a report.
    Absent keys are left to the caller; bool is not accepted as a number."""
    for key, kinds in expected.items():
        if key not in values or values[key] is None:
            continue
        value = values[key]
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            shown = [k for k in kinds if not (k is int and float in kinds)]  # both: "a number"
            names = " or ".join(_ARTICLED.get(k, k.__name__) for k in shown)
            raise UnreadableFile(f"{where}: '{key}' must be {names}, not {value!r:.40}")


_ARTICLED = {
    dict: "an object",
    list: "an array",
    str: "a string",
    float: "a number",
    int: "an integer",
    bool: "true or false",
    type(None): "null",
}


def _size(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit >= MiB else f"{limit // KiB} KiB"
