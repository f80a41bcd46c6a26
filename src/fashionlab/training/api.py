"""Entry points: train a config into a run folder, resume one, re-evaluate one from disk.

These dispatch on the model's framework (the PyTorch `Trainer` or the NumPy MLP's trainer),
set up and tear down data-parallel runs under torchrun, and switch on deterministic
algorithms for the run they are doing only.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fashionlab.accel import unused_kernels_notice
from fashionlab.config import TrainConfig
from fashionlab.data import CLASS_NAMES, prepare_data
from fashionlab.data.corruptions import get_corruption
from fashionlab.errors import ConfigError, FashionlabError, RunError
from fashionlab.evaluation import calibration_metrics, summarize_predictions
from fashionlab.models import check_model, get_model_spec
from fashionlab.runs import (
    RunWriter,
    claim_folder,
    is_complete,
    load_config,
    load_metrics,
    prepare_folder,
)
from fashionlab.runs.weights import load_model
from fashionlab.training.budget import plan_budget
from fashionlab.training.callbacks import Callback, replay
from fashionlab.training.checkpoint import CHECKPOINT
from fashionlab.training.device import deterministic_algorithms, resolve_device
from fashionlab.training.distributed import (
    DistContext,
    init_distributed,
    is_distributed_launch,
    shutdown_distributed,
)
from fashionlab.training.numpy_trainer import recompute_logits, train_numpy_run
from fashionlab.training.predict import PredictSettings, predict_logits
from fashionlab.training.trainer import EpochCallback, Trainer, execute_and_release


def _is_numpy(model: str) -> bool:
    return get_model_spec(model).framework == "numpy"


def check_runnable(config: TrainConfig) -> None:
    """Everything about `config` that can be refused without data: the device, the
    augmentation's corruption names, the model and its arguments (built on the `meta` device,
    so even a huge one costs nothing). Called before the run folder is claimed, so a refused
    command leaves no folder behind for the next attempt to trip over."""
    resolve_device(config.device)
    for name in config.corruption_augment:
        get_corruption(name)
    check_model(config.model, **config.model_args)


def _claim_on_rank0(
    held: contextlib.ExitStack, dist_ctx: DistContext, run_dir: Path, overwrite: bool | None
) -> None:
    """Rank 0 alone claims the folder (and, for a new run, prepares it: `overwrite` not None)
    and holds it until the run ends; the other ranks wait, then share its outcome."""
    error = None
    if dist_ctx.is_main:
        try:
            held.enter_context(claim_folder(run_dir))
            if overwrite is not None:
                prepare_folder(run_dir, overwrite)
        except FashionlabError as exc:
            error = exc
    error = dist_ctx.broadcast_object(str(error) if error else None)
    if error:
        raise RunError(error)


def _start(config: TrainConfig, run_dir: Path, quiet: bool, **trainer_args: Any) -> Trainer:
    """A Trainer for a new run, with the run's config and environment written."""
    trainer = Trainer(config, run_dir, quiet=quiet, **trainer_args)
    dist_ctx = trainer.dist
    if dist_ctx.is_main:
        writer = RunWriter(run_dir)
        writer.write_config(config)
        writer.write_env(
            config.seed, str(trainer.device), torch.get_num_threads(), dist_ctx.world_size
        )
        notice = unused_kernels_notice() if trainer.device.type == "cpu" else None
        if notice and not quiet:
            print(notice, file=sys.stderr)  # the same numbers either way, but slower
    return trainer


def train(
    config: TrainConfig,
    runs_dir: str | Path = "runs",
    overwrite: bool = False,
    quiet: bool = False,
    data_dir: str | Path | None = None,
    epoch_callback: EpochCallback | None = None,
    stop_after: int | None = None,
    callbacks: Sequence[Callback] = (),
    started: float | None = None,
) -> Path:
    """Train `config` into `runs_dir/<name>/` and return that folder. `callbacks`: see
    `fashionlab.training.callbacks` (the NumPy MLP's run replays them once it has finished).

    Under torchrun (WORLD_SIZE > 1) this is one rank of a data-parallel job. `stop_after`
    ends this invocation after that many epochs, checkpointed, for `resume` to continue.
    With `config.budget`, the epochs are chosen to fit the budget counted from `started` (a
    `time.monotonic()` value; default: now), before the folder is claimed."""
    started = time.monotonic() if started is None else started
    run_dir = Path(runs_dir) / config.run_name()
    check_runnable(config)
    budget_plan = None
    if config.budget is not None:
        if _is_numpy(config.model) or is_distributed_launch():
            raise ConfigError(
                "--budget works for one-process PyTorch runs; give --epochs instead"
            )
        budget_plan = plan_budget(config, started, data_dir)
        config = config.model_copy(update={"epochs": budget_plan.epochs})
    dist_ctx = init_distributed(config.device)
    if _is_numpy(config.model):
        if dist_ctx.enabled:
            raise ConfigError("numpy-mlp trains in one process; run it without torchrun/--nproc")
        with claim_folder(run_dir):
            prepare_folder(run_dir, overwrite)
            train_numpy_run(config, run_dir, quiet=quiet, data_dir=data_dir)
        replay(callbacks, run_dir)  # the NumPy trainer has no live hooks
        return run_dir
    with contextlib.ExitStack() as held, _distributed(dist_ctx):
        _claim_on_rank0(held, dist_ctx, run_dir, overwrite)
        with deterministic_algorithms():
            trainer = _start(
                config,
                run_dir,
                quiet,
                data_dir=data_dir,
                epoch_callback=epoch_callback,
                dist_ctx=dist_ctx,
                stop_after=stop_after,
                callbacks=callbacks,
                budget_plan=budget_plan,
                started=started,
            )
            return execute_and_release(trainer)


