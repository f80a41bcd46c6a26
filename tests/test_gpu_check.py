"""benchmarks/gpu_check.sh's CPU dry run: every code path the GPU check takes, on 3 steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path: Path):
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_INSTALL": "0"}
    done = subprocess.run(
        [str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run", "--out", str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [m["model"] for m in report["models"]] == ["s0-m1", "s0-m2", "s2-cnn", "fast"]
    assert all(m["images_per_second"] > 0 for m in report["models"])
    assert report["dry_run"] and 0 <= report["preset"]["test_accuracy"] <= 1
    assert "0.94 preset: test accuracy" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["gpu_check.json"]  # scratch runs removed


@pytest.mark.slow
def test_gpu_check_refuses_a_machine_without_cuda(tmp_path: Path):
    if _cuda():
        pytest.skip("this machine has CUDA")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "no CUDA device here" in done.stderr


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()
