"""`fashionlab robustness RUN|STUDY`: accuracy on corrupted test images, into the folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fashionlab.cli.commands import COMMANDS
from fashionlab.cli.options import add_data_options
from fashionlab.data.corruptions import CORRUPTIONS, IN_DISTRIBUTION, OUT_OF_DISTRIBUTION
from fashionlab.errors import ConfigError
from fashionlab.robustness import DEFAULT_ITEMS, parse_severities, score_robustness


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "robustness",
        help=COMMANDS["robustness"],
        description="Corrupts the run's test items with each corruption at each severity "
        f"({', '.join(IN_DISTRIBUTION)}) and scores the model on them, plus the "
        f"out-of-distribution flips and turns ({', '.join(OUT_OF_DISTRIBUTION)}). Writes "
        "robustness.json and robustness.npz into each run folder (and robustness.json into "
        "a study folder: the models side by side, McNemar per corruption), then updates the "
        "report.",
    )
    parser.add_argument("path", type=Path, help="a run folder or a study folder")
    parser.add_argument(
        "--corruptions",
        nargs="+",
        metavar="NAME",
        help=f"which corruptions (default: all): {', '.join(CORRUPTIONS)}",
    )
    parser.add_argument(
        "--severities",
        default="1-5",
        help="severities to score, e.g. 1-5 (default), 3 or 1,3,5",
    )
    parser.add_argument(
        "--items",
        default=str(DEFAULT_ITEMS),
        help=f"test items to corrupt, the first of each class (default {DEFAULT_ITEMS}; "
        "'all' for the whole test split)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the corruptions' noise (default 0)"
    )
    parser.add_argument(
        "--reference",
        help="what corruption errors (CE, mCE) are relative to: another run folder for a run, "
        "a label for a study (default: the study's first label)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--no-report", action="store_true", help="do not update the report")
    add_data_options(parser)
    parser.set_defaults(func=cmd_robustness)


def _items(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"--items must be a positive integer or 'all', got {text!r}")
    return value


def cmd_robustness(args: argparse.Namespace) -> int:
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    result = score_robustness(
        args.path,
        corruptions=args.corruptions,
        severities=parse_severities(args.severities),
        items=_items(args.items),
        seed=args.seed,
        reference=args.reference,
        device=args.device,
        data_dir=args.data_dir,
        make_report=not args.no_report,
    )
    if args.json:
        print(json.dumps(result, indent=2))
    elif "labels" in result:
        print_study(result)
    else:
        print_run(result)
    return 0


def print_run(result: dict) -> None:
    names = list(result["corruptions"])
    severities = sorted({s for n in names for s in result["corruptions"][n]["severities"]})
    print(f"clean accuracy {result['clean_accuracy']:.4f} on {result['items']} items")
    if names:
        print(f"{'corruption':<16}" + "".join(f"{'s' + s:>8}" for s in severities) + "    mean")
        for name in names:
            cells = result["corruptions"][name]["severities"]
            row = "".join(
                f"{cells[s]['accuracy']:>8.4f}" if s in cells else f"{'':>8}" for s in severities
            )
            print(f"{name:<16}{row}{result['corruptions'][name]['mean_accuracy']:>8.4f}")
        print(f"mean corruption accuracy {result['mean_corruption_accuracy']:.4f}")
    reference = result.get("reference")
    if reference and reference.get("mce") is not None:
        print(f"mCE {reference['mce']:.3f} relative to {reference['run']}")
    for name, cell in result["out_of_distribution"].items():
        print(f"out of distribution: {name:<12} {cell['accuracy']:.4f}")


def print_study(result: dict) -> None:
    print(f"reference for CE: {result['reference']}  ({result['items']} items)")
    for label, row in result["labels"].items():
        mca = row["mean_corruption_accuracy"]
        mce = row["mce"]
        print(
            f"{label:<24} clean {row['clean_accuracy']['mean']:.4f}"
            + (f"  mean corruption accuracy {mca['mean']:.4f}" if mca else "")
            + (f"  mCE {mce['mean']:.3f}" if mce else "")
        )
    for note in result["skipped"]:
        print(f"skipped: {note}")