@contextlib.contextmanager
def _distributed(dist_ctx: DistContext) -> Iterator[DistContext]:
    try:
        yield dist_ctx
    finally:
        shutdown_distributed()


def resume(
    run_dir: str | Path,
    quiet: bool = False,
    data_dir: str | Path | None = None,
    epoch_callback: EpochCallback | None = None,
    expected_config: TrainConfig | None = None,
    stop_after: int | None = None,
    callbacks: Sequence[Callback] = (),
) -> Path:
    """Continue an interrupted run from its last finished epoch (a finished run is left as is).
    A data-parallel run resumes under torchrun with the same number of processes."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    if expected_config is not None and expected_config != config:
        changed = sorted(
            k for k, v in expected_config.model_dump().items() if config.model_dump().get(k) != v
        )
        raise RunError(
            f"{run_dir}: cannot resume with a changed config ({', '.join(changed)}); "
            "drop those options or start again with --overwrite"
        )
    if is_complete(run_dir):
        if not quiet:
            print(f"{run_dir} is already complete", file=sys.stderr)
        return run_dir
    if _is_numpy(config.model):
        with claim_folder(run_dir):
            checkpointed = (run_dir / CHECKPOINT).exists()
            if not checkpointed:  # stopped within its first epoch: nothing to continue from
                prepare_folder(run_dir, overwrite=True)
            train_numpy_run(config, run_dir, quiet=quiet, data_dir=data_dir, resume=checkpointed)
        replay(callbacks, run_dir)
        return run_dir
    dist_ctx = init_distributed(config.device)
    with contextlib.ExitStack() as held, _distributed(dist_ctx):
        _claim_on_rank0(held, dist_ctx, run_dir, overwrite=None)
        with deterministic_algorithms():
            trainer = Trainer(
                config,
                run_dir,
                quiet=quiet,
                data_dir=data_dir,
                epoch_callback=epoch_callback,
                dist_ctx=dist_ctx,
                stop_after=stop_after,
                callbacks=callbacks,
            )
            if (run_dir / CHECKPOINT).exists():
                trainer.load_checkpoint()
            return execute_and_release(trainer)


def evaluate_run(
    run_dir: str | Path, data_dir: str | Path | None = None, device: str = "cpu"
) -> dict[str, Any]:
    """Reload the saved weights, recompute the test metrics with the settings the run recorded
    (precision, test-time augmentation), and compare them with the stored ones."""
    config = load_config(run_dir)
    stored = load_metrics(run_dir)
    if _is_numpy(config.model):
        test, val = recompute_logits(run_dir, config, data_dir)
        return _compare_with_stored(stored, test, val)
    target = resolve_device(device)
    loaded = load_model(run_dir, device=target)
    split, _ = prepare_data(loaded.config, data_dir)
    settings = PredictSettings.of_run(loaded.config, stored, target)
    parts = {"test": split.test, "val": split.val}
    logits = {}
    with deterministic_algorithms():
        for name, part in parts.items():
            if len(part.labels):
                logits[name] = predict_logits(
                    loaded.model, part.images, loaded.normalizer, target, settings
                ).numpy()
    val = (split.val.labels.numpy(), logits["val"]) if "val" in logits else None
    return _compare_with_stored(stored, (split.test.labels.numpy(), logits["test"]), val)


COMPARED = ("test_accuracy", "test_loss", "macro_f1", "weighted_f1", "ece", "ece_calibrated")


def _compare_with_stored(
    stored: dict[str, Any],
    test: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
) -> dict[str, Any]:
    labels, logits = test
    metrics = summarize_predictions(labels, logits, CLASS_NAMES)
    metrics.update(calibration_metrics(labels, logits, *(val or ())))
    compared = [k for k in COMPARED if isinstance(stored.get(k), (int, float))]
    mismatches = {
        k: (stored.get(k), metrics[k])
        for k in compared
        if not np.isclose(stored[k], metrics[k], rtol=0, atol=1e-6)
    }
    metrics["matches_stored"] = bool(compared) and not mismatches
    metrics["compared"] = compared
    metrics["mismatches"] = mismatches
    return metrics
