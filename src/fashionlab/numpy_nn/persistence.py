"""`.npz` format of a fitted `NumpyMLP`: plain arrays and JSON strings, no pickle.

Keys: `format` ("fashionlab.NumpyMLP"), `version` (1), `params` (JSON hyperparameters),
`classes`, `n_features_in`, `best_epoch`, `history` (JSON list of epoch records), and the
weights `W0, b0, W1, b1, ...` with W_i of shape (fan_in, fan_out). Loading uses
`allow_pickle=False`, so opening a model file never runs code from it.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from fashionlab._io import atomic_write_with
from fashionlab._read import UnreadableFile, load_npz
from fashionlab.errors import DataError

FORMAT = "fashionlab.NumpyMLP"
VERSION = 1


@dataclass
class SavedModel:
    """What a model file holds, before it is turned back into an estimator."""

    params: dict[str, Any]
    classes: np.ndarray
    n_features_in: int
    best_epoch: int
    history: list[dict[str, Any]]
    weights: list[np.ndarray]
    biases: list[np.ndarray]


def write_model(path: str | os.PathLike, model: SavedModel) -> None:
    """Write `model` to exactly `path` (no suffix added), atomically."""
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "version": np.array(VERSION),
        "params": np.array(json.dumps(model.params, sort_keys=True)),
        "classes": np.asarray(model.classes),
        "n_features_in": np.array(model.n_features_in),
        "best_epoch": np.array(model.best_epoch),
        "history": np.array(json.dumps(model.history)),
    }
    for i, (w, b) in enumerate(zip(model.weights, model.biases, strict=True)):
        arrays[f"W{i}"] = w
        arrays[f"b{i}"] = b

    def writer(tmp_path: str) -> None:
        # A file object, not a name: np.savez would append ".npz" to the temp file's name.
        with open(tmp_path, "wb") as handle:
            np.savez(handle, **arrays)

    atomic_write_with(path, writer)


def read_model(path: str | os.PathLike) -> SavedModel:
    """Read a model file; DataError (one line) if it is missing, not ours, corrupt or truncated."""
    try:
        archive = load_npz(path)
    except FileNotFoundError:
        raise DataError(f"model file not found: {path}") from None
    except UnreadableFile as exc:
        raise DataError(f"cannot read model file {exc}") from None
    try:
        if str(archive["format"]) != FORMAT:
            raise DataError(f"{path} is not a NumpyMLP model file")
        version = int(archive["version"])
        if version != VERSION:
            raise DataError(f"{path} has model format version {version}; expected {VERSION}")
        n_layers = sum(1 for key in archive if key.startswith("W"))
        return SavedModel(
            params=json.loads(str(archive["params"])),
            classes=archive["classes"],
            n_features_in=int(archive["n_features_in"]),
            best_epoch=int(archive["best_epoch"]),
            history=json.loads(str(archive["history"])),
            weights=[archive[f"W{i}"] for i in range(n_layers)],
            biases=[archive[f"b{i}"] for i in range(n_layers)],
        )
    except DataError:
        raise
    except (
        OSError,
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        EOFError,
        zipfile.BadZipFile,
        zlib.error,
    ) as exc:
        raise DataError(
            f"cannot read model file {path}: corrupt or truncated ({_one_line(exc)})"
        ) from None


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
