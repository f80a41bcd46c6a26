"""The compiled kernels (pool+ReLU, dropout masks, BatchNorm+ReLU): bit-identical to PyTorch's
operators, cached, and optional."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fashionlab.accel import (
    KernelBatchNorm,
    KernelDropout,
    KernelMaxPool,
    bernoulli_status,
    build,
    dropout,
    max_pool_2x2,
    native_pool_applies,
    pool_relu,
    unused_kernels_notice,
)
from fashionlab.accel import batchnorm as batchnorm_module
from fashionlab.accel import bernoulli as bernoulli_module
from fashionlab.accel import pooling as pool_relu_module

needs_compiler = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"
)


def _skip_unless_checked(kernel, status) -> None:
    """Skip a test of a kernel's behaviour where it is not in use: no compiler, or its
    first-use check against this PyTorch rejected it (another CPU or PyTorch build). Training
    then uses PyTorch's operator, which test_training's fallback test covers."""
    if kernel() is None:
        pytest.skip(f"kernel not in use on this machine: {status()}")


@pytest.fixture
def dropout_kernel() -> None:
    _skip_unless_checked(bernoulli_module._kernel, bernoulli_status)


@pytest.fixture
def batchnorm_kernel() -> None:
    _skip_unless_checked(batchnorm_module._kernel, batchnorm_module.batchnorm_status)


@pytest.fixture
def pool_kernel() -> None:
    _skip_unless_checked(pool_relu_module._kernel, lambda: build.kernel_status("pool_relu"))


@pytest.fixture
def fresh_kernels(monkeypatch, tmp_path):
    """An empty kernel cache and no library loaded in this process yet."""
    monkeypatch.setenv("FASHIONLAB_NATIVE_CACHE", str(tmp_path / "native"))
    monkeypatch.setattr(build, "_loaded", {})
    monkeypatch.setattr(build, "_reasons", {})
    kernels = (pool_relu_module._kernel, bernoulli_module._kernel, batchnorm_module._kernel)
    for kernel in kernels:
        kernel.cache_clear()
    yield tmp_path / "native"
    for kernel in kernels:
        kernel.cache_clear()  # later tests load from the real cache again


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The raw bytes, in NHWC order: -0.0 differs from 0.0 and NaN equals itself."""
    return t.detach().permute(0, 2, 3, 1).contiguous().view(torch.uint8)


def _with_edge_cases(shape, dtype) -> torch.Tensor:
    torch.manual_seed(0)
    # Halves in [-1.5, 1.5]: ties inside a window are common, and exact zeros.
    x = torch.randint(-3, 4, shape).float() / 2
    x[0, 0, 0, 0] = -0.0  # ReLU keeps -0.0; its gradient there is zero
    x[0, 1, 0, 0] = float("nan")  # a NaN wins its window
    x[0, 1, 1, 1] = float("nan")  # ...and a later NaN wins over an earlier one
    return x.to(dtype).contiguous(memory_format=torch.channels_last)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape", [(4, 8, 24, 24), (3, 5, 7, 9), (2, 64, 11, 11), (1, 3, 2, 3)])
