"""Step 2 of a report: everything it says, as plain data (`report.blocks`) that the templates
only lay out. Sections, in order: summary, reproduction, significance, calibration, robustness,
architectures, data, models, environment; a study and a single run get the same ones.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fashionlab.data import CLASS_NAMES
from fashionlab.errors import ConfigError, FashionlabError
from fashionlab.evaluation import classification_report
from fashionlab.models import create_model, get_model_spec
from fashionlab.models.summary import format_count, format_layer_table, summarize_model
from fashionlab.report.audit import run_audit_section, study_audit_section
from fashionlab.report.blocks import (
    Block,
    ReportContext,
    Section,
    figures,
    fmt,
    fmt_difference,
    fmt_p,
    fmt_params,
    fmt_seconds,
    fmt_seconds_stat,
    fmt_stat,
    h3,
    para,
    pre,
    table,
    verdict,
)
from fashionlab.report.figures import Collected, RunFigures
from fashionlab.report.trust import (
    CALIBRATION_TITLE,
    ROBUSTNESS_TITLE,
    run_calibration_section,
    run_robustness_section,
    study_calibration_section,
    study_robustness_section,
)
from fashionlab.runs import (
    is_complete,
    load_config,
    load_config_text,
    load_env,
    load_metrics,
    load_predictions,
)

ALPHA = 0.05
SECTION_TITLES = {
    "summary": "Summary",
    "reproduction": "Reproduction: reported vs ours",
    "significance": "Significance (McNemar)",
    "calibration": CALIBRATION_TITLE,
    "robustness": ROBUSTNESS_TITLE,
    "architectures": "Architectures",
    "data": "Data",
    "models": "Models",
    "environment": "Environment",
}
METRIC_NAMES = {
    "test_accuracy": "test accuracy",
    "macro_f1": "macro-F1",
    "weighted_f1": "weighted F1",
    "test_loss": "test loss",
}


# ---------------------------------------------------------------- sections shared by both kinds


def architectures_section(models: list[tuple[str, str, dict, Any]], notes: list[dict]) -> Section:
    """`models`: (label, registry name, model_args, parameter count from metrics.json) per
    label; the count is shown for models that cannot be rebuilt here (the NumPy MLP)."""
    section = Section("architectures", SECTION_TITLES["architectures"])
    if notes:
        section.blocks.append(h3("Identical architectures"))
        for note in notes:
            section.blocks.append(verdict(note["note"], None))
    elif len(models) > 1:
        section.blocks.append(para("No two differently named models build the same network."))
    rows, layer_tables, seen = [], [], set()
    for label, name, args, params in models:
        try:
            spec = get_model_spec(name)
            description, study, framework = spec.description, spec.study, spec.framework
        except ConfigError:
            description, study, framework = "", "-", "?"
        summary = _model_summary(name, args) if framework == "torch" else None
        rows.append(
            [
                label,
                name,
                study,
                fmt_params(summary.params if summary else params),
                _fmt_flops(summary.flops) if summary else "—",
                description,
            ]
        )
        key = (name, json.dumps(args, sort_keys=True, default=str))
        if summary and key not in seen:
            seen.add(key)
            layer_tables.append(pre(f"Layers of {label} ({name})", format_layer_table(summary)))
    section.blocks.append(
        table(
            ["label", "model", "study", "parameters", "FLOPs / image", "description"],
            rows,
            align="lllrrl",
            caption="Forward FLOPs per 28x28 image, a multiply-add counted as 2.",
        )
    )
    section.blocks.extend(layer_tables)
    return section


def _model_summary(name: str, args: dict):
    try:
        return summarize_model(create_model(name, **args))
    except (FashionlabError, TypeError, ValueError, RuntimeError):
        # a model that cannot be rebuilt here (e.g. one that needs another run's files) just
        # gets no size column; the rest of the report is still worth having
        return None


def _fmt_flops(flops: int) -> str:
    return format_count(flops)


def data_section(collected: Collected, several_labels: bool) -> Section:
    section = Section("data", SECTION_TITLES["data"])
    if not collected.data:
        section.blocks.append(para("No data figures."))
    for data_set in collected.data:
        if several_labels and len(collected.data) > 1:
            section.blocks.append(h3("Split used by " + ", ".join(data_set.labels)))
        section.blocks.append(figures(data_set.figures))
        section.blocks.extend(para(f"Note: {note}.") for note in data_set.notes)
    return section


def run_model_blocks(figs: RunFigures) -> list[Block]:
    """Figures, classification report and config of one run."""
    blocks: list[Block] = []
    blocks.append(figures(figs.figures))
    for note in figs.notes:
        blocks.append(para(f"Note: {note}."))
    report = classification_table(figs.run_dir)
    rows = [
        [c["name"], fmt(c["precision"]), fmt(c["recall"]), fmt(c["f1"]), str(c["support"])]
        for c in report["per_class"]
    ]
    rows.append(["accuracy", "", "", fmt(report["accuracy"]), str(report["support"])])
    for avg in ("macro", "weighted"):
        m = report[avg]
        rows.append(
            [f"{avg} avg", fmt(m["precision"]), fmt(m["recall"]), fmt(m["f1"]), str(m["support"])]
        )
    blocks.append(
        table(
            ["class", "precision", "recall", "F1", "support"],
            rows,
            caption=f"Classification report of {figs.run_dir.name} on its test items.",
        )
    )
    config_text = load_config_text(figs.run_dir)
    blocks.append(pre(f"config.yaml of {figs.run_dir.name}", config_text))
    return blocks


def classification_table(run_dir: Path) -> dict[str, Any]:
    """`evaluation.classification_report`'s dict for a run: from metrics.json, which the
    trainer fills from that very function, else recomputed from predictions.npz. Reading it
    spares a re-run report the import of scikit-learn and scipy (~3 s on a 2-core CPU)."""
    metrics = load_metrics(run_dir)
    per_class = metrics.get("per_class")
    keys = [f"{avg}_{m}" for avg in ("macro", "weighted") for m in ("precision", "recall", "f1")]
    if per_class and all(k in metrics for k in (*keys, "test_accuracy", "num_test")):
        n = int(metrics["num_test"])
        return {
            "per_class": per_class,
            "accuracy": metrics["test_accuracy"],
            "support": n,
            **{
                avg: {
                    "precision": metrics[f"{avg}_precision"],
                    "recall": metrics[f"{avg}_recall"],
                    "f1": metrics[f"{avg}_f1"],
                    "support": n,
                }
                for avg in ("macro", "weighted")
            },
        }
    pred = load_predictions(run_dir)
    return classification_report(pred["labels"], pred["logits"], CLASS_NAMES)


def environment_section(run_dirs: list[Path]) -> Section:
    """env.json of every run: the values all runs share once, then what differs per run."""
    section = Section("environment", SECTION_TITLES["environment"])
    envs = {d.name: load_env(d) for d in run_dirs}
    missing = [name for name, env in envs.items() if not env]
    present = {name: env for name, env in envs.items() if env}
    if not present:
        section.blocks.append(para("No env.json in any run."))
        return section
    # run_id identifies one training of a folder (for trackers): it differs in every run and
    # tells a reader nothing about how to reproduce it.
    keys = [k for k in dict.fromkeys(k for env in present.values() for k in env) if k != "run_id"]
    common = [k for k in keys if len({json.dumps(e.get(k)) for e in present.values()}) == 1]
    varying = [k for k in keys if k not in common]
    first = next(iter(present.values()))
    section.blocks.append(
        table(
            ["key", "value"],
            [[k, fmt(first.get(k))] for k in common],
            align="ll",
            caption=f"Shared by all {len(present)} runs.",
        )
    )
    if varying:
        section.blocks.append(
            table(
                ["run", *varying],
                [[name, *(fmt(env.get(k)) for k in varying)] for name, env in present.items()],
                align="l" * (len(varying) + 1),
                caption="Per run.",
            )
        )
    if missing:
        section.blocks.append(para("No env.json in: " + ", ".join(missing) + "."))
    return section


# ---------------------------------------------------------------- a study


def study_train_seconds(rows: list[dict[str, Any]]) -> float:
    """Training seconds of a study's rows, a twin's (`same_as`) counted once: its runs are its
    original's."""
    return sum(
        sum(row.get("train_seconds", {}).get("values", []))
        for row in rows
        if not row.get("same_as")
    )


