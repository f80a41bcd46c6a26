"""Behaviour of the NumPy MLP estimator (fashionlab.numpy_nn.NumpyMLP) on small synthetic
problems: it learns, early stopping restores the best weights, seeds reproduce, save/load
round-trips, and every kind of bad input is a one-line ConfigError / DataError.
(Gradient correctness against PyTorch is in test_numpy_nn_gradcheck.py.)
"""

from __future__ import annotations

import ast
import gzip
import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from fashionlab.errors import ConfigError, DataError, TrainingDiverged
from fashionlab.numpy_nn import EarlyStopping, MiniBatcher, NumpyMLP
from fashionlab.numpy_nn.initializers import get_initializer
from fashionlab.numpy_nn.losses import cross_entropy

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "src" / "fashionlab" / "numpy_nn"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def teacher_problem(n: int = 2000, d: int = 10, k: int = 4, seed: int = 0):
    """Labels from a random linear teacher on Gaussian inputs: learnable to ~100%."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = (X @ rng.standard_normal((d, k))).argmax(axis=1)
    cut = n * 3 // 4
    return X[:cut], y[:cut], X[cut:], y[cut:]


def noisy_problem(seed: int = 0):
    """Few samples, many features, 30% flipped labels: a wide net overfits within a few epochs,
    so validation loss has a clear minimum."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((300, 40))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    flip = rng.random(300) < 0.3
    y[flip] = 1 - y[flip]
    return X[:150], y[:150], X[150:], y[150:]


def small_model(**overrides) -> NumpyMLP:
    params = dict(hidden_layers=(32,), lr=3e-3, max_epochs=20, random_state=0, batch_size=32)
    params.update(overrides)
    return NumpyMLP(**params)


# -- learning ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"activation": "gelu", "dropout": 0.2},
        {"activation": "leaky_relu", "init": "xavier"},
        {"activation": "tanh", "optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
        {"hidden_layers": (32, 16), "dtype": "float64"},
    ],
    ids=["relu-adam", "gelu-dropout", "leaky-xavier", "tanh-sgd-momentum", "deep-float64"],
)
def test_learns_a_learnable_problem(overrides) -> None:
    X, y, Xt, yt = teacher_problem()
    model = small_model(**overrides).fit(X, y)
    assert model.score(Xt, yt) > 0.93
    assert model.history_[-1]["train_loss"] < model.history_[0]["train_loss"]


