"""Every run folder under a folder as one row: what `fashionlab runs` prints.

It reads only the small files of each folder (config.yaml, metrics.json, the markers), never
weights or predictions, and a folder it cannot read becomes a row marked "failed" with the
reason, not an error: one broken run must not hide a thousand good ones.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from fashionlab._io import YamlTooLarge, load_yaml
from fashionlab._read import read_json, read_text
from fashionlab.errors import ConfigError, one_line
from fashionlab.runs.folder import (
    CHECKPOINT_FILE,
    COMPLETE_MARKER,
    NOT_RUN_FOLDERS,
    RUN_MARKER,
    in_use,
)

STATES = ("complete", "running", "interrupted-resumable", "failed")
COLUMNS = (
    "name",
    "model",
    "seed",
    "precision",
    "epochs",
    "test_accuracy",
    "macro_f1",
    "train_seconds",
    "state",
)


@dataclass
class RunRow:
    name: str
    path: str
    model: str | None = None
    seed: int | None = None
    precision: str | None = None
    epochs: int | None = None
    test_accuracy: float | None = None
    macro_f1: float | None = None
    train_seconds: float | None = None
    state: str = "failed"
    problem: str = ""  # why a failed run is failed
    config: dict[str, Any] | None = None

    def as_dict(self, with_config: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_config:
            out.pop("config")
        return out


def run_folders(root: Path, max_depth: int = 3) -> Iterator[Path]:
    """Folders holding a run (config.yaml or the run marker), at most `max_depth` below
    `root` (a study's runs are one level down, a tree of studies two)."""
    root_depth = len(root.parts)
    for folder, subdirs, files in os.walk(root):
        here = Path(folder)
        if "config.yaml" in files or RUN_MARKER in files:
            subdirs.clear()  # a run folder holds no runs (a study's cache or figures)
            yield here
            continue
        if len(here.parts) - root_depth >= max_depth:
            subdirs.clear()
        subdirs[:] = sorted(d for d in subdirs if d not in NOT_RUN_FOLDERS)


def read_row(folder: Path) -> RunRow:
    row = RunRow(folder.name, str(folder))
    try:
        config = load_yaml(read_text(folder / "config.yaml"))
    except FileNotFoundError:
        row.problem = "no config.yaml"
        return row
    except (YamlTooLarge, yaml.YAMLError, OSError, ValueError) as exc:
        row.problem = f"config.yaml unreadable ({one_line(exc, 80)})"
        return row
    if not isinstance(config, dict):
        row.problem = "config.yaml is not a mapping"
        return row
    row.config = config
    row.model = str(config.get("model")) if config.get("model") is not None else None
    row.seed = _int(config.get("seed"))
    row.precision = _str(config.get("precision"))
    row.epochs = _int(config.get("epochs"))
    complete = (folder / COMPLETE_MARKER).exists()
    if not complete:
        if in_use(folder):  # training next door: not ours to resume
            row.state = "running"
        elif (folder / CHECKPOINT_FILE).exists():
            row.state = "interrupted-resumable"
        else:
            row.problem = "no checkpoint and not complete"
        return row
    try:
        metrics = read_json(folder / "metrics.json")
    except FileNotFoundError:
        row.problem = "complete but no metrics.json"
        return row
    except (ValueError, OSError) as exc:
        row.problem = f"metrics.json unreadable ({one_line(exc, 80)})"
        return row
    if not isinstance(metrics, dict):
        row.problem = "metrics.json is not a mapping"
        return row
    row.precision = _str(metrics.get("precision_used")) or row.precision
    row.epochs = _int(metrics.get("epochs_run")) or row.epochs
    row.test_accuracy = _float(metrics.get("test_accuracy"))
    row.macro_f1 = _float(metrics.get("macro_f1"))
    row.train_seconds = _float(metrics.get("train_seconds"))
    row.state = "complete"
    return row


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    return float(value) if ok else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_where(conditions: Sequence[str]) -> list[tuple[str, Any]]:
    """`key=value` filters; the value is read as YAML (so `seed=42` is the number 42) and a
    dotted key reaches into a mapping (`model_args.act=relu`)."""
    out = []
    for text in conditions:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--where wants key=value (e.g. model=s0-m1), got {text!r}")
        try:
            parsed = load_yaml(value) if value.strip() else ""
        except YamlTooLarge as exc:
            raise ConfigError(f"--where {key.strip()}=...: refused: the value is {exc}") from None
        except yaml.YAMLError:
            parsed = value
        out.append((key.strip(), parsed))
    return out


def _lookup(row: RunRow, key: str) -> Any:
    if key in COLUMNS or key == "problem":
        return getattr(row, key)
    value: Any = row.config or {}
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


_MISSING = object()


def _matches(row: RunRow, conditions: list[tuple[str, Any]]) -> bool:
    for key, wanted in conditions:
        value = _lookup(row, key)
        if value is _MISSING or not (value == wanted or str(value) == str(wanted)):
            return False
    return True


def list_runs(
    root: str | Path,
    where: Sequence[str] = (),
    sort: str | None = None,
    max_depth: int = 3,
) -> list[RunRow]:
    """One row per run folder under `root` (or `root` itself if it is a run), filtered by
    `where` (config fields or columns) and sorted by `sort` (a column; '-' in front for
    descending; rows without a value go last)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such folder")
    conditions = parse_where(where)
    rows = [r for r in map(read_row, run_folders(root, max_depth)) if _matches(r, conditions)]
    if sort:
        descending = sort.startswith("-")
        key = sort.lstrip("-")
        if key not in COLUMNS:
            raise ConfigError(f"cannot sort by {key!r}; columns: {', '.join(COLUMNS)}")
        present = [r for r in rows if getattr(r, key) is not None]
        absent = [r for r in rows if getattr(r, key) is None]
        present.sort(key=lambda r: getattr(r, key), reverse=descending)
        rows = present + absent
    return rows
