"""`fashionlab export RUN --format onnx`: write the run's model as ONNX and check it.

After writing, onnxruntime's logits are compared with PyTorch's on every image of the run's
test split; the largest absolute difference is printed and must stay below `CHECK_ATOL`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from fashionlab.cli.data import add_data_options
from fashionlab.errors import RunError
from fashionlab.export import OnnxPredictor, export_onnx
from fashionlab.inference import ONNX_FILENAME
from fashionlab.model_io import LoadedModel, load_model
from fashionlab.training import EVAL_BATCH, predict_logits, prepare_data

# float32 kernels of onnxruntime and PyTorch sum in different orders; for our models that moves
# logits by ~1e-6. A wrong graph (batch norm in train mode, a missing layer) is off by ~0.1.
CHECK_ATOL = 1e-4


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a run's model (ONNX) and check it against PyTorch",
        description="Write the run's model as ONNX (input 'input' float32 N x 1 x 28 x 28, "
        "normalised as in training; output 'logits' N x 10), then compare onnxruntime with "
        f"PyTorch on the run's whole test split (max |logit difference| < {CHECK_ATOL:g}).",
    )
    parser.add_argument("run", type=Path, help="run folder")
    parser.add_argument("--format", choices=["onnx"], default="onnx", help="only onnx for now")
    parser.add_argument(
        "--output", type=Path, default=None, help=f"file to write (default RUN/{ONNX_FILENAME})"
    )
    parser.add_argument(
        "--no-check", action="store_true", help="skip the test-set comparison (no dataset needed)"
    )
    add_data_options(parser)
    parser.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    loaded = load_model(args.run)
    path = args.output or args.run / ONNX_FILENAME
    try:
        export_onnx(loaded.model, path)
    except OSError as exc:
        raise RunError(f"cannot write {path}: {exc.strerror or exc}") from None
    print(path)
    if args.no_check:
        return 0
    worst, count = compare_on_test_set(loaded, path, args.data_dir)
    print(f"max |logit difference| onnxruntime vs PyTorch on {count:,} test images: {worst:.2e}")
    if not worst < CHECK_ATOL:  # "not <" so that NaN fails too
        # Removed, so that `--backend onnx` cannot pick up a model that failed its check.
        path.unlink(missing_ok=True)
        raise RunError(
            f"{path}: ONNX logits differ from PyTorch by {worst:.2e} (limit {CHECK_ATOL:g}); "
            "the file was removed"
        )
    return 0


def compare_on_test_set(
    loaded: LoadedModel, onnx_path: Path, data_dir: Path | None = None
) -> tuple[float, int]:
    """(max |onnx - torch| over all logits, number of images) on the run's test split.

    The run's `eval_subset` is dropped: it only shortens evaluation during training, while an
    export check should see every test image of the split.
    """
    config = loaded.config.model_copy(update={"eval_subset": None})
    split, _ = prepare_data(config, data_dir)
    images = split.test_images
    # The saved normaliser, not the one prepare_data refits: the exported model is used with it.
    normalizer = loaded.normalizer
    expected = predict_logits(loaded.model, images, normalizer, torch.device("cpu")).numpy()
    predictor = OnnxPredictor(onnx_path)
    got = np.concatenate(
        [
            predictor.logits(normalizer(images[i : i + EVAL_BATCH]).numpy())
            for i in range(0, len(images), EVAL_BATCH)
        ]
    )
    return float(np.max(np.abs(got - expected))), len(images)
