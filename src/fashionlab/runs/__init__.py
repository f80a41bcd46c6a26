"""The run folder: the contract between training and everything that reads a run.

`folder` claims the folder and knows the `complete` marker, `writer` writes its files
atomically, `readers` reads them back with one-line errors, `weights` saves and rebuilds the
trained PyTorch model.
"""

from fashionlab.runs.folder import (
    AUDIT_MARKER,
    COMPLETE_MARKER,
    STUDY_MARKER,
    claim_folder,
    is_complete,
    own_subfolder,
    prepare_folder,
    require_ours,
)
from fashionlab.runs.readers import (
    AUDIT_DIR,
    AUDIT_FILE,
    AUDIT_SUBSETS,
    ROBUSTNESS_FILE,
    load_audit,
    load_config,
    load_config_text,
    load_env,
    load_history,
    load_metrics,
    load_predictions,
    load_robustness,
    study_audit_dir,
)
from fashionlab.runs.writer import HISTORY_FIELDS, RunWriter, environment

__all__ = [
    "AUDIT_DIR",
    "AUDIT_FILE",
    "AUDIT_MARKER",
    "AUDIT_SUBSETS",
    "COMPLETE_MARKER",
    "HISTORY_FIELDS",
    "ROBUSTNESS_FILE",
    "STUDY_MARKER",
    "RunWriter",
    "claim_folder",
    "environment",
    "is_complete",
    "load_config",
    "load_config_text",
    "load_env",
    "load_history",
    "load_metrics",
    "load_predictions",
    "load_audit",
    "load_robustness",
    "own_subfolder",
    "prepare_folder",
    "require_ours",
    "study_audit_dir",
]
