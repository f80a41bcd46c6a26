"""fashionlab: image-classification studies on Fashion-MNIST.

The small public API; everything here is also reachable from the `fashionlab` command. Names
are imported on first use, so `import fashionlab.numpy_nn` (NumPy only) does not load torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "CLASS_NAMES": "fashionlab.data",
    "FashionMNIST": "fashionlab.data",
    "load_fashion_mnist": "fashionlab.data",
    "make_split": "fashionlab.data",
    "create_model": "fashionlab.models",
    "list_models": "fashionlab.models",
    "build_config": "fashionlab.models",
    "TrainConfig": "fashionlab.config",
    "train": "fashionlab.notebook",
    "load_run": "fashionlab.notebook",
    "study": "fashionlab.notebook",
    "Run": "fashionlab.notebook",
    "StudyResult": "fashionlab.notebook",
    "compare_runs": "fashionlab.notebook",
    "Callback": "fashionlab.training",
    "TrainingRun": "fashionlab.training",
    "resume": "fashionlab.training",
    "evaluate_run": "fashionlab.training",
    "calibration_metrics": "fashionlab.evaluation",
    "corrupt": "fashionlab.data.corruptions",
    "score_robustness": "fashionlab.robustness",
    "audit_data": "fashionlab.audit",
    "AuditSettings": "fashionlab.audit",
    "CrossValSettings": "fashionlab.audit",
    "run_study": "fashionlab.studies",
    "list_runs": "fashionlab.runs.table",
    "import_runs": "fashionlab.tracking",
    "TrackingSettings": "fashionlab.tracking",
    "write_report": "fashionlab.report",
    "NumpyMLP": "fashionlab.numpy_nn",
}

__all__ = ["__version__", *_API]


def __dir__() -> list[str]:
    """The lazy names too, so tab completion (Jupyter, IPython) offers `train` before its
    first use."""
    return sorted({*globals(), *_API})


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'fashionlab' has no attribute {name!r}")
