"""`score_robustness(path)`: score a run or every run of a study on the corruption suite.

A study gets its models side by side (`STUDY/robustness.json`): mean accuracy over seeds per
corruption, CE and mCE relative to a reference label, and for each of the study's claimed
comparisons a McNemar test per corruption (each seed's pair of runs, the severities pooled:
the same items, corrupted the same way, classified by both models).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fashionlab._io import atomic_write_json
from fashionlab._read import UnreadableFile, load_npz
from fashionlab.data.corruptions import SEVERITIES
from fashionlab.errors import ConfigError, FashionlabError, RunError, one_line
from fashionlab.evaluation import mcnemar, mean_std
from fashionlab.report import read_study_summary, report_kind, write_report
from fashionlab.report.figures import data_key
from fashionlab.robustness.score import (
    PREDICTIONS_FILE,
    add_reference,
    check_torch_run,
    corruption_errors,
    score_run,
    set_key,
    sets_for_run,
)
from fashionlab.robustness.sets import DEFAULT_ITEMS, CorruptedSets, check_names
from fashionlab.runs import ROBUSTNESS_FILE, is_complete, load_config, load_robustness
from fashionlab.runs.weights import WEIGHTS_FILE


def score_robustness(
    path: str | Path,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    items: int | None = DEFAULT_ITEMS,
    seed: int = 0,
    reference: str | Path | None = None,
    device: str = "cpu",
    data_dir: str | Path | None = None,
    quiet: bool = False,
    make_report: bool = True,
) -> dict[str, Any]:
    """Score the run or study at `path`; returns what it wrote to robustness.json.

    `reference`: for a run, another run folder (scored on the same sets); for a study, one of
    its labels (default: the first). `items=None` uses the whole test split."""
    names = check_names(corruptions)
    severities = tuple(severities)
    if not severities:
        raise ConfigError("no severities given; use 1-5")
    folder = Path(path)
    kind = report_kind(folder)
    scorer = _Scorer(names, severities, items, seed, device, data_dir, quiet)
    if kind == "run":
        result = scorer.score(folder)
        if reference is not None:
            ref_dir = Path(reference)
            report_kind(ref_dir)
            add_reference(result, _reference_result(ref_dir, result, scorer), folder)
        if make_report:
            _report(folder, data_dir, quiet)
        return result
    summary = _study_robustness(folder, scorer, reference)
    if make_report:
        _report(folder, data_dir, quiet)
    return summary


def _reference_result(ref_dir: Path, result: dict[str, Any], scorer: _Scorer) -> dict[str, Any]:
    """The reference run's results on the same corrupted sets: its robustness.json when that
    holds every set `result` has (same SHA-256s), otherwise scored now."""
    stored = load_robustness(ref_dir)
    if stored is not None and stored.get("clean_sha256") == result["clean_sha256"]:
        try:
            corruption_errors(result, stored)
        except (RunError, KeyError, TypeError):
            pass
        else:
            if all(
                set(entry["severities"])
                <= set(stored["corruptions"].get(name, {}).get("severities", {}))  # fmt: skip
                for name, entry in result["corruptions"].items()
            ):
                return stored
    return scorer.score(ref_dir)


class _Scorer:
    """Scores runs, building each distinct clean test set's corruptions once."""

    def __init__(self, names, severities, items, seed, device, data_dir, quiet) -> None:
        self.names, self.severities, self.items, self.seed = names, severities, items, seed
        self.device, self.data_dir, self.quiet = device, data_dir, quiet
        self._sets: dict[tuple, CorruptedSets] = {}

    def score(self, run_dir: Path) -> dict[str, Any]:
        if not is_complete(run_dir):
            raise RunError(f"{run_dir}: the run is not complete; finish it with --resume first")
        check_torch_run(run_dir)
        wanted = {
            "corruptions": list(self.names),
            "severities": list(self.severities),
            "items": self.items,
            "seed": self.seed,
        }
        stored = _fresh_result(run_dir, wanted)
        if stored is not None:
            return stored
        key = data_key(load_config(run_dir))
        if key not in self._sets:
            self._sets[key] = sets_for_run(run_dir, self.names, self.severities, self.items,
                                           self.seed, self.data_dir)  # fmt: skip
        result = score_run(run_dir, self._sets[key], self.device, wanted)
        if not self.quiet:
            mca = result["mean_corruption_accuracy"]
            shown = "n/a" if mca is None else f"{mca:.4f}"
            print(
                f"{run_dir.name}: clean {result['clean_accuracy']:.4f}, mean corruption "
                f"accuracy {shown} ({result['items']} items, {result['seconds']:.0f} s)",
                file=sys.stderr,
            )
        return result


def _fresh_result(run_dir: Path, wanted: dict[str, Any]) -> dict[str, Any] | None:
    """The run's stored results when they answer the same request and are newer than its
    weights (a study run again re-scores nothing that has not changed); else None."""
    try:
        stored = load_robustness(run_dir)
    except RunError:
        return None  # unreadable: score again, which rewrites it
    files = [run_dir / ROBUSTNESS_FILE, run_dir / PREDICTIONS_FILE, run_dir / WEIGHTS_FILE]
    if stored is None or stored.get("settings") != wanted or not all(f.exists() for f in files):
        return None
    if files[0].stat().st_mtime_ns <= files[2].stat().st_mtime_ns:
        return None
    return stored