def test_fitted_attributes_history_and_outputs() -> None:
    X, y, Xv, yv = teacher_problem()
    labels = np.array(["a", "b", "c", "d"])
    model = small_model(hidden_layers=(16, 8), max_epochs=3)
    assert model.fit(X, labels[y], Xv, labels[yv]) is model
    np.testing.assert_array_equal(model.classes_, labels)
    assert model.n_features_in_ == 10
    assert [w.shape for w in model.coefs_] == [(10, 16), (16, 8), (8, 4)]
    assert [b.shape for b in model.intercepts_] == [(16,), (8,), (4,)]
    assert [r["epoch"] for r in model.history_] == [1, 2, 3]
    keys = {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"}
    for record in model.history_:
        assert set(record) == keys
        assert 0 <= record["val_accuracy"] <= 1 and record["val_loss"] > 0
        assert record["lr"] == 3e-3 and record["seconds"] > 0
    json.dumps(model.history_)  # plain Python numbers: writable as JSON / CSV
    assert 1 <= model.best_epoch_ <= 3

    logits = model.decision_function(Xv)
    proba = model.predict_proba(Xv)
    assert logits.dtype == np.float32 and logits.shape == (len(Xv), 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(model.predict(Xv), labels[logits.argmax(axis=1)])
    assert model.score(Xv, labels[yv]) == np.mean(model.predict(Xv) == labels[yv])
    # The weights are stored as float32 throughout (no silent float64 upcast).
    assert all(w.dtype == np.float32 for w in model.coefs_ + model.intercepts_)


def test_no_validation_set_trains_all_epochs() -> None:
    X, y, _, _ = teacher_problem()
    model = small_model(max_epochs=4, patience=1).fit(X, y)
    assert len(model.history_) == 4 and model.best_epoch_ == 4
    assert model.history_[0]["val_loss"] is None and model.history_[0]["val_accuracy"] is None


def test_epoch_callback_and_verbose(capsys) -> None:
    X, y, Xv, yv = teacher_problem()
    seen = []
    small_model(max_epochs=2, verbose=True).fit(X, y, Xv, yv, epoch_callback=seen.append)
    assert [r["epoch"] for r in seen] == [1, 2]
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("epoch   1/2") and "val loss" in out[0]


# -- early stopping ------------------------------------------------------------------------


def test_early_stopping_restores_the_best_epoch() -> None:
    X, y, Xv, yv = noisy_problem()
    model = NumpyMLP(
        hidden_layers=(256,), lr=1e-2, batch_size=16, max_epochs=100, patience=4, random_state=0
    ).fit(X, y, Xv, yv)
    val_losses = [r["val_loss"] for r in model.history_]
    best = int(np.argmin(val_losses)) + 1
    assert model.best_epoch_ == best
    assert best < len(val_losses) < 100  # it overfitted, then stopped early...
    assert len(val_losses) == best + 4  # ...exactly `patience` epochs after the best one
    # ...and the model now holds the best epoch's weights, not the last epoch's.
    restored = cross_entropy(model.decision_function(Xv).astype(np.float64), yv)
    assert restored == pytest.approx(val_losses[best - 1], rel=1e-5)
    assert restored < val_losses[-1]


def test_early_stopping_class() -> None:
    stopper = EarlyStopping(patience=2)
    weights = np.zeros(3)
    decisions = []
    for epoch, loss in enumerate([1.0, 0.8, 0.9, 0.7, 0.75, np.nan], start=1):
        weights[:] = epoch
        decisions.append(stopper.update(epoch, loss, weights))
    assert decisions == [False, False, False, False, False, True]
    assert stopper.best_epoch == 4 and stopper.best_loss == 0.7
    np.testing.assert_array_equal(stopper.best_weights, [4, 4, 4])
    with pytest.raises(ConfigError):
        EarlyStopping(patience=0)


# -- reproducibility and persistence -------------------------------------------------------


def test_same_random_state_gives_identical_results() -> None:
    X, y, Xv, yv = teacher_problem()
    runs = [small_model(dropout=0.3, max_epochs=3).fit(X, y, Xv, yv) for _ in range(2)]
    for a, b in zip(
        runs[0].coefs_ + runs[0].intercepts_, runs[1].coefs_ + runs[1].intercepts_, strict=True
    ):
        np.testing.assert_array_equal(a, b)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in runs[0].history_]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in runs[1].history_]
    other = small_model(dropout=0.3, max_epochs=3, random_state=1).fit(X, y, Xv, yv)
    assert not np.array_equal(other.coefs_[0], runs[0].coefs_[0])


@pytest.mark.parametrize(
    "overrides",
    [
        {"dropout": 0.3, "shift": 1, "flip": True},  # every random stream
        {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9},  # a momentum buffer
    ],
    ids=["adam-dropout-augment", "sgd-momentum"],
)
def test_a_fit_resumed_from_its_state_equals_the_uninterrupted_fit(overrides) -> None:
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((400, 16)), rng.integers(0, 3, 400)  # 4x4 "images" for shift
    Xv, yv = rng.standard_normal((100, 16)), rng.integers(0, 3, 100)
    states: list[dict] = []
    whole = small_model(max_epochs=6, **overrides).fit(X, y, Xv, yv, state_callback=states.append)
    assert [s["epoch"] for s in states] == [1, 2, 3, 4, 5]  # none after the last epoch
    resumed = small_model(max_epochs=6, **overrides).fit(X, y, Xv, yv, resume_state=states[2])
    for a, b in zip(whole.coefs_ + whole.intercepts_, resumed.coefs_ + resumed.intercepts_,
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in whole.history_]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in resumed.history_]
    assert resumed.best_epoch_ == whole.best_epoch_
    with pytest.raises(ValueError, match="do not fit this network"):
        small_model(hidden_layers=(8,), max_epochs=6).fit(X, y, Xv, yv, resume_state=states[2])


def test_save_load_round_trip(tmp_path: Path) -> None:
    X, y, Xv, yv = teacher_problem()
    labels = np.array([10, 20, 30, 40])
    model = small_model(hidden_layers=(16, 8), activation="gelu", dropout=0.1, max_epochs=3)
    model.fit(X, labels[y], Xv, labels[yv])
    path = tmp_path / "sub" / "mlp.npz"
    model.save(path)
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["mlp.npz"]
    loaded = NumpyMLP.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(Xv), model.predict_proba(Xv))
    np.testing.assert_array_equal(loaded.predict(Xv), model.predict(Xv))
    np.testing.assert_array_equal(loaded.classes_, model.classes_)
    assert loaded.get_params() == model.get_params()
    assert loaded.history_ == model.history_ and loaded.best_epoch_ == model.best_epoch_
    assert loaded.n_features_in_ == 10


