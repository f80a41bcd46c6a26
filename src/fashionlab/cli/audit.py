"""`fashionlab audit`: train/test duplicates and suspect labels, and what they do to scores."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fashionlab.audit import AuditSettings, CrossValSettings, audit_data
from fashionlab.cli.commands import COMMANDS
from fashionlab.cli.options import add_data_options
from fashionlab.errors import ConfigError

_DEFAULTS = AuditSettings()
_CV = CrossValSettings()


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "audit",
        help=COMMANDS["audit"],
        description="Audits Fashion-MNIST: exact duplicates (identical bytes) within and "
        "across train and test; test images whose nearest training image (cosine similarity "
        "of pixel principal components, and of a given run's penultimate features) is above "
        "a threshold; suspect labels by cleanlab's confident learning on out-of-sample "
        "probabilities (the given runs' for the test set, k-fold cross-validation for the "
        "training set). Given runs (or a study's runs) are rescored on the test set without "
        "the flagged items. Writes audit.json, CSVs, galleries and report.html/report.md "
        "into the audit folder.",
    )
    parser.add_argument(
        "--run", dest="runs", action="append", default=[], type=Path, metavar="RUN",
        help="a finished run folder to rescore (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--study", type=Path, help="a study folder: rescore all its runs and its comparisons"
    )
    parser.add_argument(
        "--out", type=Path,
        help="the audit folder (default: STUDY/audit with --study, ./audit otherwise)",
    )  # fmt: skip
    parser.add_argument(
        "--threshold", type=float, default=_DEFAULTS.pixel_threshold,
        help="pixel cosine similarity at or above which a test image counts as a "
        f"near-duplicate of a training image (default {_DEFAULTS.pixel_threshold})",
    )  # fmt: skip
    parser.add_argument(
        "--feature-threshold", type=float, default=_DEFAULTS.feature_threshold,
        help="the same for a run's penultimate features "
        f"(default {_DEFAULTS.feature_threshold})",
    )  # fmt: skip
    parser.add_argument(
        "--components", type=int, default=_DEFAULTS.pixel_components,
        help=f"principal components of the pixel embedding (default {_DEFAULTS.pixel_components})",
    )  # fmt: skip
    parser.add_argument(
        "--folds", type=int, default=_CV.folds,
        help=f"cross-validation folds for the training labels (default {_CV.folds}; 0: skip "
        "the training set and use only the given runs for the test labels)",
    )  # fmt: skip
    parser.add_argument(
        "--cv-model", default=_CV.model,
        help=f"the model each fold trains (default {_CV.model}, widths "
        f"{_CV.model_args['widths']})",
    )  # fmt: skip
    parser.add_argument(
        "--cv-epochs", type=int, default=_CV.epochs,
        help=f"epochs per fold (default {_CV.epochs})",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=_CV.seed, help="folds and training seed")
    parser.add_argument(
        "--gallery",
        type=int,
        default=_DEFAULTS.gallery,
        help=f"suspect items shown per gallery (default {_DEFAULTS.gallery})",
    )
    parser.add_argument("--json", action="store_true", help="print audit.json's counts as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    add_data_options(parser)
    parser.set_defaults(func=cmd_audit)


def _crossval(args: argparse.Namespace) -> CrossValSettings | None:
    if args.folds == 0:
        return None
    if args.cv_epochs < 1:
        raise ConfigError(f"--cv-epochs must be >= 1, got {args.cv_epochs}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    model_args = _CV.model_args if args.cv_model == _CV.model else {}
    return CrossValSettings(
        model=args.cv_model, folds=args.folds, epochs=args.cv_epochs, seed=args.seed,
        model_args=model_args,
    )  # fmt: skip


def cmd_audit(args: argparse.Namespace) -> int:
    if args.components < 1:
        raise ConfigError(f"--components must be >= 1, got {args.components}")
    settings = AuditSettings(
        pixel_components=args.components,
        pixel_threshold=args.threshold,
        feature_threshold=args.feature_threshold,
        crossval=_crossval(args),
        gallery=args.gallery,
    )
    result = audit_data(
        out=args.out, runs=args.runs, study=args.study, settings=settings,
        data_dir=args.data_dir, quiet=args.quiet,
    )  # fmt: skip
    if args.json:
        keys = ("exact", "near", "labels", "subsets", "scores", "comparisons", "seconds")
        print(json.dumps({k: result[k] for k in keys}, indent=2))
    else:
        near = result["near"]["pixels"]
        labels = result["labels"]
        print(
            f"exact duplicates: {result['exact']['across']['groups']} across train/test, "
            f"{result['exact']['within train']['groups']} within train, "
            f"{result['exact']['within test']['groups']} within test; "
            f"near-duplicates (pixels, cosine >= {near['threshold']}): {near['count']}; "
            "suspect labels: "
            + ", ".join(
                f"{pool} {labels[pool]['count']}" if labels.get(pool) else f"{pool} not searched"
                for pool in ("test", "train")
            )
        )
        for row in result["scores"]:
            if "subsets" in row:
                cells = ", ".join(f"{k} {v['accuracy']:.4f}" for k, v in row["subsets"].items())
                print(f"{row['label']}: {cells}")
        folder = args.out or (args.study / "audit" if args.study else Path("audit"))
        print(f"report: {folder / 'report.html'}")
    return 0
