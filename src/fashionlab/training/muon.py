"""Muon for the hidden convolutions, Nesterov SGD for everything else, in one optimiser.

Muon (Keller Jordan, 2024; airbench's `airbench94_muon`) replaces each hidden weight
matrix's momentum step by its nearest semi-orthogonal matrix: every direction the gradient
moves gets the same step size, so the rare directions are not drowned by the common ones. A
convolution's filters are taken as a (out_channels, in_channels * kh * kw) matrix. The
orthogonalisation is three Newton-Schulz iterations (airbench's count: the update needs the
direction, not exact orthogonality), a few small matmuls per layer.

One optimiser (rather than two side by side) keeps the trainer, the one-cycle schedule and the
checkpoint unchanged: groups marked `muon` take the Muon step, the others plain SGD.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

# Coefficients of the quintic iteration X <- aX + (bA + cA^2)X, A = XX^T: chosen (by Muon's
# author) to push every singular value into about [0.7, 1.2] in few steps rather than to
# converge exactly -- the update needs the direction, not exact orthogonality.
_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalise(matrix: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """The semi-orthogonal matrix nearest `matrix` (2-D), by Newton-Schulz iteration, in fp32.
    Its singular values come out near 1 (about 0.7-1.2), its singular vectors are `matrix`'s."""
    if matrix.ndim != 2:
        raise ValueError(f"orthogonalise needs a 2-D matrix, got shape {tuple(matrix.shape)}")
    a, b, c = _NS_COEFFICIENTS
    x = matrix.float()
    tall = x.shape[0] > x.shape[1]
    if tall:  # iterate on the wide side: the Gram matrix is then the smaller one
        x = x.T
    x = x / (x.norm() + eps)  # spectral norm <= Frobenius norm <= 1: inside the basin
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if tall else x


class MuonSGD(torch.optim.Optimizer):
    """Muon on the parameter groups with `muon: True`, SGD (with momentum, Nesterov and
    coupled weight decay as `torch.optim.SGD`) on the rest.

    A Muon step: buf = momentum * buf + grad; the update direction is grad + momentum * buf
    (Nesterov) or buf; it is reshaped to a matrix, orthogonalised, scaled by
    sqrt(max(1, rows / cols)) (so wide and tall matrices move alike per element), and
    applied as p -= lr * update after a decoupled decay p *= 1 - lr * weight_decay, or, in a
    group with `weight_norm: True`, after rescaling p to Frobenius norm sqrt(rows).
    """

    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        lr: float,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        ns_steps: int = 3,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "nesterov": nesterov,
            "weight_decay": weight_decay,
            "muon": False,
            "ns_steps": ns_steps,
            "weight_norm": False,
        }
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["muon"] and any(p.ndim < 2 for p in group["params"]):
                raise ValueError("Muon groups take weight matrices or filters (2-D or more)")

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # noqa: ANN401 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum, decay = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not group["muon"] and decay:
                    grad = grad.add(p, alpha=decay)
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = grad.clone()
                else:
                    state["momentum_buffer"].mul_(momentum).add_(grad)
                buf = state["momentum_buffer"]
                direction = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
                if not group["muon"]:
                    p.add_(direction, alpha=-lr)
                    continue
                rows = p.shape[0]
                matrix = direction.reshape(rows, -1)
                update = orthogonalise(matrix, group["ns_steps"])
                update *= max(1.0, rows / matrix.shape[1]) ** 0.5
                if group["weight_norm"]:
                    p.mul_(rows**0.5 / (p.norm() + 1e-12))
                elif decay:
                    p.mul_(1 - lr * decay)
                p.add_(update.view_as(p).to(p.dtype), alpha=-lr)
        return loss