def test_pickle_round_trip_keeps_the_flat_parameter_buffer() -> None:
    X, y, Xv, _ = teacher_problem()
    model = small_model(max_epochs=2).fit(X, y)
    clone = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(clone.predict_proba(Xv), model.predict_proba(Xv))
    net = clone.network_
    assert all(np.shares_memory(p.data, net.flat_data) for p in net.parameters())
    assert np.shares_memory(clone.coefs_[0], net.flat_data)
    net.set_weights(np.zeros_like(net.flat_data))
    assert not net.dense_layers[0].weight.data.any()


def test_save_needs_a_fitted_model_and_keeps_the_exact_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not fitted"):
        NumpyMLP().save(tmp_path / "x.npz")
    X, y, _, _ = teacher_problem()
    small_model(max_epochs=1).fit(X, y).save(tmp_path / "model.bin")
    assert [p.name for p in tmp_path.iterdir()] == ["model.bin"]  # no ".npz" appended
    assert NumpyMLP.load(tmp_path / "model.bin").n_features_in_ == 10


@pytest.fixture(scope="module")
def saved_model_bytes(tmp_path_factory) -> bytes:
    X, y, _, _ = teacher_problem()
    path = tmp_path_factory.mktemp("m") / "good.npz"
    small_model(max_epochs=1).fit(X, y).save(path)
    return path.read_bytes()


@pytest.mark.parametrize(
    "make_bytes",
    [
        lambda good: good[: len(good) // 2],  # truncated
        lambda good: good[:-30],  # truncated inside the zip directory
        lambda good: b"",  # empty
        lambda good: b"not a model at all" * 10,  # garbage
        # Same length, different bytes inside a member: the zip CRC check catches it.
        lambda good: good.replace("fashionlab.NumpyMLP".encode("utf-32-le"), b"x" * 76),
    ],
    ids=["half", "tail-cut", "empty", "garbage", "bytes-changed"],
)
def test_load_rejects_corrupt_files(tmp_path: Path, saved_model_bytes: bytes, make_bytes) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(make_bytes(saved_model_bytes))
    with pytest.raises(DataError) as info:
        NumpyMLP.load(path)
    assert "\n" not in str(info.value)


def test_load_rejects_missing_foreign_and_inconsistent_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        NumpyMLP.load(tmp_path / "missing.npz")
    np.save(tmp_path / "array.npy", np.zeros(3))
    with pytest.raises(DataError, match="not an .npz"):
        NumpyMLP.load(tmp_path / "array.npy")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(DataError, match="corrupt"):
        NumpyMLP.load(tmp_path / "other.npz")
    # Valid archive whose weights do not fit its own hyperparameters.
    X, y, _, _ = teacher_problem()
    small_model(max_epochs=1).fit(X, y).save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as f:
        arrays = dict(f)
    np.savez(tmp_path / "inconsistent.npz", **dict(arrays, W0=np.zeros((3, 3), np.float32)))
    with pytest.raises(DataError, match="inconsistent"):
        NumpyMLP.load(tmp_path / "inconsistent.npz")
    np.savez(tmp_path / "foreign.npz", **dict(arrays, format=np.array("someone.else")))
    with pytest.raises(DataError, match="not a NumpyMLP model file"):
        NumpyMLP.load(tmp_path / "foreign.npz")
    np.savez(tmp_path / "bad-params.npz", **dict(arrays, params=np.array('{"lr": -1}')))
    with pytest.raises(DataError, match="invalid hyperparameters"):
        NumpyMLP.load(tmp_path / "bad-params.npz")


# -- bad input -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fitted() -> NumpyMLP:
    X, y, _, _ = teacher_problem()
    return small_model(max_epochs=1).fit(X, y)


def _raises_one_line(error: type[Exception], fn, *args, match: str | None = None, **kwargs):
    with pytest.raises(error, match=match) as info:
        fn(*args, **kwargs)
    assert "\n" not in str(info.value)


def test_predict_time_input_errors(fitted: NumpyMLP) -> None:
    X, y, _, _ = teacher_problem()
    _raises_one_line(DataError, fitted.predict, X[:, :5], match="5 features")
    bad = X[:4].copy()
    bad[1, 2] = np.nan
    _raises_one_line(DataError, fitted.predict, bad, match="NaN")
    bad[1, 2] = np.inf
    _raises_one_line(DataError, fitted.predict_proba, bad, match="infinite")
    _raises_one_line(DataError, fitted.score, X[:4], [0, 1, 2, 7], match="outside the classes")
    _raises_one_line(DataError, fitted.score, X[:4], ["a", "b", "c", "d"])
    _raises_one_line(DataError, fitted.predict, X[0], match="2-D")
    _raises_one_line(DataError, fitted.predict, X[:0], match="empty")
    _raises_one_line(ConfigError, NumpyMLP().predict, X, match="not fitted")
    assert not hasattr(NumpyMLP(), "coefs_")


def test_fit_time_input_errors() -> None:
    X, y, Xv, yv = teacher_problem()
    model = small_model(max_epochs=1)
    _raises_one_line(DataError, model.fit, X[:0], y[:0], match="empty")
    nan_X = X.copy()
    nan_X[3, 3] = np.nan
    _raises_one_line(DataError, model.fit, nan_X, y, match="NaN")
    inf_val = Xv.copy()
    inf_val[0, 0] = -np.inf
    _raises_one_line(DataError, model.fit, X, y, inf_val, yv, match="X_val")
    _raises_one_line(DataError, model.fit, X, y, Xv, yv + 10, match="outside the classes")
    _raises_one_line(DataError, model.fit, X, y, Xv[:, :3], yv, match="3 features")
    _raises_one_line(DataError, model.fit, X, y[:-1], match="labels for")
    _raises_one_line(DataError, model.fit, X, np.zeros(len(X)), match="single class")
    _raises_one_line(DataError, model.fit, X, np.where(y == 0, np.nan, y), match="NaN")
    _raises_one_line(DataError, model.fit, X.astype(np.float64) * 1e300, y, match="infinite")
    _raises_one_line(ConfigError, model.fit, X, y, Xv, None, match="both")
    assert not hasattr(model, "network_")  # failed fits leave nothing half-fitted


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"activation": "swish"}, "unknown activation"),
        ({"activation": None}, "activation"),
        ({"optimizer": "rmsprop"}, "unknown optimizer"),
        ({"init": "orthogonal"}, "unknown init"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"lr": 0}, "lr"),
        ({"lr": -1e-3}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"momentum": 1.0}, "momentum"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_epochs": 2.5}, "max_epochs"),
        ({"patience": 0}, "patience"),
        ({"hidden_layers": (16, 0)}, "hidden_layers"),
        ({"hidden_layers": "big"}, "hidden_layers"),
        ({"dtype": "float16"}, "dtype"),
        ({"random_state": -1}, "random_state"),
        ({"shift": -1}, "shift"),
        ({"shift": 1.5}, "shift"),
        ({"flip": "yes"}, "flip"),
        ({"image_shape": (3,)}, "image_shape"),
        ({"shift": 1}, "not a square image"),  # 10 features
        ({"flip": True, "image_shape": (3, 4)}, "12 pixels"),
    ],
)
def test_bad_hyperparameters_are_config_errors(params, match: str) -> None:
    X, y, _, _ = teacher_problem(n=40)
    model = NumpyMLP(**params)  # __init__ only stores; fit validates (scikit-learn convention)
    _raises_one_line(ConfigError, model.fit, X, y, match=match)


