"""Which compiled kernels a process uses, for run metadata and for a note to the user."""

from __future__ import annotations

from fashionlab.accel.batchnorm import batchnorm_status
from fashionlab.accel.bernoulli import bernoulli_status
from fashionlab.accel.build import kernel_status


def kernel_statuses() -> dict[str, str]:
    """Per kernel, the library in use or why none (recorded in every run's env.json)."""
    return {
        "pool_relu": kernel_status("pool_relu"),
        "dropout_mask": bernoulli_status(),
        "batchnorm": batchnorm_status(),
    }


def unused_kernels_notice() -> str | None:
    """One line for the user when a compiled kernel could not be used for a reason they may
    want to fix (no compiler, a failed build); None when all are in use or turned off on
    purpose (FASHIONLAB_NATIVE=0)."""
    prefix = "not used ("
    statuses = kernel_statuses().values()
    reasons = {s[len(prefix) : -1] for s in statuses if s.startswith(prefix)}
    reasons.discard("FASHIONLAB_NATIVE=0")
    if not reasons:
        return None
    return (
        f"note: compiled kernels not used ({'; '.join(sorted(reasons))}); PyTorch's own "
        "operators give the same results, more slowly"
    )
