"""Do two versions of the code train the same weights? Short reference runs, compared bit for bit.

    python benchmarks/same_results.py train OUT        # the short runs below, into OUT/
    python benchmarks/same_results.py compare A B      # every tensor and logit, bit for bit

Run `train` on one commit, check out another, run `train` again into a second folder, then
`compare`: each run's `model.safetensors` (or `model.npz`) tensors and `predictions.npz`
logits must be equal bit for bit (the NumPy MLP's saved history without its wall-clock
seconds). The runs go through the CLI, whose flags are stable across
refactors, on 3,000 training images for 2 epochs, so the whole set takes a few minutes on 2
cores. Same CPU only: bf16 and the thread count change the arithmetic.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

SMALL = ["--epochs", "2", "--train-subset", "3000", "--eval-subset", "1000", "--threads", "2"]
RUNS = {
    "s0-m2-bf16": ["--model", "s0-m2", "--precision", "bf16", *SMALL],
    "s0-m2-fp32": ["--model", "s0-m2", "--precision", "fp32", *SMALL],
    "fast": ["--model", "fast", *SMALL],
    "numpy-mlp": ["--model", "numpy-mlp", "--epochs", "2", "--train-subset", "3000",
                  "--eval-subset", "1000"],
}  # fmt: skip


def train(out: Path) -> None:
    for name, args in RUNS.items():
        command = ["fashionlab", "train", *args, "--name", name, "--runs-dir", str(out), "-q"]
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True)


def _arrays(run: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if (run / "model.safetensors").exists():
        from safetensors.numpy import load_file

        out.update({f"weights:{k}": v for k, v in load_file(run / "model.safetensors").items()})
    else:
        with np.load(run / "model.npz") as npz:
            out.update({f"weights:{k}": npz[k] for k in npz.files if k != "history"})
            # The saved training history: every number but the wall-clock seconds.
            rows = json.loads(str(npz["history"]))
            losses = [[v for k, v in row.items() if k != "seconds"] for row in rows]
            out["weights:history"] = np.array(losses, dtype=np.float64)
    with np.load(run / "predictions.npz") as npz:
        out.update({f"predictions:{k}": npz[k] for k in npz.files})
    return out


def compare(a: Path, b: Path) -> int:
    differing = 0
    for name in RUNS:
        left, right = _arrays(a / name), _arrays(b / name)
        if left.keys() != right.keys():
            print(f"{name}: different arrays: {sorted(left.keys() ^ right.keys())}")
            differing += 1
            continue
        bad = [
            k
            for k in left
            if left[k].dtype != right[k].dtype
            or left[k].shape != right[k].shape
            or left[k].tobytes() != right[k].tobytes()
        ]
        print(f"{name}: {len(left)} arrays, " + (f"DIFFER: {bad}" if bad else "bit-identical"))
        differing += bool(bad)
    return 1 if differing else 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "train":
        train(Path(argv[1]))
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        return compare(Path(argv[1]), Path(argv[2]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
