"""Optional dependencies: a command that needs a missing extra says which, in one line."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fashionlab import _extras
from fashionlab._extras import EXTRAS, MissingExtra, require_extra
from fashionlab.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _without(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        _extras.importlib.util,
        "find_spec",
        lambda name, *a, **k: None if name in names else real(name, *a, **k),
    )


@pytest.mark.extra("audit")
def test_require_extra_names_the_extra(monkeypatch):
    require_extra("audit", "x")  # installed here: no error
    _without(monkeypatch, "cleanlab")
    with pytest.raises(MissingExtra, match=r"needs cleanlab.*pip install 'fashionlab\[audit\]'"):
        require_extra("audit", "the label search")


def test_audit_label_search_without_cleanlab(monkeypatch):
    from fashionlab.audit import find_suspect_labels

    _without(monkeypatch, "cleanlab")
    with pytest.raises(MissingExtra, match=r"fashionlab\[audit\]"):
        find_suspect_labels(np.arange(10), np.eye(10))


def test_serve_without_its_extra_is_one_line(monkeypatch, tiny_run_dir, capsys):
    _without(monkeypatch, "fastapi", "uvicorn")
    code = main(["serve", str(tiny_run_dir)])
    err = capsys.readouterr().err
    assert code != 0 and "fashionlab[serve]" in err and "fastapi, uvicorn" in err
    assert len(err.strip().splitlines()) == 1


def test_pyproject_declares_ranges_and_every_extra():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = project["dependencies"]
    torch = next(d for d in deps if d.startswith("torch"))
    assert "==" not in torch and ">=" in torch  # a range: never replaces a user's torch
    assert any(d.startswith("scipy") for d in deps)  # imported by evaluation
    assert not any(d.startswith(("fastapi", "onnx")) for d in deps)  # extras, not core
    assert set(EXTRAS) <= set(project["optional-dependencies"])
    assert "torch==2.13.0" in (ROOT / "constraints.txt").read_text()
