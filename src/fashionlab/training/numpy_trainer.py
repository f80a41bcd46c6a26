"""Training the NumPy MLP (`numpy-mlp`) into a standard run folder.

Same inputs as the PyTorch trainer (split, normalisation, subsets from `TrainConfig`), same
outputs (config.yaml, history.csv, metrics.json, predictions.npz, env.json, complete), with the
estimator saved as `model.npz` instead of safetensors. With `model_args.features_run` the MLP
learns from a trained CNN run's trunk features (S1-FEAT) on the very same split.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from fashionlab.config import TrainConfig
from fashionlab.data import CLASS_NAMES, Split, prepare_data
from fashionlab.errors import ConfigError, RunError, one_line
from fashionlab.evaluation import calibration_metrics, summarize_predictions
from fashionlab.models import create_model, trunk_features
from fashionlab.numpy_nn import NumpyMLP
from fashionlab.runs import RunWriter, load_config
from fashionlab.runs.weights import load_model
from fashionlab.training.checkpoint import CHECKPOINT, read_checkpoint, write_checkpoint

SPLIT_FIELDS = ("split", "val_fraction", "split_seed", "train_subset", "eval_subset")
FEATURE_BATCH = 1000
# A CNN feature whose spread over the training images is under this fraction of the median
# feature's is treated as dead: see `standardize_features`.
DEAD_FEATURE_SPREAD = 0.01


def _estimator_settings(config: TrainConfig) -> dict[str, Any]:
    if config.optimizer not in ("adam", "sgd"):
        raise ConfigError(f"numpy-mlp supports optimizer adam or sgd, not {config.optimizer!r}")
    unsupported = {
        "weight_decay": config.weight_decay != 0,
        "scheduler": config.scheduler != "none",
        "label_smoothing": config.label_smoothing != 0,
        # Shift (crop_padding, zero fill) and flip run inside the estimator; the rest do not.
        "random erasing": config.erasing != 0,
        "reflect crop padding": bool(config.crop_padding) and config.crop_mode != "zero",
        "precision": config.precision == "bf16",  # auto means fp32 here
    }
    if any(unsupported.values()):
        names = ", ".join(k for k, bad in unsupported.items() if bad)
        raise ConfigError(f"numpy-mlp does not implement: {names}; remove those settings")
    return {
        "optimizer": config.optimizer,
        "lr": config.lr,
        "momentum": config.momentum,
        "batch_size": config.batch_size,
        "max_epochs": config.epochs,
        # No early stopping asked for: patience beyond the epoch budget never triggers.
        "patience": config.early_stopping_patience or config.epochs + 1,
        "random_state": config.seed,
        "shift": config.crop_padding,
        "flip": config.hflip,
    }


@torch.no_grad()
def cnn_features(run_dir: str | Path, split: Split) -> dict[str, np.ndarray]:
    """Trunk features (the CNN minus its classifier) of the run's model for train/val/test."""
    loaded = load_model(run_dir)
    out = {}
    for name, part in split.parts().items():
        images = part.images
        chunks = [
            trunk_features(loaded.model, loaded.normalizer(images[i : i + FEATURE_BATCH]))
            for i in range(0, len(images), FEATURE_BATCH)
        ]
        out[name] = torch.cat(chunks).flatten(1).numpy().astype(np.float32)
    return out


def _inputs(config: TrainConfig, data_dir) -> tuple[Split, dict[str, np.ndarray]]:
    split, normalizer = prepare_data(config, data_dir)
    source = config.model_args.get("features_run")
    if not source:
        return split, {
            name: normalizer(part.images).flatten(1).numpy() for name, part in split.parts().items()
        }
    cnn_config = load_config(source)
    differs = [f for f in SPLIT_FIELDS if getattr(cnn_config, f) != getattr(config, f)]
    if differs:
        raise ConfigError(
            f"features_run {source} used a different split ({', '.join(differs)}); "
            "the MLP must see the same train/val/test items as the CNN"
        )
    return split, standardize_features(cnn_features(source, split))


