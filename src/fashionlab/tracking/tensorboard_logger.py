"""TensorBoard: event files in the run folder's `tensorboard/`, so `tensorboard --logdir runs`
shows every run by its folder name, with the config and final metrics in the HParams tab."""

from __future__ import annotations

from typing import Any

from fashionlab.runs import own_subfolder
from fashionlab.tracking.base import Tracker
from fashionlab.tracking.records import config_params, epoch_values, final_metrics
from fashionlab.training.callbacks import TrainingRun

EVENTS_DIR = "tensorboard"
FINAL_PREFIX = "final/"  # final metrics' tags, apart from the per-epoch curves


class TensorBoardLogger(Tracker):
    """Writes each history row as scalars (step = epoch) and, at the end, the hparams."""

    name = "tensorboard"

    def __init__(self) -> None:
        super().__init__()
        self.writer = None

    def on_train_start(self, run: TrainingRun) -> None:
        self.guard(self._open, run)

    def _open(self, run: TrainingRun) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # On resume, events past the restored epoch (written before a crash) are dropped.
        purge = run.epoch + 1 if run.epoch else None
        events = own_subfolder(run.path, EVENTS_DIR)  # never a planted link to elsewhere
        self.writer = SummaryWriter(str(events), purge_step=purge)

    def on_epoch_end(self, run: TrainingRun, row: dict[str, Any]) -> None:
        self.guard(self._epoch, row)

    def _epoch(self, row: dict[str, Any]) -> None:
        for key, value in epoch_values(row).items():
            self.writer.add_scalar(key, value, global_step=int(row["epoch"]))
        self.writer.flush()

    def on_train_end(self, run: TrainingRun, metrics: dict[str, Any]) -> None:
        self.guard(self._end, run, metrics)
        self._close()

    def _end(self, run: TrainingRun, metrics: dict[str, Any]) -> None:
        from torch.utils.tensorboard.summary import hparams

        finals = {FINAL_PREFIX + k: v for k, v in final_metrics(metrics).items()}
        experiment, start, end = hparams(config_params(run.config), finals)
        file_writer = self.writer._get_file_writer()
        for summary in (experiment, start, end):
            file_writer.add_summary(summary)
        for key, value in finals.items():
            self.writer.add_scalar(key, value, global_step=run.epoch)

    def on_train_incomplete(self, run: TrainingRun, outcome: str) -> None:
        self._close()

    def _close(self) -> None:
        if self.writer is not None:
            self.guard(self.writer.close)
            self.writer = None
