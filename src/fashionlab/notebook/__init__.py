"""The notebook and script API: runs and studies as objects (`Run`, `StudyResult`), thin over
the library. `fashionlab.train`, `fashionlab.load_run`, `fashionlab.study` and
`fashionlab.compare_runs` are these."""

from fashionlab.notebook.compare import compare_runs
from fashionlab.notebook.run import Run, load_run, train
from fashionlab.notebook.study import StudyResult, load_study_result, study

__all__ = ["Run", "StudyResult", "compare_runs", "load_run", "load_study_result", "study", "train"]
