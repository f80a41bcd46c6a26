"""Training throughput on this CPU: fashionlab vs the usual per-sample pipeline vs the ceiling.

Purpose: show, in one run (so every figure shares the machine's load at that moment), how
close fashionlab's training loop gets to what the hardware can do, and what it gains over the
way the studies' own code trains. For each model, at its recipe's batch size and augmentation:

  (a) fashionlab     the real `Trainer.train_one_epoch` on an in-memory subset of
                     `steps` batches (batched normalise + augment, channels-last, autocast),
                     the median of `repeats` timed epochs after a warm-up epoch, fp32 and bf16;
  (a') default path  what `fashionlab train --model M` does with no flags: a real run (the
                     recipe's precision, i.e. `auto` where the recipe does not say) on the
                     recipe's whole split (`--default-steps N`: N batches per epoch), images
                     per second from the epoch times the trainer records in history.csv
                     (which include its validation pass and checkpoint), the median of
                     `repeats` epochs after the first;
  (b) usual          a torch `Dataset` that converts one sample at a time (uint8 -> float ->
                     normalise -> augment) through a `DataLoader` (num_workers=0: on 2 cores a
                     worker process only competes with the compute threads), float32, NCHW,
                     a plain loop with the recipe's optimiser, the C library's malloc settings
                     (measured before (a) turns on fashionlab.allocator's);
  (c) ceiling        the best of several 2048x2048 matmuls in float32 and in bfloat16 (GFLOP/s),
                     and fashionlab's achieved GFLOP/s = 3 x forward FLOPs per image x images/s
                     (backward ~ 2x forward) as a fraction of the ceiling of the precision used;
                     also as a fraction of the "layer-shape ceiling": the same matmuls timed at
                     the model's own im2col GEMM shapes (forward, weight and input gradients),
                     what the layers could reach if nothing but their products cost time;
  (d) keras          the same network in Keras 3 on TensorFlow (`model.fit`, fp32 and
                     mixed_bfloat16), only when a benchmark-only environment exists; create it
                     with `python3 -m venv .venv-keras && .venv-keras/bin/pip install
                     tensorflow-cpu` (never a project dependency). Without it (d) is skipped.

  (c') primitive bound  the time of the step's compute primitives alone (every conv and
                     linear layer's forward and backward as oneDNN/MKL run them at the step's
                     shapes, dtype and layout, timed one by one and summed), and the GFLOP/s
                     the step would reach if nothing else took any time, as a fraction of the
                     square ceiling: the most any training loop built on these primitives can
                     show against that ceiling. "in primitives" is their share of fashionlab's
                     step, i.e. how close the loop gets to that bound.

The peer's achieved GFLOP/s is given as a fraction of the same ceiling, so the fraction
fashionlab reaches can be judged against what TensorFlow's oneDNN/XLA graph reaches on the
same networks and the same machine. `--profile MODEL` adds where a fashionlab training step
spends its time (torch.profiler, the top operators by self CPU time, both precisions).

Command (from the repository root; about 3-5 minutes on 2 cores, with Keras):

    .venv/bin/python benchmarks/train_speed.py [--models s0-m1 s0-m2 s2-cnn] [--steps 50]
                                               [--repeats 3] [--profile s0-m1]
                                               [--default-steps 50] [--precisions fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from fashionlab._platform import cpu_description
from fashionlab.accel import kernel_statuses
from fashionlab.allocator import retain_freed_memory
from fashionlab.models import build_config, create_model
from fashionlab.models.summary import count_flops
from fashionlab.training import Trainer
from fashionlab.training.device import resolve_precision
from fashionlab.training.optim import build_optimizer

HERE = Path(__file__).resolve().parent
KERAS_PYTHON = HERE.parent / ".venv-keras" / "bin" / "python"


DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
KERAS_POLICY = {"fp32": "float32", "bf16": "mixed_bfloat16"}


def best_matmul_seconds(m: int, k: int, n: int, dtype: torch.dtype, repeats: int = 10) -> float:
    """The best time of an (m x k) @ (k x n) product, into a preallocated output (a fresh
    40 MB result is page faults, not arithmetic), after 3 warm-ups (the first few products
    of a new shape are several times slower: kernel selection, first touch)."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    c = torch.empty(m, n, dtype=dtype)
    for _ in range(3):
        torch.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        torch.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - started)
    return best


