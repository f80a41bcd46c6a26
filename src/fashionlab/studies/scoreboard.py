"""The reproduction scoreboard: every number a reference study reported, beside ours, and every
claim it made, with a verdict, built from the study folders under one directory.

A number is *reproduced* when our mean over seeds is within `TOLERANCE_POINTS` of the reported
value, *better* when above that, *not reproduced* when below; a study row whose runs are not
there is *missing*. A claim ("a beats b", or "a and b score alike") is judged twice: per seed
by McNemar's test on the shared test set (does this trained pair differ?) and across seeds by
a paired t-test on the seed-matched accuracies (does the difference survive retraining?), and
the verdict says what both show."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fashionlab._io import (
    YamlTooLarge,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    load_yaml,
)
from fashionlab._read import FIGURE, LARGE_JSON, SMALL_TEXT, read_bytes, read_json, read_text
from fashionlab.errors import ConfigError, one_line
from fashionlab.evaluation.seeds import paired_seeds, seed_interval
from fashionlab.report import read_study_summary
from fashionlab.report.context import study_train_seconds
from fashionlab.report.markdown import md_code_span, md_link_target, md_row, md_text
from fashionlab.runs import load_env, own_subfolder
from fashionlab.runs.folder import SCOREBOARD_MARKER, claim_folder, mark
from fashionlab.studies.spec import load_study, plan_study

# A reproduction within 0.7 accuracy points counts: about twice the seed-to-seed spread of
# the studies' CNNs (0.1-0.3 points std), so an honest re-run is not called a failure.
TOLERANCE_POINTS = 0.7
SIGNIFICANCE = 0.05
STUDY_SUMMARY = "study.json"
MAX_DEPTH = 3  # runs/<study>/study.json or runs/<group>/<study>/study.json


def find_studies(root: Path) -> list[Path]:
    """Study folders (those with a study.json) at most `MAX_DEPTH` levels below `root`."""
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder; give the folder that holds study folders")

    def walk(folder: Path, depth: int) -> Iterator[Path]:
        if (folder / STUDY_SUMMARY).is_file():
            yield folder
            return
        if depth < MAX_DEPTH:
            for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink()):
                yield from walk(child, depth + 1)

    return list(walk(root, 0))


def _load(folder: Path) -> dict[str, Any]:
    return read_study_summary(folder)  # validated: rows, their runs and statistics


# Metrics where lower is better; judged relative to the reported value, since a loss has no
# fixed scale (label smoothing alone moves it).
LOWER_IS_BETTER = ("test_loss", "val_loss", "ece", "brier")
LOSS_TOLERANCE = 0.05  # relative
# Numbers with no better direction: a train-test gap is a finding to match, not to beat.
NO_DIRECTION = ("train_test_gap",)


def number_verdict(ours: float | None, reported: float, metric: str = "test_accuracy") -> str:
    if ours is None:
        return "missing"
    if metric in LOWER_IS_BETTER:
        if abs(ours - reported) <= LOSS_TOLERANCE * abs(reported):
            return "reproduced"
        return "better" if ours < reported else "not reproduced"
    points = 100 * (ours - reported)
    if abs(points) <= TOLERANCE_POINTS + 1e-9:  # 0.907 - 0.900 is 0.70000000000000006
        return "reproduced"
    if metric in NO_DIRECTION:
        return "not reproduced: " + ("larger" if points > 0 else "smaller")
    return "better" if points > 0 else "not reproduced"


def _planned_rows(folder: Path) -> dict[str, dict[str, float]]:
    """label -> reported numbers of every row the study file plans (from the copy of the file
    the study folder keeps), so rows that never ran are listed as missing."""
    copy = folder / "study.yaml"
    if not copy.is_file():
        return {}
    try:
        planned = plan_study(load_study(copy), folder)
    except ConfigError:  # a copy from an older version of the file format: rows as found
        return {}
    return {run.label: dict(run.reported) for run in planned}


def numbers(folder: Path, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per reported number of the study: ours over seeds, the difference, verdict."""
    entries = []
    rows = {row["label"]: row for row in summary.get("rows", [])}
    planned = _planned_rows(folder)
    for label in [*rows, *(name for name in planned if name not in rows)]:
        row = rows.get(label, {})
        reported = row.get("reported") or planned.get(label, {})
        for metric, value in reported.items():
            if not isinstance(value, (int, float)):
                continue
            values = row.get(metric, {}).get("values") or []
            stats = seed_interval(values) if values else None
            entries.append(
                {
                    "label": label,
                    "metric": metric,
                    "reported": float(value),
                    "ours": asdict(stats) if stats else None,
                    "seeds": row.get("seeds", []),
                    "same_as": row.get("same_as"),
                    "precision": row.get("precision", []),
                    "difference_points": None if stats is None else 100 * (stats.mean - value),
                    "lower_is_better": metric in LOWER_IS_BETTER,
                    "verdict": number_verdict(stats.mean if stats else None, float(value), metric),
                }
            )
    return entries


