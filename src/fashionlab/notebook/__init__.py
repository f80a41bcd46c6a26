"""The notebook and script API: runs and studies as objects (`Run`, `StudyResult`), thin over
the library. `fashionlab.training`, `fashionlab.load_run` and `fashionlab.studies` are these."""

from fashionlab.notebook.run import Run, load_run, train
from fashionlab.notebook.study import StudyResult, load_study_result, study

__all__ = ["Run", "StudyResult", "load_run", "load_study_result", "study", "train"]
