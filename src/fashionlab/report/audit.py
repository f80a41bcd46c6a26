"""What reports say about a data audit (`fashionlab audit`): the audit's own report, the audit
section of a study report, and the flags on a run's most confident mistakes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fashionlab.data import CLASS_NAMES
from fashionlab.evaluation import mean_std
from fashionlab.report.blocks import (
    ReportContext,
    Section,
    figures,
    fmt_seconds,
    h3,
    para,
    table,
    verdict,
)
from fashionlab.report.figures import FIGURES_DIR, Figure
from fashionlab.runs import AUDIT_SUBSETS, load_audit, study_audit_dir

AUDIT_TITLE = "Data audit"
SUBSET_NOTE = (
    "The full test set is the standard number; the cleaned subsets are secondary numbers that "
    "show how much of a score rests on test items that duplicate a training image or whose "
    "label the models dispute."
)


# ---------------------------------------------------------------- the audit's own report


def audit_context(folder: Path) -> ReportContext:
    audit = load_audit(folder)
    assert audit is not None  # report_kind checked the file
    settings = audit["settings"]
    sections = [
        _duplicates_section(folder, audit),
        _labels_section(folder, audit),
        _scores_section(audit),
        _files_section(folder, audit),
    ]
    labels = audit.get("labels", {})
    facts = [
        ("folder", str(folder)),
        ("created", audit.get("created", "")),
        ("training / test images", f"{audit['dataset']['train']} / {audit['dataset']['test']}"),
        ("runs scored", str(len(audit.get("runs", [])))),
        ("pixel threshold", f"cosine ≥ {settings['pixel_threshold']}"),
        ("suspect test labels", _count(labels.get("test"))),
        ("suspect training labels", _count(labels.get("train"))),
        ("time", fmt_seconds(audit.get("seconds", {}).get("total"))),
    ]
    if audit.get("study"):
        facts.insert(1, ("study", audit["study"]))
    return ReportContext(
        title="Data audit: duplicates and suspect labels",
        subtitle="Fashion-MNIST's train/test duplicates and disputed labels, and what they do "
        "to the scores.",
        kind="audit",
        facts=facts,
        sections=sections,
    )


def _count(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "not searched"
    return f"{summary['count']} ({100 * summary['fraction']:.2f}%)"


def _figure(folder: Path, key: str, title: str, caption: str = "") -> list[Figure]:
    path = folder / FIGURES_DIR / f"{key}.png"
    return [Figure(key, title, path, caption)] if path.is_file() else []


def _duplicates_section(folder: Path, audit: dict[str, Any]) -> Section:
    section = Section("duplicates", "Duplicates")
    exact = audit["exact"]
    rows = [
        [kind, str(exact[kind]["groups"]), str(exact[kind]["images"]),
         str(exact[kind]["extra_copies"])]
        for kind in ("within train", "within test", "across")
    ]  # fmt: skip
    section.blocks.append(h3("Exact duplicates (identical bytes)"))
    section.blocks.append(
        table(
            ["where", "groups", "images", "extra copies"],
            rows,
            caption=f"{exact['label_conflicts']} groups have copies with different labels.",
        )
    )
    section.blocks.append(h3("Test images close to a training image"))
    near_rows = []
    for name, near in audit["near"].items():
        q = near["cosine_quantiles"]
        near_rows.append(
            [name, f"≥ {near['threshold']}", str(near["count"]), str(near["label_disagrees"]),
             f"{q['0.5']:.3f} / {q['0.99']:.3f} / {q['0.999']:.3f}"]
        )  # fmt: skip
    section.blocks.append(
        table(
            ["embedding", "cosine", "test items", "labels differ", "nearest cosine p50/p99/p99.9"],
            near_rows,
            caption="Each test image's nearest training image by cosine similarity; "
            + "; ".join(f"{n}: {v['embedding']}" for n, v in audit["near"].items())
            + ".",
        )
    )
    names = list(CLASS_NAMES)
    per_class = [
        [c, *(str(v["per_class"][c]) for v in audit["near"].values()),
         str(exact["per_class"][c])]
        for c in names
    ]  # fmt: skip
    section.blocks.append(
        table(
            ["class", *(f"near ({n})" for n in audit["near"]), "exact groups"],
            per_class,
            caption="Per class: test items above the threshold (by their test label), and "
            "exact-duplicate groups (by the first copy's label).",
        )
    )
    figs = []
    for name, near in audit["near"].items():
        figs += _figure(
            folder,
            f"near_duplicates_{name}",
            f"Closest pairs by {name}",
            f"Test image (left) and its nearest training image (right), most similar first; "
            f"greyed: below the threshold {near['threshold']}; red: labels differ.",
        )
    if figs:
        section.blocks.append(figures(figs))
    return section


def _labels_section(folder: Path, audit: dict[str, Any]) -> Section:
    section = Section("labels", "Suspect labels")
    labels = audit.get("labels", {})
    crossval = audit.get("crossval")
    source = audit.get("test_probabilities", "")
    text = (
        "Found by cleanlab's confident learning (find_label_issues) on out-of-sample predicted "
        f"probabilities, ranked by the probability of the given label. Test set: {source}."
    )
    if crossval:
        accs = ", ".join(f"{a:.4f}" for a in crossval["fold_accuracy"])
        text += (
            f" Training set: {crossval['folds']}-fold cross-validation of {crossval['model']} "
            f"({crossval['epochs']} epochs, seed {crossval['seed']}; held-out accuracy per fold "
            f"{accs}; {fmt_seconds(sum(crossval.get('fold_train_seconds', [])))} of training"
            + (f", {crossval['folds_reused']} folds reused from the audit's cache"
               if crossval.get("folds_reused") else "")
            + ")."
        )  # fmt: skip
    else:
        text += " Training set: not searched (cross-validation switched off)."
    section.blocks.append(para(text))
    rows = []
    for c in CLASS_NAMES:
        rows.append([c, *(str(labels[p]["per_class"][c]) if labels.get(p) else "—"
                          for p in ("test", "train"))])  # fmt: skip
    rows.append(["total", *(_count(labels.get(p)) for p in ("test", "train"))])
    section.blocks.append(
        table(["given label", "test", "train"], rows, caption="Suspect items by their given label.")
    )
    figs = []
    for pool in ("test", "train"):
        figs += _figure(
            folder,
            f"suspect_labels_{pool}",
            f"Most suspect {pool} labels",
            "Each item's rank, its given label, the label the models favour, and the "
            "probability they give the given label.",
        )
    if figs:
        section.blocks.append(figures(figs))
    return section


def _ordered(subsets: dict[str, Any]) -> list[str]:
    """The subsets in AUDIT_SUBSETS order (JSON files may hold them sorted)."""
    return [n for n in AUDIT_SUBSETS if n in subsets] + [
        n for n in subsets if n not in AUDIT_SUBSETS
    ]


def _subset_cells(subsets: dict[str, Any], names: list[str]) -> list[str]:
    return [f"{subsets[n]['accuracy']:.4f} ({subsets[n]['n']})" for n in names]


def _scores_section(audit: dict[str, Any]) -> Section:
    section = Section("scores", "What it does to the scores")
    section.blocks.append(para(SUBSET_NOTE))
    scored = audit.get("scored_suspects")
    if scored:
        section.blocks.append(
            para(f"The subsets without suspect labels drop the {scored['count']} suspects "
                 f"found from {scored['source']}; near-duplicates are the test items above "
                 "the threshold of any embedding.")
        )  # fmt: skip
    scored_runs = [r for r in audit.get("scores", []) if "subsets" in r]
    if not scored_runs:
        section.blocks.append(para("No runs were given (`fashionlab audit --run RUN` or --study)."))
    else:
        names = _ordered(scored_runs[0]["subsets"])
        rows = [
            [r["label"] + (f" (seed {r['seed']})" if r.get("seed") is not None else ""),
             *_subset_cells(r["subsets"], names)]
            for r in scored_runs
        ]  # fmt: skip
        section.blocks.append(
            table(["run", *names], rows, caption="Test accuracy (items) on each subset.")
        )
    for r in audit.get("scores", []):
        if "skipped" in r:
            section.blocks.append(para(f"Not scored: {r['label']}: {r['skipped']}."))
    section.blocks += comparison_blocks(audit)
    return section


def comparison_blocks(audit: dict[str, Any]) -> list:
    blocks = []
    for cmp in audit.get("comparisons", []):
        if "subsets" not in cmp:
            blocks.append(para(f"{cmp['a']} vs {cmp['b']}: not compared ({cmp['skipped']})."))
            continue
        blocks.append(
            h3(f"{cmp['a']} vs {cmp['b']}" + (f": {cmp['claim']}" if cmp.get("claim") else ""))
        )
        rows = [
            [name, f"{100 * v['difference']:+.2f} ± {100 * v['difference_std']:.2f}",
             f"{v['significant_pairs']} of {v['pairs']}"]
            for name, v in cmp["subsets"].items()
        ]  # fmt: skip
        blocks.append(
            table(
                ["subset", f"{cmp['a']} − {cmp['b']} (points)", "seeds with McNemar p < 0.05"],
                rows,
                caption="Mean ± std over the seed-matched pairs of runs.",
            )
        )
        blocks.append(verdict(cmp["verdict"], cmp["verdict"].startswith("survives")))
    return blocks


def _files_section(folder: Path, audit: dict[str, Any]) -> Section:
    section = Section("files", "Files")
    files = sorted(p.name for p in folder.glob("*.csv"))
    seconds = audit.get("seconds", {})
    section.blocks.append(
        para("CSV files in this folder: " + ", ".join(files) + ". Time per step: "
             + ", ".join(f"{k} {fmt_seconds(v)}" for k, v in seconds.items()) + ".")
    )  # fmt: skip
    return section


# ---------------------------------------------------------------- a study's audit section


def study_audit_section(study_dir: Path) -> Section:
    section = Section("audit", AUDIT_TITLE)
    folder = study_audit_dir(study_dir)
    audit = load_audit(folder) if folder is not None else None
    if audit is None:
        section.blocks.append(
            para(f"No data audit yet: `fashionlab audit --study {study_dir}` finds train/test "
                 "near-duplicates and suspect labels and rescores these runs without them.")
        )  # fmt: skip
        return section
    near = audit["near"]["pixels"]
    test = audit["labels"].get("test")
    section.blocks.append(
        para(
            f"The full audit: {folder / 'report.html'}. {near['count']} test items have a "
            f"training image with pixel cosine ≥ {near['threshold']}; "
            f"{_count(test)} test labels are suspect. Flagged items are marked in the "
            "misclassified grids below."
        )
    )
    by_label: dict[str, list[dict[str, Any]]] = {}
    for r in audit.get("scores", []):
        if "subsets" in r:
            by_label.setdefault(r["label"], []).append(r["subsets"])
    if by_label:
        names = _ordered(next(iter(by_label.values()))[0])
        rows = []
        for label, runs in by_label.items():
            cells = []
            for n in names:
                mean, std = mean_std([s[n]["accuracy"] for s in runs])
                cells.append(f"{mean:.4f} ± {std:.4f}")
            rows.append([label, *cells])
        section.blocks.append(
            table(["label", *names], rows,
                  caption="Test accuracy, mean ± std over seeds. " + SUBSET_NOTE)
        )  # fmt: skip
    section.blocks += comparison_blocks(audit)
    return section


def run_audit_section(run_dir: Path) -> Section:
    """A run's scores on the cleaned test subsets, from its study's audit when it has one."""
    section = Section("audit", AUDIT_TITLE)
    folder = study_audit_dir(run_dir.parent)
    audit = load_audit(folder) if folder is not None else None
    row = None
    if audit is not None:
        row = next(
            (r for r in audit.get("scores", [])
             if Path(r["run"]).resolve() == run_dir.resolve() and "subsets" in r),
            None,
        )  # fmt: skip
    if row is None:
        section.blocks.append(
            para(f"No data audit covers this run: `fashionlab audit --run {run_dir}` (or "
                 "--study on its study) rescores it without near-duplicates and suspect labels.")
        )  # fmt: skip
        return section
    names = _ordered(row["subsets"])
    section.blocks.append(para(f"From the study's data audit: {folder / 'report.html'}."))
    section.blocks.append(
        table(["", *names], [["test accuracy (items)", *_subset_cells(row["subsets"], names)]],
              caption=SUBSET_NOTE)
    )  # fmt: skip
    return section
