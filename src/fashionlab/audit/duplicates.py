"""Duplicates in the data: byte-identical images, and test images close to a training image.

Exact duplicates are found by hashing each image's bytes; near-duplicates by the cosine
similarity of an embedding (pixels projected on the training set's principal components, or a
trained model's penultimate features), each test image against every training image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from fashionlab.errors import ConfigError

POOLS = ("train", "test")
PCA_CHUNK = 8192  # rows per step of the covariance and the projection


@dataclass
class DuplicateGroup:
    """Images with identical bytes: `members` are (pool, index) pairs, pool "train" or "test"."""

    members: list[tuple[str, int]]

    @property
    def pools(self) -> set[str]:
        return {pool for pool, _ in self.members}

    @property
    def kind(self) -> str:
        """ "within train", "within test" or "across" (copies in both)."""
        pools = self.pools
        return "across" if len(pools) > 1 else f"within {next(iter(pools))}"


def _check_images(images: np.ndarray, name: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ConfigError(
            f"{name}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}"
        )
    return np.ascontiguousarray(images)


def image_digests(images: np.ndarray) -> list[bytes]:
    """A 128-bit BLAKE2b digest of each image's bytes (equal digests: equal images)."""
    images = _check_images(images, "images")
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in images]


def exact_duplicates(train: np.ndarray, test: np.ndarray) -> list[DuplicateGroup]:
    """Every set of two or more byte-identical images among train and test, in order of the
    first member (train before test)."""
    seen: dict[bytes, list[tuple[str, int]]] = {}
    for pool, images in zip(POOLS, (train, test), strict=True):
        for index, digest in enumerate(image_digests(images)):
            seen.setdefault(digest, []).append((pool, index))
    return [DuplicateGroup(members) for members in seen.values() if len(members) > 1]


def pixel_embedding(
    train: np.ndarray, test: np.ndarray, components: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test images projected on the top `components` principal components of the
    training images (centred on the training mean), float32 (N, components)."""
    train = _check_images(train, "train images")
    test = _check_images(test, "test images")
    if train.shape[1:] != test.shape[1:]:
        raise ConfigError(f"train images are {train.shape[1:]} but test images {test.shape[1:]}")
    dims = int(np.prod(train.shape[1:]))
    if not 1 <= components <= min(dims, len(train)):
        raise ConfigError(
            f"components must be 1..{min(dims, len(train))} for these images, got {components}"
        )
    rows = torch.from_numpy(train.reshape(len(train), -1))
    mean = rows.sum(0, dtype=torch.float64) / len(rows)
    # The (dims x dims) covariance, summed over chunks of rows: its eigenvectors are the
    # principal components, and memory stays at one chunk in float64 (not all 60k rows).
    covariance = torch.zeros(dims, dims, dtype=torch.float64)
    for start in range(0, len(rows), PCA_CHUNK):
        centred = rows[start : start + PCA_CHUNK].double() - mean
        covariance += centred.T @ centred
    _, vectors = torch.linalg.eigh(covariance)
    basis = vectors[:, -components:].flip(1)

    def project(images: np.ndarray) -> np.ndarray:
        flat = torch.from_numpy(images.reshape(len(images), -1))
        out = np.empty((len(flat), components), dtype=np.float32)
        for start in range(0, len(flat), PCA_CHUNK):
            chunk = flat[start : start + PCA_CHUNK].double() - mean
            out[start : start + PCA_CHUNK] = (chunk @ basis).numpy()
        return out

    return project(train), project(test)


def centre_features(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features minus the training mean: post-ReLU features all point into one orthant, where
    the cosine of any two is high; centred, it measures what differs between images."""
    train = np.asarray(train, dtype=np.float32)
    test = np.asarray(test, dtype=np.float32)
    mean = train.mean(0, keepdims=True)
    return train - mean, test - mean


@dataclass
class NearestTrain:
    """For each test image: its most similar training image and their cosine similarity."""

    index: np.ndarray  # int64 (n_test,)
    cosine: np.ndarray  # float32 (n_test,)

    def above(self, threshold: float) -> np.ndarray:
        """Test indices whose nearest training image has cosine >= threshold, most similar first."""
        hits = np.flatnonzero(self.cosine >= threshold)
        return hits[np.argsort(-self.cosine[hits], kind="stable")]


def nearest_train(
    train_embedding: np.ndarray, test_embedding: np.ndarray, chunk: int = 512
) -> NearestTrain:
    """The nearest training item of every test item by cosine similarity, computed in chunks of
    test items (memory: chunk x n_train floats)."""
    train_emb = _unit_rows(train_embedding, "train embedding")
    test_emb = _unit_rows(test_embedding, "test embedding")
    if train_emb.shape[1] != test_emb.shape[1]:
        raise ConfigError(
            f"embeddings differ in width: train {train_emb.shape[1]}, test {test_emb.shape[1]}"
        )
    if len(train_emb) == 0:
        raise ConfigError("no training images to compare the test images with")
    best_index = np.empty(len(test_emb), dtype=np.int64)
    best_cosine = np.empty(len(test_emb), dtype=np.float32)
    for start in range(0, len(test_emb), chunk):
        sims = test_emb[start : start + chunk] @ train_emb.T
        value, where = sims.max(dim=1)
        best_index[start : start + chunk] = where.numpy()
        best_cosine[start : start + chunk] = value.numpy()
    return NearestTrain(best_index, np.clip(best_cosine, -1.0, 1.0))


def _unit_rows(embedding: np.ndarray, name: str) -> torch.Tensor:
    rows = torch.as_tensor(np.asarray(embedding, dtype=np.float32))
    if rows.ndim != 2:
        raise ConfigError(
            f"{name}: expected a 2-D array (items x features), got {tuple(rows.shape)}"
        )
    if not torch.isfinite(rows).all():
        raise ConfigError(f"{name}: contains NaN or infinite values")
    # An all-zero row (a blank image at the mean) has no direction; it matches nothing.
    norms = rows.norm(dim=1, keepdim=True)
    return torch.where(norms > 0, rows / norms.clamp_min(1e-12), torch.zeros_like(rows))
