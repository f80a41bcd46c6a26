"""The report sections on how far a model can be trusted: calibration (from metrics.json)
and robustness to corrupted images (from robustness.json, once `fashionlab robustness` has
scored the run or study)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fashionlab.evaluation import NO_VALIDATION
from fashionlab.report.blocks import Section, fmt, fmt_p, fmt_stat, h3, para, table
from fashionlab.runs import load_metrics, load_robustness

ALPHA = 0.05
CALIBRATION_TITLE = "Calibration"
ROBUSTNESS_TITLE = "Robustness to corrupted images"
NOT_SCORED = (
    "Not scored yet: `fashionlab robustness {}` corrupts the test images (noise, blur, affine "
    "changes, brightness, contrast, inversion, JPEG, elastic; flips and turns apart) and "
    "scores the model on them."
)
CALIBRATION_NOTE = (
    "ECE: top-label expected calibration error (15 equal-width bins), MCE: its largest bin "
    "gap, NLL: test loss, Brier: squared distance to the one-hot label. Temperature scaling "
    "divides the logits by one T fitted on the validation split; it changes no prediction."
)


def run_calibration_section(run_dir: Path) -> Section:
    metrics = load_metrics(run_dir)
    section = Section("calibration", CALIBRATION_TITLE)
    if metrics.get("ece") is None:
        section.blocks.append(
            para(
                "This run's metrics.json has no calibration numbers (it predates them); "
                "`fashionlab evaluate` computes them from the weights."
            )  # fmt: skip
        )
        return section
    after = metrics.get("temperature") is not None
    rows = [
        ["ECE", fmt(metrics.get("ece")), fmt(metrics.get("ece_calibrated"))],
        ["MCE", fmt(metrics.get("mce")), fmt(metrics.get("mce_calibrated"))],
        ["NLL", fmt(metrics.get("test_loss")), fmt(metrics.get("nll_calibrated"))],
        ["Brier", fmt(metrics.get("brier")), fmt(metrics.get("brier_calibrated"))],
    ]
    section.blocks.append(
        table(
            ["test set", "as trained", "temperature-scaled"],
            rows,
            align="lrr",
            caption=CALIBRATION_NOTE,
        )  # fmt: skip
    )
    if after:
        section.blocks.append(
            para(
                f"Fitted temperature T = {metrics['temperature']:.3f} "
                f"({'over' if metrics['temperature'] > 1 else 'under'}confident as trained). "
                "predict and serve divide by it."
            )  # fmt: skip
        )
    else:
        section.blocks.append(para(NO_VALIDATION[0].upper() + NO_VALIDATION[1:] + "."))
    section.blocks.append(para("The reliability diagram is with the figures under Models."))
    return section


def study_calibration_section(rows: list[dict[str, Any]]) -> Section:
    section = Section("calibration", CALIBRATION_TITLE)
    body = [
        [
            row["label"],
            fmt_stat(row.get("ece")),
            fmt_stat(row.get("ece_calibrated")),
            fmt_stat(row.get("brier")),
            fmt_stat(row.get("temperature"), 3),
        ]
        for row in rows
    ]
    section.blocks.append(
        table(
            ["label", "ECE", "ECE, temperature-scaled", "Brier", "temperature"],
            body,
            align="lrrrr",
            caption=CALIBRATION_NOTE + " Mean ± std over seeds; — where "
            "the runs predate calibration or have no validation split.",
        )  # fmt: skip
    )
    return section


def run_robustness_section(run_dir: Path) -> Section:
    section = Section("robustness", ROBUSTNESS_TITLE)
    result = load_robustness(run_dir)
    if result is None:
        section.blocks.append(para(NOT_SCORED.format(run_dir)))
        return section
    section.blocks.append(
        para(
            f"{result['items']} class-balanced test items (clean accuracy "
            f"{result['clean_accuracy']:.4f}), corruption seed {result['corruption_seed']}, "
            f"{result.get('precision', '?')} inference; mean corruption accuracy "
            f"{fmt(result.get('mean_corruption_accuracy'))}."
        )  # fmt: skip
    )
    severities = sorted({int(s) for e in result["corruptions"].values() for s in e["severities"]})
    rows = []
    ce = (result.get("reference") or {}).get("ce", {})
    for name, entry in result["corruptions"].items():
        cells = entry["severities"]
        rows.append(
            [
                name,
                *(fmt(cells[str(s)]["accuracy"]) if str(s) in cells else "—" for s in severities),
                fmt(entry["mean_accuracy"]),
                fmt(ce.get(name), 3),
            ]  # fmt: skip
        )
    for name, cell in result["out_of_distribution"].items():
        rows.append([f"{name} (out of distribution)", fmt(cell["accuracy"]),
                     *[""] * (len(severities) - 1), fmt(cell["accuracy"]), "—"])  # fmt: skip
    reference = result.get("reference") or {}
    caption = "Accuracy per severity. CE: summed errors relative to the reference model"
    caption += (f" ({reference.get('run')}; mCE {fmt(reference.get('mce'), 3)})."
                if reference else " (none given: --reference).")  # fmt: skip
    section.blocks.append(
        table(
            ["corruption", *(f"severity {s}" for s in severities), "mean", "CE"],
            rows,
            align="l" + "r" * (len(severities) + 2),
            caption=caption,
        )  # fmt: skip
    )
    return section


def study_robustness_section(study_dir: Path) -> Section:
    section = Section("robustness", ROBUSTNESS_TITLE)
    result = load_robustness(study_dir)
    if result is None:
        section.blocks.append(para(NOT_SCORED.format(study_dir)))
        return section
    labels = result["labels"]
    names = list(dict.fromkeys(n for row in labels.values() for n in row["corruptions"]))
    ood = list(dict.fromkeys(n for row in labels.values() for n in row["out_of_distribution"]))
    header = ["corruption", *labels]
    rows = [["clean", *(fmt_stat(r["clean_accuracy"]) for r in labels.values())]]
    rows += [[n, *(fmt_stat(r["corruptions"].get(n)) for r in labels.values())] for n in names]
    rows.append(
        [
            "mean corruption accuracy",
            *(fmt_stat(r["mean_corruption_accuracy"]) for r in labels.values()),
        ]
    )
    rows.append([f"mCE (reference {result['reference']})",
                 *(fmt_stat(r["mce"], 3) for r in labels.values())])  # fmt: skip
    rows += [[f"{n} (out of distribution)",
              *(fmt_stat(r["out_of_distribution"].get(n)) for r in labels.values())]
             for n in ood]  # fmt: skip
    section.blocks.append(
        table(
            header,
            rows,
            align="l" + "r" * len(labels),
            caption=f"Accuracy averaged over severities, mean ± std over seeds; "
            f"{result['items']} class-balanced test items, corruption seed "
            f"{result['corruption_seed']}.",
        )  # fmt: skip
    )
    for note in result.get("skipped", []):
        section.blocks.append(para(f"Not scored: {note}."))
    for cmp in result.get("comparisons", []):
        section.blocks.append(h3(f"{cmp['a']} vs {cmp['b']}: McNemar per corruption"))
        body = []
        for name, tests in cmp["per_corruption"].items():
            cells = [
                f"{t['accuracy_a']:.3f} vs {t['accuracy_b']:.3f}, p {fmt_p(t['p_value'])}"
                + (" *" if t["p_value"] < ALPHA else "")
                for t in tests
            ]
            body.append([name, *cells])
        seeds = [t["seed"] for t in next(iter(cmp["per_corruption"].values()), [])]
        section.blocks.append(
            table(
                ["corruption", *(f"seed {s}" for s in seeds)],
                body,
                align="l" + "r" * len(seeds),
                caption=f"Accuracy of {cmp['a']} vs {cmp['b']} on the pooled severities; "
                f"* p < {ALPHA} (not corrected for the number of corruptions).",
            )  # fmt: skip
        )
    return section
