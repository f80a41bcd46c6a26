"""GPU check: the lab on CUDA, against whatever PyTorch the machine already has.

For s0-m1, s0-m2, s2-cnn and `fast`: the real trainer for a fixed number of steps with bf16
autocast (channels-last for the CNNs, as the trainer chooses), images per second from the
second (warm) epoch as the trainer records it; then the 0.94 speed-run preset (speedrun.yaml's
fast-10min) end to end as a user runs it: `fashionlab train` in a new process, data load and
test evaluation with TTA included. Prints a table and writes gpu_check.json.

    python benchmarks/gpu_check.py [--steps 200] [--out gpu-check] [--data-dir DIR]
    python benchmarks/gpu_check.py --dry-run      # the same code paths on the CPU, tiny

`benchmarks/gpu_check.sh` installs the package without touching torch and runs this.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from speedrun import presets, set_options  # noqa: E402
from train_speed import cpu_name  # noqa: E402

from fashionlab.models import build_config  # noqa: E402
from fashionlab.runs import load_history, load_metrics  # noqa: E402
from fashionlab.training import train  # noqa: E402

MODELS = ("s0-m1", "s0-m2", "s2-cnn", "fast")
# The speed-run preset that reaches 0.94 on the CPU, as studies/speedrun.yaml defines it.
PRESET = "fast-10min"


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_name()


def throughput(model: str, device: str, precision: str, steps: int, runs_dir: Path,
               data_dir: str | None, dry: bool = False) -> dict:  # fmt: skip
    """Two epochs of `steps` batches each, no validation pass; the second epoch is timed.
    `dry`: batches of 16 and 64 test images, the same code paths at a fraction of the cost
    (CPUs without native bf16 emulate it, many times slower than fp32)."""
    probe = build_config(model, {})
    batch_size = 16 if dry else probe.batch_size
    overrides = {
        "epochs": 2,
        "batch_size": batch_size,
        "train_subset": steps * batch_size,
        "eval_subset": 64 if dry else 1000,
        # No validation pass in the timed epoch: the last weights, no early stopping.
        "val_fraction": 0.0,
        "use_best_weights": False,
        "early_stopping_patience": None,
        "scheduler": "none" if probe.scheduler == "plateau" else probe.scheduler,
        "device": device,
        "precision": precision,
        "name": f"speed-{model}",
    }
    run_dir = train(build_config(model, overrides), runs_dir, overwrite=True, quiet=True,
                    data_dir=data_dir)  # fmt: skip
    warm = load_history(run_dir)[-1]
    metrics = load_metrics(run_dir)
    images = overrides["train_subset"]
    return {
        "model": model,
        "batch_size": batch_size,
        "steps": steps,
        "precision_used": metrics["precision_used"],
        "channels_last": metrics["channels_last"],
        "epoch_seconds": warm["seconds"],
        "images_per_second": images / warm["seconds"],
    }


def preset_end_to_end(device: str, runs_dir: Path, data_dir: str | None, dry: bool) -> dict:
    model, overrides = presets()[PRESET]
    if dry:
        overrides = {**overrides, "epochs": 1, "train_subset": 256, "eval_subset": 64,
                     "batch_size": 32}  # fmt: skip
    argv = [sys.executable, "-m", "fashionlab", "train", "--model", model, *set_options(overrides),
            "--device", device, "--precision", "bf16", "--runs-dir", str(runs_dir), "--name",
            "preset", "-q"]  # fmt: skip
    if data_dir:
        argv += ["--data-dir", data_dir]
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)  # it prints the run folder
    wall = time.perf_counter() - started
    metrics = load_metrics(runs_dir / "preset")
    return {
        "command": " ".join(argv[1:]),
        "wall_seconds": wall,
        "train_seconds": metrics["train_seconds"],
        "test_accuracy": metrics["test_accuracy"],
        "precision_used": metrics["precision_used"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--out", type=Path, default=Path("gpu-check"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="CPU, 3 steps, a 1-epoch preset on 256 images: checks the paths",
    )
    args = parser.parse_args(argv)
    device, steps = ("cpu", 3) if args.dry_run else (args.device, args.steps)
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; use --dry-run on a CPU", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    report = {
        "device": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": time.strftime("%Y-%m-%d"),
        "dry_run": args.dry_run,
        "models": [],
    }
    with tempfile.TemporaryDirectory(dir=args.out) as scratch:
        for model in MODELS:
            row = throughput(model, device, "bf16", steps, Path(scratch), args.data_dir,
                             dry=args.dry_run)  # fmt: skip
            report["models"].append(row)
            print(f"{model:<8} {row['precision_used']:<5} channels-last "
                  f"{str(row['channels_last']):<5} {row['images_per_second']:>10,.0f} img/s",
                  flush=True)  # fmt: skip
        report["preset"] = preset_end_to_end(device, Path(scratch), args.data_dir, args.dry_run)
    preset = report["preset"]
    print(f"0.94 preset: test accuracy {preset['test_accuracy']:.4f} in "
          f"{preset['wall_seconds']:.1f} s end to end ({preset['train_seconds']:.1f} s training)"
          f" on {report['device']}, torch {report['torch']}")  # fmt: skip
    tmp = args.out / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(report, indent=2))
    os.replace(tmp, args.out / "gpu_check.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
