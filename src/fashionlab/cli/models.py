"""`fashionlab models`: list the registered models, or show one model's layers and recipe."""

from __future__ import annotations

import argparse
import json
from typing import Any

from fashionlab.cli.commands import COMMANDS
from fashionlab.models import create_model, get_model_spec, list_models
from fashionlab.models.summary import (
    architecture_signature,
    format_count,
    format_layer_table,
    summarize_model,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help=COMMANDS["models"],
        description=(
            "List every registered model with its parameter count, forward FLOPs per 28x28 "
            "image (a multiply-add counts as 2) and study. Name models to see their layers "
            "and training recipe."
        ),
    )
    parser.add_argument("names", nargs="*", metavar="MODEL", help="show these models in detail")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(func=run)


def model_rows(names: list[str] | None = None, layers: bool = False) -> list[dict[str, Any]]:
    """One dict per model (default models built with no model_args)."""
    rows = []
    signatures: dict[str, list[str]] = {}  # signature -> models with it, for "same as"
    for name in names or list_models():
        spec = get_model_spec(name)  # an unknown name is a ConfigError listing close names
        row: dict[str, Any] = {
            "name": spec.name,
            "study": spec.study,
            "framework": spec.framework,
            "params": None,
            "flops": None,
            "expected_params": spec.expected_params,
            "description": spec.description,
            "recipe": spec.recipe,
        }
        # Only PyTorch models can be traced; the NumPy MLP needs its fit-time sizes.
        if spec.framework == "torch":
            model = create_model(name)
            summary = summarize_model(model)
            row["params"], row["flops"] = summary.params, summary.flops
            twins = signatures.setdefault(architecture_signature(model), [])
            row["same_architecture_as"] = list(twins)
            twins.append(name)
            if layers:
                row["layers"] = [
                    {
                        "name": layer.name,
                        "type": layer.kind,
                        "output_shape": list(layer.output_shape),
                        "params": layer.params,
                        "flops": layer.flops,
                    }
                    for layer in summary.layers
                ]
                row["layer_table"] = format_layer_table(summary)
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    def num(value: int | None) -> str:
        return "-" if value is None else format_count(value)

    table = [("model", "params", "FLOPs/img", "study", "description")]
    table += [
        (r["name"], num(r["params"]), num(r["flops"]), r["study"], r["description"]) for r in rows
    ]
    widths = [max(len(t[i]) for t in table) for i in range(4)]
    lines = []
    for t in table:
        cells = [t[0].ljust(widths[0]), t[1].rjust(widths[1]), t[2].rjust(widths[2])]
        lines.append("  ".join([*cells, t[3].ljust(widths[3]), t[4]]).rstrip())
    lines.insert(1, "-" * max(len(line) for line in lines))
    for r in rows:
        if r.get("same_architecture_as"):
            twins = ", ".join(r["same_architecture_as"])
            lines.append(f"{r['name']} is the same network as {twins} (architecture_signature).")
    lines.append("FLOPs: forward pass per 28x28 image, a multiply-add counts as 2.")
    return "\n".join(lines)


def format_details(row: dict[str, Any]) -> str:
    lines = [f"{row['name']} ({row['study']}, {row['framework']}): {row['description']}"]
    if "layer_table" in row:
        lines.append(row["layer_table"])
    if row["expected_params"] is not None:
        lines.append(f"the study states {row['expected_params']:,} parameters")
    recipe = ", ".join(f"{k}={v}" for k, v in row["recipe"].items())
    lines.append(f"recipe: {recipe or '(TrainConfig defaults)'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    detailed = bool(args.names)
    rows = model_rows(args.names or None, layers=detailed)
    if args.json:
        for row in rows:
            row.pop("layer_table", None)
        print(json.dumps(rows, indent=2))
    elif detailed:
        print("\n\n".join(format_details(row) for row in rows))
    else:
        print(format_table(rows))
    return 0
