"""Reports of a run folder or a study folder: `report.html` (self-contained) + `report.md`.

    write_report("runs/s4")            # a study folder (has study.json)
    write_report("runs/s4/s4-ann-seed42")  # a single run folder (has config.yaml)

Three separate steps: `figures` draws the PNGs (skipping those that are up to date),
`context` decides what the report says, `render` lays it out with the Jinja2 templates in
`templates/`. Sections (HTML ids): summary, reproduction, significance, calibration, robustness,
audit, architectures, data, models, environment. A data audit's folder (audit.json) gets its
own report (`report.audit`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fashionlab._io import atomic_write_text, check_path_component
from fashionlab._read import LARGE_JSON, UnreadableFile, check_fields, read_json
from fashionlab.errors import RunError
from fashionlab.runs.folder import require_ours
from fashionlab.runs.readers import AUDIT_FILE

SECTION_IDS = (
    "summary",
    "reproduction",
    "significance",
    "calibration",
    "robustness",
    "audit",
    "architectures",
    "data",
    "models",
    "environment",
)


def report_kind(path: str | Path) -> str:
    """'study' (a folder with study.json), 'run' (a folder with config.yaml) or 'audit' (a folder
    with audit.json), each with the marker of a folder fashionlab made; else RunError (a report
    is written into the folder, so a folder of the user's own is never one)."""
    folder = Path(path)
    if not folder.is_dir():
        raise RunError(f"{folder}: no such folder")
    for kind, name in (("study", "study.json"), ("audit", AUDIT_FILE), ("run", "config.yaml")):
        if (folder / name).is_file():
            require_ours(folder, kind)
            return kind
    raise RunError(
        f"{folder}: not a study folder (study.json), a run folder (config.yaml) or an audit "
        "folder (audit.json)"
    )


def write_report(path: str | Path, data_dir: str | Path | None = None) -> Path:
    """Write `report.html` and `report.md` (+ `figures/`) into the folder; returns the HTML."""
    from fashionlab.report.context import run_context, study_context
    from fashionlab.report.figures import FIGURES_DIR, collect
    from fashionlab.report.render import render_html, render_markdown

    folder = Path(path)
    kind = report_kind(folder)
    if kind == "audit":
        from fashionlab.report.audit import audit_context

        context = audit_context(folder)
    elif kind == "study":
        summary = read_study_summary(folder)
        rows = summary.get("rows", [])
        first_runs = {row["label"]: folder / row["runs"][0] for row in rows if row.get("runs")}
        collected = collect(first_runs, folder / FIGURES_DIR, data_dir)
        context = study_context(folder, summary, collected)
    else:
        if not (folder / "predictions.npz").exists():
            raise RunError(f"{folder}: the run has no predictions.npz yet (did it finish?)")
        # a run inside a study folder borrows the study's data figures instead of redrawing
        reuse = [folder.parent / FIGURES_DIR]
        collected = collect({folder.name: folder}, folder / FIGURES_DIR, data_dir, reuse)
        context = run_context(folder, collected)
    html_path = folder / "report.html"
    atomic_write_text(html_path, render_html(context))
    atomic_write_text(folder / "report.md", render_markdown(context, folder))
    return html_path


def read_study_summary(folder: str | Path) -> dict:
    """A study folder's study.json (bounded read), or a one-line RunError."""
    path = Path(folder) / "study.json"
    try:
        summary = read_json(path, LARGE_JSON)
    except FileNotFoundError:
        raise RunError(f"{path}: missing; run the study again") from None
    except UnreadableFile as exc:
        raise RunError(f"{exc}; run the study again") from None
    try:
        check_fields(summary, SUMMARY_FIELDS, str(path))
        for key, fields in NESTED_FIELDS.items():
            check_fields(summary.get(key) or {}, fields, f"{path}: {key}")
    except UnreadableFile as exc:
        raise RunError(f"{exc}; run the study again") from None
    rows = summary.get("rows")
    if not isinstance(rows, list):
        raise RunError(f"{path}: not a study summary (no 'rows'); run the study again")
    for i, row in enumerate(rows):
        problem = _row_problem(row)
        if problem:
            raise RunError(f"{path}: rows[{i}]: {problem}; run the study again")
    comparisons = summary.get("comparisons", [])
    if not isinstance(comparisons, list) or not all(isinstance(c, dict) for c in comparisons):
        raise RunError(f"{path}: 'comparisons' must be a list of objects; run the study again")
    return summary


SUMMARY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "title": str,
    "description": str,
    "source": str,
    "invocation": dict,
    "runs_complete": dict,
    "seeds": list,
}
NESTED_FIELDS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "invocation": {"study_file": str, "seeds": list, "overrides": dict, "only": list,
                   "workers": int},
    "runs_complete": {"complete": int, "planned": int},
}  # fmt: skip


# A row's fields that are not a statistic over seeds ({mean, std, n, values}).
_ROW_FIELDS: dict[str, type | tuple[type, ...]] = {
    "label": str,
    "model": str,
    "runs": list,
    "seeds": list,
    "precision": list,
    "same_as": (str, type(None)),
    "grid": dict,
    "reported": dict,
    "difference": dict,
}
_NUMBER = (int, float)


def _row_problem(row: Any) -> str | None:
    """What is wrong with one row of study.json, or None. Its runs are folder names inside
    the study (nothing that climbs out: reports write figures into them); every other field
    has the type the reports compute with."""
    if not isinstance(row, dict) or not isinstance(row.get("label"), str):
        return "each row needs a 'label'"
    for key, value in row.items():
        kinds = _ROW_FIELDS.get(key)
        if kinds is not None:
            if not isinstance(value, kinds):
                return f"'{key}' has the wrong type"
        elif not _is_stat(value):
            return f"'{key}' is not a statistic over seeds (mean, std, n, values)"
    try:
        for name in row.get("runs", []):
            check_path_component(name)
    except ValueError as exc:
        return f"'runs': {exc}"
    return None


def _is_stat(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, dict):
        return False
    values = value.get("values", [])
    return (
        isinstance(values, list)
        and all(isinstance(v, _NUMBER) and not isinstance(v, bool) for v in values)
        and all(value.get(k) is None or isinstance(value[k], _NUMBER) for k in ("mean", "std", "n"))
    )


__all__ = ["SECTION_IDS", "read_study_summary", "report_kind", "write_report"]
