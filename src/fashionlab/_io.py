"""File system helpers every layer uses: atomic writes and the per-user cache folder.

Atomic writes go to a temp file in the same folder, fsync, then rename: a reader (or a crash)
never sees a half-written file; the destination holds the old content or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from fashionlab.errors import FashionlabError


class CannotWrite(FashionlabError, OSError):
    """A write was refused (permissions, a read-only file system, a missing folder, a full
    disk); the previous file, if any, is untouched. An OSError too, so callers that fall back
    when a write fails (the dataset cache) still do."""


class DiskFull(CannotWrite):
    """A write failed for lack of space; the previous file, if any, is untouched."""


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[BinaryIO]:
    """Open a temp file beside `path`; on clean exit it replaces `path` (file and folder
    fsynced), on error it is removed. A full disk is a one-line `DiskFull`."""
    with _replacing(Path(path)) as (fd, _tmp), os.fdopen(fd, mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def atomic_write_with(path: str | os.PathLike, writer: Callable[[str], None]) -> None:
    """For libraries that insist on writing to a path themselves (torch.save, np.savez, ...):
    `writer(tmp_path)` writes the temp file, which is fsynced and then replaces `path`."""
    with _replacing(Path(path)) as (fd, tmp):
        os.close(fd)
        writer(tmp)
        written = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(written)
        finally:
            os.close(written)


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[tuple[int, str]]:
    """A temp file beside `path` (descriptor, name) that replaces `path` on a clean exit, the
    folder's entry fsynced too, and is removed on any error; ENOSPC becomes `DiskFull`."""
    with _disk_errors(path):
        fd, tmp = _make_temp(path)
    try:
        with _disk_errors(path):
            yield fd, tmp
            os.replace(tmp, path)
            _fsync_folder(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _disk_errors(path: Path) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(
                f"{path}: no space left on the device; free some space, then run the "
                "command again (an interrupted run continues with --resume)"
            ) from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR):
            raise CannotWrite(
                f"{path}: cannot write it ({exc.strerror}); check the folder's permissions"
            ) from None
        raise
    except RuntimeError as exc:  # torch.save reports a failed write as a RuntimeError
        if "No space left" in str(exc) or "file write failed" in str(exc):
            raise DiskFull(
                f"{path}: the write failed (is the disk full?); free some space, then run "
                "the command again (an interrupted run continues with --resume)"
            ) from None
        raise


def _fsync_folder(folder: Path) -> None:
    """Make a rename durable: the folder's entry, not only the file's bytes."""
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return  # not every file system lets a folder be opened; the rename still happened
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Remove what a killed atomic write left in `folder` (our `.<name>.<random>.tmp` files);
    call it only while holding the folder, so no live write is touched."""
    removed = []
    for path in folder.glob(".*.tmp"):
        if path.is_file() and not path.is_symlink() and _TEMP_NAME.fullmatch(path.name):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
    return removed


# mkstemp's names: "." + the destination's name + "." + 8 random characters + ".tmp".
_TEMP_NAME = re.compile(r"\..+\.[A-Za-z0-9_]{8}\.tmp")


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


# YAML read from files a user may have been handed: a few hundred bytes of nested aliases can
# stand for billions of values once anything walks them, so the composed document is measured
# (aliases counted every time they are used) before a Python object is built from it.
MAX_YAML_BYTES = 1 << 20
MAX_YAML_VALUES = 100_000


class YamlTooLarge(ValueError):
    """A YAML document over the size limits; the message says which."""


def load_yaml(text: str) -> Any:
    """`yaml.safe_load(text)` within bounds: at most MAX_YAML_BYTES of text and MAX_YAML_VALUES
    values with every alias expanded (else `YamlTooLarge`); syntax errors are yaml.YAMLError."""
    import yaml

    if len(text) > MAX_YAML_BYTES:
        raise YamlTooLarge(f"larger than {MAX_YAML_BYTES // 1024} KiB")
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except RecursionError:
            raise YamlTooLarge("nested too deeply") from None
        if root is None:
            return None
        if _expanded_values(root, {}) > MAX_YAML_VALUES:
            raise YamlTooLarge(
                f"more than {MAX_YAML_VALUES:,} values once its aliases are expanded"
            )
        return loader.construct_document(root)
    finally:
        loader.dispose()


def _expanded_values(node: Any, seen: dict[int, int]) -> int:
    """Values in `node` with aliases expanded, counted in time linear in the document (a node
    reached again through an alias adds its known count) and capped just over the limit."""
    import yaml

    key = id(node)
    if key in seen:
        return seen[key]
    seen[key] = MAX_YAML_VALUES + 1  # a node that contains itself counts as too large
    count = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            count += _expanded_values(child, seen)
            if count > MAX_YAML_VALUES:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            count += _expanded_values(k, seen) + _expanded_values(v, seen)
            if count > MAX_YAML_VALUES:
                break
    seen[key] = min(count, MAX_YAML_VALUES + 1)
    return seen[key]


_PATH_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def check_path_component(name: str) -> str:
    """`name` if it is one safe folder name (letters, digits, '_', '.', '-'; not starting with
    '.' or '-'; at most 128 characters), else ValueError: names from configs and study files
    become folders, and must never climb out of, or replace, the folder they go in."""
    if not isinstance(name, str) or not _PATH_COMPONENT.fullmatch(name):
        shown = name if isinstance(name, str) and len(name) <= 60 else f"{str(name)[:57]}..."
        raise ValueError(
            f"{shown!r} is not a safe folder name: use letters, digits, '_', '.' and '-' "
            "(not first), at most 128 characters"
        )
    return name