def test_get_set_params_and_repr() -> None:
    model = NumpyMLP(hidden_layers=(8,), lr=0.01)
    params = model.get_params()
    assert params["hidden_layers"] == (8,) and params["lr"] == 0.01 and len(params) == 16
    assert model.set_params(dropout=0.5, activation="tanh") is model
    assert model.dropout == 0.5 and model.activation == "tanh"
    _raises_one_line(ConfigError, model.set_params, learning_rate=0.1, match="learning_rate")
    assert repr(model) == "NumpyMLP(hidden_layers=(8,), activation='tanh', dropout=0.5, lr=0.01)"
    assert NumpyMLP(**params).get_params() == params  # clone-able like scikit-learn estimators


def test_divergence_raises_training_diverged() -> None:
    X, y, _, _ = teacher_problem()
    model = small_model(optimizer="sgd", lr=1e6, momentum=0.0, init="normal", max_epochs=5)
    _raises_one_line(TrainingDiverged, model.fit, X * 1e6, y, match="lower lr")


# -- augmentation --------------------------------------------------------------------------


def test_augmenter_shifts_with_background_fill_and_mirrors() -> None:
    from fashionlab.numpy_nn.augment import BatchAugmenter

    n, side = 400, 5
    images = np.zeros((n, side, side), dtype=np.float32)
    images[:, 2, 3] = 1.0  # one bright pixel right of the centre
    fill = -np.arange(side * side, dtype=np.float32).reshape(side, side) - 1  # all negative
    flat = images.reshape(n, -1)
    out = BatchAugmenter((side, side), shift=1, flip=False, fill=fill)(
        flat, np.random.default_rng(0)
    ).reshape(n, side, side)
    for img in out:
        (row,), (col,) = np.nonzero(img == 1.0)
        assert abs(row - 2) <= 1 and abs(col - 3) <= 1
        # Every other pixel is either background 0 or, where it came from outside, the fill
        # value of that destination pixel.
        other = (img != 1.0) & (img != 0.0)
        assert np.array_equal(img[other], fill[other])
    moved = {tuple(np.argwhere(img == 1.0)[0]) for img in out}
    assert len(moved) == 9  # all 3x3 offsets occur
    assert np.array_equal(flat, images.reshape(n, -1)) and flat.sum() == n  # input untouched

    mirrored = BatchAugmenter((side, side), shift=0, flip=True, fill=fill)(
        flat, np.random.default_rng(0)
    ).reshape(n, side, side)
    cols = np.array([np.argwhere(img == 1.0)[0][1] for img in mirrored])
    assert set(cols) == {1, 3} and 0.4 < np.mean(cols == 1) < 0.6  # 3 -> 5-1-3 = 1, half the time