# provenance key -> the env.json field it comes from
ENV_FIELDS = {"cpu": "cpu", "threads": "threads", "torch": "torch", "commit": "git_commit"}


def provenance(folder: Path, summary: dict[str, Any]) -> dict[str, list[Any]]:
    """Where the study's runs were trained, from each run's env.json: CPU, torch threads,
    torch version and the code's commit."""
    seen: dict[str, set[Any]] = {key: set() for key in ENV_FIELDS}
    names = dict.fromkeys(name for row in summary.get("rows", []) for name in row.get("runs", []))
    for name in names:  # a twin's runs are listed twice, read once
        env = load_env(folder / name)
        for key, field in ENV_FIELDS.items():
            if isinstance(env.get(field), (str, int, float)):  # a hand-edited list is not one
                seen[key].add(env[field])
    return {key: sorted(values, key=str) for key, values in seen.items()}


def reproduce_command(summary: dict[str, Any], folder: str) -> str | None:
    """The `fashionlab study` command the study folder records it was made by (None for
    folders older than that record)."""
    invocation = summary.get("invocation")
    if not invocation:
        return None
    parts = ["fashionlab", "study", invocation["study_file"]]
    if invocation.get("seeds"):
        parts += ["--seeds", ",".join(str(seed) for seed in invocation["seeds"])]
    for key, value in invocation.get("overrides", {}).items():
        parts += ["--set", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    if invocation.get("only"):
        parts += ["--only", ",".join(invocation["only"])]
    if invocation.get("workers", 1) > 1:
        parts += ["--workers", str(invocation["workers"])]
    return shlex.join([*parts, "--out", folder])


def _is_notes(value: Any, depth: int = 3) -> bool:
    """study -> row -> metric -> text: string-keyed maps `depth` deep, strings at the bottom."""
    if depth == 0:
        return isinstance(value, str)
    return isinstance(value, dict) and all(
        isinstance(key, str) and _is_notes(item, depth - 1) for key, item in value.items()
    )


def load_notes(path: str | Path) -> dict[str, dict[str, dict[str, str]]]:
    """A notes file: study name -> row label -> metric -> why that number is what it is."""
    import yaml

    path = Path(path)
    try:
        notes = load_yaml(read_text(path, SMALL_TEXT))
    except (OSError, ValueError, YamlTooLarge, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the notes ({one_line(str(exc))})") from None
    if not _is_notes(notes):
        raise ConfigError(
            f"{path}: notes must map study -> row label -> metric -> text, e.g. "
            "{s2: {s2-cnn: {test_loss: 'why'}}}"
        )
    return notes


def attach_notes(board: dict[str, Any], notes: dict[str, dict[str, dict[str, str]]]) -> None:
    """Put each note beside its number; a note that matches no number is an error (a typo
    would otherwise drop the explanation silently)."""
    by_key = {
        (study["name"], n["label"], n["metric"]): n
        for study in board["studies"]
        for n in study["numbers"]
    }
    for study, rows in notes.items():
        for label, metrics in rows.items():
            for metric, text in metrics.items():
                entry = by_key.get((study, label, metric))
                if entry is None:
                    raise ConfigError(
                        f"notes: {study} / {label} / {metric} is not a reported number on the "
                        "scoreboard; check the study name, the row label and the metric"
                    )
                entry["why"] = text.strip()


def claim_verdict(
    kind: str,
    mcnemar_p: list[float],
    mean_diff: float,
    t_p: float | None,
    a_ahead: list[bool] | None = None,
) -> str:
    """What the per-seed McNemar tests and the across-seed t-test together say of a claim.
    `a_ahead[i]`: on seed i, a got more of the items the two disagree on right (McNemar's b >
    c); a significant seed counts for a "better" claim only in a's direction."""
    if not mcnemar_p:
        return "missing"
    ahead = a_ahead if a_ahead is not None else [mean_diff > 0] * len(mcnemar_p)
    significant = [p < SIGNIFICANCE for p in mcnemar_p]
    seeds_differ = sum(significant)
    seeds_for = sum(s and a for s, a in zip(significant, ahead, strict=True))
    seeds_against = seeds_differ - seeds_for
    n = len(mcnemar_p)
    retrain_differs = t_p is not None and t_p < SIGNIFICANCE
    if kind == "same":
        if seeds_differ == 0 and not retrain_differs:
            return "supported: no difference on any seed or across seeds"
        if retrain_differs:
            return "contradicted: the difference survives retraining"
        return f"mostly supported: {seeds_differ} of {n} seeds differ, seeds do not"
    if mean_diff <= 0:
        return (
            "contradicted: b scores as high or higher"
            if retrain_differs or seeds_against
            else "not supported: no gain"
        )
    if t_p is None:
        return (
            "supported on the test set; one seed, so not across seeds"
            if seeds_for == n
            else "not significant"
        )
    if retrain_differs and seeds_for == n:
        return "supported: on every seed and across seeds"
    if retrain_differs:
        return f"supported across seeds; significant on {seeds_for} of {n} seeds"
    if seeds_for and seeds_against:
        return (
            f"not supported: a is significantly ahead on {seeds_for} of {n} seeds and b on "
            f"{seeds_against}, and not across seeds"
        )
    if seeds_for:
        return f"partly: significant on {seeds_for} of {n} seeds, not across seeds"
    return "not significant: a is ahead, but within the noise"


def claims(summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = {row["label"]: row for row in summary.get("rows", [])}
    out = []
    for comparison in summary.get("comparisons", []):
        a, b = rows.get(comparison["a"]), rows.get(comparison["b"])
        kind = comparison.get("kind", "better")
        entry: dict[str, Any] = {
            "a": comparison["a"], "b": comparison["b"], "claim": comparison.get("claim", ""),
            "kind": kind, "per_seed": comparison.get("per_seed", []),
        }  # fmt: skip
        if a is None or b is None or "test_accuracy" not in a or "test_accuracy" not in b:
            out.append({**entry, "verdict": "missing"})
            continue
        if b.get("same_as") == comparison["a"] or a.get("same_as") == comparison["b"]:
            twin = b if b.get("same_as") else a
            why = (
                f"{twin['label']} builds the same layers and starts from the same weights as "
                f"{twin['same_as']} under the same recipe, so it was trained once"
            )
            verdict = f"supported: {why}" if kind == "same" else f"contradicted: {why}"
            out.append({**entry, "seeds": a["seeds"], "verdict": verdict})
            continue
        acc_a = dict(zip(a["seeds"], a["test_accuracy"]["values"], strict=False))
        acc_b = dict(zip(b["seeds"], b["test_accuracy"]["values"], strict=False))
        shared = sorted(set(acc_a) & set(acc_b))
        if not shared:
            out.append({**entry, "verdict": "missing"})
            continue
        paired = paired_seeds([acc_a[s] for s in shared], [acc_b[s] for s in shared])
        mcnemar_p = [seed["p_value"] for seed in entry["per_seed"]]
        entry |= {
            "seeds": shared,
            "difference_points": {
                k: 100 * v if isinstance(v, float) else v
                for k, v in asdict(paired.difference).items()
            },
            "t_p_value": paired.t_p_value,
            "sign_p_value": paired.sign_p_value,
            "wins": paired.wins,
            "losses": paired.losses,
            "verdict": claim_verdict(
                kind,
                mcnemar_p,
                paired.difference.mean,
                paired.t_p_value,
                [seed["b"] > seed["c"] for seed in entry["per_seed"]]
                if all("b" in seed and "c" in seed for seed in entry["per_seed"])
                else None,
            ),
        }
        out.append(entry)
    return out


def build_scoreboard(root: str | Path, notes: str | Path | None = None) -> dict[str, Any]:
    """Numbers and claims of every study folder under `root`, with the `notes` file's
    explanations beside the numbers they name."""
    root = Path(root)
    folders = find_studies(root)
    if not folders:
        raise ConfigError(f"no study folder (with a {STUDY_SUMMARY}) under {root}; run a study")
    studies = []
    for folder in folders:
        summary = _load(folder)
        rows = summary.get("rows", [])
        studies.append(
            {
                "folder": folder.relative_to(root).as_posix(),  # "." when root is the study
                "name": summary.get("name", folder.name),
                "title": summary.get("title", ""),
                "train_seconds": study_train_seconds(rows),
                "numbers": numbers(folder, summary),
                "claims": claims(summary),
                "provenance": provenance(folder, summary),
                "command": reproduce_command(summary, folder.as_posix()),
                "runs_complete": summary.get("runs_complete"),
            }
        )
    board = {"tolerance_points": TOLERANCE_POINTS, "significance": SIGNIFICANCE, "studies": studies}
    if notes is not None:
        attach_notes(board, load_notes(notes))
    return board


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def _raw(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _progress_lines(study: dict[str, Any]) -> list[str]:
    """A line only for a study still short of runs (aggregated with --report-only)."""
    done = study.get("runs_complete")
    if not done or done["complete"] >= done["planned"]:
        return []
    return [
        "",
        f"**Partial: {done['complete']} of {done['planned']} runs are complete.** Rows and "
        "claims without their runs are *missing*; a row's n counts only its complete seeds. "
        "The command below resumes the study.",
    ]


def _provenance_lines(study: dict[str, Any]) -> list[str]:
    where = study.get("provenance") or {}
    lines = []
    if where.get("cpu") or where.get("commit"):
        lines += [
            "",
            f"Trained on: {_listed(where.get('cpu')) or 'CPU not recorded'}; "
            f"torch threads per run: {_listed(where.get('threads')) or '—'}; "
            f"torch {_listed(where.get('torch')) or '—'}; "
            f"code: {_listed(str(c)[:10] for c in where.get('commit', [])) or '—'}.",
        ]
    if study.get("command"):
        lines += ["", f"Command: {md_code_span(study['command'])}"]
    return lines


def _listed(values: Any) -> str:
    """Values read from run folders, comma-separated and escaped for Markdown."""
    return md_text(", ".join(map(str, values or [])))


def render_markdown(board: dict[str, Any]) -> str:
    lines = [
        "# Reproduction scoreboard",
        "",
        f"Ours: mean ± std over seeds (n) and the 95% t interval of the mean, in percent "
        f"(losses as they are). "
        f"Verdicts: *reproduced* within {board['tolerance_points']} points of the reported "
        f"value, *better* above, *not reproduced* below (losses: within "
        f"{100 * LOSS_TOLERANCE:.0f}% of the reported value, lower is better), *missing* when "
        f"the runs are not there. "
        f"Claims: McNemar per seed on the test set, a paired t-test and a sign test across seeds "
        f"(significance {board['significance']}).",
    ]
    for study in board["studies"]:
        hours = study["train_seconds"] / 3600
        lines += [
            "",
            f"## {md_text(study['title'] or study['name'])} ({md_code_span(study['folder'])})",
            "",
            f"Training time, all runs: {hours:.2f} h."
            + (
                f" The study's report: [{md_text(study['report'])}]"
                f"({md_link_target(study['report'])})."
                if study.get("report")
                else ""
            ),
            *_progress_lines(study),
            *_provenance_lines(study),
            "",
            "| row | metric | reported | ours | 95% interval | precision | difference | verdict |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for n in study["numbers"]:
            # Accuracies and F1 in percent and points; losses as they are.
            fmt = _raw if n.get("lower_is_better") else _pct
            ours = n["ours"]
            shown, interval, diff = "—", "—", "—"
            if ours is not None:
                shown = f"{fmt(ours['mean'])} ± {fmt(ours['std'])} (n={ours['n']})"
                interval = f"{fmt(ours['low'])}–{fmt(ours['high'])}"
                delta = ours["mean"] - n["reported"]
                diff = f"{delta:+.4f}" if n.get("lower_is_better") else f"{100 * delta:+.2f}"
            label = n["label"] + (f" (= {n['same_as']}, trained once)" if n.get("same_as") else "")
            precision = ", ".join(map(str, n["precision"])) or "—"
            lines.append(md_row([label, n["metric"], fmt(n["reported"]), shown, interval,
                                 precision, diff, n["verdict"]]))  # fmt: skip
        explained = [n for n in study["numbers"] if n.get("why")]
        if explained:
            lines += ["", "Why:", ""]
            lines += [
                f"- **{md_text(n['label'])}, {md_text(n['metric'])}**: {md_text(n['why'])}"
                for n in explained
            ]
        if study["claims"]:
            lines += [
                "",
                "| claim | a − b (points, mean ± std, n) | McNemar p per seed | t-test p | "
                "sign test p | verdict |",
                "|---|---|---|---|---|---|",
            ]
        for c in study["claims"]:
            d = c.get("difference_points")
            diff = "—" if d is None else f"{d['mean']:+.2f} ± {d['std']:.2f} (n={d['n']})"
            per_seed = ", ".join(f"{s['p_value']:.2g}" for s in c["per_seed"]) or "—"
            t_p = c.get("t_p_value")
            sign = c.get("sign_p_value")
            claim = f"{c['claim'] or c['a'] + ' vs ' + c['b']} ({c['kind']})"
            t_text = "—" if t_p is None else f"{t_p:.2g}"
            sign_text = "—" if sign is None else f"{sign:.2g}"
            lines.append(md_row([claim, diff, per_seed, t_text, sign_text, c["verdict"]]))
    return "\n".join(lines) + "\n"


FIGURE_LINK = re.compile(r"\((figures/[A-Za-z0-9_.\-]+\.png)\)")


def compact_png(data: bytes) -> bytes:
    """The figure as a 256-colour PNG when that is smaller (about half, for our plots: the
    committed evidence has a size budget), else unchanged; an unreadable one is unchanged."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.mode == "RGBA" and image.getextrema()[3][0] < 255:
                return data  # transparent pixels: a palette would lose them
            palette = image.convert("RGB").quantize(256, dither=Image.Dither.NONE)
            out = io.BytesIO()
            palette.save(out, "PNG", optimize=True)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return data
    return out.getvalue() if out.tell() < len(data) else data


# Each study's copied figures stay under this, so the committed evidence of all five studies
# fits in 8 MB; S1's report alone shows 40 rows of figures.
FIGURE_BUDGET_BYTES = 1_500_000


def copy_report(folder: Path, dest: Path, budget: int = FIGURE_BUDGET_BYTES) -> int:
    """Copy a study folder's report.md and the figures it shows, in the order it shows them
    and while they fit in `budget` bytes, into `dest`; a figure past the budget keeps its
    caption and says where it is. Returns bytes written (0 when the study has no report yet:
    `fashionlab report STUDY` draws one)."""
    report = folder / "report.md"
    if not report.is_file():
        return 0
    text = read_text(report, 16 * SMALL_TEXT)
    written = 0
    left_out = []
    for name in dict.fromkeys(FIGURE_LINK.findall(text)):
        source = folder / name
        if source.is_file() and not source.is_symlink():
            data = compact_png(read_bytes(source, FIGURE))
            if written + len(data) > budget:
                left_out.append(name)
                continue
            own_subfolder(dest, "figures")
            atomic_write_bytes(dest / name, data)
            written += len(data)
    for name in left_out:
        text = re.sub(
            r"!\[([^\]]*)\]\(" + re.escape(name) + r"\)",
            lambda m, n=name: f"*{m.group(1) or 'figure'}: not copied (size budget); "
            f"`{n}` in the study folder*",
            text,
        )
    atomic_write_text(dest / "report.md", text)
    return written + len(text.encode())


def _previous_studies(path: Path) -> list[dict[str, Any]]:
    """The studies of an earlier scoreboard.json (none when there is no file)."""
    if not path.is_file():
        return []
    try:
        studies = read_json(path, LARGE_JSON)["studies"]
        if not all(isinstance(s, dict) and isinstance(s["name"], str) for s in studies):
            raise TypeError("a study entry without a name")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path}: not a scoreboard ({one_line(str(exc))}); write it afresh without --update"
        ) from None
    return studies


def _merge_studies(
    previous: list[dict[str, Any]], found: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The studies found replace the previous entries of the same name; the previous others
    stay as they were. Ordered by name, as the study folders are."""
    by_name = {study["name"]: study for study in previous}
    for study in previous:
        for number in study.get("numbers", []):
            number.pop("why", None)  # attached again from the current notes file
    by_name.update({study["name"]: study for study in found})
    return [by_name[name] for name in sorted(by_name)]


def write_scoreboard(
    root: str | Path,
    out_dir: str | Path,
    copy_reports: bool = True,
    notes: str | Path | None = None,
    update: bool = False,
) -> Path:
    """Write OUT/README.md (the scoreboard) and OUT/scoreboard.json, and with `copy_reports`
    each study's report.md and its figures into OUT/<study folder>/; return the README path.
    `notes`: a YAML file of explanations (study -> row -> metric -> text), see `load_notes`.
    `update`: the studies of OUT/scoreboard.json that are not under `root` keep their
    entries and copied reports (one study re-run while the others' run folders are elsewhere)."""
    root = Path(root)
    out = Path(out_dir)
    board = build_scoreboard(root)
    found = list(board["studies"])
    if update:
        board["studies"] = _merge_studies(_previous_studies(out / "scoreboard.json"), found)
    if notes is not None:  # before anything is written: a note naming no number is an error
        attach_notes(board, load_notes(notes))
    # OUT is claimed like a run folder: a folder of the user's own (a README.md of theirs) is
    # refused, and two scoreboards written into one folder at once cannot interleave.
    with claim_folder(out, "scoreboard"):
        mark(out, SCOREBOARD_MARKER)
        for study in found:
            study["report"] = None
            if copy_reports:
                folder = study["folder"]
                slug = study["name"] if folder == "." else folder.replace("/", "--")
                if copy_report(root / folder, own_subfolder(out, slug)):
                    study["report"] = f"{slug}/report.md"
        atomic_write_json(out / "scoreboard.json", board)
        atomic_write_text(out / "README.md", render_markdown(board))
    return out / "README.md"
