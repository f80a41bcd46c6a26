"""`MLP`: a stack of Dense -> activation -> (dropout) blocks and a final Dense producing logits.

The network owns its parameters in one flat buffer (`flat_data`, gradients in `flat_grad`), so
optimizers update it in a few calls and `get_weights`/`set_weights` are one copy each.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fashionlab.numpy_nn.activations import make_activation
from fashionlab.numpy_nn.layers import Dense, Dropout
from fashionlab.numpy_nn.parameter import Parameter, flatten_parameters


class MLP:
    """layer_sizes = (n_in, h1, ..., n_out): Dense(n_in,h1) act [Dropout] ... Dense(hk, n_out).

    Dropout (if p > 0) follows every hidden activation, never the input or the logits.
    `init_rng` draws the weights; `dropout_rng` draws the dropout masks -- separate streams, so
    changing the dropout rate does not change the initial weights.
    """

    def __init__(
        self,
        layer_sizes: Sequence[int],
        activation: str = "relu",
        dropout: float = 0.0,
        init: str = "he",
        init_rng: np.random.Generator | None = None,
        dropout_rng: np.random.Generator | None = None,
        dtype: np.dtype | type = np.float32,
    ) -> None:
        if len(layer_sizes) < 2:
            raise ValueError("layer_sizes needs at least an input and an output size")
        init_rng = np.random.default_rng() if init_rng is None else init_rng
        dropout_rng = np.random.default_rng() if dropout_rng is None else dropout_rng
        self.layer_sizes = tuple(int(s) for s in layer_sizes)
        self.dtype = np.dtype(dtype)
        self.layers: list = []
        self.dense_layers: list[Dense] = []
        self.dropout_layers: list[Dropout] = []
        n_dense = len(self.layer_sizes) - 1
        for i in range(n_dense):
            dense = Dense(
                self.layer_sizes[i], self.layer_sizes[i + 1], init=init, rng=init_rng, dtype=dtype
            )
            self.layers.append(dense)
            self.dense_layers.append(dense)
            if i < n_dense - 1:
                self.layers.append(make_activation(activation))
                if dropout > 0:
                    drop = Dropout(dropout, rng=dropout_rng)
                    self.layers.append(drop)
                    self.dropout_layers.append(drop)
        self.flat_data, self.flat_grad = flatten_parameters(self.parameters())

    def __setstate__(self, state: dict) -> None:
        # Pickle stores each parameter view as a separate array; re-pack them so the parameters
        # alias `flat_data` again (optimizers and get/set_weights rely on that).
        self.__dict__.update(state)
        self.flat_data, self.flat_grad = flatten_parameters(self.parameters())

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Logits (N, n_out) of a (N, n_in) batch; `training` enables dropout and keeps what
        `backward` needs."""
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    def backward(self, grad_logits: np.ndarray, need_input_grad: bool = False) -> np.ndarray | None:
        """Write every parameter's gradient from dL/dlogits; return dL/dx if asked for."""
        grad = grad_logits
        for layer in reversed(self.layers[1:]):
            grad = layer.backward(grad)
        return self.layers[0].backward(grad, need_input_grad=need_input_grad)

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers for p in layer.parameters()]

    def get_weights(self) -> np.ndarray:
        """A copy of all parameters as one flat array."""
        return self.flat_data.copy()

    def set_weights(self, flat: np.ndarray) -> None:
        """Overwrite all parameters in place from a flat array (from `get_weights`)."""
        np.copyto(self.flat_data, flat)

    def predict_logits(self, x: np.ndarray, chunk_size: int = 4096) -> np.ndarray:
        """Inference-mode logits, in chunks so a large X never makes huge intermediates."""
        out = np.empty((len(x), self.layer_sizes[-1]), dtype=self.dtype)
        for start in range(0, len(x), chunk_size):
            out[start : start + chunk_size] = self.forward(x[start : start + chunk_size])
        return out

    @property
    def n_params(self) -> int:
        return int(self.flat_data.size)

    def __repr__(self) -> str:
        return "MLP(" + ", ".join(repr(layer) for layer in self.layers) + ")"
