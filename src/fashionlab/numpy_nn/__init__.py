"""The from-scratch MLP of study S1, in NumPy only (no torch import anywhere in this package).

Forward and backward passes are written by hand (chain rule), and the tests check every
gradient against PyTorch autograd and finite differences. Building blocks, one job each:

- `layers`: `Dense` (affine), `Dropout` (inverted, mask kept for backward)
- `activations`: `ReLU`, `LeakyReLU` (0.01), `Tanh`, `GELU` (tanh approximation)
- `losses`: stable `softmax`, `log_softmax`, `cross_entropy`, `SoftmaxCrossEntropy`
- `initializers`: random normal (std 0.01), Xavier, He
- `optim`: `SGD` (+momentum), `Adam` -- PyTorch's `step()` / `zero_grad()` / `parameters()`
- `network.MLP`, `batching.MiniBatcher`, `early_stopping.EarlyStopping`
- `estimator.NumpyMLP`: the scikit-learn-style classifier most callers want.

Example::

    from fashionlab.numpy_nn import NumpyMLP
    clf = NumpyMLP(hidden_layers=(400, 250, 100), dropout=0.2, random_state=0)
    clf.fit(X_train, y_train, X_val, y_val)   # early stopping on validation loss
    clf.score(X_test, y_test); clf.save("mlp.npz"); NumpyMLP.load("mlp.npz")
"""

from fashionlab.numpy_nn.activations import GELU, Activation, LeakyReLU, ReLU, Tanh, make_activation
from fashionlab.numpy_nn.batching import MiniBatcher
from fashionlab.numpy_nn.early_stopping import EarlyStopping
from fashionlab.numpy_nn.estimator import NumpyMLP
from fashionlab.numpy_nn.layers import Dense, Dropout
from fashionlab.numpy_nn.losses import SoftmaxCrossEntropy, cross_entropy, log_softmax, softmax
from fashionlab.numpy_nn.network import MLP
from fashionlab.numpy_nn.optim import SGD, Adam, Optimizer, make_optimizer
from fashionlab.numpy_nn.parameter import Parameter, flatten_parameters

__all__ = [
    "Activation",
    "Adam",
    "Dense",
    "Dropout",
    "EarlyStopping",
    "GELU",
    "LeakyReLU",
    "MLP",
    "MiniBatcher",
    "NumpyMLP",
    "Optimizer",
    "Parameter",
    "ReLU",
    "SGD",
    "SoftmaxCrossEntropy",
    "Tanh",
    "cross_entropy",
    "flatten_parameters",
    "log_softmax",
    "make_activation",
    "make_optimizer",
    "softmax",
]
