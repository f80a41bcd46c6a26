"""Compile fashionlab's C kernels on first use, cache the library, and load it.

Why compile at run time: the kernels are a few dozen lines of plain C with OpenMP loops, built
with `-O3 -march=native` so the compiler vectorises them for the CPU at hand (AVX-512 here);
a wheel built for every CPU would be slower or larger. A build takes under a second.

The library is cached under `$FASHIONLAB_NATIVE_CACHE` (default
`$XDG_CACHE_HOME/fashionlab/native`, i.e. `~/.cache/fashionlab/native`), named by a hash of
the source and the shared header, the compiler's version, the flags and the CPU's feature
flags, so a changed kernel, compiler or machine (a home directory shared across a cluster) gets
its own build. The file is
written to a temp name and renamed, so concurrent processes (DDP ranks) never load half a file.

Nothing here is required: without a C compiler, off Linux, with a PyTorch built without
OpenMP, or with `FASHIONLAB_NATIVE=0`, `load_kernel` returns None and callers use PyTorch's
own operators (the same values, more slowly). The reason is kept for `kernel_status`.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from fashionlab._io import user_cache_dir
from fashionlab._platform import cpuinfo_fields
from fashionlab._read import SMALL_TEXT, read_bytes

HERE = Path(__file__).resolve().parent
# GCC's -march=native prefers 256-bit vectors even on AVX-512 CPUs; for these short, memory-bound
# loops 512-bit ones were faster (docs/performance.md). Only a preference: no effect without
# AVX-512.
# -ffp-contract=off: the BatchNorm kernel repeats ATen's float arithmetic step by step, and a
# contracted multiply-add (GCC's default in GNU C) rounds once where ATen rounds twice.
FLAGS = (
    "-O3", "-march=native", "-mprefer-vector-width=512", "-ffp-contract=off",
    "-fPIC", "-shared", "-fopenmp",
)  # fmt: skip

_loaded: dict[str, ctypes.CDLL | None] = {}
_reasons: dict[str, str] = {}


def native_cache_dir() -> Path:
    return user_cache_dir("native", "FASHIONLAB_NATIVE_CACHE")


def load_kernel(name: str) -> ctypes.CDLL | None:
    """The compiled library for `accel/<name>.c`, built once per machine; None (and a reason
    in `kernel_status`) where it cannot be had. Cached per process."""
    if name not in _loaded:
        try:
            _loaded[name] = _build_and_load(name)
        except _Unavailable as why:
            _loaded[name], _reasons[name] = None, str(why)
    return _loaded[name]


def kernel_status(name: str) -> str:
    """One line for run metadata and benchmarks: where the kernel came from, or why not."""
    library = load_kernel(name)
    if library is None:
        return f"not used ({_reasons[name]})"
    return f"compiled ({library._name})"


def checked_kernel_status(
    name: str, checked: Callable[[], ctypes.CDLL | None], disagreement: str
) -> str:
    """`kernel_status` for a kernel that is checked against PyTorch before use (`checked()`
    returns the library, or None when it failed): a library that built but failed says so."""
    if load_kernel(name) is not None and checked() is None:
        return f"not used ({disagreement})"
    return kernel_status(name)


class _Unavailable(Exception):
    pass


def _build_and_load(name: str) -> ctypes.CDLL:
    if os.environ.get("FASHIONLAB_NATIVE", "1") == "0":
        raise _Unavailable("FASHIONLAB_NATIVE=0")
    if platform.system() != "Linux":
        raise _Unavailable(f"only built on Linux, this is {platform.system()}")
    if not torch.backends.openmp.is_available():
        # Without PyTorch's libgomp to share, the kernel's threads would compete with its own.
        raise _Unavailable("this PyTorch is not built with OpenMP")
    compiler = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc")]
    if not compiler[0]:
        raise _Unavailable("no C compiler (install gcc, or set CC)")
    source = HERE / f"{name}.c"
    try:
        version = subprocess.run(
            [*compiler, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise _Unavailable(f"{compiler[0]} --version failed: {exc}") from None
    # what the sources include
    headers = [read_bytes(h, SMALL_TEXT) for h in sorted(HERE.glob("*.h"))]
    key = hashlib.sha256(
        b"\0".join(
            [
                read_bytes(source, SMALL_TEXT),
                *headers,
                version.encode(),
                " ".join(FLAGS).encode(),
                _cpu_flags(),
            ]
        )
    ).hexdigest()[:16]
    target = native_cache_dir() / f"{name}-{key}.so"
    if not target.exists():
        _compile(compiler, source, target)
    try:
        return ctypes.CDLL(str(target))
    except OSError as exc:
        raise _Unavailable(f"could not load {target}: {exc}") from None


def _compile(compiler: list[str], source: Path, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise _Unavailable(f"cannot write the kernel cache {target.parent}: {exc}") from None
    try:
        done = subprocess.run(
            [*compiler, *FLAGS, str(source), "-o", tmp], capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise _Unavailable(f"{Path(compiler[0]).name} failed: {last}")
        os.replace(tmp, target)
    except (OSError, subprocess.SubprocessError) as exc:
        raise _Unavailable(f"{Path(compiler[0]).name} failed: {exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _cpu_flags() -> bytes:
    """The CPU's feature flags: `-march=native` code is only valid on CPUs that have them."""
    fields = cpuinfo_fields()
    flags = fields.get("flags") or fields.get("Features")
    return flags.encode() if flags else platform.processor().encode()
