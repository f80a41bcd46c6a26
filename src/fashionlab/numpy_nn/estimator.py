"""`NumpyMLP`: the from-scratch MLP behind a scikit-learn-style estimator.

Conventions (scikit-learn): `__init__` only stores hyperparameters; `fit` validates them and
the data, draws all randomness from `np.random.default_rng(random_state)` inside fit, learns
attributes ending in `_`, and returns self. A failed fit leaves earlier fitted state untouched.

Training: mini-batch Adam/SGD on mean softmax cross-entropy; with a validation set, early
stopping on validation loss (patience) and the best epoch's weights restored at the end.
"""

from __future__ import annotations

import inspect
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fashionlab.errors import ConfigError, DataError, TrainingDiverged
from fashionlab.numpy_nn._validation import (
    check_hyperparameters,
    check_X,
    check_y,
    encode_labels,
)
from fashionlab.numpy_nn.augment import BatchAugmenter, square_image_shape
from fashionlab.numpy_nn.batching import MiniBatcher
from fashionlab.numpy_nn.early_stopping import EarlyStopping
from fashionlab.numpy_nn.losses import SoftmaxCrossEntropy, cross_entropy, softmax
from fashionlab.numpy_nn.network import MLP
from fashionlab.numpy_nn.optim import Optimizer, make_optimizer
from fashionlab.numpy_nn.persistence import SavedModel, read_model, write_model

EpochCallback = Callable[[dict[str, Any]], None]