def matmul_gflops(dtype: torch.dtype, n: int = 2048) -> float:
    return 2 * n**3 / best_matmul_seconds(n, n, n, dtype, repeats=5) / 1e9


def training_gemms(model: torch.nn.Module, batch: int) -> list[tuple[int, int, int]]:
    """The (M, K, N) matrix products of one training step, were every conv an im2col GEMM:
    per conv/linear the forward, the weight gradient and (except for the first layer, whose
    input needs no gradient) the input gradient."""
    shapes: list[tuple[int, int, int]] = []

    def record(m: torch.nn.Module, _inp, out: torch.Tensor) -> None:
        if isinstance(m, torch.nn.Conv2d):
            k = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            shapes.append((batch * out.shape[2] * out.shape[3], k, m.out_channels))
        else:
            shapes.append((batch, m.in_features, m.out_features))

    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    handles = [m.register_forward_hook(record) for m in layers]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    for h in handles:
        h.remove()
    gemms = []
    for i, (m, k, n) in enumerate(shapes):
        gemms += [(m, k, n), (k, m, n)] + ([(m, n, k)] if i else [])
    return gemms


def layer_shape_gflops(model: torch.nn.Module, batch: int, dtype: torch.dtype) -> float:
    """The matmul ceiling at the model's own layer shapes: the FLOPs of `training_gemms`
    over the best time of each as a plain matmul. A 3x3 conv on 1 or 32 channels is a GEMM
    with K = 9 or 288, far from the square 2048 x 2048 product's efficiency."""
    gemms = training_gemms(model, batch)
    flops = sum(2 * m * k * n for m, k, n in gemms)
    return flops / sum(best_matmul_seconds(m, k, n, dtype) for m, k, n in gemms) / 1e9


def cpu_name() -> str:
    """The CPU's model name and bf16 features (the ceiling and every ratio depend on them)."""
    return cpu_description()


def fashionlab_trainer(
    model: str, precision: str, steps: int, threads: int, repeats: int = 1
) -> Trainer:
    """fashionlab's own trainer on `steps` recipe-sized batches, warmed up by one epoch."""
    recipe = build_config(model)
    config = build_config(
        model,
        {
            "train_subset": recipe.batch_size * steps,
            "eval_subset": 100,
            "epochs": 2 + repeats,
            "precision": precision,
            "threads": threads,
        },
    )
    trainer = Trainer(config, Path("/nonexistent-never-written"), quiet=True)
    trainer.train_one_epoch(1)  # warm-up: kernel selection, allocator, caches
    return trainer


def fashionlab_images_per_s(
    model: str, precision: str, steps: int, threads: int, repeats: int
) -> float:
    """Median over `repeats` timed epochs of `steps` batches, after one warm-up epoch."""
    recipe = build_config(model)
    trainer = fashionlab_trainer(model, precision, steps, threads, repeats)
    rates = []
    for epoch in range(2, 2 + repeats):
        started = time.perf_counter()
        trainer.train_one_epoch(epoch)
        rates.append(recipe.batch_size * steps / (time.perf_counter() - started))
    return statistics.median(rates)


def default_path_images_per_s(
    model: str, steps: int | None, threads: int, repeats: int
) -> tuple[float, str]:
    """(images/s, precision used) of a real `train` run with the recipe's own precision, on
    `steps` batches per epoch, or (None) on the recipe's whole training split and validation
    set, as a user's run trains: then each epoch's fixed costs (validation, checkpoint,
    history) weigh what they weigh in a real run."""
    from fashionlab.data import load_fashion_mnist, make_split
    from fashionlab.runs import load_history, load_metrics
    from fashionlab.training import train

    recipe = build_config(model)
    overrides: dict = {"epochs": 1 + repeats, "threads": threads}
    if steps is None:
        data = load_fashion_mnist()
        split = make_split(data, recipe.split, recipe.val_fraction, recipe.split_seed)
        images = len(split.train)
    else:
        images = recipe.batch_size * steps
        overrides.update({"train_subset": images, "eval_subset": 100})
    with tempfile.TemporaryDirectory() as folder:
        run = train(build_config(model, overrides), Path(folder), quiet=True)
        seconds = [row["seconds"] for row in load_history(run)[1:]]
        used = load_metrics(run)["precision_used"]
    return images / statistics.median(seconds), used