def standardize_features(feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """z-score every part with the training part's statistics, as for pixels; features that
    are (nearly) constant on the training images become 0 everywhere.

    Trunk features are ReLU outputs, and a unit can be dead on every training image yet fire
    on a few others: divided by its ~0 training spread, those values became z-scores in the
    tens of thousands, while the MLP's weights for the unit never moved from their random
    start (its training input is constant). That noise swamped the feature MLP."""
    train = feats["train"]
    mean, std = train.mean(0), train.std(0)
    positive = std[std > 0]
    floor = DEAD_FEATURE_SPREAD * float(np.median(positive)) if positive.size else 0.0
    live = std > floor
    scale = np.where(live, std, 1.0).astype(train.dtype)
    return {
        part: np.where(live, (x - mean) / scale, 0.0).astype(x.dtype) for part, x in feats.items()
    }


def _map_leaves(value: Any, kind: type, convert: Callable[[Any], Any]) -> Any:
    """`value` with every `kind` leaf of its dicts and lists converted."""
    if isinstance(value, kind):
        return convert(value)
    if isinstance(value, dict):
        return {key: _map_leaves(item, kind, convert) for key, item in value.items()}
    if isinstance(value, list):
        return [_map_leaves(item, kind, convert) for item in value]
    return value


def _tensors(value: Any) -> Any:
    """NumPy arrays as tensors, so `torch.load(weights_only=True)` reads the checkpoint back."""
    return _map_leaves(value, np.ndarray, lambda a: torch.from_numpy(np.ascontiguousarray(a)))


def _arrays(value: Any) -> Any:
    return _map_leaves(value, torch.Tensor, lambda t: t.numpy())


def _saved_fit_state(config: TrainConfig, run_dir: Path) -> dict[str, Any]:
    path = run_dir / CHECKPOINT
    payload = read_checkpoint(path, torch.device("cpu"))
    try:
        same = TrainConfig(**payload["config"]) == config
        state = _arrays(payload["state"])
        history = [dict(record) for record in state["history"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise RunError(
            f"{path}: not a usable checkpoint for this run ({type(exc).__name__}); start "
            "again with --overwrite"
        ) from None
    if not same:
        raise RunError(
            f"{run_dir}: config.yaml differs from the checkpoint's config; resume with the "
            "original config or start again with --overwrite"
        )
    return {**state, "history": history}


def train_numpy_run(
    config: TrainConfig,
    run_dir: Path,
    quiet: bool = False,
    data_dir: str | Path | None = None,
    resume: bool = False,
) -> Path:
    """Fit the NumPy MLP and write a complete run folder (the folder is prepared by `train`).
    After every epoch the fit's state goes to checkpoint.pt; `resume` continues from it.
    NumPy's BLAS gets the run's threads: `config.threads`, else PyTorch's count (which a
    study worker sets to its share of the cores)."""
    threads = config.threads or torch.get_num_threads()
    # Left alone, OpenBLAS starts a thread per core in every process: two study workers on
    # two cores would run four busy-waiting threads and slow each other down many times over.
    with threadpool_limits(limits=threads, user_api="blas"):
        return _fit_into_folder(config, run_dir, quiet, data_dir, resume, threads)


def _fit_into_folder(
    config: TrainConfig,
    run_dir: Path,
    quiet: bool,
    data_dir: str | Path | None,
    resume: bool,
    threads: int,
) -> Path:

    args = {k: v for k, v in config.model_args.items() if k != "features_run"}
    if config.model_args.get("features_run") and (config.crop_padding or config.hflip):
        raise ConfigError(
            "crop_padding/hflip augment images, but features_run trains on CNN features; "
            "remove them"
        )
    estimator = create_model(config.model, **args).set_params(**_estimator_settings(config))
    writer = RunWriter(run_dir)
    writer.write_config(config)
    writer.write_env(config.seed, "cpu (numpy)", threads)
    split, x = _inputs(config, data_dir)
    saved = _saved_fit_state(config, run_dir) if resume else None
    history: list[dict[str, Any]] = saved["history"] if saved else []

    def on_epoch(row: dict[str, Any]) -> None:
        history.append(row)
        writer.write_history(history)
        if not quiet:
            print(
                f"epoch {row['epoch']:>3}/{config.epochs}  train loss {row['train_loss']:.4f} "
                f"acc {row['train_accuracy']:.4f} | val loss {row['val_loss']:.4f} "
                f"acc {row['val_accuracy']:.4f} | {row['seconds']:.1f}s",
                file=sys.stderr,
            )

    def on_state(state: dict[str, Any]) -> None:
        payload = {"config": config.model_dump(mode="json"), "model": config.model,
                   "state": _tensors(state)}  # fmt: skip
        write_checkpoint(run_dir / CHECKPOINT, payload)

    try:
        estimator.fit(
            x["train"],
            split.train.labels.numpy(),
            x["val"],
            split.val.labels.numpy(),
            epoch_callback=on_epoch,
            state_callback=on_state,
            resume_state=saved,
        )
    except ValueError as exc:
        if saved is None:
            raise
        raise RunError(
            f"{run_dir / CHECKPOINT}: not a usable checkpoint for this run ({one_line(str(exc))}); "
            "start again with --overwrite"
        ) from None
    if not config.use_best_weights:
        raise ConfigError(
            "numpy-mlp always tests the best-validation epoch; set use_best_weights: true"
        )
    logits = estimator.decision_function(x["test"]).astype(np.float32)
    labels = split.test.labels.numpy()
    val_labels = split.val.labels.numpy()
    val_logits = estimator.decision_function(x["val"]).astype(np.float32)
    writer.write_predictions(
        labels, logits, split.test.indices, split.test_pool, (val_labels, val_logits,
        split.val.indices)
    )  # fmt: skip
    metrics = summarize_predictions(labels, logits, CLASS_NAMES)
    metrics.update(calibration_metrics(labels, logits, val_labels, val_logits))
    seconds = sum(r["seconds"] for r in history)
    metrics.update(
        {
            "model": config.model,
            "params": _count_params(estimator),
            "best_epoch": estimator.best_epoch_,
            "epochs_run": len(history),
            "best_val_loss": min(r["val_loss"] for r in history),
            "evaluated_weights": "best",
            # The reports' precision column: the estimator's float width (no autocast here).
            "precision_used": "fp32" if np.dtype(estimator.dtype) == np.float32 else "fp64",
            "train_seconds": seconds,
            "seconds_per_epoch": seconds / max(len(history), 1),
            "seed": config.seed,
            "input_features": int(x["train"].shape[1]),
        }
    )
    estimator.save(run_dir / "model.npz")
    writer.write_model_info(
        {
            "model": config.model,
            "framework": "numpy",
            "model_args": config.model_args,
            "params": metrics["params"],
            "class_names": list(CLASS_NAMES),
        }
    )
    writer.write_metrics(metrics)
    writer.mark_complete()
    if not quiet:
        print(
            f"test accuracy {metrics['test_accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}"
            f"  ->  {run_dir}",
            file=sys.stderr,
        )
    return run_dir


def _count_params(estimator) -> int:
    return int(sum(w.size for w in estimator.coefs_) + sum(b.size for b in estimator.intercepts_))


def recompute_logits(
    run_dir: str | Path, config: TrainConfig, data_dir: str | Path | None = None
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Reload `model.npz` and recompute the (labels, logits) of the test and the validation
    split (for `fashionlab evaluate`)."""

    estimator = NumpyMLP.load(Path(run_dir) / "model.npz")
    split, x = _inputs(config, data_dir)

    def scored(part: str) -> tuple[np.ndarray, np.ndarray]:
        labels = getattr(split, part).labels.numpy()
        return labels, estimator.decision_function(x[part]).astype(np.float32)

    return scored("test"), scored("val")
