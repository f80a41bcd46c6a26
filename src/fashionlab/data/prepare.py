"""The data a run trains and is tested on, as its config says."""

from __future__ import annotations

from pathlib import Path

from fashionlab.config import TrainConfig
from fashionlab.data.dataset import load_fashion_mnist
from fashionlab.data.splits import Split, make_split
from fashionlab.data.transforms import Normalizer, make_normalizer


def prepare_data(
    config: TrainConfig, data_dir: str | Path | None = None
) -> tuple[Split, Normalizer]:
    """Load, split (and subset) the data as the config says; fit the normaliser on train only."""
    cv = None if config.cv_folds is None else (config.cv_folds, config.cv_fold)
    split = make_split(
        load_fashion_mnist(data_dir), config.split, config.val_fraction, config.split_seed, cv
    )
    if config.train_subset:
        split.train = split.train.first(config.train_subset)
    if config.eval_subset:
        split.val = split.val.first(config.eval_subset)
        split.test = split.test.first(config.eval_subset)
    return split, make_normalizer(config.normalization, split.train.images)
