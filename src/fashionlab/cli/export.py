"""`fashionlab export RUN --format onnx`: write the run's model as ONNX and check it.

After writing, onnxruntime's logits are compared with PyTorch's on every image of the run's
test split; the largest absolute difference is printed and must stay below `CHECK_ATOL`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fashionlab.cli.commands import COMMANDS
from fashionlab.cli.options import add_data_options
from fashionlab.errors import RunError
from fashionlab.inference.onnx import (
    CHECK_ATOL,
    ONNX_FILENAME,
    WEIGHTS_SHA256,
    compare_on_test_set,
    export_onnx,
    onnx_target,
    weights_digest,
)
from fashionlab.runs.weights import load_model


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "export",
        help=COMMANDS["export"],
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
    path = onnx_target(args.run, args.output)
    try:
        export_onnx(loaded.model, path, metadata={WEIGHTS_SHA256: weights_digest(args.run)})
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
