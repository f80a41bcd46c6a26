"""The run (or study) folder as a place on disk: claiming it, replacing it, knowing it is done.

- A folder is *claimed* by the command working in it: an exclusive, non-blocking `flock` on its
  `.lock` file, held until the command ends (the kernel releases it if the process dies), so of
  two commands started on one folder exactly one proceeds and the other is told which process
  holds it.
- fashionlab marks each folder it makes (`.fashionlab-run`, `.fashionlab-study`, ...); that
  marker is the only proof of ownership: `--overwrite` only ever empties a folder that holds
  it, never anything else a mistyped name points at. (A folder merely *looking* like a run,
  say one holding a `config.yaml`, may be a user's own, with their files beside it.)
- Nothing is written through a link: a subfolder fashionlab writes into (`figures/`, ...) that
  is a symbolic link is refused (`own_subfolder`), so a planted link cannot send writes out.
- The `complete` marker is written last, after every other file, so its presence is the one
  test of a finished run that every reader (study, evaluate, report, serve) uses.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from fashionlab._io import remove_stale_temp_files
from fashionlab.errors import RunError

COMPLETE_MARKER = "complete"
CHECKPOINT_FILE = "checkpoint.pt"  # an unfinished run's state (train.checkpoint writes it)
LOCK_FILE = ".lock"
RUN_MARKER = ".fashionlab-run"
STUDY_MARKER = ".fashionlab-study"
AUDIT_MARKER = ".fashionlab-audit"
SCOREBOARD_MARKER = ".fashionlab-scoreboard"
MARKERS = {
    "run": RUN_MARKER,
    "study": STUDY_MARKER,
    "audit": AUDIT_MARKER,
    "scoreboard": SCOREBOARD_MARKER,
}
# Folders beside run folders that hold copies of run files or an engine's own state (the local
# MLflow store's artefacts, Ray Tune's trial records), never runs of their own.
TRACKER_ARTIFACTS = "mlflow-artifacts"
NOT_RUN_FOLDERS = frozenset({TRACKER_ARTIFACTS, "mlruns", "ray"})


def is_complete(run_dir: str | Path) -> bool:
    """Whether the run in `run_dir` finished training and evaluation."""
    return (Path(run_dir) / COMPLETE_MARKER).exists()


def in_use(folder: Path) -> bool:
    """Whether another process holds `folder` (a training or study running there now). Only
    tests the lock; creates nothing, so listing runs never writes into them."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False  # no lock file: never claimed, or claimed by an older version
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EACCES)
    finally:
        os.close(fd)  # closing releases a lock we took
    return False


def _claim_bookkeeping(name: str, marker: str) -> bool:
    """The lock, or the marker while another process is writing it (its atomic write's
    temporary file): what a folder holds in the instant a concurrent claim has begun. Seen
    by a second command, that folder is in use, not foreign."""
    return name == LOCK_FILE or (name.startswith(f".{marker}.") and name.endswith(".tmp"))


@contextlib.contextmanager
def claim_folder(folder: Path, what: str = "run") -> Iterator[Path]:
    """Hold `folder` (created if missing) for this process until the block ends. A folder
    that holds anything fashionlab did not make is refused before anything is written in it."""
    marker = MARKERS.get(what, RUN_MARKER)
    if folder.exists() and not folder.is_dir():
        raise RunError(f"{folder}: exists and is not a folder; choose another name")
    if (
        folder.is_dir()
        and not is_ours(folder, marker)
        and any(not _claim_bookkeeping(p.name, marker) for p in folder.iterdir())
    ):
        raise RunError(
            f"{folder}: not a folder fashionlab made (no {marker} marker) and not empty; "
            "choose another name or folder"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise RunError(f"{folder}: cannot use it ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise RunError(
                f"{folder} is in use by process {holder} (a {what} is running there); "
                "wait for it to finish or choose another name"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        remove_stale_temp_files(folder)  # a killed write's leftovers; nobody else writes here
        yield folder
    finally:
        os.close(fd)


def prepare_folder(folder: Path, overwrite: bool, marker: str = RUN_MARKER) -> None:
    """Make a claimed `folder` ready for a new run: refuse to reuse one that holds a run unless
    `overwrite`, and then empty it only if fashionlab made it; mark it as ours."""
    contents = [p for p in folder.iterdir() if p.name != LOCK_FILE]
    if contents and not overwrite:
        state = "a finished run" if is_complete(folder) else "an unfinished run"
        raise RunError(
            f"{folder} already holds {state}; pass --overwrite to replace it"
            + ("" if state == "a finished run" else " or --resume to continue it")
        )
    if contents:
        if not is_ours(folder, marker):
            raise RunError(
                f"{folder}: not a folder fashionlab made (no {marker} marker); --overwrite "
                "only replaces those; move it away or choose another name"
            )
        for path in contents:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
    mark(folder, marker)


def is_ours(folder: Path, marker: str = RUN_MARKER) -> bool:
    """Whether fashionlab made `folder`: its marker, a regular file (not a link) in it."""
    path = folder / marker
    return path.is_file() and not path.is_symlink()


def require_ours(folder: Path, what: str = "run") -> None:
    """Refuse (RunError) to write into `folder` unless fashionlab made it as a `what` folder:
    commands that add files to an existing folder (report, robustness, export) call this."""
    marker = MARKERS[what]
    if not is_ours(folder, marker):
        raise RunError(
            f"{folder}: not a {what} folder fashionlab made (no {marker} marker); it writes "
            "only into its own folders"
        )


def mark(folder: Path, marker: str) -> None:
    (folder / marker).touch()


def own_subfolder(folder: Path, name: str) -> Path:
    """`folder/name`, created if missing, for fashionlab to write into; refused (RunError) when
    it is a link or not a folder, so nothing is ever written through a planted link."""
    sub = folder / name
    if sub.is_symlink() or (sub.exists() and not sub.is_dir()):
        raise RunError(
            f"{sub}: is a link or not a folder; fashionlab writes only into folders it made "
            "there: remove it, then run the command again"
        )
    try:
        sub.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"{sub}: cannot create it ({exc.strerror or exc})") from None
    return sub
