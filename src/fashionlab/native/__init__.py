"""Compiled kernels for the few operators where PyTorch's own leave the CPU idle.

Optional by design: every kernel has a PyTorch fallback with the same values (see build.py).
"""

from fashionlab.native.batchnorm import (
    BatchNorm2d,
    BatchNormReLU,
    batch_norm,
    batchnorm_status,
    native_batch_norm_applies,
)
from fashionlab.native.bernoulli import Dropout, bernoulli_status, dropout
from fashionlab.native.build import kernel_status, load_kernel, native_cache_dir
from fashionlab.native.pooling import MaxPool2d, max_pool_2x2, native_pool_applies, pool_relu
from fashionlab.native.status import kernel_statuses, unused_kernels_notice

__all__ = [
    "BatchNorm2d",
    "BatchNormReLU",
    "Dropout",
    "MaxPool2d",
    "batch_norm",
    "batchnorm_status",
    "bernoulli_status",
    "dropout",
    "kernel_status",
    "kernel_statuses",
    "load_kernel",
    "max_pool_2x2",
    "native_batch_norm_applies",
    "native_cache_dir",
    "native_pool_applies",
    "pool_relu",
    "unused_kernels_notice",
]
