"""Write the generated reference pages of the documentation site from the code itself.

- `docs/reference/cli.md`: every `fashionlab` command's `--help`, from the real argparse parser;
- `docs/reference/config.md`: every `TrainConfig` field (what `--set` and study files accept)
  with its type, default, bounds and description, from the pydantic model.

`make docs` runs this before `mkdocs build`; the pages are not committed (docs/reference/ is
ignored), so they cannot go stale. Run: `.venv/bin/python docs/gen_reference.py`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import annotated_types

from fashionlab._extras import MissingExtra
from fashionlab.cli import build_parser
from fashionlab.cli.commands import COMMANDS
from fashionlab.config import TrainConfig

OUT = Path(__file__).resolve().parent / "reference"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:  # argparse keeps no public handle on its subparsers
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def _help_blocks(name: str, parser: argparse.ArgumentParser, depth: int) -> list[str]:
    parser.prog = f"fashionlab {name}"
    blocks = [f"{'#' * depth} `fashionlab {name}`", "", "```text", parser.format_help().rstrip(),
              "```", ""]  # fmt: skip
    for sub, subparser in _subcommands(parser).items():
        blocks += _help_blocks(f"{name} {sub}", subparser, depth + 1)
    return blocks


def cli_reference() -> str:
    lines = [
        "# Command-line reference",
        "",
        "Generated from the `fashionlab` parser (`docs/gen_reference.py`); every command also "
        "prints this with `--help`.",
        "",
    ]
    for name in COMMANDS:
        try:
            parser = _subcommands(build_parser([name]))[name]
        except MissingExtra as exc:  # built without that extra: say so rather than skip
            lines += [f"## `fashionlab {name}`", "", f"Not available in this build: {exc}", ""]
            continue
        lines += _help_blocks(name, parser, 2)
    return "\n".join(lines)


def _type_name(annotation: Any) -> str:
    if get_origin(annotation) is Literal:
        return " or ".join(f"`{choice}`" for choice in get_args(annotation))
    text = getattr(annotation, "__name__", None) or str(annotation)
    text = text.replace("typing.", "").replace("NoneType", "None")
    return " or ".join(f"`{part.strip()}`" for part in text.split("|"))  # no '|' in a table


def _bounds(metadata: list[Any]) -> str:
    signs = {
        annotated_types.Gt: (">", "gt"),
        annotated_types.Ge: (">=", "ge"),
        annotated_types.Lt: ("<", "lt"),
        annotated_types.Le: ("<=", "le"),
    }
    parts = []
    for item in metadata:
        for kind, (sign, attribute) in signs.items():
            if isinstance(item, kind):
                value = getattr(item, attribute)
                parts.append(f"{sign} {value:,}" if isinstance(value, int) else f"{sign} {value}")
        if isinstance(item, annotated_types.MaxLen):
            parts.append(f"at most {item.max_length} items")
    return ", ".join(parts)


def config_reference() -> str:
    lines = [
        "# Config reference",
        "",
        "Every field of a run's configuration: what `fashionlab train --set KEY=VALUE`, a "
        "study file's `overrides:` and `config.yaml` accept. Each model's recipe sets some of "
        "them (`fashionlab models MODEL`); the defaults below apply to the rest. Generated "
        "from `fashionlab.config.TrainConfig` (`docs/gen_reference.py`).",
        "",
        "| field | type | default | bounds | description |",
        "|---|---|---|---|---|",
    ]
    for name, field in TrainConfig.model_fields.items():
        if field.is_required():
            default = "required"
        elif field.default_factory is not None:
            default = f"`{field.default_factory()!r}`"
        else:
            default = f"`{field.default!r}`"
        cells = [f"`{name}`", _type_name(field.annotation), default,
                 _bounds(field.metadata), field.description or ""]  # fmt: skip
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    OUT.mkdir(exist_ok=True)
    (OUT / "cli.md").write_text(cli_reference())
    (OUT / "config.md").write_text(config_reference())
    print(f"wrote {OUT / 'cli.md'} and {OUT / 'config.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
