"""Keep freed tensor memory in the process instead of returning it to the OS after every step.

glibc's malloc serves large requests (above M_MMAP_THRESHOLD: 128 KiB at start, then adapting)
with fresh mmap'd pages and unmaps them on free. A training step allocates and frees the same
multi-MB activation and gradient buffers every step, so every step paid a page fault per 4 KiB
on first touch; in a profile that showed up as `fill_` and `copy_` taking a large share of a
bf16 step. The thresholds below keep those pages mapped (docs/performance.md has the
measurements).

The cost is resident memory: pages freed by one step stay mapped for the next (up to the
trim threshold), which is what a training process wants. Set FASHIONLAB_SYSTEM_MALLOC=1 to
keep the C library's defaults (e.g. to measure the difference).
"""

from __future__ import annotations

import ctypes
import os
import platform

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# glibc caps M_MMAP_THRESHOLD at 32 MiB on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX); larger blocks
# are still mmap'd, which is fine: they are rare and their fault cost is small beside their use.
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 1024 * 1024 * 1024

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process; True when they are in effect.

    A no-op (False) off glibc, or when FASHIONLAB_SYSTEM_MALLOC=1."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get("FASHIONLAB_SYSTEM_MALLOC") == "1":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; both must hold for the reuse to work.
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )


def release_freed_memory() -> bool:
    """Hand freed heap pages back to the OS now (glibc's `malloc_trim(0)`); True if it ran.

    For long-lived servers after a large, rare allocation (a big upload's decode): glibc keeps
    freed heap memory for reuse, so without this a burst of big decodes would leave the
    process at its peak size. Never called while training, which wants the opposite."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True
