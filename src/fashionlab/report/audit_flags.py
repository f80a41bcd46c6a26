"""The test items a study's data audit flags, as short notes for the misclassified grids."""

from __future__ import annotations

from pathlib import Path

from fashionlab.data import CLASS_NAMES
from fashionlab.runs import load_audit, study_audit_dir


def audit_flags(run_dir: Path) -> dict[int, str]:
    """Test index -> a short note, for the items flagged by the audit of the run's study."""
    folder = study_audit_dir(Path(run_dir).parent)
    audit = load_audit(folder) if folder is not None else None
    if audit is None:
        return {}
    flags = audit["flags"]
    notes: dict[int, list[str]] = {}
    for index in flags.get("test_near_duplicates", []):
        notes.setdefault(int(index), []).append("near-dup of train")
    suggested = flags.get("test_suggested", {})
    for index in flags.get("test_suspect_labels", []):
        hint = suggested.get(str(index))
        name = f": {CLASS_NAMES[hint]}?" if isinstance(hint, int) and 0 <= hint < 10 else ""
        notes.setdefault(int(index), []).append(f"suspect label{name}")
    return {k: "; ".join(v) for k, v in notes.items()}