def layer_inputs(model: torch.nn.Module, batch: int) -> list[tuple[torch.nn.Module, torch.Tensor]]:
    """Every conv and linear layer of a channels-last training forward pass, in order, with
    the input it received (random images: the values do not change a primitive's speed)."""
    seen: list[tuple[torch.nn.Module, torch.Tensor]] = []
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]

    def record(m: torch.nn.Module, inputs: tuple, _out: torch.Tensor) -> None:
        seen.append((m, inputs[0].detach()))

    handles = [m.register_forward_hook(record) for m in layers]
    model = model.to(memory_format=torch.channels_last).train()
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


def _layer_primitive(layer: torch.nn.Module, x, w, b) -> torch.Tensor:
    if isinstance(layer, torch.nn.Conv2d):
        return F.conv2d(x, w, b, layer.stride, layer.padding, layer.dilation, layer.groups)
    return F.linear(x, w, b)


def primitive_seconds_per_step(model: torch.nn.Module, batch: int, dtype: torch.dtype) -> float:
    """The time of a training step's compute primitives alone: every conv/linear layer's
    forward and backward (input gradient except for the first layer, weight and bias
    gradients) as oneDNN/MKL run them at the step's shapes, dtype and channels-last layout,
    each layer's best time summed. Weights are cast before the clock starts, so no autocast
    copy is counted. Timed apart from the training loop because the profiler's overhead
    inflates whichever operator wakes the thread pool; the layers take turns over 10 rounds
    (after 3 warm-ups each), so a burst of load on this shared machine spoils one sample of
    each rather than every sample of one."""
    steps = []
    for i, (layer, captured) in enumerate(layer_inputs(model, batch)):
        fmt = torch.channels_last if captured.dim() == 4 else torch.contiguous_format
        x = captured.to(dtype).contiguous(memory_format=fmt).requires_grad_(i > 0)
        w = layer.weight.detach().to(dtype).contiguous(memory_format=fmt).requires_grad_()
        b = None if layer.bias is None else layer.bias.detach().to(dtype).requires_grad_()
        leaves = [t for t in (x, w, b) if t is not None and t.requires_grad]
        grad = torch.randn_like(_layer_primitive(layer, x, w, b).detach())
        steps.append(lambda layer=layer, x=x, w=w, b=b, leaves=leaves, grad=grad: (
            torch.autograd.grad(_layer_primitive(layer, x, w, b), leaves, grad)
        ))  # fmt: skip
    for step in steps:
        for _ in range(3):
            step()
    best = [float("inf")] * len(steps)
    for _ in range(10):
        for j, step in enumerate(steps):
            started = time.perf_counter()
            step()
            best[j] = min(best[j], time.perf_counter() - started)
    return sum(best)


class PerSampleDataset(Dataset):
    """What the studies' scripts do: one image at a time, in Python, every epoch."""

    def __init__(self, images, labels, mean: float, std: float, crop: int, flip: bool):
        self.images, self.labels = images, labels
        self.mean, self.std, self.crop, self.flip = mean, std, crop, flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.images[i].float().div(255).unsqueeze(0)
        x = (x - self.mean) / self.std
        if self.crop:
            x = F.pad(x, (self.crop,) * 4)
            top, left = torch.randint(0, 2 * self.crop + 1, (2,)).tolist()
            x = x[:, top : top + 28, left : left + 28]
        if self.flip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x, self.labels[i]


def usual_images_per_s(model_name: str, steps: int, images, labels) -> float:
    config = build_config(model_name)
    n = config.batch_size * (steps + 3)
    dataset = PerSampleDataset(
        images[:n], labels[:n], 0.2860, 0.3530, config.crop_padding, config.hflip
    )
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, num_workers=0)
    model = create_model(model_name)
    model.train()
    optimizer = build_optimizer(config, model.parameters(), fused=False)  # torch's default
    batches = iter(loader)
    started = None
    for step in range(steps + 3):
        if step == 3:  # 3 warm-up steps
            started = time.perf_counter()
        x, y = next(batches)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return config.batch_size * steps / (time.perf_counter() - started)