@pytest.mark.parametrize("relu", [True, False], ids=["pool_relu", "pool"])
def test_pool_relu_matches_pytorch_to_the_bit(fresh_kernels, pool_kernel, dtype, shape, relu):
    x0 = _with_edge_cases(shape, dtype)
    assert native_pool_applies(x0, torch.nn.MaxPool2d(2))
    grad = torch.randn(shape[0], shape[1], shape[2] // 2, shape[3] // 2).to(dtype)
    grad[0, 2 % shape[1], 0, 0] = -0.0  # PyTorch's backward turns a -0.0 gradient into 0.0
    grad = grad.contiguous(memory_format=torch.channels_last)
    results = []
    ops = (lambda t: F.relu(F.max_pool2d(t, 2, 2)), pool_relu)
    if not relu:  # the speed-run net's pool, before its BatchNorm
        ops = (lambda t: F.max_pool2d(t, 2, 2), max_pool_2x2)
    for op in ops:
        x = x0.detach().requires_grad_()
        y = op(x)
        y.backward(grad)
        results.append((y, x.grad))
    (y_ref, g_ref), (y_ours, g_ours) = results
    assert y_ours.is_contiguous(memory_format=torch.channels_last)
    assert g_ours.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(y_ref.isnan(), y_ours.isnan())
    finite = ~y_ref.isnan()
    assert torch.equal(_bits(y_ref)[finite.permute(0, 2, 3, 1).repeat_interleave(
        y_ref.element_size(), -1)], _bits(y_ours)[finite.permute(0, 2, 3, 1).repeat_interleave(
        y_ref.element_size(), -1)])  # fmt: skip
    assert torch.equal(_bits(g_ref), _bits(g_ours))


@needs_compiler
def test_only_plain_2x2_pools_of_channels_last_maps_are_taken(fresh_kernels, pool_kernel):
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    assert native_pool_applies(x, torch.nn.MaxPool2d(2))
    assert native_pool_applies(x, torch.nn.MaxPool2d((2, 2), stride=2))
    assert not native_pool_applies(x.contiguous(), torch.nn.MaxPool2d(2))  # NCHW
    assert not native_pool_applies(x.double(), torch.nn.MaxPool2d(2))
    assert not native_pool_applies(x, torch.nn.MaxPool2d(3))
    assert not native_pool_applies(x, torch.nn.MaxPool2d(2, stride=1))
    assert not native_pool_applies(x, torch.nn.MaxPool2d(2, padding=1))
    assert not native_pool_applies(x, torch.nn.MaxPool2d(2, ceil_mode=True))
    assert not native_pool_applies(torch.randn(2, 4, 1, 8), torch.nn.MaxPool2d(2))


@needs_compiler
def test_the_library_is_built_once_and_reused(fresh_kernels, monkeypatch) -> None:
    assert build.load_kernel("pool_relu") is not None
    built = list(fresh_kernels.glob("pool_relu-*.so"))
    assert len(built) == 1 and not list(fresh_kernels.glob(".*tmp"))
    assert build.kernel_status("pool_relu") == f"compiled ({built[0]})"
    # A new process (here: an emptied in-process cache) loads the file instead of compiling.
    monkeypatch.setattr(build, "_loaded", {})
    monkeypatch.setattr(build, "_compile", lambda *a: pytest.fail("compiled again"))
    assert build.load_kernel("pool_relu") is not None


@needs_compiler
def test_a_changed_shared_header_rebuilds_the_kernels(fresh_kernels, monkeypatch, tmp_path):
    # kernels.h is part of every kernel's build key: editing it must not load a stale library.
    sources = tmp_path / "src"
    shutil.copytree(Path(build.__file__).parent, sources, ignore=shutil.ignore_patterns("*.py*"))
    monkeypatch.setattr(build, "HERE", sources)
    assert build.load_kernel("pool_relu") is not None
    header = sources / "kernels.h"
    header.write_text(header.read_text() + "/* edited */\n")
    monkeypatch.setattr(build, "_loaded", {})
    assert build.load_kernel("pool_relu") is not None
    assert len(list(fresh_kernels.glob("pool_relu-*.so"))) == 2


def _mapped_openmp_runtimes() -> set[str]:
    return set(re.findall(r"\S*libgomp[^\s/]*\.so[^\s/]*", Path("/proc/self/maps").read_text()))


@needs_compiler
def test_the_kernel_shares_pytorchs_openmp_runtime(fresh_kernels) -> None:
    # A second OpenMP runtime (the system's libgomp) would mean a second thread pool fighting
    # PyTorch's over the cores. (scikit-learn's wheel brings its own, under another name.)
    torch.ones(1000).sum()
    before = _mapped_openmp_runtimes()
    assert build.load_kernel("pool_relu") is not None
    after = _mapped_openmp_runtimes()
    assert after == before
    assert not [path for path in after if path.startswith(("/lib", "/usr/lib"))]


def test_without_a_compiler_the_pytorch_ops_are_used(fresh_kernels, monkeypatch) -> None:
    monkeypatch.setenv("CC", str(fresh_kernels / "no-such-compiler"))
    assert build.load_kernel("pool_relu") is None
    assert build.kernel_status("pool_relu").startswith("not used (")
    assert not native_pool_applies(
        torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last),
        torch.nn.MaxPool2d(2),
    )
    assert not list(fresh_kernels.glob("*"))  # no half-written library left behind


