"""The malloc tuning that keeps freed tensor pages mapped between training steps."""

from __future__ import annotations

import platform

import pytest

from fashionlab import allocator


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", None)
    return monkeypatch


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc-only tuning")
def test_applies_on_glibc_once(fresh):
    calls = []
    real = allocator._apply
    fresh.setattr(allocator, "_apply", lambda: calls.append(1) or real())
    assert allocator.retain_freed_memory() is True
    assert allocator.retain_freed_memory() is True
    assert calls == [1]


def test_opt_out_keeps_the_system_defaults(fresh):
    fresh.setenv("FASHIONLAB_SYSTEM_MALLOC", "1")
    assert allocator.retain_freed_memory() is False


def test_not_glibc_is_a_no_op(fresh):
    fresh.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
    assert allocator.retain_freed_memory() is False
