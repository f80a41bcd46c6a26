"""Step 3 of a report: lay the context out as HTML (one self-contained file) and Markdown.

HTML: every image is a base64 `data:` URL and the CSS is inline, so the file opens from disk,
offline, mailed as an attachment -- it references nothing outside itself (no URL at all).
Markdown: images are PNG files in `figures/` beside it, referenced by relative paths, so the
folder can be committed or viewed on a code host.
"""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import jinja2
from markupsafe import Markup

from fashionlab._io import atomic_write_bytes
from fashionlab._read import FIGURE, read_bytes
from fashionlab.report.blocks import ReportContext
from fashionlab.report.figures import FIGURES_DIR, Figure
from fashionlab.report.markdown import md_fence, md_link_target, md_row, md_text
from fashionlab.runs import own_subfolder

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Layout of a figure from its pixel size: panels side by side (curves, PCA, image strips) get
# a whole row; large square ones (confusion matrix) too, but capped so they are not blown up;
# the rest pair up two per row.
WIDE_ASPECT = 2.2
BIG_PX = 900


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, without decoding the image."""
    if data[:8] != PNG_MAGIC or data[12:16] != b"IHDR":
        return 0, 0
    return struct.unpack(">II", data[16:24])


def _environment(autoescape: bool) -> jinja2.Environment:
    """HTML: Jinja's own escaping. Markdown: every interpolated value goes through `md_text`
    (the `finalize` hook), except what the md_* filters already made safe (links fashionlab
    built, fences, code blocks, table rows escaped cell by cell)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("fashionlab.report", "templates"),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,  # a typo in a template fails loudly, not silently
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        finalize=None if autoescape else _md_finalize,
    )
    env.filters["md_row"] = lambda cells: Markup(md_row(cells))
    env.filters["md_link"] = lambda target: Markup(md_link_target(str(target)))
    env.filters["md_fence"] = lambda text: Markup(md_fence(str(text)))
    # inside a fence longer than any backtick run in it, text is shown as it is
    env.filters["md_code"] = lambda text: Markup(str(text))
    return env


def _md_finalize(value: object) -> object:
    return value if isinstance(value, Markup) else md_text(value)


class _Image:
    """What the HTML template needs about one figure."""

    def __init__(self, figure: Figure) -> None:
        data = read_bytes(figure.path, FIGURE)
        self.width, self.height = png_size(data)
        if self.height and self.width / self.height >= WIDE_ASPECT:
            self.layout = "wide"
        elif self.width >= BIG_PX:
            self.layout = "big"
        else:
            self.layout = "half"
        self.src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def render_html(context: ReportContext) -> str:
    images = {f.path: _Image(f) for f in context.all_figures()}
    template = _environment(autoescape=True).get_template("report.html.j2")
    return template.render(report=context, images=images)


def export_figures(context: ReportContext, report_dir: Path) -> dict[Path, str]:
    """Make every figure available under `report_dir/figures/`; returns path -> relative link.

    Figures already there (a run's own report, a study's data figures) are linked as they are;
    a study's per-run figures are copied in, named after their run, and only rewritten when
    their bytes changed.
    """
    target = own_subfolder(report_dir, FIGURES_DIR)
    links: dict[Path, str] = {}
    for fig in context.all_figures():
        if fig.path.parent.resolve() == target.resolve():
            links[fig.path] = f"{FIGURES_DIR}/{fig.path.name}"
            continue
        name = f"{fig.path.parent.parent.name}--{fig.path.name}"
        dest = target / name
        data = read_bytes(fig.path, FIGURE)
        if not dest.is_file() or read_bytes(dest, FIGURE) != data:
            atomic_write_bytes(dest, data)
        links[fig.path] = f"{FIGURES_DIR}/{name}"
    return links


def render_markdown(context: ReportContext, report_dir: Path) -> str:
    links = export_figures(context, report_dir)
    template = _environment(autoescape=False).get_template("report.md.j2")
    return template.render(report=context, links=links)