class NumpyMLP:
    """Multi-layer perceptron classifier in pure NumPy.

    Parameters
    ----------
    hidden_layers: widths of the hidden layers, e.g. (400, 250, 100); () is softmax regression.
    activation: 'relu', 'leaky_relu' (slope 0.01), 'tanh' or 'gelu' (tanh approximation).
    dropout: inverted-dropout rate in [0, 1) after every hidden activation.
    init: 'he', 'xavier' or 'normal' (std 0.01) weight initialisation; biases start at 0.
    optimizer: 'adam' or 'sgd' (SGD uses `momentum`; momentum=0 is plain SGD).
    lr: learning rate (> 0). momentum: SGD momentum in [0, 1), ignored by Adam.
    batch_size, max_epochs: mini-batch size and epoch budget.
    patience: early-stopping patience in epochs (used only when fit gets a validation set).
    shift, flip: training-time augmentation for image inputs (see `augment.BatchAugmenter`):
        shift each training sample by up to `shift` pixels per axis, mirror it left-right with
        probability 1/2 when `flip`. Off by default (shift=0, flip=False).
    image_shape: (height, width) of the images behind the features, for augmentation; None
        means square (28x28 for 784 features).
    random_state: seed (int) for init, shuffling, dropout and augmentation; None draws fresh
        entropy.
    dtype: 'float32' (fast) or 'float64' (gradient checks).
    verbose: print one line per epoch.

    Fitted attributes: `coefs_` (list of (fan_in, fan_out) arrays), `intercepts_`, `classes_`,
    `n_features_in_`, `history_` (one dict per epoch: epoch, train_loss, train_accuracy,
    val_loss, val_accuracy, lr, seconds -- val_* are None without a validation set; train_*
    are averages over the epoch's mini-batches, with dropout active; seconds is the epoch's
    wall time including validation), `best_epoch_` (1-based
    epoch whose weights the model holds), `network_` (the `MLP`).
    """

    def __init__(
        self,
        hidden_layers: tuple[int, ...] = (128,),
        activation: str = "relu",
        dropout: float = 0.0,
        init: str = "he",
        optimizer: str = "adam",
        lr: float = 1e-3,
        momentum: float = 0.9,
        batch_size: int = 64,
        max_epochs: int = 200,
        patience: int = 5,
        shift: int = 0,
        flip: bool = False,
        image_shape: tuple[int, int] | None = None,
        random_state: int | None = None,
        dtype: str = "float32",
        verbose: bool = False,
    ) -> None:
        self.hidden_layers = hidden_layers
        self.activation = activation
        self.dropout = dropout
        self.init = init
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.shift = shift
        self.flip = flip
        self.image_shape = image_shape
        self.random_state = random_state
        self.dtype = dtype
        self.verbose = verbose

    # -- hyperparameters ---------------------------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [name for name in signature.parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Hyperparameters as given to __init__ (`deep` is accepted for scikit-learn)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> NumpyMLP:
        """Set hyperparameters by name; ConfigError for a name __init__ does not take."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ConfigError(
                    f"unknown NumpyMLP hyperparameter {name!r}; valid: {', '.join(valid)}"
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            name: p.default for name, p in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if not _same(value, defaults.get(name))
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    # -- training ----------------------------------------------------------------------------

    def fit(
        self,
        X: Any,
        y: Any,
        X_val: Any = None,
        y_val: Any = None,
        *,
        epoch_callback: EpochCallback | None = None,
        state_callback: EpochCallback | None = None,
        resume_state: dict[str, Any] | None = None,
    ) -> NumpyMLP:
        """Train on (X, y); with (X_val, y_val), stop early on validation loss and keep the
        best epoch's weights. `epoch_callback(record)` is called after every epoch with that
        epoch's history record (e.g. for a progress line). `state_callback(state)` gets, after
        every epoch that training goes on from, everything the next epoch depends on
        (weights, optimizer, random streams, early stopping, history); `fit` with the same
        data and parameters and `resume_state=state` continues from there, as if never
        stopped. Returns self."""
        hp = check_hyperparameters(self.get_params())
        dtype = hp["dtype"]
        X = check_X(X, dtype, what="training X")
        y = check_y(y, len(X), what="y")
        classes = np.unique(y)
        if len(classes) < 2:
            raise DataError(f"y holds a single class ({classes[0]!r}); need at least 2 classes")
        y_enc = encode_labels(y, classes, what="y")
        if (X_val is None) != (y_val is None):
            raise ConfigError("give both X_val and y_val, or neither")
        has_val = X_val is not None
        if has_val:
            X_val = check_X(X_val, dtype, n_features=X.shape[1], what="X_val")
            y_val_enc = encode_labels(check_y(y_val, len(X_val), what="y_val"), classes, "y_val")

        rng = np.random.default_rng(hp["random_state"])
        # Independent streams: e.g. a different dropout rate must not change the initial weights.
        # (spawn(4)[:3] equals spawn(3), so adding the augmentation stream changed no result.)
        init_rng, shuffle_rng, dropout_rng, augment_rng = rng.spawn(4)
        augmenter = _make_augmenter(hp, X)
        network = MLP(
            (X.shape[1], *hp["hidden_layers"], len(classes)),
            activation=hp["activation"],
            dropout=hp["dropout"],
            init=hp["init"],
            init_rng=init_rng,
            dropout_rng=dropout_rng,
            dtype=dtype,
        )
        optimizer = make_optimizer(
            hp["optimizer"], network.parameters(), lr=hp["lr"], momentum=hp["momentum"]
        )
        loss_fn = SoftmaxCrossEntropy()
        batcher = MiniBatcher(X, y_enc, hp["batch_size"])
        stopper = EarlyStopping(hp["patience"]) if has_val else None
        history: list[dict[str, Any]] = []
        streams = {"shuffle": shuffle_rng, "dropout": dropout_rng, "augment": augment_rng}
        first_epoch = 1
        if resume_state is not None:
            first_epoch = _restore_fit_state(resume_state, network, optimizer, stopper, streams)
            history = [dict(record) for record in resume_state["history"]]

        for epoch in range(first_epoch, hp["max_epochs"] + 1):
            started = time.perf_counter()
            train_loss, train_accuracy = _train_one_epoch(
                network, loss_fn, optimizer, batcher, shuffle_rng, augmenter, augment_rng
            )
            if not math.isfinite(train_loss):
                raise TrainingDiverged(
                    f"training loss became {train_loss} in epoch {epoch}; lower lr "
                    f"(now {hp['lr']}) or check the inputs' scale"
                )
            record: dict[str, Any] = {
                "epoch": epoch,
                "train_loss": train_loss,
                "train_accuracy": train_accuracy,
                "val_loss": None,
                "val_accuracy": None,
                "lr": float(optimizer.lr),
            }
            stop = False
            if has_val:
                val_logits = network.predict_logits(X_val)
                record["val_loss"] = cross_entropy(val_logits, y_val_enc)
                record["val_accuracy"] = float(np.mean(val_logits.argmax(axis=1) == y_val_enc))
                stop = stopper.update(epoch, record["val_loss"], network.flat_data)
            record["seconds"] = time.perf_counter() - started
            history.append(record)
            if self.verbose:
                print(_format_record(record, hp["max_epochs"]), flush=True)
            if epoch_callback is not None:
                epoch_callback(dict(record))
            if stop:
                break
            if state_callback is not None and epoch < hp["max_epochs"]:
                state_callback(_fit_state(epoch, network, optimizer, stopper, streams, history))

        best_epoch = history[-1]["epoch"]
        if stopper is not None and stopper.best_weights is not None:
            network.set_weights(stopper.best_weights)
            best_epoch = stopper.best_epoch
        self._set_fitted(network, classes, X.shape[1], history, best_epoch)
        return self

    def _set_fitted(
        self,
        network: MLP,
        classes: np.ndarray,
        n_features: int,
        history: list[dict[str, Any]],
        best_epoch: int,
    ) -> None:
        self.network_ = network
        self.classes_ = classes
        self.n_features_in_ = int(n_features)
        self.history_ = history
        self.best_epoch_ = int(best_epoch)

    # Derived from the network rather than stored, so they can never go stale (e.g. after
    # unpickling, which re-packs the network's parameters into a fresh flat buffer).
    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices, (fan_in, fan_out) each: views of the fitted network's parameters."""
        return [
            layer.weight.data for layer in self._fitted_network_or_attribute_error().dense_layers
        ]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors: views of the fitted network's parameters."""
        return [layer.bias.data for layer in self._fitted_network_or_attribute_error().dense_layers]

    def _fitted_network_or_attribute_error(self) -> MLP:
        network = self.__dict__.get("network_")
        if network is None:  # AttributeError keeps hasattr(model, "coefs_") False before fit
            raise AttributeError("coefs_ and intercepts_ exist once the model is fitted")
        return network

    # -- inference ---------------------------------------------------------------------------

    def _check_fitted(self) -> MLP:
        network = getattr(self, "network_", None)
        if network is None:
            raise ConfigError("this NumpyMLP is not fitted yet; call fit() or NumpyMLP.load()")
        return network

    def decision_function(self, X: Any) -> np.ndarray:
        """Logits, shape (n_samples, n_classes), in the model's dtype."""
        network = self._check_fitted()
        X = check_X(X, network.dtype, n_features=self.n_features_in_, what="X")
        return network.predict_logits(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (softmax of the logits); columns follow `classes_`."""
        return softmax(self.decision_function(X))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class label per sample."""
        logits = self.decision_function(X)  # first: it raises if the model is not fitted
        return self.classes_[logits.argmax(axis=1)]

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on (X, y); DataError if y has labels the model never saw."""
        logits = self.decision_function(X)
        y_enc = encode_labels(check_y(y, len(logits), what="y"), self.classes_, what="y")
        return float(np.mean(logits.argmax(axis=1) == y_enc))

    # -- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> None:
        """Write the fitted model to `path` (an .npz archive, written atomically)."""
        network = self._check_fitted()
        params = self.get_params()
        params["hidden_layers"] = [int(h) for h in network.layer_sizes[1:-1]]
        params["dtype"] = network.dtype.name
        if params["random_state"] is not None:
            params["random_state"] = int(params["random_state"])
        if params["image_shape"] is not None:
            params["image_shape"] = [int(v) for v in params["image_shape"]]
        params["shift"], params["flip"] = int(params["shift"]), bool(params["flip"])
        write_model(
            path,
            SavedModel(
                params=params,
                classes=self.classes_,
                n_features_in=self.n_features_in_,
                best_epoch=self.best_epoch_,
                history=self.history_,
                weights=[w.copy() for w in self.coefs_],
                biases=[b.copy() for b in self.intercepts_],
            ),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> NumpyMLP:
        """A fitted NumpyMLP from a file written by `save`; DataError if the file is missing,
        corrupt, truncated or inconsistent."""
        saved = read_model(path)
        try:
            params = dict(saved.params)
            for key in ("hidden_layers", "image_shape"):  # JSON has no tuples
                if isinstance(params.get(key), list):
                    params[key] = tuple(params[key])
            model = cls().set_params(**params)
            hp = check_hyperparameters(model.get_params())
        except (ConfigError, TypeError) as exc:
            raise DataError(f"model file {path} holds invalid hyperparameters: {exc}") from None
        sizes = (saved.n_features_in, *hp["hidden_layers"], len(saved.classes))
        if len(saved.weights) != len(sizes) - 1 or saved.classes.ndim != 1:
            raise DataError(f"model file {path} is inconsistent: wrong number of layers")
        network = MLP(
            sizes,
            activation=hp["activation"],
            dropout=hp["dropout"],
            init=hp["init"],
            dtype=hp["dtype"],
        )
        layers = zip(network.dense_layers, saved.weights, saved.biases, strict=True)
        for i, (layer, w, b) in enumerate(layers):
            if w.shape != layer.weight.shape or b.shape != layer.bias.shape:
                raise DataError(
                    f"model file {path} is inconsistent: layer {i} has weights {w.shape} and "
                    f"bias {b.shape}, expected {layer.weight.shape} and {layer.bias.shape}"
                )
            if not (np.isfinite(w).all() and np.isfinite(b).all()):
                raise DataError(f"model file {path} is corrupt: layer {i} has non-finite weights")
            np.copyto(layer.weight.data, w)
            np.copyto(layer.bias.data, b)
        model._set_fitted(
            network, saved.classes, saved.n_features_in, saved.history, saved.best_epoch
        )
        return model


def _make_augmenter(hp: dict[str, Any], X: np.ndarray) -> BatchAugmenter | None:
    if not (hp["shift"] or hp["flip"]):
        return None
    n_features = X.shape[1]
    shape = hp["image_shape"]
    if shape is None:
        try:
            shape = square_image_shape(n_features)
        except ValueError:
            raise ConfigError(
                f"shift/flip augment images, but {n_features} features are not a square "
                "image; give image_shape=(height, width) or turn augmentation off"
            ) from None
    elif shape[0] * shape[1] != n_features:
        raise ConfigError(
            f"image_shape {shape} has {shape[0] * shape[1]} pixels but X has {n_features} features"
        )
    # The training inputs' per-feature minimum is the normalised empty-background value.
    return BatchAugmenter(shape, hp["shift"], hp["flip"], fill=X.min(axis=0))


def _fit_state(
    epoch: int,
    network: MLP,
    optimizer: Optimizer,
    stopper: EarlyStopping | None,
    streams: dict[str, np.random.Generator],
    history: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "weights": network.get_weights(),
        "optimizer": optimizer.state_dict(),
        "early_stopping": None if stopper is None else stopper.state_dict(),
        "streams": {name: rng.bit_generator.state for name, rng in streams.items()},
        "history": [dict(record) for record in history],
    }


def _restore_fit_state(
    state: dict[str, Any],
    network: MLP,
    optimizer: Optimizer,
    stopper: EarlyStopping | None,
    streams: dict[str, np.random.Generator],
) -> int:
    """Put a `_fit_state` back into a freshly built fit; returns the epoch to train next.
    A state from another network or data set is a ValueError."""
    weights = np.asarray(state["weights"])
    if weights.shape != network.flat_data.shape:
        raise ValueError(f"the saved weights ({weights.size}) do not fit this network")
    if (stopper is None) != (state["early_stopping"] is None):
        raise ValueError("the saved state was fitted with a different validation setting")
    network.set_weights(weights)
    optimizer.load_state_dict(state["optimizer"])
    if stopper is not None:
        stopper.load_state_dict(state["early_stopping"])
    for name, rng in streams.items():
        rng.bit_generator.state = state["streams"][name]
    return int(state["epoch"]) + 1


def _train_one_epoch(
    network: MLP,
    loss_fn: SoftmaxCrossEntropy,
    optimizer: Optimizer,
    batcher: MiniBatcher,
    rng: np.random.Generator,
    augmenter: BatchAugmenter | None = None,
    augment_rng: np.random.Generator | None = None,
) -> tuple[float, float]:
    """One pass over the shuffled training set; returns (mean loss, accuracy) over its
    mini-batches, or a non-finite loss as soon as one batch diverges."""
    loss_sum = 0.0
    correct = 0
    # Overflow warnings are noise here: a diverging loss is returned and reported by the caller.
    with np.errstate(over="ignore", invalid="ignore"):
        for xb, yb in batcher.epoch(rng):
            if augmenter is not None:
                xb = augmenter(xb, augment_rng)
            logits = network.forward(xb, training=True)
            loss = loss_fn.forward(logits, yb)
            if not math.isfinite(loss):
                return loss, math.nan
            loss_sum += loss * len(yb)
            correct += np.count_nonzero(logits.argmax(axis=1) == yb)
            network.backward(loss_fn.backward())
            optimizer.step()
    n = len(batcher.X)
    return loss_sum / n, int(correct) / n


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _format_record(record: dict[str, Any], max_epochs: int) -> str:
    text = (
        f"epoch {record['epoch']:>3}/{max_epochs}  "
        f"train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.4f}"
    )
    if record["val_loss"] is not None:
        text += f"  val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.4f}"
    return text + f"  {record['seconds']:.2f}s"