def _study_robustness(
    folder: Path, scorer: _Scorer, reference: str | Path | None
) -> dict[str, Any]:
    summary = read_study_summary(folder)
    results: dict[str, dict[int, dict[str, Any]]] = {}
    skipped: list[str] = []
    for row in summary["rows"]:
        label = row["label"]
        for run_name, seed in zip(row.get("runs", []), row.get("seeds", []), strict=False):
            run_dir = folder / run_name
            try:
                check_torch_run(run_dir)
            except ConfigError:
                skipped.append(f"{label} (the NumPy MLP has no PyTorch model to corrupt)")
                break
            results.setdefault(label, {})[seed] = scorer.score(run_dir)
    if not results:
        raise ConfigError(f"{folder}: no PyTorch runs in this study to score")
    ref_label = str(reference) if reference is not None else next(iter(results))
    if ref_label not in results:
        raise ConfigError(
            f"unknown reference label {ref_label!r}; the study's scored labels are "
            f"{', '.join(results)}"
        )
    for by_seed in results.values():
        for seed, result in by_seed.items():
            ref_runs = results[ref_label]
            ref = ref_runs.get(seed) or next(iter(ref_runs.values()))
            add_reference(result, ref, folder / result["run"])
    out = {
        "reference": ref_label,
        "labels": {label: _label_row(by_seed) for label, by_seed in results.items()},
        "comparisons": _comparisons(folder, summary, results),
        "skipped": skipped,
    }
    first = next(iter(next(iter(results.values())).values()))
    out.update({k: first[k] for k in ("items", "corruption_seed", "clean_sha256")})
    atomic_write_json(folder / ROBUSTNESS_FILE, out)
    return out


def _stat(values: list[float]) -> dict[str, Any]:
    mean, std = mean_std(values)
    return {"mean": mean, "std": std, "n": len(values)}


def _label_row(by_seed: dict[int, dict[str, Any]]) -> dict[str, Any]:
    results = list(by_seed.values())
    names = list(results[0]["corruptions"])
    ood = list(results[0]["out_of_distribution"])
    mce = [r["reference"]["mce"] for r in results if r.get("reference", {}).get("mce") is not None]
    return {
        "runs": [r["run"] for r in results],
        "precision": sorted({r["precision"] for r in results}),
        "clean_accuracy": _stat([r["clean_accuracy"] for r in results]),
        "mean_corruption_accuracy": _stat(
            [
                r["mean_corruption_accuracy"]
                for r in results
                if r["mean_corruption_accuracy"] is not None
            ]  # fmt: skip
        )
        if names
        else None,
        "mce": _stat(mce) if mce else None,
        "corruptions": {
            n: _stat([r["corruptions"][n]["mean_accuracy"] for r in results]) for n in names
        },
        "out_of_distribution": {
            n: _stat([r["out_of_distribution"][n]["accuracy"] for r in results]) for n in ood
        },
    }


def _pooled(run_dir: Path, corruption: str) -> tuple[np.ndarray, np.ndarray]:
    """The labels and predictions of every severity of `corruption`, concatenated."""
    try:
        npz = load_npz(run_dir / PREDICTIONS_FILE)
    except (UnreadableFile, FileNotFoundError) as exc:
        raise RunError(f"{one_line(exc)}; run 'fashionlab robustness' again") from None
    keys = sorted(k for k in npz if k.startswith(f"{corruption}/"))
    if "labels" not in npz or not keys:
        raise RunError(
            f"{run_dir / PREDICTIONS_FILE}: no {corruption!r} predictions; run "
            "'fashionlab robustness' again"
        )
    labels = np.concatenate([npz["labels"]] * len(keys)).astype(np.int64)
    preds = np.concatenate([npz[k] for k in keys]).astype(np.int64)
    return labels, preds


def _comparisons(
    folder: Path, summary: dict[str, Any], results: dict[str, dict[int, dict[str, Any]]]
) -> list[dict[str, Any]]:
    out = []
    for cmp in summary.get("comparisons", []):
        a, b = cmp.get("a"), cmp.get("b")
        if a not in results or b not in results:
            continue
        names = [*results[a][next(iter(results[a]))]["corruptions"],
                 *results[a][next(iter(results[a]))]["out_of_distribution"]]  # fmt: skip
        per_corruption: dict[str, list[dict[str, Any]]] = {}
        for seed, ra in results[a].items():
            rb = results[b].get(seed)
            if rb is None:
                continue
            for name in names:
                la, pa = _pooled(folder / ra["run"], name)
                lb, pb = _pooled(folder / rb["run"], name)
                if not np.array_equal(la, lb):
                    raise RunError(f"{a} and {b} were scored on different items")
                test = mcnemar(la, pa, pb)
                per_corruption.setdefault(name, []).append(
                    {
                        "seed": seed,
                        "accuracy_a": float((pa == la).mean()),
                        "accuracy_b": float((pb == lb).mean()),
                        "a_only": int(test.b),
                        "b_only": int(test.c),
                        "p_value": float(test.p_value),
                    }
                )
        out.append({"a": a, "b": b, "claim": cmp.get("claim"), "per_corruption": per_corruption})
    return out


def _report(folder: Path, data_dir: str | Path | None, quiet: bool) -> None:
    try:
        html = write_report(folder, data_dir=data_dir)
    except FashionlabError as exc:  # the scores are written; a report problem is a warning
        print(f"fashionlab: warning: report not updated: {exc}", file=sys.stderr)
        return
    if not quiet:
        print(f"report: {html}", file=sys.stderr)


__all__ = ["score_robustness", "set_key"]
