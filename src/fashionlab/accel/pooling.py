"""ReLU(max_pool2d(x, 2, 2)), or max_pool2d(x, 2, 2) alone, in one compiled pass each way
(see pool_relu.c).

`pool_relu` serves the training view's conv -> max-pool -> ReLU stages; `KernelMaxPool` is the
training view's stand-in for any other 2x2 max-pool (the speed-run net pools before its
BatchNorm). PyTorch's channels-last max-pool writes int64 indices as large as its output and
zero-fills the whole input gradient before scattering into it; this kernel keeps a one-byte
code per output instead (timings: docs/performance.md). Values and gradients are
bit-identical to PyTorch's operators."""

from __future__ import annotations

import ctypes
import functools

import torch
from torch.autograd.function import once_differentiable
from torch.nn.modules.utils import _pair
from torch.profiler import record_function

from fashionlab.accel.build import load_kernel

_DTYPES = (torch.bfloat16, torch.float32)


@functools.cache
def _kernel() -> ctypes.CDLL | None:
    """The library with its C signatures declared (once per process), or None."""
    library = load_kernel("pool_relu")
    if library is not None:
        ptr, long_, int_ = ctypes.c_void_p, ctypes.c_long, ctypes.c_int
        shape = [long_, long_, long_, long_, int_]  # n, h, w, c, is_bf16
        library.pool_relu_forward.argtypes = [ptr, ptr, ptr, *shape, int_, int_]  # relu, threads
        library.pool_relu_backward.argtypes = [ptr, ptr, ptr, *shape, int_]  # threads
        library.pool_relu_forward.restype = library.pool_relu_backward.restype = None
    return library


def native_pool_applies(x: torch.Tensor, pool: torch.nn.MaxPool2d) -> bool:
    """Whether the kernel can stand in for `pool(x)` (and `pool_relu(x)` for `relu(pool(x))`):
    a 2x2, stride-2, unpadded, floor-mode max-pool of a channels-last bf16/fp32 CPU map, and a
    compiled kernel."""
    return (
        x.device.type == "cpu"
        and x.dtype in _DTYPES
        and x.dim() == 4
        and x.shape[2] >= 2
        and x.shape[3] >= 2
        and x.is_contiguous(memory_format=torch.channels_last)
        and _pair(pool.kernel_size) == (2, 2)
        and _pair(pool.stride or pool.kernel_size) == (2, 2)
        and _pair(pool.padding) == (0, 0)
        and _pair(pool.dilation) == (1, 1)
        and not pool.ceil_mode
        and not pool.return_indices
        and _kernel() is not None
    )


class _MaxPool2x2(torch.autograd.Function):
    """2x2 max-pool, followed by ReLU when `relu`, in one compiled pass each way."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, relu: bool) -> torch.Tensor:
        n, c, h, w = x.shape
        y = torch.empty((n, c, h // 2, w // 2), dtype=x.dtype, memory_format=torch.channels_last)
        # Per output element: which window input was the maximum, or 4 where ReLU cuts it.
        code = torch.empty((n, h // 2, w // 2, c), dtype=torch.uint8)
        with record_function("fashionlab::pool_relu_forward"):  # named in profiles
            _kernel().pool_relu_forward(
                x.data_ptr(), y.data_ptr(), code.data_ptr(), n, h, w, c,
                int(x.dtype == torch.bfloat16), int(relu), torch.get_num_threads(),
            )  # fmt: skip
        ctx.save_for_backward(code)
        ctx.input_shape = (n, c, h, w)
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (code,) = ctx.saved_tensors
        n, c, h, w = ctx.input_shape
        grad = grad.contiguous(memory_format=torch.channels_last)  # autograd: y's dtype
        grad_in = torch.empty((n, c, h, w), dtype=grad.dtype, memory_format=torch.channels_last)
        with record_function("fashionlab::pool_relu_backward"):
            _kernel().pool_relu_backward(
                code.data_ptr(), grad.data_ptr(), grad_in.data_ptr(), n, h, w, c,
                int(grad.dtype == torch.bfloat16), torch.get_num_threads(),
            )  # fmt: skip
        return grad_in, None


def pool_relu(x: torch.Tensor) -> torch.Tensor:
    """relu(max_pool2d(x, 2, 2)) for an `x` that `native_pool_applies` accepts."""
    return _MaxPool2x2.apply(x, True)


def max_pool_2x2(x: torch.Tensor) -> torch.Tensor:
    """max_pool2d(x, 2, 2) for an `x` that `native_pool_applies` accepts."""
    return _MaxPool2x2.apply(x, False)


class KernelMaxPool(torch.nn.Module):
    """The training view's stand-in for a MaxPool2d: the compiled 2x2 pool where it applies
    (training with gradients), `pool` itself elsewhere; the same values and gradients."""

    def __init__(self, pool: torch.nn.MaxPool2d) -> None:
        super().__init__()
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and torch.is_grad_enabled() and native_pool_applies(x, self.pool):
            return max_pool_2x2(x)
        return self.pool(x)
