"""fashionlab.report: one self-contained report.html (every image a PNG data: URL, no URL at
all) plus report.md with figures/ beside it, for a study folder and for a single run; figures
are reused when fresh; bad folders are a one-line error; the page renders in a real browser."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch

from fashionlab.cli import main
from fashionlab.report import SECTION_IDS, write_report
from fashionlab.report.figures import is_fresh
from fashionlab.studies import run_study

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

STUDY = """\
name: tiny
title: Tiny report study
description: Two seeds of an ANN and two identical CNNs, one epoch on 256 images.
seeds: [1, 2]
overrides: {epochs: 1, train_subset: 256, eval_subset: 300, batch_size: 64}
runs:
  - {label: ANN, model: s4-ann, reported: {test_accuracy: 0.8765}}
  - {label: CNN1, model: s4-cnn1}
  - {label: CNN2, model: s4-cnn2}
compare:
  - {a: CNN1, b: ANN, claim: "the CNN beats the ANN"}
"""


class _Page(HTMLParser):
    """Section ids, <img> sources and <section> texts of a report page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.images: list[str] = []
        self.sections: dict[str, str] = {}
        self._current: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self._current = attrs.get("id")
            self.ids.append(self._current)
            self.sections[self._current] = ""
        if tag == "img":
            self.images.append(attrs.get("src", ""))

    def handle_endtag(self, tag):
        if tag == "section":
            self._current = None

    def handle_data(self, data):
        if self._current:
            self.sections[self._current] += data


def parse(html_path: Path) -> _Page:
    page = _Page()
    page.feed(html_path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def study(tmp_path_factory, fashion) -> Path:
    """A finished tiny study with its report (run_study writes it at the end)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 shared cores: extra threads only spin
    try:
        root = tmp_path_factory.mktemp("report")
        path = root / "tiny.yaml"
        path.write_text(STUDY)
        return run_study(path, root / "tiny", quiet=True)
    finally:
        torch.set_num_threads(old)


@pytest.mark.slow
def test_study_report_is_self_contained(study):
    html, md = study / "report.html", study / "report.md"
    assert html.is_file() and md.is_file()
    page = parse(html)
    assert page.ids == list(SECTION_IDS)
    assert len(page.images) >= 20  # data, overlay, and 6-8 figures per label
    for src in page.images:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), src[:60]
        assert base64.b64decode(src[len(prefix) :], validate=True).startswith(PNG_MAGIC)
    text = html.read_text(encoding="utf-8")
    assert "http://" not in text and "https://" not in text
    assert "<script" not in text


@pytest.mark.slow
def test_markdown_links_figures_beside_it(study):
    md = (study / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert links and all(link.startswith("figures/") for link in links)
    for link in links:
        assert (study / link).read_bytes().startswith(PNG_MAGIC)
    for section in SECTION_IDS:
        assert f'<a id="{section}"></a>' in md


def test_sections_say_what_the_study_found(study):
    page = parse(study / "report.html")
    summary = json.loads((study / "study.json").read_text())
    rows = {r["label"]: r for r in summary["rows"]}
    s = page.sections
    assert all(label in s["summary"] for label in rows)
    mean = rows["CNN1"]["test_accuracy"]["mean"]
    assert f"{mean:.4f}" in s["summary"]
    # reproduction: the reported number, ours and the difference, only for reported metrics
    assert "0.8765" in s["reproduction"]
    assert f"{rows['ANN']['difference']['test_accuracy']:+.4f}" in s["reproduction"]
    assert "CNN2" not in s["reproduction"]
    # significance: one row per seed with b and c, and a verdict in words
    per_seed = summary["comparisons"][0]["per_seed"]
    assert "the CNN beats the ANN" in s["significance"]
    for res in per_seed:
        assert str(res["b"]) in s["significance"] and str(res["c"]) in s["significance"]
    assert re.search(r"significant|No significant|Mixed", s["significance"])
    assert "same network as CNN1" in s["architectures"]
    assert "FLOPs" in s["architectures"]
    for title in ("Learning curves", "Confusion matrix", "Grad-CAM", "Activation maps"):
        assert title in s["models"]
    assert "git_commit" in s["environment"] and "torch" in s["environment"]


def _figure_stamps(folder: Path) -> dict[str, int]:
    return {str(p): p.stat().st_mtime_ns for p in folder.glob("*/figures/*.png")}


def test_rerun_reuses_fresh_figures(study):
    before = _figure_stamps(study)
    assert before
    write_report(study)
    assert _figure_stamps(study) == before


def test_figure_is_stale_when_its_inputs_are_newer(tmp_path):
    figure, weights = tmp_path / "f.png", tmp_path / "model.safetensors"
    assert not is_fresh(figure, [weights])
    weights.write_bytes(b"w")
    figure.write_bytes(b"f")
    os.utime(weights, ns=(1_000_000_000, 1_000_000_000))
    assert is_fresh(figure, [weights, tmp_path / "missing"])
    os.utime(weights, ns=(figure.stat().st_mtime_ns + 1, figure.stat().st_mtime_ns + 1))
    assert not is_fresh(figure, [weights])  # re-trained: redraw


def test_single_run_report_and_cli(study, capsys):
    run = study / "CNN1-seed1"
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(run / "report.html")
    page = parse(run / "report.html")
    assert page.ids == list(SECTION_IDS)
    assert "0.8765" not in page.sections["reproduction"]
    assert page.images and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert (run / "report.md").is_file()


def test_run_without_torch_weights_gets_history_figures_only(study, tmp_path):
    # a NumPy-MLP run: model.json names the numpy model and there is no model.safetensors
    run = tmp_path / "numpy-run"
    shutil.copytree(study / "ANN-seed1", run)
    shutil.rmtree(run / "figures")
    (run / "model.safetensors").unlink()
    info = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**info, "model": "numpy-mlp"}))
    shutil.copytree(study / "figures", tmp_path / "figures")  # lets it borrow the data figures
    write_report(run)
    names = {p.stem for p in (run / "figures").glob("*.png")}
    assert {"learning_curves", "confusion", "misclassified"} <= names
    assert not names & {"filters", "activations", "gradcam", "feature_pca"}
    assert "need PyTorch weights" in parse(run / "report.html").sections["models"]


@pytest.mark.parametrize("make", [lambda p: p / "missing", lambda p: p])
def test_bad_folder_is_a_one_line_error(tmp_path, capsys, make):
    bad = make(tmp_path)
    assert main(["report", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]


@pytest.mark.slow
@pytest.mark.browser
def test_report_renders_in_chromium(study, tmp_path, chromium_page):
    page = chromium_page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto((study / "report.html").as_uri())
    page.wait_for_load_state("load")
    shot = tmp_path / "report.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes().startswith(PNG_MAGIC)
    for section in SECTION_IDS:
        assert page.locator(f"section#{section}").is_visible(), section
    widths = page.eval_on_selector_all(
        "img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)"
    )
    assert widths and all(w > 0 for w in widths)
    # nothing but the file itself (and its data: images) was requested
    assert all(u.startswith(("file://", "data:")) for u in requests), requests
