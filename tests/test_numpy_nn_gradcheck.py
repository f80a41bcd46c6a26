"""Gradient checks of the from-scratch MLP (fashionlab.numpy_nn) against PyTorch autograd and
central finite differences, micrograd-style: same weights, same inputs, same dropout masks,
float64 throughout; plus value checks of the activations, the loss and the optimizers.

Error measure: per tensor, max |ours - reference| / max |reference| -- relative to the tensor's
scale, so an entry that is ~0 in both (cancellation noise) cannot blow up the ratio.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fashionlab.numpy_nn import (
    GELU,
    MLP,
    SGD,
    Adam,
    Dense,
    Dropout,
    LeakyReLU,
    Parameter,
    ReLU,
    SoftmaxCrossEntropy,
    Tanh,
    cross_entropy,
    flatten_parameters,
    log_softmax,
    make_activation,
    softmax,
)

ACTIVATIONS = ["relu", "leaky_relu", "tanh", "gelu"]
SIZES = (7, 6, 5, 4)  # two hidden layers, so gradients flow through activation and dropout twice
BATCH = 5
DROPOUT_P = 0.3
KINK_MARGIN = 1e-3  # FD step is 1e-6: a pre-activation this far from 0 never crosses the kink


def rel_err(ours: np.ndarray, ref: np.ndarray) -> float:
    scale = np.max(np.abs(ref))
    return float(np.max(np.abs(ours - ref)) / max(scale, 1e-300))


def torch_activation(name: str, h: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return F.relu(h)
    if name == "leaky_relu":
        return F.leaky_relu(h, negative_slope=0.01)
    if name == "tanh":
        return torch.tanh(h)
    return F.gelu(h, approximate="tanh")


def build_case(activation: str, dropout: float, seed: int = 0):
    """A float64 MLP, a batch and (if dropout) fixed keep-masks, with every pre-activation at
    least KINK_MARGIN away from 0 so finite differences are valid for ReLU / Leaky-ReLU."""
    for attempt in range(200):
        rng = np.random.default_rng([seed, attempt])
        net = MLP(
            SIZES,
            activation=activation,
            dropout=dropout,
            init="xavier",
            init_rng=rng,
            dropout_rng=rng,
            dtype=np.float64,
        )
        for dense in net.dense_layers:  # non-zero biases, so their gradients are exercised
            dense.bias.data[...] = rng.normal(0, 0.5, dense.bias.shape)
        x = rng.standard_normal((BATCH, SIZES[0]))
        y = rng.integers(0, SIZES[-1], BATCH)
        masks = []
        for i, drop in enumerate(net.dropout_layers):
            keep = rng.random((BATCH, SIZES[i + 1])) >= dropout
            drop.fixed_mask = keep
            masks.append(keep)
        if activation in ("tanh", "gelu") or _margins_ok(net, x):
            return net, x, y, masks
    raise AssertionError("no case with pre-activations away from the kink")


def _margins_ok(net: MLP, x: np.ndarray) -> bool:
    h = x
    for layer in net.layers:
        h = layer.forward(h, training=True)
        if isinstance(layer, Dense) and layer is not net.dense_layers[-1]:
            if np.min(np.abs(h)) <= KINK_MARGIN:
                return False
    return True


def numpy_grads(net: MLP, x: np.ndarray, y: np.ndarray):
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn.forward(net.forward(x, training=True), y)
    dx = net.backward(loss_fn.backward(), need_input_grad=True)
    grads = [p.grad.copy() for p in net.parameters()]
    return loss, grads, dx


def torch_grads(net: MLP, x: np.ndarray, y: np.ndarray, activation: str, masks, p: float):
    xt = torch.tensor(x, requires_grad=True)
    params = [torch.tensor(q.data, requires_grad=True) for q in net.parameters()]
    h = xt
    n_dense = len(net.dense_layers)
    for i in range(n_dense):
        W, b = params[2 * i], params[2 * i + 1]
        h = h @ W + b
        if i < n_dense - 1:
            h = torch_activation(activation, h)
            if masks:
                h = h * torch.tensor(masks[i], dtype=torch.float64) / (1 - p)
    loss = F.cross_entropy(h, torch.tensor(y))
    loss.backward()
    return loss.item(), [q.grad.numpy() for q in params], xt.grad.numpy()


def loss_at(net: MLP, x: np.ndarray, y: np.ndarray) -> float:
    return cross_entropy(net.forward(x, training=True), y)


def finite_difference(net: MLP, x: np.ndarray, y: np.ndarray, h: float = 1e-6):
    """Central differences of the loss w.r.t. every parameter entry and every input entry."""

    def fd(array: np.ndarray) -> np.ndarray:
        grad = np.zeros_like(array)
        flat, gflat = array.reshape(-1), grad.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + h
            up = loss_at(net, x, y)
            flat[i] = old - h
            down = loss_at(net, x, y)
            flat[i] = old
            gflat[i] = (up - down) / (2 * h)
        return grad

    return [fd(p.data) for p in net.parameters()], fd(x)


@pytest.mark.parametrize("dropout", [0.0, DROPOUT_P], ids=["no-dropout", "dropout"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_match_torch_and_finite_differences(activation: str, dropout: float) -> None:
    net, x, y, masks = build_case(activation, dropout)
    loss, grads, dx = numpy_grads(net, x, y)
    t_loss, t_grads, t_dx = torch_grads(net, x, y, activation, masks, dropout)

    assert abs(loss - t_loss) <= 1e-12 * abs(t_loss)
    names = [
        f"{type(layer).__name__}{i}.{p.name}"
        for i, layer in enumerate(net.layers)
        for p in layer.parameters()
    ]
    assert len(grads) == 2 * (len(SIZES) - 1)
    for name, ours, ref in zip(names, grads, t_grads, strict=True):
        assert ours.shape == ref.shape, name
        assert rel_err(ours, ref) < 1e-7, name
    assert rel_err(dx, t_dx) < 1e-7

    fd_grads, fd_dx = finite_difference(net, x, y)
    for name, ours, ref in zip(names, grads, fd_grads, strict=True):
        assert rel_err(ours, ref) < 1e-5, name
    assert rel_err(dx, fd_dx) < 1e-5


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_activation_values_and_derivatives_match_torch(activation: str) -> None:
    x = np.linspace(-6, 6, 1001)  # includes 0 exactly: checks the derivative convention there
    g = np.random.default_rng(1).standard_normal(x.shape)
    layer = make_activation(activation)
    out = layer.forward(x, training=True)
    dx = layer.backward(g)
    xt = torch.tensor(x, requires_grad=True)
    ref = torch_activation(activation, xt)
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_activation_classes_and_inputs_left_untouched() -> None:
    assert [type(make_activation(n)) for n in ACTIVATIONS] == [ReLU, LeakyReLU, Tanh, GELU]
    x = np.array([[-1.0, 0.5]])
    before = x.copy()
    for name in ACTIVATIONS:
        layer = make_activation(name)
        layer.forward(x, training=True)
        layer.backward(np.ones_like(x))
    np.testing.assert_array_equal(x, before)


def test_gelu_is_the_tanh_approximation_not_erf() -> None:
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    ours = GELU().forward(x.numpy())
    np.testing.assert_allclose(ours, F.gelu(x, approximate="tanh").numpy(), rtol=1e-10, atol=1e-15)
    assert np.max(np.abs(ours - F.gelu(x).numpy())) > 1e-5


def test_dense_forward_and_backward_standalone() -> None:
    rng = np.random.default_rng(2)
    dense = Dense(4, 3, init="he", rng=rng, dtype=np.float64)
    dense.bias.data[...] = [0.1, -0.2, 0.3]
    x = rng.standard_normal((6, 4))
    g = rng.standard_normal((6, 3))
    out = dense.forward(x, training=True)
    dx = dense.backward(g)
    lin = torch.nn.Linear(4, 3).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor(dense.weight.data.T))
        lin.bias.copy_(torch.tensor(dense.bias.data))
    xt = torch.tensor(x, requires_grad=True)
    ref = lin(xt)
    ref.backward(torch.tensor(g))
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(dense.weight.grad, lin.weight.grad.numpy().T, rtol=1e-13)
    np.testing.assert_allclose(dense.bias.grad, lin.bias.grad.numpy(), rtol=1e-13)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-13)
    assert dense.backward(g, need_input_grad=False) is None
    with pytest.raises(RuntimeError):
        Dense(2, 2).backward(np.zeros((1, 2)))  # no training forward happened


def test_dropout_masks_scaling_eval_and_fixed_mask() -> None:
    rng = np.random.default_rng(3)
    drop = Dropout(0.25, rng=rng)
    x = np.ones((400, 500), dtype=np.float32)
    out = drop.forward(x, training=True)
    assert out.dtype == np.float32
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(out[kept], 1 / 0.75, rtol=1e-6)
    np.testing.assert_array_equal(drop.backward(np.ones_like(x)), out)  # same mask backward
    assert drop.forward(x, training=False) is x  # inference is the identity
    assert drop.mask is None
    keep = np.zeros((2, 3), dtype=bool)
    keep[0, 1] = keep[1, 2] = True
    drop.fixed_mask = keep
    out = drop.forward(np.full((2, 3), 3.0), training=True)
    np.testing.assert_allclose(out, keep * 3.0 / 0.75)
    with pytest.raises(ValueError, match="fixed_mask has shape"):
        drop.forward(np.ones((3, 3)), training=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1.0, 1e4, 1e30])
def test_softmax_cross_entropy_stable_on_huge_logits(dtype, scale: float) -> None:
    base = np.array([[3.0, -1.0, 0.5, 2.0], [-2.0, -2.0, 7.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    logits = (base * scale).astype(dtype)
    y = np.array([0, 3, 1])
    probs = softmax(logits)
    logp = log_softmax(logits)
    assert np.isfinite(probs).all() and np.isfinite(logp).all()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    loss_fn = SoftmaxCrossEntropy()
    loss = loss_fn.forward(logits, y)
    grad = loss_fn.backward()
    assert np.isfinite(loss) and np.isfinite(grad).all()
    lt = torch.tensor(logits.astype(np.float64), requires_grad=True)
    ref = F.cross_entropy(lt, torch.tensor(y))
    ref.backward()
    np.testing.assert_allclose(loss, ref.item(), rtol=1e-6)
    np.testing.assert_allclose(grad, lt.grad.numpy(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(cross_entropy(logits, y, reduction="sum"), 3 * ref.item(), rtol=1e-6)
    # Shift invariance: adding a constant to every logit changes nothing.
    shifted = base.astype(np.float64) + 1e6
    np.testing.assert_allclose(
        log_softmax(shifted), log_softmax(base.astype(np.float64)), atol=1e-9
    )


def _param_pairs(shapes, rng, flat: bool):
    params = [Parameter(rng.standard_normal(s)) for s in shapes]
    torch_params = [torch.tensor(p.data.copy(), requires_grad=True) for p in params]
    if flat:
        flatten_parameters(params)
    return params, torch_params


@pytest.mark.parametrize("flat", [True, False], ids=["flat-buffer", "per-parameter"])
@pytest.mark.parametrize("kind", ["adam", "sgd", "momentum"])
def test_optimizers_follow_torch_step_by_step(kind: str, flat: bool) -> None:
    rng = np.random.default_rng(4)
    shapes = [(5, 3), (3,), (3, 2)]
    params, torch_params = _param_pairs(shapes, rng, flat)
    if kind == "adam":
        ours, ref = Adam(params, lr=1e-2), torch.optim.Adam(torch_params, lr=1e-2)
    elif kind == "sgd":
        ours, ref = SGD(params, lr=0.1), torch.optim.SGD(torch_params, lr=0.1)
    else:
        ours = SGD(params, lr=0.1, momentum=0.9)
        ref = torch.optim.SGD(torch_params, lr=0.1, momentum=0.9)
    assert ours.parameters() == params
    for _ in range(7):
        ours.zero_grad()
        ref.zero_grad()
        assert all(not p.grad.any() for p in params)
        for p, tp in zip(params, torch_params, strict=True):
            g = rng.standard_normal(p.shape)
            p.grad[...] = g
            tp.grad = torch.tensor(g)
        ours.step()
        ref.step()
    for p, tp in zip(params, torch_params, strict=True):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    if kind == "adam":
        state = [ref.state[tp] for tp in torch_params]
        exp_avg = np.concatenate([s["exp_avg"].numpy().ravel() for s in state])
        exp_avg_sq = np.concatenate([s["exp_avg_sq"].numpy().ravel() for s in state])
        moments = ours.moments()
        np.testing.assert_allclose(np.concatenate([m.ravel() for m, _ in moments]), exp_avg)
        np.testing.assert_allclose(np.concatenate([v.ravel() for _, v in moments]), exp_avg_sq)


def test_flat_parameters_are_views_and_optimizer_uses_one_group() -> None:
    net = MLP((4, 3, 2), dtype=np.float64)
    assert net.n_params == 4 * 3 + 3 + 3 * 2 + 2
    for p in net.parameters():
        assert np.shares_memory(p.data, net.flat_data)
        assert np.shares_memory(p.grad, net.flat_grad)
    opt = Adam(net.parameters())
    assert len(opt._groups) == 1  # the whole model is updated in one set of array ops
    assert len(Adam(net.parameters()[:2])._groups) == 2  # a subset falls back per parameter


@pytest.mark.parametrize("kind", ["adam", "momentum"])
def test_piecewise_update_of_a_large_buffer_is_bitwise_per_parameter(kind: str) -> None:
    # Large enough that the flat buffer is updated in several cache-sized pieces; element-wise
    # updates must not depend on how the buffer is cut (flat pieces vs one array per parameter).
    shapes = [(700, 500), (500,), (500, 90)]
    runs = []
    for flat in (True, False):
        params = [
            Parameter(np.random.default_rng(6).standard_normal(s).astype(np.float32))
            for s in shapes
        ]
        if flat:
            flatten_parameters(params)
        if kind == "adam":
            opt = Adam(params, lr=1e-3)
        else:
            opt = SGD(params, lr=1e-2, momentum=0.9)
        assert len(opt._groups) == (1 if flat else 3) and len(opt._pieces) > 5
        grad_rng = np.random.default_rng(7)
        for _ in range(3):
            for p in params:
                p.grad[...] = grad_rng.standard_normal(p.shape)
            opt.step()
        runs.append([p.data.copy() for p in params])
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)
