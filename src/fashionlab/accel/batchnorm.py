"""Training-mode BatchNorm, and BatchNorm + ReLU, in compiled passes (see batchnorm.c).

PyTorch's channels-last BatchNorm and ReLU run far below memory speed on a 2-core CPU
(docs/performance.md), and S0-M2 has six of them. The kernel computes the same values with
ATen's own arithmetic, in its order, so outputs, gradients and running statistics are bit-
identical and seeded runs reproduce exactly with or without it.

That equality rests on how this PyTorch build compiled its kernels (where its compiler fused a
multiply and an add, which lanes it vectorised), so before the kernel is first trusted,
`_kernel` runs it against PyTorch's BatchNorm on small maps in both dtypes, with and without
the ReLU, channel counts with and without a partial vector; a build that differs in any bit
keeps PyTorch's operators.
"""

from __future__ import annotations

import ctypes
import functools

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.profiler import record_function

from fashionlab.accel.build import checked_kernel_status, load_kernel

_DTYPES = (torch.bfloat16, torch.float32)


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _like(x: torch.Tensor) -> torch.Tensor:
    """An empty tensor laid out as ATen lays out BatchNorm's outputs: channels-last, or plain
    contiguous for a map that is both (1x1 maps; the bytes are the same, the strides differ)."""
    if x.is_contiguous():
        return torch.empty_like(x, memory_format=torch.contiguous_format)
    return torch.empty_like(x, memory_format=torch.channels_last)


def _lanes(c: int) -> tuple[int, int]:
    """(nan_lanes, fused_lanes): the leading channels that ATen's AVX-512 build converts to
    bf16 in 16-lane vectors, and that its float backward computes in 8- or 16-lane vectors
    (found by comparing bits; the self-check confirms them for the build at hand)."""
    return c - c % 16, c - c % 8


def _run_forward(
    library: ctypes.CDLL, x: torch.Tensor, weight, bias, running_mean, running_var,
    momentum: float, eps: float, relu: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    n, c, h, w = x.shape
    y = _like(x)
    save_mean, save_invstd = torch.empty(c), torch.empty(c)
    threads = torch.get_num_threads()
    status = library.bn_forward(
        x.data_ptr(), y.data_ptr(), n * h * w, c, int(x.dtype == torch.bfloat16), int(relu),
        _ptr(weight), _ptr(bias), _ptr(running_mean), _ptr(running_var), momentum, eps,
        save_mean.data_ptr(), save_invstd.data_ptr(), threads, _lanes(c)[0], threads,
    )  # fmt: skip
    if status != 0:
        raise MemoryError("batchnorm kernel: out of memory")
    return y, save_mean, save_invstd


def _run_backward(
    library: ctypes.CDLL, x, y_relu, grad, weight, save_mean, save_invstd
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n, c, h, w = x.shape
    grad = grad.contiguous(memory_format=torch.channels_last)
    grad_in = _like(x)
    grad_weight, grad_bias = torch.empty(c), torch.empty(c)
    threads = torch.get_num_threads()
    nan_lanes, fused_lanes = _lanes(c)
    status = library.bn_backward(
        x.data_ptr(), _ptr(y_relu), grad.data_ptr(), grad_in.data_ptr(), n * h * w, c,
        int(x.dtype == torch.bfloat16), _ptr(weight), save_mean.data_ptr(),
        save_invstd.data_ptr(), grad_weight.data_ptr(), grad_bias.data_ptr(), threads,
        nan_lanes, fused_lanes, threads,
    )  # fmt: skip
    if status != 0:
        raise MemoryError("batchnorm kernel: out of memory")
    return grad_in, grad_weight, grad_bias


class _BatchNormReLU(torch.autograd.Function):
    """Training-mode batch_norm (running statistics updated in place), then ReLU when `relu`."""

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, momentum, eps, relu):
        library = _kernel()
        with record_function("fashionlab::batch_norm_forward"):  # named in profiles
            y, save_mean, save_invstd = _run_forward(
                library, x, weight, bias, running_mean, running_var, momentum, eps, relu
            )
        # Without the ReLU its output is not needed: saving only what backward reads.
        ctx.save_for_backward(x, y if relu else None, weight, save_mean, save_invstd)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, y_relu, weight, save_mean, save_invstd = ctx.saved_tensors
        with record_function("fashionlab::batch_norm_backward"):
            grad_in, grad_weight, grad_bias = _run_backward(
                _kernel(), x, y_relu, grad, weight, save_mean, save_invstd
            )
        return (
            grad_in,
            grad_weight if ctx.needs_input_grad[1] else None,
            grad_bias if ctx.needs_input_grad[2] else None,
            None, None, None, None, None,
        )  # fmt: skip


def _float_or_none(t: torch.Tensor | None) -> bool:
    return t is None or (t.dtype == torch.float32 and t.device.type == "cpu" and t.is_contiguous())


def native_batch_norm_applies(x: torch.Tensor, bn: nn.BatchNorm2d) -> bool:
    """Whether the kernel can stand in for `bn(x)`: a training-mode BatchNorm2d with float32
    parameters and statistics (or none) on a channels-last bf16/fp32 CPU map with more
    positions than threads (ATen takes another path below that), and a checked kernel."""
    return (
        bn.training
        and x.device.type == "cpu"
        and x.dtype in _DTYPES
        and x.dim() == 4
        and x.shape[1] == bn.num_features
        and x.is_contiguous(memory_format=torch.channels_last)
        and x.numel() // x.shape[1] > torch.get_num_threads()
        and (bn.weight is None) == (bn.bias is None)
        and all(_float_or_none(t) for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var))
        and _kernel() is not None
    )


