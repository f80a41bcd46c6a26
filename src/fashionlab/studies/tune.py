"""`fashionlab tune`: hyperparameter search with Ray Tune over ranges given in a study file.

The study file gets a `tune:` section naming one of its runs and a search space over that
run's config fields::

    tune:
      run: CNN                      # a run label (default: the first run)
      metric: val_loss              # or val_accuracy
      num_samples: 8
      scheduler: asha               # stop weak trials early (or: none)
      space:
        lr: {loguniform: [1.0e-4, 1.0e-2]}
        batch_size: {choice: [64, 128]}
        weight_decay: {uniform: [0.0, 1.0e-3]}

Every trial is an ordinary fashionlab run (folder `<out>/tune/trial-<id>`) that reports each
epoch's validation metrics to Ray; ASHA stops the weak ones after `grace_period` epochs (their
folders stay resumable). The best trial's settings go to `<out>/tune.json`.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fashionlab._io import atomic_write_json
from fashionlab.config import TrainConfig, describe_validation_error
from fashionlab.errors import ConfigError, RunError
from fashionlab.studies.backends import (
    import_ray,
    ray_session,
    require_free_cpu,
    threads_per_worker,
)
from fashionlab.studies.spec import TuneSpec, load_study, plan_study
from fashionlab.tracking import TrackingSettings
from fashionlab.training import train


def search_space(spec: TuneSpec) -> dict[str, Any]:
    """The space as Ray Tune sampling objects."""
    from ray import tune

    makers = {
        "loguniform": lambda v: tune.loguniform(v[0], v[1]),
        "uniform": lambda v: tune.uniform(v[0], v[1]),
        "randint": lambda v: tune.randint(v[0], v[1]),
        "choice": lambda v: tune.choice(v),
    }
    return {
        name: makers[kind](values) for name, d in spec.space.items() for kind, values in d.items()
    }


def _trial(
    sampled: dict[str, Any],
    base: TrainConfig,
    out_dir: Path,
    data_dir: Path | None,
    tracking: TrackingSettings | None = None,
) -> None:
    import torch
    from ray import tune

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    name = f"trial-{tune.get_context().get_trial_id()}"
    config = TrainConfig(**{**base.model_dump(), **sampled, "name": name})

    def report(row: dict[str, Any]) -> None:
        tune.report(
            {
                "epoch": row["epoch"],
                "val_loss": row["val_loss"],
                "val_accuracy": row["val_accuracy"],
                "train_loss": row["train_loss"],
            }
        )

    callbacks = tracking.callbacks() if tracking else []
    train(config, out_dir, overwrite=True, quiet=True, data_dir=data_dir, epoch_callback=report,
          callbacks=callbacks)  # fmt: skip


def tune_study(
    path: str | Path,
    out_dir: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    num_samples: int | None = None,
    address: str | None = None,
    workers: int | None = None,
    data_dir: str | Path | None = None,
    quiet: bool = False,
    loggers: Sequence[str] | str | None = None,
) -> dict[str, Any]:
    """Search the study's `tune:` space; write and return `<out>/tune.json`. With `loggers`,
    every trial logs like a study's run, to the experiment '<study>-tune'."""
    study = load_study(path)
    if study.tune is None:
        raise ConfigError(
            f"{path}: no 'tune:' section; add one with a search space "
            "(see `fashionlab tune --help`)"
        )
    spec = study.tune
    if num_samples is not None:
        if num_samples < 1:
            raise ConfigError(f"--num-samples must be >= 1, got {num_samples}")
        spec = spec.model_copy(update={"num_samples": num_samples})
    out = (Path(out_dir) if out_dir else Path("runs") / study.name).resolve()
    planned = plan_study(study, out, overrides, source=str(path))
    label = spec.run or planned[0].label
    matches = [p for p in planned if p.label == label]
    if not matches:
        labels = ", ".join(dict.fromkeys(p.label for p in planned))
        raise ConfigError(f"{path}: tune.run {label!r} is not a run label (labels: {labels})")
    base = matches[0].config
    for name, dist in spec.space.items():  # every extreme must be a valid config value
        for value in next(iter(dist.values())):
            try:
                TrainConfig(**{**base.model_dump(), name: value})
            except ValidationError as exc:  # e.g. "tune.space: lr: Input should be > 0"
                raise ConfigError(
                    f"{path}: {describe_validation_error(exc, 'tune.space')}"
                ) from None

    tracking = TrackingSettings.of(loggers, out, f"{study.name}-tune")
    import_ray()  # a one-line error without the extra, before anything starts
    tracking = tracking.prepare()
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    with ray_session(address, quiet) as ray:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        require_free_cpu(ray, address)
        concurrent = workers or spec.max_concurrent or cpus
        threads = threads_per_worker(min(concurrent, spec.num_samples), cpus)
        scheduler = None
        if spec.scheduler == "asha":
            scheduler = ASHAScheduler(
                time_attr="epoch",
                max_t=base.epochs,
                grace_period=min(spec.grace_period, base.epochs),
                reduction_factor=spec.reduction_factor,
            )
        tuner = tune.Tuner(
            tune.with_resources(
                tune.with_parameters(
                    _trial,
                    base=base,
                    out_dir=out / "tune",
                    data_dir=Path(data_dir).resolve() if data_dir else None,
                    tracking=tracking,
                ),
                {"cpu": threads},
            ),
            param_space=search_space(spec),
            tune_config=tune.TuneConfig(
                metric=spec.metric,
                mode=spec.mode,
                num_samples=spec.num_samples,
                max_concurrent_trials=concurrent,
                scheduler=scheduler,
                search_alg=BasicVariantGenerator(random_state=spec.seed),
            ),
            run_config=tune.RunConfig(storage_path=str(out / "ray"), name="tune", verbose=0),
        )
        results = tuner.fit()
    # ASHA ends a weak trial by stopping its process, which no hook sees.
    tracking.close_unfinished()

    trials = []
    for result in results:
        if result.error is not None:
            continue
        history = result.metrics_dataframe
        values = history[spec.metric].tolist() if history is not None else []
        best_value = (min if spec.mode == "min" else max)(values) if values else math.nan
        trials.append(
            {
                "trial": f"trial-{result.metrics.get('trial_id', '')}",
                "config": {k: result.config[k] for k in spec.space},
                spec.metric: best_value,
                "epochs": len(values),
            }
        )
    if not trials:
        first = str(results.errors[0]).strip().splitlines() if results.errors else ["?"]
        raise RunError(f"every tune trial failed; first error: {first[-1]}")
    trials.sort(key=lambda t: t[spec.metric], reverse=spec.mode == "max")
    summary = {
        "study": study.name,
        "run": label,
        "metric": spec.metric,
        "mode": spec.mode,
        "scheduler": spec.scheduler,
        "num_samples": spec.num_samples,
        "failed": len(results.errors),
        "best": trials[0],
        "trials": trials,
        "base_config": base.model_dump(mode="json"),
    }
    atomic_write_json(out / "tune.json", summary)
    if not quiet:
        for t in trials:
            settings = ", ".join(f"{k}={_fmt(v)}" for k, v in t["config"].items())
            print(
                f"{t['trial']:<22} {spec.metric} {t[spec.metric]:.4f}  epochs {t['epochs']:>3}  "
                f"{settings}",
                file=sys.stderr,
            )
    return summary


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
