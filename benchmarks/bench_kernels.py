"""Do the compiled kernels still pay for themselves? Training throughput with and without them.

For each model and precision, the real `Trainer.train_one_epoch` on an in-memory subset is
timed in a fresh process with the kernels in use and in one with `FASHIONLAB_NATIVE=0`
(PyTorch's own operators, the same numbers to the bit), alternating, `--rounds` times each;
printed: the median images/s of each and their ratio. Fresh processes because a kernel is
loaded (or refused) once per process.

    .venv/bin/python benchmarks/bench_kernels.py [--models s0-m1 s0-m2 s2-cnn fast]
        [--precisions bf16 fp32] [--images 5120] [--epochs 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from fashionlab._platform import cpu_description

WORKER = r"""
import json, sys, tempfile, time
import torch
from fashionlab.models import build_config
from fashionlab.training import Trainer
from fashionlab.accel import kernel_statuses
model, precision, images, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
config = build_config(model, {"precision": precision, "train_subset": images, "eval_subset": 100,
                              "epochs": epochs + 1, "threads": torch.get_num_threads()})
with tempfile.TemporaryDirectory() as tmp:
    trainer = Trainer(config, __import__("pathlib").Path(tmp), quiet=True)
    trainer.train_one_epoch(1)  # warm-up: kernel builds and checks, allocator, caches
    times = []
    for epoch in range(epochs):
        started = time.perf_counter()
        trainer.train_one_epoch(epoch + 2)
        times.append(time.perf_counter() - started)
n = len(trainer.split.train)
print(json.dumps({"images_per_s": n / min(times), "kernels": kernel_statuses()}))
"""


def measure(model: str, precision: str, images: int, epochs: int, kernels: bool) -> dict:
    env = dict(os.environ)
    env.pop("FASHIONLAB_NATIVE", None)
    if not kernels:
        env["FASHIONLAB_NATIVE"] = "0"
    out = subprocess.run(
        [sys.executable, "-c", WORKER, model, precision, str(images), str(epochs)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["s0-m1", "s0-m2", "s2-cnn", "fast"])
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp32"])
    parser.add_argument("--images", type=int, default=5120, help="training images per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (best is kept)")
    parser.add_argument("--rounds", type=int, default=2, help="on/off pairs per row")
    args = parser.parse_args()
    print(f"CPU {cpu_description()}, {os.cpu_count()} cores; best of {args.epochs} epochs of "
          f"{args.images} images, median of {args.rounds} alternating rounds")  # fmt: skip
    print(f"{'model':<8} {'precision':<9} {'kernels img/s':>14} {'PyTorch img/s':>14} {'ratio':>6}")
    for model in args.models:
        for precision in args.precisions:
            on, off = [], []
            for _ in range(args.rounds):
                on.append(measure(model, precision, args.images, args.epochs, True))
                off.append(measure(model, precision, args.images, args.epochs, False))
            a = statistics.median(r["images_per_s"] for r in on)
            b = statistics.median(r["images_per_s"] for r in off)
            used = sorted(k for k, v in on[0]["kernels"].items() if v.startswith("compiled"))
            print(f"{model:<8} {precision:<9} {a:>14,.0f} {b:>14,.0f} {a / b:>6.2f}"
                  f"   (compiled: {', '.join(used) or 'none'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
