"""Train to a time budget: measure what this machine pays per step, then choose the epochs.

A budget (`--budget 2m`, `budget: 2m` in a study file, `budget="2m"` from Python) is the wall
time of the whole command. Before training, a warm-up on real batches of the run's own data,
model and precision measures the cost of a training step, of evaluating an image and of a
checkpoint; the epochs are then the most that fit in what is left of the budget after the
final test pass. The config is given those epochs before the trainer is built, so every
schedule (one-cycle, cosine, step, the EMA) is laid out for the shortened run and anneals on
its last step, and a budgeted run is exactly the plain run with that many epochs.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from fashionlab.config import TrainConfig
from fashionlab.errors import ConfigError
from fashionlab.training.predict import predict_logits
from fashionlab.training.trainer import Trainer

# Batches timed after one untimed pass (the first steps pay for kernel selection and caches).
WARMUP_BATCHES = 6
EVAL_ITEMS = 1024
# Kept back from the budget for what the estimate does not see (the scatter of step times,
# writing the run folder's files, interpreter shutdown).
MARGIN = 0.04
FIXED_SECONDS = 1.0


@dataclass(frozen=True)
class BudgetPlan:
    """What the budget bought: the measured costs and the epochs they allow."""

    budget_seconds: float
    seconds_before_training: float  # start-up and the warm-up, counted in the budget
    step_seconds: float
    steps_per_epoch: int
    # what an epoch costs beyond its steps: validation, checkpoint, history, callbacks
    epoch_overhead_seconds: float
    eval_item_seconds: float
    final_eval_items: int
    epochs: int

    @property
    def epoch_seconds(self) -> float:
        return self.steps_per_epoch * self.step_seconds + self.epoch_overhead_seconds

    @property
    def final_seconds(self) -> float:
        return self.final_eval_items * self.eval_item_seconds + FIXED_SECONDS

    @property
    def predicted_seconds(self) -> float:
        return self.seconds_before_training + self.epochs * self.epoch_seconds + self.final_seconds

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "predicted_seconds": self.predicted_seconds}


def epochs_for_budget(
    budget: float, elapsed: float, epoch_seconds: float, final_seconds: float
) -> int:
    """The most whole epochs that fit in `budget` after `elapsed` seconds already spent, the
    final evaluation's `final_seconds` and the safety margin (0 when not even one fits)."""
    left = budget * (1 - MARGIN) - elapsed - final_seconds
    return max(int(left // epoch_seconds), 0) if epoch_seconds > 0 else 0


def plan_budget(
    config: TrainConfig, started: float, data_dir: str | Path | None = None
) -> BudgetPlan:
    """Measure this machine on `config` and choose its epochs for `config.budget` seconds of
    wall time counted from `started` (a `time.monotonic()` value). A budget too short for one
    epoch is a ConfigError that says what one epoch needs."""
    assert config.budget is not None
    with tempfile.TemporaryDirectory(prefix="fashionlab-budget-") as scratch:
        trainer = Trainer(config, Path(scratch), quiet=True, data_dir=data_dir)
        steps = len(trainer.batches)
        step_seconds = _step_seconds(trainer)
        overhead = _epoch_overhead_seconds(trainer, step_seconds)
        eval_item_seconds = _eval_item_seconds(trainer)
        n_val, n_test = len(trainer.split.val.labels), len(trainer.split.test.labels)
    elapsed = time.monotonic() - started
    plan = BudgetPlan(
        budget_seconds=config.budget,
        seconds_before_training=elapsed,
        step_seconds=step_seconds,
        steps_per_epoch=steps,
        epoch_overhead_seconds=overhead,
        eval_item_seconds=eval_item_seconds,
        final_eval_items=n_test + n_val,  # the test pass and the calibration's validation pass
        epochs=0,
    )
    epochs = min(epochs_for_budget(config.budget, elapsed, plan.epoch_seconds,
                                   plan.final_seconds), 100_000)  # fmt: skip
    if epochs < 1:
        needed = elapsed + plan.epoch_seconds + plan.final_seconds
        raise ConfigError(
            f"a budget of {config.budget:.0f} s is too short for one epoch of {config.model} on "
            f"this machine: start-up, one epoch and the test pass need about {needed:.0f} s "
            f"(one epoch alone {plan.epoch_seconds:.0f} s); give a longer --budget, or fewer "
            "training items"
        )
    return BudgetPlan(**{**asdict(plan), "epochs": epochs})


def _step_seconds(trainer: Trainer) -> float:
    """Seconds per training step on this run's own first batches (the model's weights are
    thrown away with the warm-up trainer)."""
    batches = []
    for batch in trainer.batches:
        batches.append(batch)
        if len(batches) == WARMUP_BATCHES:
            break
    trainer.batches = batches
    trainer.train_one_epoch(1)  # untimed: the first steps pick kernels and fill caches
    started = time.perf_counter()
    trainer.train_one_epoch(1)
    return (time.perf_counter() - started) / len(batches)


def _epoch_overhead_seconds(trainer: Trainer, step_seconds: float) -> float:
    """One whole epoch of the trainer's own loop on the warm-up batches (validation on the
    full validation split, checkpoint, history), less its steps: what each epoch adds."""
    trainer.stop_after = 1
    started = time.perf_counter()
    trainer.run()
    cycle = time.perf_counter() - started
    return max(cycle - len(trainer.batches) * step_seconds, 0.0)


def _eval_item_seconds(trainer: Trainer) -> float:
    split = trainer.split.val if len(trainer.split.val.labels) else trainer.split.test
    images = split.images[:EVAL_ITEMS]
    predict_logits(trainer.eval_model, images[:64], trainer.normalizer, trainer.device,
                   trainer.predict_settings)  # fmt: skip
    started = time.perf_counter()
    predict_logits(trainer.eval_model, images, trainer.normalizer, trainer.device,
                   trainer.predict_settings)  # fmt: skip
    return (time.perf_counter() - started) / max(len(images), 1)