def study_context(study_dir: Path, summary: dict[str, Any], collected: Collected) -> ReportContext:
    rows = summary.get("rows", [])
    first_runs = {row["label"]: study_dir / row["runs"][0] for row in rows}
    all_runs = [study_dir / name for row in rows for name in row["runs"]]
    sections = [
        _study_summary(rows),
        _reproduction(rows),
        _significance(summary.get("comparisons", []), {r["label"]: r for r in rows}),
        study_calibration_section(rows),
        study_robustness_section(study_dir),
        study_audit_section(study_dir),
        architectures_section(
            [_model_of(label, d) for label, d in first_runs.items()],
            summary.get("identical_architectures", []),
        ),
        data_section(collected, several_labels=True),
        _study_models(rows, collected),
        environment_section(all_runs),
    ]
    seeds = sorted({s for row in rows for s in row.get("seeds", [])})
    total = study_train_seconds(rows)
    facts = [
        ("study", summary.get("name", study_dir.name)),
        ("folder", str(study_dir)),
        ("labels", str(len(rows))),
        ("runs", str(len(all_runs))),
        ("seeds", ", ".join(map(str, seeds))),
        ("total training time", fmt_seconds(total)),
    ]
    if summary.get("source"):
        facts.append(("source", summary["source"]))
    return ReportContext(
        title=summary.get("title") or summary.get("name", study_dir.name),
        subtitle=(summary.get("description") or "").strip(),
        kind="study",
        facts=facts,
        sections=sections,
    )


