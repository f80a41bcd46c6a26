"""Text from run folders and study files, made inert in Markdown.

Titles, labels, claims and config values are the user's (or whoever handed them a study file).
In `report.md` and the scoreboard they must read as the text they are: no HTML a viewer would
render (`<script>`), no Markdown that changes the page (a `#` heading, a `[link](...)`, a `|`
that ends a table cell, a newline that starts a new block), no fence that closes a code block.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Characters that change inline Markdown wherever they stand; a backslash makes each literal.
# ('<', '>' and '&' become entities instead: a backslash does not stop every viewer's HTML.
# Backticks are left: a code span shows its content literally, and fashionlab's own texts
# quote commands in them; only a fence, at the start of a line, is escaped.)
# '_' between letters or digits (test_accuracy) never makes emphasis, and stays as it is.
_SPECIAL = re.compile(r"([\\*\[\]|~]|(?<![A-Za-z0-9])_|_(?![A-Za-z0-9]))")
# What makes a block at the start of a line: heading, list, rule, quote, fence, numbered list.
_LINE_START = re.compile(r"^(\s*)([-=+#`])|^(\s*\d+)([.)])(?=\s|$)")


def md_text(value: object, line_start: bool = True) -> str:
    """`value` as one line of Markdown that renders as exactly its text. `line_start=False`
    for text that cannot begin a block (a table cell), where '-', '#' or '1.' mean nothing."""
    text = re.sub(r"\s+", " ", str(value))  # a newline could start a heading, a list, a fence
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _SPECIAL.sub(r"\\\1", text)
    if not line_start:
        return text
    return _LINE_START.sub(lambda m: f"{m[1] or m[3] or ''}\\{m[2] or m[4]}", text)


def md_row(cells: Iterable[object]) -> str:
    """One table row, every cell escaped (its `|` included)."""
    return "| " + " | ".join(md_text(cell, line_start=False) for cell in cells) + " |"


def md_link_target(target: str) -> str:
    """A relative link fashionlab made (figures/x.png), with the characters that would end
    the link's parentheses or break its line percent-encoded."""
    return re.sub(r"[\s()<>\\]", lambda m: f"%{ord(m.group()):02X}", target)


def md_fence(text: str) -> str:
    """A backtick fence longer than any run of backticks in `text`, so `text` cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def md_code_span(text: object) -> str:
    """`text` as an inline code span whose backtick delimiters no backtick run inside can
    close; a span shows its content literally, so nothing else needs escaping (but newlines,
    which would end the line)."""
    text = re.sub(r"\s+", " ", str(text))
    ticks = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


__all__ = ["md_code_span", "md_fence", "md_link_target", "md_row", "md_text"]