def keras_images_per_s(
    models: list[str], steps: int, repeats: int, policies: list[str]
) -> dict | None:
    if not KERAS_PYTHON.exists():
        return None
    script = str(HERE / "_keras_speed.py")
    options = ["--steps", str(steps), "--repeats", str(repeats), "--policies", ",".join(policies)]
    proc = subprocess.run(
        [str(KERAS_PYTHON), script, *options, *models],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        print(f"(d) keras failed: {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def print_profile(model: str, steps: int, threads: int) -> None:
    """Where one fashionlab epoch of `steps` batches spends its time, per precision."""
    from torch.profiler import ProfilerActivity, profile

    for precision in ("fp32", "bf16"):
        trainer = fashionlab_trainer(model, precision, steps, threads)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.train_one_epoch(2)
        ours = ("aten::", "Optimizer", "fashionlab::")
        events = [e for e in prof.key_averages() if e.key.startswith(ours)]
        total = sum(e.self_cpu_time_total for e in events) or 1
        print(f"\nprofile: {model} {precision}, {steps} steps; top operators by self CPU time")
        print("| operator | calls | share of self CPU time |\n|---|---|---|")
        for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]:
            print(f"| `{e.key}` | {e.count} | {e.self_cpu_time_total / total:.0%} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["s0-m1", "s0-m2", "s2-cnn"])
    # 50 steps: one Keras `fit` call has a fixed start-up cost that 20 steps would overstate.
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3, help="timed epochs; the median counts")
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--profile", metavar="MODEL", help="also profile this model's step")
    parser.add_argument("--default-steps", type=int, default=None, metavar="N",
                        help="(a') on N batches per epoch (default: the whole split)")  # fmt: skip
    # On a CPU without native bf16 (no AVX-512-BF16 or AMX) `auto` trains in fp32, and
    # emulated bf16 only costs time (Keras's mixed_bfloat16 on three models had not finished
    # in 22 minutes on such a CPU): `--precisions fp32` leaves it out of (a), (c) and (d).
    parser.add_argument("--precisions", default="fp32,bf16", help="(a), (c), (d)'s precisions")
    args = parser.parse_args()
    precisions = args.precisions.split(",")
    if not set(precisions) <= set(DTYPES):
        parser.error(f"--precisions takes a comma-separated subset of {sorted(DTYPES)}")
    torch.set_num_threads(args.threads)
    from fashionlab.data import load_fashion_mnist

    data = load_fashion_mnist()
    ceiling = {p: matmul_gflops(DTYPES[p]) for p in precisions}
    print(f"{cpu_name()}; threads {args.threads}; matmul ceiling "
          + ", ".join(f"{p} {gflops:.0f} GFLOP/s" for p, gflops in ceiling.items()))  # fmt: skip
    keras_policies = [KERAS_POLICY[p] for p in precisions]
    keras = keras_images_per_s(args.models, args.steps, args.repeats, keras_policies)
    if keras is None:
        print("(d) keras skipped: no .venv-keras (see this script's docstring)")
    # Every (b) before any (a): fashionlab's trainer tunes the process's allocator
    # (fashionlab.allocator), and the usual pipeline must run with the C library's defaults.
    usual_by_model = {
        name: usual_images_per_s(name, args.steps, data.train_images, data.train_labels)
        for name in args.models
    }
    print(f"allocator tuning in (a): {retain_freed_memory()}")
    for kernel, status in kernel_statuses().items():
        print(f"compiled {kernel} kernel in (a): {status}")
    rows = []
    default_rows = []
    for name in args.models:
        ips, used = default_path_images_per_s(
            name, args.default_steps, args.threads, args.repeats
        )
        row = {"model": name, "path": "default", "precision": used, "fashionlab": ips}
        if keras and name in keras:
            best = max(keras[name].get("fp32", 0.0), keras[name].get("mixed_bfloat16", 0.0))
            row["best keras"], row["a/d"] = best, ips / best
        default_rows.append(row)
        print(json.dumps(row), flush=True)
    for name in args.models:
        model = create_model(name)
        flops = 3 * count_flops(model)
        batch = build_config(name).batch_size
        usual = usual_by_model[name]
        shape_ceiling = {p: layer_shape_gflops(model, batch, DTYPES[p]) for p in precisions}
        for precision in precisions:
            ips = fashionlab_images_per_s(name, precision, args.steps, args.threads, args.repeats)
            achieved = flops * ips / 1e9
            in_primitives = primitive_seconds_per_step(model, batch, DTYPES[precision])
            bound = flops * batch / in_primitives / 1e9  # GFLOP/s with nothing but primitives
            row = {
                "model": name,
                "batch": batch,
                "precision": precision,
                "fashionlab": ips,
                "usual": usual,
                "a/b": ips / usual,
                "GFLOP/s": achieved,
                "of ceiling": achieved / ceiling[precision],
                "layer-shape ceiling": shape_ceiling[precision],
                "of layer-shape ceiling": achieved / shape_ceiling[precision],
                "primitive bound": bound / ceiling[precision],
                "in primitives": in_primitives * ips / batch,
            }
            if keras and name in keras:
                k32, k16 = keras[name].get("fp32", 0.0), keras[name].get("mixed_bfloat16", 0.0)
                row["keras fp32"], row["keras bf16"] = k32, k16
                row["a/d"] = ips / max(k32, k16)
                # The peer's better precision, against that precision's ceiling.
                peer, peer_precision = (k16, "bf16") if k16 >= k32 else (k32, "fp32")
                row["keras of ceiling"] = flops * peer / 1e9 / ceiling[peer_precision]
                row["keras of layer-shape ceiling"] = (
                    flops * peer / 1e9 / shape_ceiling[peer_precision]
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
    print("\n| model | batch | precision | fashionlab img/s | usual img/s | a/b | GFLOP/s | "
          "of ceiling | primitive bound, of ceiling | in primitives | of layer-shape ceiling | "
          "keras fp32 | keras bf16 | a/d (best Keras) | best Keras, of ceiling | "
          "best Keras, of layer-shape ceiling |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        k32, k16, ad = r.get("keras fp32"), r.get("keras bf16"), r.get("a/d")
        kc, kl = r.get("keras of ceiling"), r.get("keras of layer-shape ceiling")
        print(
            f"| {r['model']} | {r['batch']} | {r['precision']} | {r['fashionlab']:.0f} | "
            f"{r['usual']:.0f} | {r['a/b']:.2f} | {r['GFLOP/s']:.0f} | {r['of ceiling']:.0%} | "
            f"{r['primitive bound']:.0%} | {r['in primitives']:.0%} | "
            f"{r['of layer-shape ceiling']:.0%} ({r['layer-shape ceiling']:.0f} GFLOP/s) | "
            f"{k32 and f'{k32:.0f}' or '-'} | {k16 and f'{k16:.0f}' or '-'} | "
            f"{ad and f'{ad:.2f}' or '-'} | {kc and f'{kc:.0%}' or '-'} | "
            f"{kl and f'{kl:.0%}' or '-'} |"
        )
    print("\n| model | default path: precision | img/s (trainer's epoch times) | best Keras | "
          "a/d |")  # fmt: skip
    print("|---|---|---|---|---|")
    for r in default_rows:
        best, ad = r.get("best keras"), r.get("a/d")
        print(f"| {r['model']} | {r['precision']} | {r['fashionlab']:.0f} | "
              f"{best and f'{best:.0f}' or '-'} | {ad and f'{ad:.2f}' or '-'} |")  # fmt: skip
    print_targets(rows)
    for r in default_rows:
        if "a/d" in r:
            verdict = ">=" if r["a/d"] >= 1.2 else "<"
            print(f"  {r['model']} default path: a/d {r['a/d']:.2f} {verdict} 1.2")
    if args.profile:
        print_profile(args.profile, args.steps, args.threads)


def print_targets(rows: list[dict]) -> None:
    """Issue 8's targets, judged on this run's rows at the precision `auto` picks here."""
    precision = resolve_precision("auto", torch.device("cpu"))
    print(f"\ntargets at precision {precision} (precision: auto on this CPU):")
    for r in (r for r in rows if r["precision"] == precision):
        checks = [f"a/b {r['a/b']:.2f} {'>=' if r['a/b'] >= 2.0 else '<'} 2.0"]
        if "a/d" in r:
            checks.append(f"a/d {r['a/d']:.2f} {'>=' if r['a/d'] >= 1.2 else '<'} 1.2")
        bound = r["primitive bound"]
        checks.append(
            f"{r['of ceiling']:.0%} of the square ceiling "
            f"{'>=' if r['of ceiling'] >= 0.6 else '<'} 60% (primitives alone: "
            f"{bound:.0%}{', so out of reach' if bound < 0.6 else ''})"
        )
        print(f"  {r['model']}: " + "; ".join(checks))


if __name__ == "__main__":
    main()