def test_augmented_fit_is_seeded_and_differs_from_plain() -> None:
    rng = np.random.default_rng(1)
    X = rng.standard_normal((300, 16)).astype(np.float32)
    y = (X[:, :8].sum(1) > 0).astype(int)
    fits = [
        small_model(shift=1, flip=True, max_epochs=3).fit(X, y).coefs_[0].copy(),
        small_model(shift=1, flip=True, max_epochs=3).fit(X, y).coefs_[0].copy(),
        small_model(max_epochs=3).fit(X, y).coefs_[0].copy(),
    ]
    assert np.array_equal(fits[0], fits[1])
    assert not np.allclose(fits[0], fits[2])


def test_augmentation_settings_survive_save_and_load(tmp_path: Path) -> None:
    X, y, _, _ = teacher_problem(n=200, d=12)
    model = small_model(shift=1, flip=True, image_shape=(3, 4), max_epochs=2).fit(X, y)
    model.save(tmp_path / "m.npz")
    loaded = NumpyMLP.load(tmp_path / "m.npz")
    assert (loaded.shift, loaded.flip, loaded.image_shape) == (1, True, (3, 4))
    assert np.array_equal(loaded.predict(X), model.predict(X))


# -- building blocks -----------------------------------------------------------------------


def test_minibatcher_covers_every_sample_once() -> None:
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    batcher = MiniBatcher(X, y, batch_size=4)
    assert len(batcher) == 3
    seen = []
    for xb, yb in batcher.epoch(np.random.default_rng(0)):
        np.testing.assert_array_equal(xb[:, 0], 2 * yb)  # rows and labels stay paired
        seen.extend(yb.tolist())
    assert sorted(seen) == list(range(10)) and seen != list(range(10))
    assert [len(yb) for _, yb in batcher.epoch(None)] == [4, 4, 2]


@pytest.mark.parametrize(
    ("name", "std"), [("he", (2 / 300) ** 0.5), ("xavier", (2 / 500) ** 0.5), ("normal", 0.01)]
)
def test_initializer_scales(name: str, std: float) -> None:
    w = get_initializer(name)(300, 200, np.random.default_rng(0))
    assert w.shape == (300, 200)
    assert abs(w.mean()) < 0.05 * std and w.std() == pytest.approx(std, rel=0.02)


def test_package_never_imports_torch() -> None:
    files = sorted(PACKAGE_DIR.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "torch" or n.startswith("torch.") for n in names), path.name


# -- real data (quick sanity check, skipped when the files are absent) ----------------------


def _read_idx_gz(path: Path) -> np.ndarray:
    """Tiny IDX reader for this test only (the real loader is fashionlab.data)."""
    data = gzip.decompress(path.read_bytes())
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@pytest.mark.slow
@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Fashion-MNIST not installed")
def test_quick_sanity_on_real_fashion_mnist() -> None:
    X = _read_idx_gz(FASHION_DIR / "train-images-idx3-ubyte.gz")[:4000].reshape(4000, -1)
    y = _read_idx_gz(FASHION_DIR / "train-labels-idx1-ubyte.gz")[:4000]
    X = (X.astype(np.float32) / 255 - 0.2860) / 0.3530  # the study's global mean / std
    model = NumpyMLP(hidden_layers=(64,), batch_size=128, max_epochs=4, lr=3e-3, random_state=0)
    model.fit(X[:3000], y[:3000])
    assert model.score(X[3000:], y[3000:]) > 0.78  # ~0.82; the ceiling of an MLP is ~0.89
