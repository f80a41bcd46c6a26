"""What CPU this is: its model name and the matrix features that decide bf16 speed. Run
folders and benchmarks record it, because every speed (and, for bf16, the last digits of a
result) depends on it."""

from __future__ import annotations

import functools
import os
import platform
import time

from fashionlab._read import MiB, read_text

# The /proc/cpuinfo flags that make bf16 training fast rather than emulated.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.cache
def cpuinfo_fields() -> dict[str, str]:
    fields: dict[str, str] = {}
    try:
        for line in read_text("/proc/cpuinfo", 16 * MiB).splitlines():
            key, sep, value = line.partition(":")
            if sep and key.strip() not in fields:
                fields[key.strip()] = value.strip()
    except (OSError, ValueError):
        pass
    return fields


def cpu_model() -> str:
    """The CPU's model name, e.g. 'AMD EPYC', or the platform's processor string."""
    return cpuinfo_fields().get("model name") or platform.processor() or platform.machine()


def cpu_bf16_features() -> list[str]:
    """Which of `BF16_FLAGS` the CPU has (empty: bf16 is emulated, and slow)."""
    flags = set(cpuinfo_fields().get("flags", "").split())
    return [flag for flag in BF16_FLAGS if flag in flags]


def cpu_description() -> str:
    """Model name and bf16 features in one string, e.g. 'AMD EPYC (avx512_bf16, no AMX)'."""
    features = cpu_bf16_features()
    amx = "AMX" if "amx_bf16" in features else "no AMX"
    bf16 = "avx512_bf16" if "avx512_bf16" in features else "no avx512_bf16"
    return f"{cpu_model()} ({bf16}, {amx})"


def process_started() -> float:
    """When this process started, on the `time.monotonic()` clock (Linux: from /proc; elsewhere
    now): what a wall-time budget for a whole command counts from."""
    now = time.monotonic()
    try:
        fields = read_text("/proc/self/stat").rsplit(")", 1)[1].split()
        ticks_after_boot = int(fields[19])  # starttime, the 22nd field of stat(5)
        uptime = float(read_text("/proc/uptime").split()[0])
        age = uptime - ticks_after_boot / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return now
    return now - age if 0 <= age < 86_400 else now