def test_a_failing_build_is_reported_and_leaves_nothing(fresh_kernels, monkeypatch, tmp_path):
    failing = tmp_path / "cc"
    failing.write_text("#!/bin/sh\n[ \"$1\" = --version ] && exit 0\necho 'boom' >&2; exit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("CC", str(failing))
    assert build.load_kernel("pool_relu") is None
    assert build.kernel_status("pool_relu") == "not used (cc failed: boom)"
    assert not list(fresh_kernels.glob("*"))


def test_native_kernels_can_be_turned_off(fresh_kernels, monkeypatch) -> None:
    monkeypatch.setenv("FASHIONLAB_NATIVE", "0")
    assert build.kernel_status("pool_relu") == "not used (FASHIONLAB_NATIVE=0)"


def _dropout_both_ways(x0: torch.Tensor, p: float, module: bool = False):
    """(output, input gradient, generator state after) from PyTorch's dropout and from ours,
    each from the same generator state."""
    torch.manual_seed(7)
    torch.rand(5)  # start mid-block, not at a fresh seed's first refill
    start = torch.get_rng_state()
    results = []
    ours = KernelDropout(torch.nn.Dropout(p)) if module else (lambda t: dropout(t, p))
    for op in (lambda t: F.dropout(t, p, training=True), ours):
        torch.set_rng_state(start)
        x = x0.detach().requires_grad_()
        y = op(x)
        y.backward(torch.linspace(-2, 2, y.numel()).reshape(y.shape).to(y.dtype))
        results.append((y.detach(), x.grad, torch.get_rng_state()))
    return results


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(
    "shape, channels_last",
    [((128, 32, 14, 14), True), ((128, 128), False), ((8, 5, 11, 13), True), ((4099,), False)],
)
@pytest.mark.parametrize("p", [0.05, 0.25, 0.5])
def test_dropout_matches_pytorch_to_the_bit(
    fresh_kernels, dropout_kernel, dtype, shape, channels_last, p
):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    (y_ref, g_ref, s_ref), (y, g, s) = _dropout_both_ways(x, p)
    bits = lambda t: t.contiguous().view(torch.uint8)  # noqa: E731 (-0.0 differs from 0.0)
    assert torch.equal(bits(y), bits(y_ref)) and torch.equal(bits(g), bits(g_ref))
    assert y.stride() == y_ref.stride()
    assert torch.equal(s, s_ref)  # the generator moved exactly as far: later draws agree
    if y.numel() > 1000:
        assert 0 < (y == 0).float().mean() < 1  # a real mask was drawn


@needs_compiler
def test_dropout_module_and_its_fallbacks_match_pytorch(fresh_kernels, dropout_kernel) -> None:
    x = torch.randn(16, 6, 9, 9)
    assert bernoulli_module._applies(x)
    (y_ref, g_ref, s_ref), (y, g, s) = _dropout_both_ways(x, 0.3, module=True)
    assert torch.equal(y, y_ref) and torch.equal(g, g_ref) and torch.equal(s, s_ref)
    # PyTorch's own path: a non-dense input, a dtype the kernel does not write, a small mask,
    # p of 0 or 1.
    assert not bernoulli_module._applies(torch.empty(64, 63))
    for odd, p in ((x[:, :, ::2], 0.3), (x.double(), 0.3), (x[:2], 0.3), (x, 0.0), (x, 1.0)):
        (y_ref, _, s_ref), (y, _, s) = _dropout_both_ways(odd, p)
        assert torch.equal(y, y_ref) and torch.equal(s, s_ref)
    module = KernelDropout(torch.nn.Dropout(0.3)).eval()
    assert module(x) is x or torch.equal(module(x), x)
    assert module.state_dict() == {}


def test_a_kernel_that_disagrees_with_pytorch_is_not_used(fresh_kernels, monkeypatch) -> None:
    monkeypatch.setattr(bernoulli_module, "_matches_pytorch", lambda library: False)
    if build.load_kernel("bernoulli") is None:
        pytest.skip("no C compiler: nothing to check")
    assert bernoulli_status() == "not used (its draws differ from this PyTorch's bernoulli_)"
    x = torch.randn(8, 16)
    (y_ref, _, s_ref), (y, _, s) = _dropout_both_ways(x, 0.5)
    assert torch.equal(y, y_ref) and torch.equal(s, s_ref)  # PyTorch's dropout ran


def test_dropout_masks_without_a_compiler_come_from_pytorch(fresh_kernels, monkeypatch) -> None:
    monkeypatch.setenv("FASHIONLAB_NATIVE", "0")
    assert bernoulli_status() == "not used (FASHIONLAB_NATIVE=0)"
    (y_ref, _, s_ref), (y, _, s) = _dropout_both_ways(torch.randn(8, 16), 0.5)
    assert torch.equal(y, y_ref) and torch.equal(s, s_ref)


@pytest.mark.slow
def test_the_user_is_told_when_the_kernels_cannot_be_built(fresh_kernels, monkeypatch, capsys):
    from fashionlab.cli import main

    monkeypatch.setenv("CC", str(fresh_kernels / "no-such-compiler"))
    notice = unused_kernels_notice()
    assert notice is not None and notice.startswith("note: compiled kernels not used (")
    assert "no-such-compiler" in notice and "same results" in notice
    runs = fresh_kernels.parent / "runs"
    argv = ["train", "--model", "s4-ann", "--epochs", "1", "--train-subset", "128"]
    assert main([*argv, "--eval-subset", "100", "--runs-dir", str(runs)]) == 0
    assert notice in capsys.readouterr().err.splitlines()


@pytest.mark.slow
def test_no_notice_when_the_kernels_run_or_are_turned_off(fresh_kernels, monkeypatch) -> None:
    if build.load_kernel("pool_relu") is not None:
        assert unused_kernels_notice() is None
    monkeypatch.setenv("FASHIONLAB_NATIVE", "0")
    monkeypatch.setattr(build, "_loaded", {})
    bernoulli_module._kernel.cache_clear()
    assert unused_kernels_notice() is None  # the user chose it: nothing to fix


@needs_compiler
def test_the_max_pool_module_trains_through_the_kernel_only(
    fresh_kernels, pool_kernel, monkeypatch
) -> None:
    pool = KernelMaxPool(torch.nn.MaxPool2d(2))
    calls = []
    monkeypatch.setattr(
        pool_relu_module, "max_pool_2x2", lambda t: calls.append(1) or t[..., ::2, ::2]
    )
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    pool(x.requires_grad_())
    assert calls == [1]
    with torch.no_grad():
        pool(x)  # no backward to speed up: PyTorch's op
    pool.eval()(x)  # evaluation: PyTorch's op
    assert calls == [1]


# -- BatchNorm (+ ReLU) ---------------------------------------------------------------------------
# The comparisons use the kernel cache as it is (a fresh one per test would compile the library
# again for each of the hundred cases); the build and fallback tests take `fresh_kernels`.


def _batch_norms(c: int, momentum: float | None = 0.1, **kwargs):
    """Two nn.BatchNorm2d with equal, non-trivial parameters and statistics: PyTorch's, and
    the one the kernel will run on."""
    torch.manual_seed(3)
    theirs = torch.nn.BatchNorm2d(c, momentum=momentum, **kwargs)
    if theirs.affine:
        torch.nn.init.normal_(theirs.weight)
        torch.nn.init.normal_(theirs.bias)
    if theirs.track_running_stats:
        theirs.running_mean.normal_()
        theirs.running_var.uniform_(0.5, 2.0)
        theirs.num_batches_tracked.fill_(4)
    ours = torch.nn.BatchNorm2d(c, momentum=momentum, **kwargs)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _batch_norm_both_ways(x0, theirs, ours, relu: bool, grad):
    """Per module: (output, input gradient, parameter gradients, state dict after)."""
    results = []
    fused = batchnorm_module.BatchNormReLU(ours, torch.nn.ReLU())
    for op, module in (
        ((lambda t: torch.relu(theirs(t))) if relu else theirs, theirs),
        (fused if relu else KernelBatchNorm(ours), ours),
    ):
        x = x0.detach().clone().requires_grad_()
        y = op(x)
        y.backward(grad)
        grads = [p.grad for p in module.parameters()]
        results.append((y.detach(), x.grad, grads, module.state_dict()))
    return results


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.contiguous(), b.contiguous()
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point():
        a, b = a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)  # -0.0 != 0.0
    return torch.equal(a, b)


