"""Softmax and cross-entropy written by hand, numerically stable via log-sum-exp.

log softmax(z)_k = z_k - logsumexp(z),  logsumexp(z) = m + log(sum_j exp(z_j - m)), m = max_j z_j.
Subtracting the row maximum makes every exponent <= 0, so exp never overflows and the largest
term is exactly 1, so the log never sees 0 -- logits of 1e4 or 1e30 give finite, exact results.

The gradient of the mean cross-entropy w.r.t. the logits is (softmax(z) - onehot(y)) / N.
"""

from __future__ import annotations

import numpy as np


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of a (N, K) array."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of a (N, K) array; rows sum to 1."""
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    e /= e.sum(axis=1, keepdims=True)
    return e


def cross_entropy(logits: np.ndarray, targets: np.ndarray, reduction: str = "mean") -> float:
    """Cross-entropy of integer `targets` (N,) under `logits` (N, K); 'mean' or 'sum'."""
    rows = np.arange(len(targets))
    losses = -log_softmax(logits)[rows, targets]
    total = float(losses.sum(dtype=np.float64))
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / len(targets)
    raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")


class SoftmaxCrossEntropy:
    """Mean cross-entropy loss layer: `forward(logits, targets) -> float`, `backward() -> dL/dz`.

    Softmax and the loss are fused because their joint derivative is the simple, stable
    (p - onehot)/N, whereas differentiating softmax alone needs a Jacobian.
    """

    def __init__(self) -> None:
        self._probs: np.ndarray | None = None
        self._targets: np.ndarray | None = None

    def forward(self, logits: np.ndarray, targets: np.ndarray) -> float:
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        sums = exp.sum(axis=1, keepdims=True)
        rows = np.arange(len(targets))
        loss = np.log(sums[:, 0]) - shifted[rows, targets]
        exp /= sums
        self._probs, self._targets = exp, targets
        return float(loss.mean(dtype=np.float64))

    def backward(self) -> np.ndarray:
        """dL/dlogits of the last forward. Consumes the stored probabilities (reuses them)."""
        probs, targets = self._probs, self._targets
        if probs is None or targets is None:
            raise RuntimeError("SoftmaxCrossEntropy.backward() called before forward()")
        self._probs = None
        probs[np.arange(len(targets)), targets] -= 1
        probs /= len(targets)
        return probs

    @property
    def probs(self) -> np.ndarray | None:
        """Softmax of the last forward's logits (None once backward has consumed it)."""
        return self._probs