def _model_of(label: str, run_dir: Path) -> tuple[str, str, dict, Any]:
    config = load_config(run_dir)
    return label, config.model, config.model_args, load_metrics(run_dir).get("params")


def _study_summary(rows: list[dict]) -> Section:
    section = Section("summary", SECTION_TITLES["summary"])
    body = [
        [
            row["label"],
            row["model"],
            fmt_params(row.get("params", {}).get("mean")),
            str(len(row.get("seeds", []))),
            ", ".join(row.get("precision") or ["?"]),
            fmt_stat(row.get("test_accuracy")),
            fmt_stat(row.get("macro_f1")),
            fmt_seconds_stat(row.get("train_seconds")),
        ]
        for row in rows
    ]
    section.blocks.append(
        table(
            [
                "label",
                "model",
                "parameters",
                "seeds",
                "precision",
                "test accuracy",
                "macro-F1",
                "training time / run",
            ],
            body,
            align="llrrlrrr",
            caption="Mean ± sample standard deviation over seeds.",
        )
    )
    scored = [r for r in rows if r.get("test_accuracy")]
    if len(scored) > 1:
        best = max(scored, key=lambda r: r["test_accuracy"]["mean"])
        section.blocks.append(
            para(
                f"Highest mean test accuracy: {best['label']} "
                f"({fmt_stat(best['test_accuracy'])}). Whether a gap is more than chance is "
                "in the significance section."
            )
        )
    return section


def _reproduction(rows: list[dict]) -> Section:
    section = Section("reproduction", SECTION_TITLES["reproduction"])
    body = []
    for row in rows:
        for key, reported in row.get("reported", {}).items():
            ours = row.get(key)
            diff = row.get("difference", {}).get(key)
            body.append(
                [
                    row["label"],
                    METRIC_NAMES.get(key, key),
                    fmt(reported),
                    fmt_stat(ours) if ours else "not measured",
                    fmt_difference(key, diff) if diff is not None else "—",
                ]
            )
    if not body:
        section.blocks.append(para("The study reports no numbers to compare with."))
        return section
    section.blocks.append(
        table(
            ["label", "metric", "reported", "ours (mean ± std)", "ours − reported"],
            body,
            align="llrrr",
            caption="Only the metrics the study reported; pp = percentage points.",
        )
    )
    return section


