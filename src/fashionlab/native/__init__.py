"""Compiled kernels for the few operators where PyTorch's own leave the CPU idle.

Optional by design: every kernel has a PyTorch fallback with the same values (see build.py).
"""

from fashionlab.native.bernoulli import Dropout, bernoulli_status, dropout
from fashionlab.native.build import kernel_status, load_kernel, native_cache_dir
from fashionlab.native.pooling import MaxPool2d, max_pool_2x2, native_pool_applies, pool_relu
from fashionlab.native.status import kernel_statuses, unused_kernels_notice

__all__ = [
    "Dropout",
    "MaxPool2d",
    "bernoulli_status",
    "dropout",
    "kernel_status",
    "kernel_statuses",
    "load_kernel",
    "max_pool_2x2",
    "native_cache_dir",
    "native_pool_applies",
    "pool_relu",
    "unused_kernels_notice",
]
