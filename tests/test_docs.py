"""The README and docs keep their promises: every `fashionlab ...` line in a fenced block parses
against the real command-line parser (subcommands, flags, choices), every relative link points
at a file that exists, and the README's first-model commands run end to end."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import shutil
from pathlib import Path

import pytest

from fashionlab._extras import MissingExtra
from fashionlab.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         *sorted((ROOT / "docs" / "studies").glob("*.md"))]  # fmt: skip
FENCE = re.compile(r"^(`{3,})[^\n]*\n(.*?)^\1\s*$", re.S | re.M)


def doc_commands(text: str) -> list[tuple[int, str]]:
    """(line number, command) for each `fashionlab ...` line inside a fenced block, with
    backslash continuations joined and prompts and trailing comments dropped."""
    found = []
    for block in FENCE.finditer(text):
        first_line = text.count("\n", 0, block.start(2)) + 1
        lines = block.group(2).split("\n")
        i = 0
        while i < len(lines):
            line, number = lines[i].strip(), first_line + i
            while line.endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line[:-1] + " " + lines[i].strip()
            line = line.removeprefix("$ ")
            if line.startswith("fashionlab ") or line == "fashionlab":
                found.append((number, line))
            i += 1
    return found


def parse_error(command: str) -> str | None:
    """None if `command` parses against the real CLI; else what argparse said."""
    try:
        argv = shlex.split(command, comments=True)[1:]
    except ValueError as exc:
        return f"not a shell command ({exc})"
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            build_parser(argv).parse_args(argv)
    except MissingExtra:
        return None  # the command's parser needs an extra this install lacks: CI has them all
    except SystemExit as exc:
        if exc.code not in (0, None):  # --help exits 0
            return stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue() else "error"
    return None


def all_doc_commands() -> list[tuple[str, str]]:
    return [
        (f"{page.relative_to(ROOT)}:{number}", command)
        for page in PAGES
        for number, command in doc_commands(page.read_text())
    ]


def test_the_docs_show_commands_at_all():
    commands = all_doc_commands()
    assert len(commands) > 30
    assert any(c.startswith("fashionlab train") for _, c in commands)


def test_every_documented_command_parses():
    failures = [f"{where}: {cmd}  ->  {err}" for where, cmd in all_doc_commands()
                if (err := parse_error(cmd))]  # fmt: skip
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "planted",
    [
        "fashionlab train --model s2-cnn --epocs 3",  # a misspelt flag
        "fashionlab train --model s2-cnn --precision fp16",  # not a choice
        "fashionlab trian --model s2-cnn",  # not a command
        "fashionlab study studies/s3.yaml --backend ray [--address ray://head:10001]",
    ],
)
def test_a_wrong_command_in_the_docs_is_caught(planted):
    page = f"# Page\n\n```bash\n{planted}   # what it does\n```\n"
    [(line, command)] = doc_commands(page)
    assert line == 4 and parse_error(command), command


def test_continuations_and_comments_are_read_as_the_shell_does():
    page = "```bash\n$ fashionlab train --model s2-cnn \\\n    --epochs 2   # two epochs\n```\n"
    assert doc_commands(page) == [(2, "fashionlab train --model s2-cnn  --epochs 2   # two epochs")]
    assert parse_error(doc_commands(page)[0][1]) is None


# Pages `make docs` writes from the code before building the site (not in the repository).
GENERATED = {ROOT / "docs" / "reference" / "cli.md", ROOT / "docs" / "reference" / "config.md"}
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_every_relative_link_points_at_a_file():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            path = (page.parent / target).resolve()
            if not path.exists() and path not in GENERATED:
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_the_readmes_first_model_commands_run(tmp_path, monkeypatch, capsys):
    """The three commands of the README's first model, on a small subset (the README's own
    timing is for the full recipe); `serve` is built, not served."""
    section = ROOT.joinpath("README.md").read_text().split("## A first model in three commands")[1]
    commands = [c for _, c in doc_commands(section.split("\n## ")[0])]
    assert [shlex.split(c, comments=True)[1] for c in commands] == ["train", "predict", "serve"]
    monkeypatch.chdir(tmp_path)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    subset = ["--epochs", "1", "--set", "train_subset=512", "--set", "eval_subset=200"]
    train, predict, serve = (shlex.split(c, comments=True)[1:] for c in commands)
    assert main([*train, *subset]) == 0
    assert main(predict) == 0
    shown = capsys.readouterr().out
    assert "ankle-boot.png" in shown and "  1. " in shown and "  3. " in shown  # the top 3
    pytest.importorskip("fastapi", reason="needs the [serve] extra")
    from fashionlab.serve import create_app

    assert serve[0] == "serve" and create_app(Path(serve[1])) is not None


def test_the_generated_reference_covers_every_command_and_field():
    import runpy

    from fashionlab.cli.commands import COMMANDS
    from fashionlab.config import TrainConfig

    generator = runpy.run_path(str(ROOT / "docs" / "gen_reference.py"))
    cli, config = generator["cli_reference"](), generator["config_reference"]()
    for name in COMMANDS:
        assert f"## `fashionlab {name}`" in cli
    for name, field in TrainConfig.model_fields.items():
        assert field.description, f"TrainConfig.{name} has no description"
        assert f"| `{name}` |" in config
    assert "| `epochs` | `int` | `10` | > 0, <= 100,000 |" in config
    assert "`adam` or `adamw` or `sgd` or `muon`" in config