def _significance(comparisons: list[dict], rows: dict[str, dict]) -> Section:
    section = Section("significance", SECTION_TITLES["significance"])
    if not comparisons:
        section.blocks.append(para("The study names no comparisons (no `compare:` entries)."))
        return section
    section.blocks.append(
        para(
            "McNemar's test looks only at the test items on which the two models disagree: "
            "b = items A got right and B got wrong, c = the reverse. Equally accurate models "
            "would give b ≈ c. With fewer than 25 disagreements the exact binomial test is "
            f"used, otherwise chi-square with continuity correction. Significance level "
            f"alpha = {ALPHA}."
        )
    )
    for cmp in comparisons:
        a, b = cmp["a"], cmp["b"]
        section.blocks.append(h3(f"{a} (A) vs {b} (B)"))
        if cmp.get("claim"):
            section.blocks.append(para(f"Claim: “{cmp['claim']}”"))
        accs = [
            f"{label} {fmt_stat(rows[label].get('test_accuracy'))}"
            for label in (a, b)
            if label in rows
        ]
        if accs:
            section.blocks.append(para("Mean test accuracy: " + "; ".join(accs) + "."))
        body, a_wins, b_wins = [], 0, 0
        for res in cmp.get("per_seed", []):
            significant = res["p_value"] < ALPHA
            if significant and res["b"] > res["c"]:
                a_wins += 1
                word = f"{a} better"
            elif significant and res["c"] > res["b"]:
                b_wins += 1
                word = f"{b} better"
            else:
                word = "no significant difference"
            body.append(
                [
                    str(res["seed"]),
                    str(res["b"]),
                    str(res["c"]),
                    f"{res['statistic']:.3f}",
                    fmt_p(res["p_value"]),
                    res["method"],
                    word,
                ]
            )
        section.blocks.append(
            table(
                [
                    "seed",
                    "b (A right, B wrong)",
                    "c (A wrong, B right)",
                    "statistic",
                    "p",
                    "method",
                    f"verdict at {ALPHA}",
                ],
                body,
                align="lrrrrll",
            )
        )
        n = len(body)
        section.blocks.append(_comparison_verdict(a, b, n, a_wins, b_wins))
    return section


def _comparison_verdict(a: str, b: str, n: int, a_wins: int, b_wins: int) -> Block:
    if n == 0:
        return verdict("No seed has both runs: nothing was tested.", None)
    seeds = "seed" if n == 1 else "seeds"
    if a_wins == n:
        return verdict(
            f"{a} is significantly more accurate than {b} on every seed ({n} {seeds}).", True
        )
    if b_wins == n:
        return verdict(
            f"{b} is significantly more accurate than {a} on every seed ({n} {seeds}).", True
        )
    if a_wins == b_wins == 0:
        return verdict(
            f"No significant difference between {a} and {b} on any of the {n} {seeds}: the "
            "test set does not show that one is more accurate than the other.",
            False,
        )
    return verdict(
        f"Mixed: {a} significantly better on {a_wins}, {b} on {b_wins}, no significant "
        f"difference on {n - a_wins - b_wins} of {n} {seeds}.",
        None,  # neither "significant" nor "not": the seeds disagree
    )