def _momentum(bn: nn.BatchNorm2d) -> float:
    """nn.BatchNorm2d's own bookkeeping: count the batch, and the averaging factor it uses."""
    if bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:  # a cumulative moving average
            return 1.0 / float(bn.num_batches_tracked)
    return 0.0 if bn.momentum is None else bn.momentum


def batch_norm(bn: nn.BatchNorm2d, x: torch.Tensor, relu: bool = False) -> torch.Tensor:
    """`bn(x)` (then `relu`) through the kernel, for an `x` that native_batch_norm_applies to."""
    stats = bn.track_running_stats
    return _BatchNormReLU.apply(
        x, bn.weight, bn.bias, bn.running_mean if stats else None,
        bn.running_var if stats else None, _momentum(bn), bn.eps, relu,
    )  # fmt: skip


class KernelBatchNorm(nn.Module):
    """The training view's stand-in for a BatchNorm2d: `bn(x)` through the compiled kernel
    where it applies, on the BatchNorm's own parameters and statistics; `bn` itself elsewhere."""

    def __init__(self, bn: nn.BatchNorm2d) -> None:
        super().__init__()
        self.bn = bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if native_batch_norm_applies(x, self.bn):
            return batch_norm(self.bn, x)
        return self.bn(x)


class BatchNormReLU(nn.Module):
    """relu(bn(x)) in one kernel call each way, on the given BatchNorm's own parameters and
    statistics (the training view's stand-in for a BatchNorm followed by a ReLU)."""

    def __init__(self, bn: nn.BatchNorm2d, act: nn.ReLU) -> None:
        super().__init__()
        self.bn, self.act = bn, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if native_batch_norm_applies(x, self.bn):
            return batch_norm(self.bn, x, relu=True)
        return self.act(self.bn(x))


def _check_against_pytorch(library: ctypes.CDLL) -> bool:
    """Every output bit of the kernel against PyTorch's BatchNorm (+ ReLU), forward and
    backward, running statistics included, on a few small maps."""
    generator = torch.Generator().manual_seed(0)
    for dtype in _DTYPES:
        for c, relu in ((32, True), (20, False), (40, True)):
            shape = (5, c, 6, 6)
            x = torch.randn(shape, generator=generator).mul_(3).add_(1).to(dtype)
            x = x.contiguous(memory_format=torch.channels_last)
            grad = torch.randn(shape, generator=generator).to(dtype)
            grad = grad.contiguous(memory_format=torch.channels_last)
            weight = torch.randn(c, generator=generator)
            bias = torch.randn(c, generator=generator)
            mine_stats = [torch.rand(c, generator=generator), torch.rand(c, generator=generator)]
            theirs_stats = [t.clone() for t in mine_stats]
            y, mean, invstd = _run_forward(library, x, weight, bias, *mine_stats, 0.1, 1e-5, relu)
            mine = [y, *_run_backward(library, x, y if relu else None, grad, weight, mean, invstd)]
            xx, ww, bb = (t.detach().clone().requires_grad_() for t in (x, weight, bias))
            out = torch.nn.functional.batch_norm(xx, *theirs_stats, ww, bb, True, 0.1, 1e-5)
            if relu:
                out = torch.relu(out)
            theirs = [out.detach(), *torch.autograd.grad(out, (xx, ww, bb), grad)]
            for a, b in zip(mine + mine_stats, theirs + theirs_stats, strict=True):
                if a.dtype != b.dtype or not torch.equal(_bits(a), _bits(b)):
                    return False
    return True


def _bits(t: torch.Tensor) -> torch.Tensor:
    t = t.contiguous()
    return t.view(torch.int16 if t.dtype == torch.bfloat16 else torch.int32)


@functools.cache
def _kernel() -> ctypes.CDLL | None:
    """The library, declared and checked against PyTorch's own BatchNorm (once per process)."""
    library = load_kernel("batchnorm")
    if library is None:
        return None
    ptr, long_, int_, double = ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_double
    library.bn_forward.argtypes = [
        ptr, ptr, long_, long_, int_, int_, ptr, ptr, ptr, ptr, double, double, ptr, ptr,
        int_, long_, int_,
    ]  # fmt: skip
    library.bn_backward.argtypes = [
        ptr, ptr, ptr, ptr, long_, long_, int_, ptr, ptr, ptr, ptr, ptr, int_, long_, long_,
        int_,
    ]  # fmt: skip
    library.bn_forward.restype = library.bn_backward.restype = ctypes.c_int
    return library if _check_against_pytorch(library) else None


def batchnorm_status() -> str:
    """For run metadata: the library in use, or why PyTorch's BatchNorm is used instead."""
    return checked_kernel_status(
        "batchnorm", _kernel, "its results differ from this PyTorch's BatchNorm"
    )
