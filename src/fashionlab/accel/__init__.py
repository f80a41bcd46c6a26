"""Acceleration for training: compiled CPU kernels and the training view that uses them.

The model zoo is plain PyTorch; `training_view(model)` is the only way the kernels reach a
model, and only the training loop runs it. Every kernel is optional, checked against
PyTorch's own operator before first use, and gives bit-identical values and gradients; without
a C compiler (or with FASHIONLAB_NATIVE=0) PyTorch's operators run instead (see build.py).
"""

from fashionlab.accel.batchnorm import (
    BatchNormReLU,
    KernelBatchNorm,
    batch_norm,
    batchnorm_status,
    native_batch_norm_applies,
)
from fashionlab.accel.bernoulli import KernelDropout, bernoulli_status, dropout
from fashionlab.accel.build import kernel_status, load_kernel, native_cache_dir
from fashionlab.accel.layout import LayoutKeepingFlatten
from fashionlab.accel.pooling import KernelMaxPool, max_pool_2x2, native_pool_applies, pool_relu
from fashionlab.accel.status import kernel_statuses, unused_kernels_notice
from fashionlab.accel.view import PoolThenAct, training_view

__all__ = [
    "BatchNormReLU",
    "KernelBatchNorm",
    "KernelDropout",
    "KernelMaxPool",
    "LayoutKeepingFlatten",
    "PoolThenAct",
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
    "training_view",
    "unused_kernels_notice",
]
