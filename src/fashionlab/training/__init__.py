"""Training: the PyTorch trainer and the NumPy MLP's, the one prediction path, and the entry
points `train`, `resume` and `evaluate_run`.

Modules, bottom up: `device` (device, precision, determinism), `optim` (optimisers and
schedules), `predict` (`predict_logits`, the path every prediction takes), `checkpoint`,
`distributed` (torchrun + DDP), `multinode` (torchrun's launcher across machines), `trainer`
(the loop), `numpy_trainer`, `api`.
"""

from fashionlab.training.api import check_runnable, evaluate_run, resume, train
from fashionlab.training.callbacks import Callback, TrainingRun
from fashionlab.training.predict import EVAL_BATCH, PredictSettings, predict_logits
from fashionlab.training.trainer import EpochCallback, RunInterrupted, Trainer

__all__ = [
    "check_runnable",
    "EVAL_BATCH",
    "Callback",
    "TrainingRun",
    "EpochCallback",
    "PredictSettings",
    "RunInterrupted",
    "Trainer",
    "evaluate_run",
    "predict_logits",
    "resume",
    "train",
]
