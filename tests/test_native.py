"""The compiled kernels (pool+ReLU, dropout masks): bit-identical to PyTorch's operators, cached,
and optional."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fashionlab.native import (
    Dropout,
    bernoulli_status,
    build,
    dropout,
    max_pool_2x2,
    native_pool_applies,
    pool_relu,
    unused_kernels_notice,
)
from fashionlab.native import bernoulli as bernoulli_module
from fashionlab.native import pooling as pool_relu_module

needs_compiler = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler"
)


@pytest.fixture
def fresh_kernels(monkeypatch, tmp_path):
    """An empty kernel cache and no library loaded in this process yet."""
    monkeypatch.setenv("FASHIONLAB_NATIVE_CACHE", str(tmp_path / "native"))
    monkeypatch.setattr(build, "_loaded", {})
    monkeypatch.setattr(build, "_reasons", {})
    pool_relu_module._kernel.cache_clear()
    bernoulli_module._kernel.cache_clear()
    yield tmp_path / "native"
    pool_relu_module._kernel.cache_clear()  # later tests load from the real cache again
    bernoulli_module._kernel.cache_clear()


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
def test_pool_relu_matches_pytorch_to_the_bit(fresh_kernels, dtype, shape, relu) -> None:
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
def test_only_plain_2x2_pools_of_channels_last_maps_are_taken(fresh_kernels) -> None:
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
    ours = Dropout(p) if module else (lambda t: dropout(t, p))
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
def test_dropout_matches_pytorch_to_the_bit(fresh_kernels, dtype, shape, channels_last, p):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    (y_ref, g_ref, s_ref), (y, g, s) = _dropout_both_ways(x, p)
    assert bernoulli_status().startswith("compiled")
    bits = lambda t: t.contiguous().view(torch.uint8)  # noqa: E731 (-0.0 differs from 0.0)
    assert torch.equal(bits(y), bits(y_ref)) and torch.equal(bits(g), bits(g_ref))
    assert y.stride() == y_ref.stride()
    assert torch.equal(s, s_ref)  # the generator moved exactly as far: later draws agree
    if y.numel() > 1000:
        assert 0 < (y == 0).float().mean() < 1  # a real mask was drawn


@needs_compiler
def test_dropout_module_and_its_fallbacks_match_pytorch(fresh_kernels) -> None:
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
    module = Dropout(0.3).eval()
    assert module(x) is x or torch.equal(module(x), x)
    assert repr(module) == repr(torch.nn.Dropout(0.3))
    assert isinstance(module, torch.nn.Dropout) and module.state_dict() == {}


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


def test_no_notice_when_the_kernels_run_or_are_turned_off(fresh_kernels, monkeypatch) -> None:
    if build.load_kernel("pool_relu") is not None:
        assert unused_kernels_notice() is None
    monkeypatch.setenv("FASHIONLAB_NATIVE", "0")
    monkeypatch.setattr(build, "_loaded", {})
    bernoulli_module._kernel.cache_clear()
    assert unused_kernels_notice() is None  # the user chose it: nothing to fix


@needs_compiler
def test_the_max_pool_module_trains_through_the_kernel_only(fresh_kernels, monkeypatch) -> None:
    from fashionlab.native import MaxPool2d

    pool = MaxPool2d(2)
    assert repr(pool) == repr(torch.nn.MaxPool2d(2)) and isinstance(pool, torch.nn.MaxPool2d)
    calls = []
    monkeypatch.setattr(
        pool_relu_module, "max_pool_2x2", lambda t: calls.append(1) or t[..., ::2, ::2]
    )
    x = torch.randn(2, 4, 8, 8).contiguous(memory_format=torch.channels_last)
    pool(x.requires_grad_())
    assert calls == [1]
    with torch.no_grad():
        pool(x)  # no backward to speed up: PyTorch's op
    pool.eval()(x)  # evaluation and export see nn.MaxPool2d
    assert calls == [1]
