"""Studies: a YAML file of runs (model + overrides, optional grid axes) x seeds.

Modules, bottom up: `spec` (the file's schema, the `tune:` section, `plan_study`), `execute`
(one planned run), `cluster` and `node_data` (checks before a Ray study), `backends`
(sequential, process pool, Ray Tune), `aggregate` (the tables and tests from the run folders),
`runner` (`run_study`), `evaluate` (`evaluate_study`), `tune` (`fashionlab tune`).
"""

from fashionlab.studies.aggregate import aggregate, identical_architectures
from fashionlab.studies.evaluate import evaluate_study
from fashionlab.studies.execute import execute_run, resolve_features_source
from fashionlab.studies.runner import run_study
from fashionlab.studies.spec import (
    PlannedRun,
    StudySpec,
    TuneSpec,
    load_study,
    plan_study,
    select_runs,
)

__all__ = [
    "PlannedRun",
    "StudySpec",
    "TuneSpec",
    "aggregate",
    "evaluate_study",
    "execute_run",
    "identical_architectures",
    "load_study",
    "plan_study",
    "resolve_features_source",
    "run_study",
    "select_runs",
]
