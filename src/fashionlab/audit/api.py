"""`audit_data(...)`: audit Fashion-MNIST for duplicates and suspect labels, and say what they do
to the scores of the given runs (or a study's runs).

Writes into its own folder: audit.json (counts, settings, flagged test indices, scores), one
CSV per finding, the galleries under figures/, report.html and report.md, and the
cross-validation folds under cache/ (reused by a later audit with the same settings).
"""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fashionlab._io import atomic_write_json, atomic_write_text
from fashionlab.audit.crossval import CrossValSettings, cross_validated_probabilities
from fashionlab.audit.duplicates import (
    DuplicateGroup,
    NearestTrain,
    centre_features,
    exact_duplicates,
    nearest_train,
    pixel_embedding,
)
from fashionlab.audit.labels import SuspectLabels, find_suspect_labels
from fashionlab.audit.scores import (
    comparison_on_subsets,
    keep_masks,
    subset_accuracies,
    survives,
    test_predictions,
)
from fashionlab.data import CLASS_NAMES, FashionMNIST, load_fashion_mnist
from fashionlab.errors import ConfigError, RunError
from fashionlab.evaluation import softmax
from fashionlab.report import read_study_summary, write_report
from fashionlab.report.figures import FIGURES_DIR
from fashionlab.runs import (
    AUDIT_DIR,
    AUDIT_FILE,
    AUDIT_MARKER,
    claim_folder,
    is_complete,
    load_metrics,
    load_predictions,
)
from fashionlab.runs.folder import mark, own_subfolder
from fashionlab.runs.weights import WEIGHTS_FILE, load_model

CACHE_DIR = "cache"
GALLERY_PAIRS = 24


@dataclass(frozen=True)
class AuditSettings:
    """The audit's knobs; the defaults are what the closing figures and docs/audit.md use."""

    # Pixels: the top 256 principal components of the training images (centred). Thresholds
    # were set by looking at the ranked pairs on the real data (docs/audit.md): at cosine 0.99
    # and above a pair is, with few exceptions, the same product photographed again; around
    # 0.985 plain trousers and sandals that merely look alike take over.
    pixel_components: int = 256
    pixel_threshold: float = 0.99
    # A trained run's penultimate features (centred), when runs are given: stricter, since a
    # classifier maps the items of a class close together.
    feature_threshold: float = 0.995
    crossval: CrossValSettings | None = field(default_factory=CrossValSettings)
    gallery: int = 50  # suspect items shown per gallery

    def __post_init__(self) -> None:
        for name in ("pixel_threshold", "feature_threshold"):
            value = getattr(self, name)
            if not -1 <= value <= 1:
                raise ConfigError(f"{name} is a cosine similarity: -1..1, got {value}")
        if self.gallery < 1:
            raise ConfigError(f"gallery must be >= 1, got {self.gallery}")


@dataclass
class _Run:
    label: str
    path: Path
    seed: int | None = None