def _assert_batch_norms_agree(x, theirs, ours, relu) -> None:
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(5)).to(x.dtype)
    grad = grad.contiguous(memory_format=torch.channels_last)
    (y_ref, g_ref, p_ref, s_ref), (y, g, p, s) = _batch_norm_both_ways(x, theirs, ours, relu, grad)
    assert _same_bits(y, y_ref) and y.stride() == y_ref.stride()
    assert _same_bits(g, g_ref)
    assert len(p) == len(p_ref) and all(map(_same_bits, p, p_ref))
    assert s.keys() == s_ref.keys() and all(_same_bits(s[k], s_ref[k]) for k in s)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize(
    "shape",
    # S0-M2's and the speed-run net's maps; channel counts with a partial vector; 1x1 maps.
    [
        (128, 32, 28, 28),
        (64, 16, 14, 14),
        (16, 128, 3, 3),
        (3, 20, 5, 5),
        (7, 47, 3, 3),
        (5, 40, 1, 1),
    ],
)
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batch_norm_matches_pytorch_to_the_bit(batchnorm_kernel, dtype, shape, relu, threads):
    # ATen cuts the rows into one chunk per thread and sums the chunks in order: the kernel
    # must reproduce that for any thread count.
    x = torch.randn(shape, generator=torch.Generator().manual_seed(4)).mul(3).add(1)
    x = x.to(dtype).contiguous(memory_format=torch.channels_last)
    theirs, ours = _batch_norms(shape[1])
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert batchnorm_module.native_batch_norm_applies(x, ours)
        _assert_batch_norms_agree(x, theirs, ours, relu)
    finally:
        torch.set_num_threads(before)


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("c", [32, 40, 17])
@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("case", ["nan_x", "nan_grad", "inf_x", "zeros"])
def test_batch_norm_edge_values_match_pytorch_to_the_bit(batchnorm_kernel, dtype, c, relu, case):
    # NaNs keep PyTorch's bit patterns (which depend on which lanes its build vectorises);
    # -0.0 and 0.0 stay apart through the ReLU.
    x = torch.randn(3, c, 3, 3, generator=torch.Generator().manual_seed(6))
    if case == "nan_x":
        x[0, 1, 0, 0] = x[1, c - 1, 1, 1] = float("nan")
    elif case == "inf_x":
        x[0, 2, 0, 0] = float("inf")
    elif case == "zeros":
        x[:, 3] = -0.0
        x[:, 0] = 0.0
    x = x.to(dtype).contiguous(memory_format=torch.channels_last)
    theirs, ours = _batch_norms(c)
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(7)).to(dtype)
    if case == "nan_grad":
        grad[0, 1, 0, 0] = grad[1, c - 1, 1, 1] = float("nan")
    grad = grad.contiguous(memory_format=torch.channels_last)
    (y_ref, g_ref, p_ref, s_ref), (y, g, p, s) = _batch_norm_both_ways(x, theirs, ours, relu, grad)
    assert _same_bits(y, y_ref) and _same_bits(g, g_ref)
    assert all(map(_same_bits, p, p_ref)) and all(_same_bits(s[k], s_ref[k]) for k in s)


