"""File system helpers every layer uses: atomic writes and the per-user cache folder.

Atomic writes go to a temp file in the same folder, fsync, then rename: a reader (or a crash)
never sees a half-written file; the destination holds the old content or the new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; on clean exit it replaces `path`, on error it is removed."""
    path = Path(path)
    fd, tmp = _make_temp(path)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_with(path: str | os.PathLike, writer: Callable[[str], None]) -> None:
    """For libraries that insist on writing to a path themselves (torch.save, np.savez, ...):
    `writer(tmp_path)` writes the temp file, which then replaces `path`."""
    fd, tmp = _make_temp(Path(path))
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _make_temp(path: Path) -> tuple[int, str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp creates 0600; give the file the permissions a plain open() would have.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, tmp


def _json_default(obj: Any) -> Any:
    # NumPy scalars and arrays appear in metrics; write them as plain JSON values.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def user_cache_dir(name: str, override_env: str) -> Path:
    """Where fashionlab keeps per-user files that can be rebuilt (the dataset cache, kernels):
    `$override_env` when set, else `$XDG_CACHE_HOME/fashionlab/<name>` (default
    `~/.cache/fashionlab/<name>`)."""
    if os.environ.get(override_env):
        return Path(os.environ[override_env]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fashionlab" / name