def audit_data(
    out: str | Path | None = None,
    runs: Sequence[str | Path] = (),
    study: str | Path | None = None,
    settings: AuditSettings | None = None,
    data_dir: str | Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Audit the dataset (and the given runs' or study's scores) into `out` (default:
    STUDY/audit with a study, ./audit otherwise); returns what it wrote to audit.json."""
    settings = settings or AuditSettings()
    members, comparisons = _runs_of(runs, study)
    folder = Path(out) if out is not None else (Path(study) / AUDIT_DIR if study else Path("audit"))
    with claim_folder(folder, what="audit"):
        mark(folder, AUDIT_MARKER)
        result = _Audit(folder, settings, data_dir, quiet).run(members, comparisons, study)
    write_report(folder, data_dir)
    if study is not None:
        write_report(study, data_dir)  # its audit section and the flagged mistakes
    return result


def _runs_of(
    runs: Sequence[str | Path], study: str | Path | None
) -> tuple[list[_Run], list[dict[str, Any]]]:
    members = [_Run(Path(r).name, Path(r)) for r in runs]
    comparisons: list[dict[str, Any]] = []
    if study is not None:
        summary = read_study_summary(study)
        for row in summary["rows"]:
            for name, seed in zip(row.get("runs", []), row.get("seeds", []), strict=False):
                members.append(_Run(str(row["label"]), Path(study) / name, seed))
        comparisons = [c for c in summary.get("comparisons", []) if isinstance(c, dict)]
    for member in members:
        if not is_complete(member.path):
            raise RunError(f"{member.path}: not a finished run folder (no 'complete' marker)")
    return members, comparisons


class _Audit:
    def __init__(
        self, folder: Path, settings: AuditSettings, data_dir: str | Path | None, quiet: bool
    ) -> None:
        self.folder, self.settings, self.data_dir, self.quiet = folder, settings, data_dir, quiet
        self.figures = folder / FIGURES_DIR
        self.seconds: dict[str, float] = {}

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr, flush=True)

    def run(
        self, members: list[_Run], comparisons: list[dict[str, Any]], study: str | Path | None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        data = load_fashion_mnist(self.data_dir)
        train = data.train_images.numpy()
        test = data.test_images.numpy()
        train_labels = data.train_labels.numpy().astype(np.int64)
        test_labels = data.test_labels.numpy().astype(np.int64)
        own_subfolder(self.figures.parent, self.figures.name)

        tick = time.perf_counter()
        groups = exact_duplicates(train, test)
        self._write_exact(groups, train_labels, test_labels)
        self.seconds["exact duplicates"] = time.perf_counter() - tick

        tick = time.perf_counter()
        near = {"pixels": self._near_pixels(data)}
        feature_run = next((m for m in members if (m.path / WEIGHTS_FILE).is_file()), None)
        if feature_run is not None:
            near["features"] = self._near_features(feature_run, data)
        near_rows = {name: found for name, (found, _) in near.items()}
        self._write_near(near_rows, train_labels, test_labels, data)
        self.seconds["near-duplicates"] = time.perf_counter() - tick

        tick = time.perf_counter()
        crossval = None
        if self.settings.crossval is not None:
            self.say(f"cross-validating {self.settings.crossval.folds} folds for the labels")
            crossval = cross_validated_probabilities(
                self.settings.crossval, self.folder / CACHE_DIR, data, self.data_dir, self.quiet
            )
        self.seconds["cross-validation"] = time.perf_counter() - tick

        tick = time.perf_counter()
        test_probs, test_source = self._test_probabilities(members, len(test_labels), crossval)
        suspects: dict[str, SuspectLabels | None] = {"test": None, "train": None}
        if test_probs is not None:
            suspects["test"] = find_suspect_labels(test_labels, test_probs, "test labels")
        if crossval is not None:
            suspects["train"] = find_suspect_labels(
                train_labels, crossval.train_probs, "training labels"
            )
        for pool, images in (("test", test), ("train", train)):
            if suspects[pool] is not None:
                self._write_suspects(pool, suspects[pool], images)
        self.seconds["suspect labels"] = time.perf_counter() - tick

        near_test = np.unique(np.concatenate([found.index for found in near_rows.values()]))
        suspect_test = suspects["test"].indices if suspects["test"] is not None else []
        # The cleaned subsets drop suspects found WITHOUT the scored runs when the folds can say:
        # items picked by the runs' own mistakes would flatter exactly those runs.
        scored_suspects, scored_source = np.asarray(suspect_test, dtype=np.int64), test_source
        if crossval is not None and test_source.startswith("the given runs"):
            independent = find_suspect_labels(test_labels, crossval.test_probs, "test labels")
            self._write_suspects("test", independent, test, name="test_crossval", gallery=False)
            scored_suspects = independent.indices
            scored_source = "the cross-validation models (independent of the scored runs)"
        masks = keep_masks(len(test_labels), near_test, scored_suspects)
        scores = self._scores(members, masks, len(test_labels))
        compared = self._comparisons(comparisons, study, masks, len(test_labels))
        self.seconds["total"] = time.perf_counter() - started

        result = {
            "version": 1,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            "dataset": {"train": len(train_labels), "test": len(test_labels)},
            "settings": _settings_dict(self.settings),
            "study": str(study) if study is not None else None,
            "runs": [{"label": m.label, "path": str(m.path), "seed": m.seed} for m in members],
            "exact": _exact_summary(groups, train_labels, test_labels),
            "near": {name: summary for name, (_, summary) in near.items()},
            "labels": {
                pool: _suspect_summary(found, labels)
                for pool, found, labels in (
                    ("test", suspects["test"], test_labels),
                    ("train", suspects["train"], train_labels),
                )
            },
            "test_probabilities": test_source,
            "scored_suspects": {"source": scored_source, "count": len(scored_suspects)},
            "crossval": _crossval_summary(crossval, self.settings.crossval),
            "subsets": {name: int(mask.sum()) for name, mask in masks.items()},
            "scores": scores,
            "comparisons": compared,
            "flags": {
                "test_near_duplicates": near_test.tolist(),
                "test_suspect_labels": [int(i) for i in suspect_test],
                "test_suspect_labels_scored": [int(i) for i in scored_suspects],
                "test_suggested": {
                    str(int(i)): int(s)
                    for i, s in zip(
                        suspect_test,
                        suspects["test"].suggested if suspects["test"] is not None else [],
                        strict=True,
                    )
                },
            },
            "seconds": self.seconds,
        }
        atomic_write_json(self.folder / AUDIT_FILE, result)
        self.say(f"audit written to {self.folder / AUDIT_FILE} in {self.seconds['total']:.0f} s")
        return result

    # ---------------------------------------------------------------- duplicates

    def _write_exact(self, groups: list[DuplicateGroup], train_labels, test_labels) -> None:
        rows = [["group", "kind", "pool", "index", "label", "class"]]
        for g, group in enumerate(groups):
            for pool, index in group.members:
                label = int((train_labels if pool == "train" else test_labels)[index])
                rows.append([g, group.kind, pool, index, label, CLASS_NAMES[label]])
        _write_csv(self.folder / "exact_duplicates.csv", rows)

    def _near_pixels(self, data: FashionMNIST) -> tuple[NearestTrain, dict[str, Any]]:
        s = self.settings
        train_emb, test_emb = pixel_embedding(
            data.train_images.numpy(), data.test_images.numpy(), s.pixel_components
        )
        nearest = nearest_train(train_emb, test_emb)
        what = f"the top {s.pixel_components} principal components of the training pixels"
        return _near(nearest, s.pixel_threshold, what, data)

    def _near_features(self, member: _Run, data: FashionMNIST):
        from fashionlab.viz.pca import image_features

        loaded = load_model(member.path)
        feats = [
            image_features(loaded.model, images.numpy(), loaded.normalizer)
            for images in (data.train_images, data.test_images)
        ]
        if feats[0] is None:
            raise ConfigError(f"{member.path}: its model has no Linear head to take features from")
        nearest = nearest_train(*centre_features(feats[0], feats[1]))
        what = f"penultimate features of {member.label} ({member.path}), centred"
        found, summary = _near(nearest, self.settings.feature_threshold, what, data)
        summary["run"] = str(member.path)
        return found, summary

    def _write_near(self, near: dict[str, _Found], train_labels, test_labels, data) -> None:
        rows = [["embedding", "test_index", "train_index", "cosine", "test_label", "train_label"]]
        for name, found in near.items():
            for t, r, c in zip(found.index, found.train_index, found.cosine, strict=True):
                rows.append([name, t, r, f"{c:.6f}", test_labels[t], train_labels[r]])
            self._pair_gallery(name, found, data)
        _write_csv(self.folder / "near_duplicates.csv", rows)

    def _pair_gallery(self, name: str, found: _Found, data: FashionMNIST) -> None:
        from fashionlab.viz import plot_duplicate_pairs

        # The closest pairs, past the threshold as well: where the threshold cuts is on view.
        order = found.closest[:GALLERY_PAIRS]
        plot_duplicate_pairs(
            data.test_images.numpy()[order],
            data.train_images.numpy()[found.nearest.index[order]],
            data.test_labels.numpy()[order],
            data.train_labels.numpy()[found.nearest.index[order]],
            found.nearest.cosine[order],
            self.figures / f"near_duplicates_{name}.png",
            CLASS_NAMES,
            threshold=found.threshold,
            title=f"Closest test/train pairs by {name}",
        )

    # ---------------------------------------------------------------- labels

    def _test_probabilities(
        self, members: list[_Run], n_test: int, crossval
    ) -> tuple[np.ndarray | None, str]:
        """The given runs' test probabilities averaged (each divided by its fitted temperature)
        when they cover the whole test set; otherwise the cross-validation models'."""
        probs = []
        for member in members:
            try:
                indices, _, _ = test_predictions(member.path, n_test)
            except RunError:
                continue  # a pooled split, or a subset: not out-of-sample test probabilities
            if not np.array_equal(indices, np.arange(n_test)):
                continue
            logits = load_predictions(member.path)["logits"].astype(np.float64)
            temperature = load_metrics(member.path).get("temperature")
            if isinstance(temperature, (int, float)) and temperature > 0:
                logits = logits / temperature
            probs.append(softmax(logits))
        if probs:
            return np.mean(probs, axis=0), f"the given runs, averaged ({len(probs)} runs)"
        if crossval is not None:
            return crossval.test_probs, "the cross-validation models, averaged"
        return None, "none (no runs on the full test set and no cross-validation)"

    def _write_suspects(
        self,
        pool: str,
        found: SuspectLabels,
        images: np.ndarray,
        name: str | None = None,
        gallery: bool = True,
    ) -> None:
        from fashionlab.viz import plot_label_issues

        rows = [["rank", "index", "given", "given_class", "suggested", "suggested_class",
                 "p_given", "p_suggested"]]  # fmt: skip
        for rank, (i, g, s, pg, ps) in enumerate(
            zip(
                found.indices,
                found.given,
                found.suggested,
                found.given_probability,
                found.suggested_probability,
                strict=True,
            ),  # fmt: skip
            start=1,
        ):
            rows.append([rank, i, g, CLASS_NAMES[g], s, CLASS_NAMES[s], f"{pg:.4f}", f"{ps:.4f}"])
        _write_csv(self.folder / f"suspect_labels_{name or pool}.csv", rows)
        if not gallery:
            return
        top = slice(0, self.settings.gallery)
        plot_label_issues(
            images[found.indices[top]],
            found.given[top],
            found.suggested[top],
            found.given_probability[top],
            self.figures / f"suspect_labels_{pool}.png",
            CLASS_NAMES,
            title=f"Suspect {pool} labels, the {min(len(found), self.settings.gallery)} most "
            f"suspect of {len(found)}",
        )

    # ---------------------------------------------------------------- scores

    def _scores(self, members: list[_Run], masks, n_test: int) -> list[dict[str, Any]]:
        rows = []
        for member in members:
            entry: dict[str, Any] = {"label": member.label, "run": str(member.path),
                                     "seed": member.seed}  # fmt: skip
            try:
                entry["subsets"] = subset_accuracies(*test_predictions(member.path, n_test), masks)
            except RunError as exc:
                entry["skipped"] = str(exc)
            rows.append(entry)
        out = [["label", "run", "seed", "subset", "accuracy", "items"]]
        for entry in rows:
            for name, value in entry.get("subsets", {}).items():
                out.append([entry["label"], entry["run"], entry["seed"], name,
                            f"{value['accuracy']:.6f}", value["n"]])  # fmt: skip
        _write_csv(self.folder / "scores.csv", out)
        return rows

    def _comparisons(self, comparisons, study, masks, n_test: int) -> list[dict[str, Any]]:
        out = []
        for cmp in comparisons:
            a, b = str(cmp.get("a")), str(cmp.get("b"))
            pairs = [
                (Path(study) / p["run_a"], Path(study) / p["run_b"])
                for p in _seed_pairs(study, a, b)
            ]
            if not pairs:
                continue
            try:
                on = comparison_on_subsets(pairs, n_test, masks)
            except RunError as exc:
                out.append({"a": a, "b": b, "claim": cmp.get("claim"), "skipped": str(exc)})
                continue
            out.append(
                {"a": a, "b": b, "claim": cmp.get("claim"), "subsets": on, "verdict": survives(on)}
            )
        return out


@dataclass
class _Found:
    """Near-duplicates under one embedding: test items at or above the threshold (most similar
    first) and every test item's nearest neighbour."""

    nearest: NearestTrain
    threshold: float
    index: np.ndarray
    closest: np.ndarray

    @property
    def train_index(self) -> np.ndarray:
        return self.nearest.index[self.index]

    @property
    def cosine(self) -> np.ndarray:
        return self.nearest.cosine[self.index]


def _near(
    nearest: NearestTrain, threshold: float, what: str, data: FashionMNIST
) -> tuple[_Found, dict[str, Any]]:
    index = nearest.above(threshold)
    closest = np.argsort(-nearest.cosine, kind="stable")
    found = _Found(nearest, threshold, index, closest)
    test_labels = data.test_labels.numpy()
    train_labels = data.train_labels.numpy()
    summary = {
        "embedding": what,
        "threshold": threshold,
        "count": len(index),
        "label_disagrees": int((test_labels[index] != train_labels[found.train_index]).sum()),
        "per_class": _per_class(test_labels[index]),
        "cosine_quantiles": {
            str(q): float(np.quantile(nearest.cosine, q)) for q in (0.5, 0.9, 0.99, 0.999)
        },
    }
    return found, summary


def _seed_pairs(study, a: str, b: str) -> list[dict[str, str]]:
    rows = {str(r["label"]): r for r in read_study_summary(study)["rows"]}
    if a not in rows or b not in rows:
        return []
    runs_b = dict(zip(rows[b].get("seeds", []), rows[b].get("runs", []), strict=False))
    return [
        {"run_a": run, "run_b": runs_b[seed]}
        for seed, run in zip(rows[a].get("seeds", []), rows[a].get("runs", []), strict=False)
        if seed in runs_b
    ]


def _per_class(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(CLASS_NAMES))
    return {name: int(c) for name, c in zip(CLASS_NAMES, counts, strict=True)}


def _exact_summary(groups: list[DuplicateGroup], train_labels, test_labels) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("within train", "within test", "across"):
        chosen = [g for g in groups if g.kind == kind]
        out[kind] = {
            "groups": len(chosen),
            "images": sum(len(g.members) for g in chosen),
            "extra_copies": sum(len(g.members) - 1 for g in chosen),
        }

    def label(pool: str, index: int) -> int:
        return int((train_labels if pool == "train" else test_labels)[index])

    conflicts = [g for g in groups if len({label(p, i) for p, i in g.members}) > 1]
    out["label_conflicts"] = len(conflicts)
    out["per_class"] = _per_class([label(*g.members[0]) for g in groups])
    return out


def _suspect_summary(found: SuspectLabels | None, labels: np.ndarray) -> dict[str, Any] | None:
    if found is None:
        return None
    return {
        "count": len(found),
        "fraction": len(found) / max(len(labels), 1),
        "per_class": _per_class(found.given),
        "top": [
            {"index": int(i), "given": int(g), "suggested": int(s), "p_given": float(p)}
            for i, g, s, p in zip(
                found.indices[:20],
                found.given[:20],
                found.suggested[:20],
                found.given_probability[:20],
                strict=True,
            )  # fmt: skip
        ],
    }


def _crossval_summary(result, settings: CrossValSettings | None) -> dict[str, Any] | None:
    if result is None or settings is None:
        return None
    return {
        **asdict(settings),
        "fold_accuracy": result.fold_accuracy,
        "fold_train_seconds": result.fold_seconds,
        "folds_reused": sum(result.reused),
        "fold_runs": [str(p) for p in result.fold_dirs],
    }


def _settings_dict(settings: AuditSettings) -> dict[str, Any]:
    return asdict(settings)


def _write_csv(path: Path, rows: list[list[Any]]) -> None:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    atomic_write_text(path, buffer.getvalue())