@needs_compiler
@pytest.mark.parametrize(
    "kwargs", [{"momentum": None}, {"affine": False}, {"track_running_stats": False}]
)
def test_batch_norm_options_match_pytorch(batchnorm_kernel, kwargs) -> None:
    # A cumulative average (momentum=None), no affine parameters, no running statistics.
    x = torch.randn(8, 32, 6, 6).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    theirs, ours = _batch_norms(32, **kwargs)
    assert batchnorm_module.native_batch_norm_applies(x, ours)
    for _ in range(2):  # the running average's second step uses the count the first left
        _assert_batch_norms_agree(x, theirs, ours, relu=True)


@needs_compiler
def test_the_batch_norm_module_uses_the_kernel_only_where_it_applies(batchnorm_kernel, monkeypatch):
    theirs, ours = _batch_norms(8)
    calls = []
    kernel = batchnorm_module.batch_norm
    monkeypatch.setattr(
        batchnorm_module, "batch_norm", lambda *a, **k: calls.append(1) or kernel(*a, **k)
    )
    x = torch.randn(4, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    _assert_batch_norms_agree(x, theirs, ours, relu=False)
    assert calls
    # PyTorch's own BatchNorm: evaluation, NCHW, fp64, no more positions than threads,
    # parameters in another dtype.
    calls.clear()
    applies = batchnorm_module.native_batch_norm_applies
    assert not applies(x.contiguous(), ours)
    assert not applies(x.double(), ours)
    assert not applies(x[:1, :, :1, :1].contiguous(memory_format=torch.channels_last), ours)
    assert not applies(x, torch.nn.BatchNorm2d(8).to(torch.bfloat16))
    theirs.eval(), ours.eval()
    _assert_batch_norms_agree(x, theirs, ours, relu=True)
    assert not calls


def test_a_batch_norm_kernel_that_disagrees_with_pytorch_is_not_used(fresh_kernels, monkeypatch):
    # A wrong guess of where ATen's float kernel fuses a multiply-add changes low bits of the
    # input gradient only; the first-use check must catch it.
    if build.load_kernel("batchnorm") is None:
        pytest.skip("no C compiler: nothing to check")
    monkeypatch.setattr(batchnorm_module, "_lanes", lambda c: (c - c % 16, 0))
    assert batchnorm_module._kernel() is None
    assert batchnorm_module.batchnorm_status() == (
        "not used (its results differ from this PyTorch's BatchNorm)"
    )
    x = torch.randn(4, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    _, ours = _batch_norms(8)
    assert not batchnorm_module.native_batch_norm_applies(x, ours)


def test_batch_norm_without_a_compiler_is_pytorchs(fresh_kernels, monkeypatch) -> None:
    monkeypatch.setenv("CC", str(fresh_kernels / "no-such-compiler"))
    assert batchnorm_module.batchnorm_status().startswith("not used (")
    x = torch.randn(4, 8, 5, 5).contiguous(memory_format=torch.channels_last)
    theirs, ours = _batch_norms(8)
    assert not batchnorm_module.native_batch_norm_applies(x, ours)
    _assert_batch_norms_agree(x, theirs, ours, relu=True)
