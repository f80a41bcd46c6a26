"""`fashionlab predict RUN IMAGE...`: classify image files with a trained run.

Each image goes through `fashionlab.inference.imaging.prepare_image` (or is used as is with
--no-preprocess) and `fashionlab.inference.Classifier`. One bad file does not stop the others:
it gets a one-line error on stderr and the exit status is non-zero at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from fashionlab.cli.commands import COMMANDS
from fashionlab.data import CLASS_NAMES
from fashionlab.errors import ImageError
from fashionlab.inference import BACKENDS, DEFAULT_TOP_K, Classifier, check_top_k
from fashionlab.inference.imaging import prepare_image


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict",
        help=COMMANDS["predict"],
        description="Classify image files (PNG, JPEG, WebP, GIF, BMP or a 28x28 .npy). By "
        "default each image is made to look like a Fashion-MNIST item first (grayscale, light "
        "object on black, cropped, centred, 28x28); the steps are listed with --json.",
    )
    parser.add_argument("run", type=Path, help="run folder")
    parser.add_argument("images", type=Path, nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument(
        "--top-k",
        type=int,
        default=DEFAULT_TOP_K,
        help=f"classes to show (default {DEFAULT_TOP_K})",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list instead")
    parser.add_argument(
        "--no-preprocess",
        action="store_true",
        help="use images as they are: they must already be 28x28, light object on black",
    )
    parser.add_argument(
        "--backend", choices=BACKENDS, default="torch", help="inference engine (default torch)"
    )
    parser.set_defaults(func=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    check_top_k(args.top_k, len(CLASS_NAMES))  # before the model loads: fail fast
    # Loaded before any image: a bad run folder is one error, not one per image.
    classifier = Classifier.from_run(args.run, backend=args.backend)
    results: list[dict[str, Any]] = []
    failed = 0
    for path in args.images:
        try:
            image, steps = prepare_image(path, preprocessing=not args.no_preprocess)
        except ImageError as exc:
            failed += 1
            message = str(exc) if str(path) in str(exc) else f"{path}: {exc}"
            print(f"fashionlab: error: {message}", file=sys.stderr)
            continue
        result = classifier.classify(image, top_k=args.top_k)
        results.append(
            {
                "file": str(path),
                "predictions": result["top"],
                "unsure": result["unsure"],
                "calibrated": result["calibrated"],
                "temperature": result["temperature"],
                "steps": steps,
            }
        )
        if not args.json:
            print_table(results[-1])
    if args.json:
        print(json.dumps(results, indent=2))
    elif results:
        print(f"({classifier.calibration_note})")
    return 2 if failed else 0


def print_table(result: dict[str, Any]) -> None:
    top = result["predictions"]
    if result.get("unsure"):
        print(f"{result['file']}: unsure ({top[0]['class']} or {top[1]['class']})")
    else:
        print(result["file"])
    width = max(len(p["class"]) for p in result["predictions"])
    for rank, pred in enumerate(result["predictions"], start=1):
        bar = "#" * round(20 * pred["probability"])
        print(f"  {rank}. {pred['class']:<{width}}  {pred['probability']:7.2%}  {bar}")
