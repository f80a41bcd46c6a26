"""Where and in what precision a run computes, and the determinism it runs under."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from fashionlab.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return device


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes in bf16 natively (so bf16 autocast is faster, not emulated)."""
    if device.type == "cuda":
        # Plain is_bf16_supported() also says yes where bf16 is emulated (pre-Ampere GPUs),
        # which is slower than fp32: only native support counts.
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # a torch without the argument reports native support only
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return any(
            bool(getattr(cpu, probe, lambda: False)())
            for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        )
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' becomes 'bf16' on devices with native bf16 and 'fp32' elsewhere."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for a resolved precision of 'bf16'; a no-op context for 'fp32'."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision != "fp32":  # 'auto' must be resolved for the device first
        raise ValueError(f"precision must be 'fp32' or 'bf16' here, got {precision!r}")
    return contextlib.nullcontext()


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Deterministic kernels where PyTorch has them, so that one seed gives one history on
    CPU; the process's previous settings come back afterwards (a notebook or a server that
    trains a run keeps its own).

    Without PyTorch's debugging aid of filling every new tensor with NaN: each step's fresh
    activations and gradients would be written twice, and every kernel writes its whole
    output, so no result depends on that fill."""
    deterministic = torch.utils.deterministic
    previous = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        deterministic.fill_uninitialized_memory,
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
        deterministic.fill_uninitialized_memory = previous[2]
