"""Experiment tracking: a run's history, config, metrics and artefacts in TensorBoard and MLflow.

The trackers are training callbacks (`fashionlab.training.callbacks`), so they see every epoch
as it ends; `import_runs` replays finished run folders into MLflow. The run folder stays the
record: a tracker that fails warns once and the training goes on.
"""

from fashionlab.tracking.importer import import_runs
from fashionlab.tracking.settings import LOGGERS, TrackingSettings, parse_loggers

__all__ = ["LOGGERS", "TrackingSettings", "import_runs", "parse_loggers"]
