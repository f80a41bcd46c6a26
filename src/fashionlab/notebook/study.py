"""`study(...)`: run (or resume) a study file and get its table and runs back as objects."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fashionlab.notebook.run import Run
from fashionlab.report import read_study_summary
from fashionlab.studies import run_study

TABLE_KEYS = ("test_accuracy", "macro_f1", "train_seconds")


@dataclass
class StudyResult:
    """A finished study: `table` (one row per label: mean, std and n of its metrics over
    seeds), `runs` (label -> its Runs, one per seed), `summary` (all of study.json)."""

    path: Path
    summary: dict[str, Any]
    runs: dict[str, list[Run]] = field(default_factory=dict)

    @property
    def table(self) -> list[dict[str, Any]]:
        rows = []
        for row in self.summary["rows"]:
            entry: dict[str, Any] = {"label": row["label"]}
            for key in TABLE_KEYS:
                stat = row.get(key)
                if isinstance(stat, dict):
                    entry[key] = stat.get("mean")
                    entry[f"{key}_std"] = stat.get("std")
                    entry["n"] = stat.get("n")
            rows.append(entry)
        return rows

    def report_path(self) -> Path:
        return self.path / "report.html"

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(k)}</th>" for k in self.table[0]) if self.table else ""
        body = "".join(
            "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row.values()) + "</tr>"
            for row in self.table
        )
        where = html.escape(str(self.path))
        return f"<b>Study</b> <code>{where}</code><table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def load_study_result(path: str | os.PathLike) -> StudyResult:
    """The finished study at `path` (a folder with study.json)."""
    folder = Path(path)
    summary = read_study_summary(folder)
    runs = {
        row["label"]: [Run(folder / name) for name in row.get("runs", [])]
        for row in summary["rows"]
    }
    return StudyResult(folder, summary, runs)


def study(
    path: str | os.PathLike, out_dir: str | os.PathLike | None = None, **options: Any
) -> StudyResult:
    """Run (or resume) the study file at `path` (options as for `run_study`: seeds, workers,
    backend, overrides, quiet, data_dir, ...) and return its `StudyResult`."""
    return load_study_result(run_study(path, out_dir, **options))
