"""The building blocks of a report and how numbers are written in it.

A report is a title plus a list of `Section`s; a section is a list of `Block`s (heading,
paragraph, verdict, table, figures, preformatted text). Both templates (HTML and Markdown) walk
the same blocks, so the two files always say the same thing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from fashionlab.report.figures import Figure

# Metrics that are fractions: their differences also read well in percentage points.
FRACTIONS = {"test_accuracy", "macro_f1", "weighted_f1", "val_accuracy", "train_accuracy"}


# ---------------------------------------------------------------- blocks


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    align: str = ""  # one letter per column, "l" or "r"; default: first left, rest right
    caption: str = ""

    def __post_init__(self) -> None:
        if not self.align:
            self.align = "l" + "r" * (len(self.headers) - 1)


@dataclass
class Block:
    """One piece of a section; `kind` tells the template which fields to use."""

    kind: str  # "h3" | "p" | "verdict" | "table" | "figures" | "pre"
    text: str = ""
    title: str = ""  # of a collapsed "pre" block
    table: Table | None = None
    figures: list[Figure] = field(default_factory=list)
    # verdicts: True = a significant difference, False = none; None = a plain note. Colour
    # says "significant", never "claim supported": a claim is free text we do not parse.
    significant: bool | None = None
    anchor: str = ""  # id of an "h3"


def h3(text: str, anchor: str = "") -> Block:
    return Block("h3", text=text, anchor=anchor)


def para(text: str) -> Block:
    return Block("p", text=text)


def verdict(text: str, significant: bool | None) -> Block:
    return Block("verdict", text=text, significant=significant)


def table(headers: list[str], rows: list[list[str]], align: str = "", caption: str = "") -> Block:
    return Block("table", table=Table(headers, rows, align, caption))


def figures(figs: list[Figure]) -> Block:
    return Block("figures", figures=figs)


def pre(title: str, text: str) -> Block:
    """Preformatted text (a config, a layer table), collapsed under `title` in the HTML."""
    return Block("pre", text=text, title=title)


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class ReportContext:
    title: str
    subtitle: str
    kind: str  # "study" or "run"
    facts: list[tuple[str, str]]
    sections: list[Section]
    generated: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))

    def all_figures(self) -> list[Figure]:
        return [f for s in self.sections for b in s.blocks for f in b.figures]


# ---------------------------------------------------------------- formatting


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def fmt_stat(stat: dict[str, Any] | None, digits: int = 4) -> str:
    """'mean ± std' over seeds; a single seed has no spread to show."""
    if not stat:
        return "—"
    if stat.get("n", 1) < 2:
        return fmt(float(stat["mean"]), digits)
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 90:
        return f"{seconds:.1f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def fmt_seconds_stat(stat: dict[str, Any] | None) -> str:
    if not stat:
        return "—"
    text = fmt_seconds(stat["mean"])
    return text if stat.get("n", 1) < 2 else f"{text} ± {fmt_seconds(stat['std'])}"


def fmt_params(value: Any) -> str:
    return f"{int(value):,}" if isinstance(value, (int, float)) else "—"


def fmt_difference(key: str, diff: float) -> str:
    text = f"{diff:+.4f}"
    return f"{text} ({diff * 100:+.2f} pp)" if key in FRACTIONS else text


def fmt_p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-4 else f"{p:.4f}"
