"""Early stopping on validation loss with patience, keeping a copy of the best weights."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fashionlab.errors import ConfigError


class EarlyStopping:
    """Call `update(epoch, val_loss, weights)` after each epoch; it returns True when training
    should stop, i.e. after `patience` consecutive epochs whose loss did not beat the best by
    more than `min_delta`. `best_weights` is a copy of the weights at `best_epoch`.

    A NaN loss never counts as an improvement.
    """

    def __init__(self, patience: int = 5, min_delta: float = 0.0) -> None:
        if isinstance(patience, bool) or not isinstance(patience, (int, np.integer)):
            raise ConfigError(f"patience must be an integer >= 1, got {patience!r}")
        if patience < 1:
            raise ConfigError(f"patience must be an integer >= 1, got {patience!r}")
        if not min_delta >= 0:
            raise ConfigError(f"min_delta must be >= 0, got {min_delta!r}")
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.best_loss = math.inf
        self.best_epoch: int | None = None
        self.best_weights: np.ndarray | None = None
        self.bad_epochs = 0

    def update(self, epoch: int, val_loss: float, weights: np.ndarray) -> bool:
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss = float(val_loss)
            self.best_epoch = epoch
            if self.best_weights is None or self.best_weights.shape != weights.shape:
                self.best_weights = weights.copy()
            else:
                np.copyto(self.best_weights, weights)
            self.bad_epochs = 0
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def state_dict(self) -> dict[str, Any]:
        weights = None if self.best_weights is None else self.best_weights.copy()
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch,
                "best_weights": weights, "bad_epochs": self.bad_epochs}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_loss = float(state["best_loss"])
        self.best_epoch = None if state["best_epoch"] is None else int(state["best_epoch"])
        weights = state["best_weights"]
        self.best_weights = None if weights is None else np.array(weights, copy=True)
        self.bad_epochs = int(state["bad_epochs"])