def _study_models(rows: list[dict], collected: Collected) -> Section:
    section = Section("models", SECTION_TITLES["models"])
    if collected.overlay:
        section.blocks.append(figures([collected.overlay]))
    for row in rows:
        label = row["label"]
        figs = collected.runs.get(label)
        if figs is None:
            continue
        seeds = row.get("seeds", [])
        section.blocks.append(h3(label, anchor=f"model-{_anchor(label)}"))
        section.blocks.append(
            para(
                f"Model {row['model']}; figures from run {figs.run_dir.name}"
                + (f" (first of {len(seeds)} seeds)." if len(seeds) > 1 else ".")
            )
        )
        section.blocks.extend(run_model_blocks(figs))
    return section


def _anchor(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()


# ---------------------------------------------------------------- a single run


RUN_METRICS = (
    ("test_accuracy", "test accuracy"),
    ("macro_f1", "macro-F1"),
    ("weighted_f1", "weighted F1"),
    ("test_loss", "test loss"),
    ("best_epoch", "evaluated epoch (lowest validation loss)"),
    ("epochs_run", "epochs run"),
    ("evaluated_weights", "evaluated weights"),
    ("num_test", "test items"),
)


def _budget_blocks(plan: Any) -> list[Block]:
    """A budgeted run (`--budget`): the budget, what the warm-up measured, the epochs it
    chose, and the time the command took, side by side."""
    if not isinstance(plan, dict):
        return []
    number = {k: v for k, v in plan.items() if isinstance(v, (int, float)) and v >= 0}
    budget, used = number.get("budget_seconds"), number.get("seconds_used")
    if not budget:
        return []
    share = f" ({used / budget:.0%} of it)" if used is not None else ""
    step = number.get("step_seconds")
    return [
        para(
            f"Trained to a time budget of {fmt_seconds(budget)}: a warm-up measured "
            f"{'—' if step is None else f'{1000 * step:.1f} ms'} per step over "
            f"{number.get('steps_per_epoch', '—')} steps an epoch, so "
            f"{number.get('epochs', '—')} epochs were planned to end at "
            f"{fmt_seconds(number.get('predicted_seconds'))}; the command had used "
            f"{fmt_seconds(used)}{share} when its last files were written."
        )
    ]


def run_context(run_dir: Path, collected: Collected) -> ReportContext:
    config = load_config(run_dir)
    metrics = load_metrics(run_dir)
    [figs] = collected.runs.values()
    summary = Section("summary", SECTION_TITLES["summary"])
    rows = [[name, fmt(metrics.get(key))] for key, name in RUN_METRICS if key in metrics]
    rows.append(["parameters", fmt_params(metrics.get("params"))])
    used = metrics.get("precision_used", "?")
    rows.append(["precision", used if used == config.precision else f"{used} ({config.precision})"])
    rows.append(["training time", fmt_seconds(metrics.get("train_seconds"))])
    rows.append(["time / epoch", fmt_seconds(metrics.get("seconds_per_epoch"))])
    summary.blocks.append(table(["metric", "value"], rows, align="lr"))
    summary.blocks.extend(_budget_blocks(metrics.get("budget")))
    none = "A single run has {}; a study file lists them."
    sections = [
        summary,
        Section(
            "reproduction",
            SECTION_TITLES["reproduction"],
            [para(none.format("no reported numbers to compare with (`reported:`)"))],
        ),
        Section(
            "significance",
            SECTION_TITLES["significance"],
            [para(none.format("no other run to compare with (`compare:`)"))],
        ),
        run_calibration_section(run_dir),
        run_robustness_section(run_dir),
        run_audit_section(run_dir),
        architectures_section([_model_of(config.model, run_dir)], []),
        data_section(collected, several_labels=False),
        Section("models", SECTION_TITLES["models"], run_model_blocks(figs)),
        environment_section([run_dir]),
    ]
    facts = [
        ("run", run_dir.name),
        ("folder", str(run_dir)),
        ("model", config.model),
        ("seed", str(config.seed)),
        ("complete", "yes" if is_complete(run_dir) else "no"),
    ]
    return ReportContext(
        title=f"Run {run_dir.name}",
        subtitle=f"{config.model}, {config.epochs} epochs, seed {config.seed}",
        kind="run",
        facts=facts,
        sections=sections,
    )
