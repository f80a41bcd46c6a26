"""Step 1 of a report: make sure every figure exists as a PNG on disk.

Per run (`<run>/figures/`): learning curves, confusion matrix, per-class accuracy, misclassified
grid (from history.csv and predictions.npz), and -- for PyTorch runs with weights -- first-layer
filters, activation maps, Grad-CAM and a PCA of the penultimate features. Per data setting:
sample grid, class distribution and a PCA of the raw training pixels. Per study: the
validation curves of all labels overlaid.

A figure is only redrawn when it is missing or older than what it was drawn from (weights,
predictions, history), so re-running a report is cheap; the model and the data are loaded
lazily, i.e. not at all when every figure is fresh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fashionlab import viz
from fashionlab._io import atomic_write_bytes, atomic_write_text
from fashionlab._read import FIGURE, read_bytes, read_json, read_text
from fashionlab.config import TrainConfig
from fashionlab.data import prepare_data
from fashionlab.data.corruptions import corrupt
from fashionlab.errors import ConfigError, FashionlabError
from fashionlab.evaluation import (
    CALIBRATION_BINS,
    NO_VALIDATION,
    confusion_matrix,
    most_confident_mistakes,
    per_class_accuracy,
    reliability,
    run_temperature,
)
from fashionlab.models import feature_layers, get_model_spec, gradcam_layer
from fashionlab.report.audit_flags import audit_flags
from fashionlab.runs import (
    AUDIT_FILE,
    ROBUSTNESS_FILE,
    load_config,
    load_history,
    load_metrics,
    load_predictions,
    load_robustness,
    own_subfolder,
    study_audit_dir,
)
from fashionlab.runs.weights import load_model

FIGURES_DIR = "figures"
PCA_POINTS = 2000  # a scatter of 2,000 points looks like one of 60,000, at a tenth of the time
ACTIVATION_IMAGES = 2
GRADCAM_IMAGES = 6
# Grids draw one matplotlib Axes per image (~30 ms each on a 2-core CPU): keep them small.
MISTAKES_SHOWN = 12
SAMPLES_PER_CLASS = 6
MAX_FILTERS = 32
MAX_CHANNELS = 6
# Fields of TrainConfig that decide what `prepare_data` returns.
DATA_FIELDS = ("split", "val_fraction", "split_seed", "train_subset", "eval_subset")


@dataclass
class Figure:
    """A PNG on disk with what the report says about it."""

    key: str
    title: str
    path: Path
    caption: str = ""


@dataclass
class RunFigures:
    """The figures of one run, plus notes on the ones that could not be drawn (and why)."""

    run_dir: Path
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class DataFigures:
    """The figures of one data setting and the labels whose runs use it."""

    labels: list[str]
    figures: list[Figure]
    notes: list[str] = field(default_factory=list)


@dataclass
class Collected:
    """Every figure a report shows: per label (first seed), per data setting, per study."""

    runs: dict[str, RunFigures]
    data: list[DataFigures]
    overlay: Figure | None = None


# ---------------------------------------------------------------- shared helpers


def is_fresh(path: Path, sources: Sequence[Path]) -> bool:
    """True if `path` exists and is newer than every existing file in `sources`."""
    if not path.exists():
        return False
    newest = max((p.stat().st_mtime_ns for p in sources if p.exists()), default=0)
    return path.stat().st_mtime_ns > newest


def data_key(config: TrainConfig) -> tuple:
    return tuple(getattr(config, name) for name in DATA_FIELDS)


class DataCache:
    """`prepare_data` once per distinct data setting within one report (runs of a study
    mostly share a split; reloading and re-splitting for each would dominate the time)."""

    def __init__(self, data_dir: str | Path | None = None) -> None:
        self.data_dir = data_dir
        self._splits: dict[tuple, Any] = {}

    def split(self, config: TrainConfig):
        key = data_key(config)
        if key not in self._splits:
            # the normaliser is not cached: a run's own comes from model.json
            self._splits[key], _ = prepare_data(config, self.data_dir)
        return self._splits[key]


class _Lazy:
    """A value computed on first use (the model, the split): fresh figures never pay for it."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make, self._done, self._value = make, False, None

    def __call__(self) -> Any:
        if not self._done:
            self._value, self._done = self._make(), True
        return self._value


def example_indices(labels: np.ndarray, k: int) -> np.ndarray:
    """`k` fixed test items of classes spread over 0..9 (T-shirt, ..., ankle boot): the first
    item of each chosen class, so every report of the same split shows the same images."""
    firsts = {int(c): int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)}
    classes = sorted(firsts)
    if len(classes) <= k:
        chosen = classes
    else:
        chosen = [classes[int(round(i))] for i in np.linspace(0, len(classes) - 1, k)]
    return np.asarray([firsts[c] for c in chosen], dtype=np.int64)


def torch_weights(run_dir: Path) -> bool:
    """Whether the run has a PyTorch model with weights (a NumPy MLP run has neither)."""
    info_path = run_dir / "model.json"
    if not (run_dir / "model.safetensors").exists() or not info_path.exists():
        return False
    try:
        return get_model_spec(read_json(info_path)["model"]).framework == "torch"
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return False  # an unreadable model.json: load_model says why when it is needed


# ---------------------------------------------------------------- per run


def run_figures(run_dir: str | Path, data: DataCache) -> RunFigures:
    """Draw (or reuse) the figures of one finished run into `<run>/figures/`."""
    run_dir = Path(run_dir)
    out = own_subfolder(run_dir, FIGURES_DIR)
    config = load_config(run_dir)
    result = RunFigures(run_dir)
    weights = run_dir / "model.safetensors"
    # what each kind of figure is drawn from: newer inputs make it stale
    from_history = [run_dir / "history.csv"]
    from_predictions = [run_dir / "predictions.npz", weights]
    from_model = [weights, run_dir / "model.json"]

    predictions = _Lazy(lambda: load_predictions(run_dir))
    split = _Lazy(lambda: data.split(config))
    aligned = _Lazy(lambda: _aligned_test_images(split(), predictions()))

    def add(key: str, title: str, sources: list[Path], draw: Callable[[Path], Any], caption=""):
        path = out / f"{key}.png"
        if is_fresh(path, sources) or _try_draw(draw, path, title, result.notes) is not None:
            result.figures.append(Figure(key, title, path, caption))

    history = load_history(run_dir)
    if history:
        best = load_metrics(run_dir).get("best_epoch")
        add(
            "learning_curves",
            "Learning curves",
            from_history,
            lambda p: _viz().plot_learning_curves(history, p, run_dir.name, best),
            "Train vs validation loss and accuracy; dotted green line: the evaluated epoch.",
        )
    else:
        result.notes.append("no history.csv: no learning curves")

    add(
        "confusion",
        "Confusion matrix",
        from_predictions,
        lambda p: _viz().plot_confusion_matrix(_confusion(predictions()), p),
        "Rows: true class, normalised to 1; each cell also gives the count.",
    )
    add(
        "per_class",
        "Per-class accuracy",
        from_predictions,
        lambda p: _viz().plot_per_class_accuracy(_per_class(predictions()), p),
    )

    def draw_mistakes(path: Path) -> Path | None:
        images = aligned()
        if images is None:
            result.notes.append(
                "misclassified grid skipped: the test images of this split do not match the "
                "saved predictions (was the data or the split changed since training?)"
            )
            return None
        pred = predictions()
        mistakes = most_confident_mistakes(pred["labels"], pred["logits"], MISTAKES_SHOWN)
        test_index = np.asarray(pred.get("indices", np.arange(len(pred["labels"]))))
        flags = flagged if str(pred.get("pool", "test")) == "test" else {}
        return _viz().plot_misclassified(
            images[mistakes.indices],
            mistakes.true,
            mistakes.predicted,
            mistakes.confidence,
            path,
            ncols=6,
            flags=[flags.get(int(i), "") for i in test_index[mistakes.indices]],
        )

    # the study's data audit, when there is one, marks the items it flags
    audit = study_audit_dir(run_dir.parent)
    flagged = audit_flags(run_dir) if audit is not None else {}
    add(
        "misclassified",
        "Most confident mistakes",
        from_predictions + ([audit / AUDIT_FILE] if audit is not None else []),
        draw_mistakes,
        f"The {MISTAKES_SHOWN} wrong test predictions with the highest probability."
        + (
            " Dashed orange frame: an item the data audit flags (a near-duplicate of a "
            "training image, or a suspect label with the label the models suggest)."
            if audit is not None
            else ""
        ),
    )

    _trust_figures(run_dir, add, predictions, aligned, split)

    if not torch_weights(run_dir):
        result.notes.append(
            "filters, activation maps, Grad-CAM and feature PCA need PyTorch weights "
            "(model.safetensors); this run has none"
        )
        return result
    _model_figures(run_dir, add, _Lazy(lambda: _load(run_dir)), split, aligned, from_model)
    return result


def _trust_figures(run_dir: Path, add, predictions, aligned, split) -> None:
    """The reliability diagram, and the robustness heat-map and examples once the run has
    been scored (`fashionlab robustness`)."""
    metrics = load_metrics(run_dir)
    temperature = run_temperature(metrics)

    def draw_reliability(path: Path):
        pred = predictions()
        series = {"as trained": reliability(pred["labels"], pred["logits"])}
        if temperature is not None:
            scaled = pred["logits"].astype(np.float64) / temperature
            series[f"temperature-scaled (T = {temperature:.2f})"] = reliability(
                pred["labels"], scaled
            )
        return _viz().plot_reliability(series, path)

    caption = (
        f"Top-label confidence in {CALIBRATION_BINS} equal-width bins against the accuracy "
        "in each; on the diagonal the probabilities mean what they say."
    )
    if temperature is None:
        caption += " " + NO_VALIDATION[0].upper() + NO_VALIDATION[1:] + "."
    add("reliability", "Reliability diagram", [run_dir / "predictions.npz",
        run_dir / "metrics.json"], draw_reliability, caption)  # fmt: skip

    result = load_robustness(run_dir)
    if result is None:
        return
    sources = [run_dir / ROBUSTNESS_FILE]

    def draw_heatmap(path: Path):
        cells = {
            name: {int(s): c["accuracy"] for s, c in entry["severities"].items()}
            for name, entry in result["corruptions"].items()
        }
        for name, cell in result["out_of_distribution"].items():
            cells[f"{name} (OOD)"] = {1: cell["accuracy"]}
        return _viz().plot_robustness_heatmap(cells, path, result.get("clean_accuracy"))

    def draw_examples(path: Path):
        images = aligned()
        if images is None:
            return None
        clean = images[example_indices(split().test.labels.numpy(), 1)[0]]
        seed = int(result.get("corruption_seed", 0))
        rows = []
        for name in [*result["corruptions"], *result["out_of_distribution"]]:
            levels = sorted(int(s) for s in result["corruptions"].get(name, {}).get(
                "severities", {"1": None}))  # fmt: skip
            rows.append((name, [corrupt(clean[None], name, s, seed)[0] for s in levels]))
        return _viz().plot_corruption_examples(clean, rows, path)

    add("robustness", "Accuracy under corruption", sources, draw_heatmap,
        f"{result.get('items')} test items per cell; OOD: flips and turns, out of "
        "distribution (one level).")  # fmt: skip
    add(
        "corruptions",
        "Corrupted examples",
        sources,
        draw_examples,
        "The first T-shirt/top of the test split under every corruption scored, clean first.",
    )


def _model_figures(run_dir, add, loaded, split, aligned, sources) -> None:
    """Figures that look inside the network: they need the weights."""

    def filters(path: Path):
        return _viz().plot_first_layer_filters(loaded().model, path, max_filters=MAX_FILTERS)

    def activations(path: Path):
        # the cheap check first: an MLP has no feature maps and then needs no data at all
        stages = list(feature_layers(loaded().model))
        images = aligned() if stages else None
        if images is None:
            return None
        idx = example_indices(split().test.labels.numpy(), ACTIVATION_IMAGES)
        return _viz().plot_activation_maps(
            loaded().model,
            images[idx],
            loaded().normalizer,
            path,
            stages,
            max_images=ACTIVATION_IMAGES,
            max_channels=MAX_CHANNELS,
        )

    def gradcam(path: Path):
        model = loaded().model
        layer = gradcam_layer(model)
        images = aligned() if layer is not None else None
        if images is None:
            return None
        name = next(n for n, m in model.named_modules() if m is layer)
        labels = split().test.labels.numpy()
        idx = example_indices(labels, GRADCAM_IMAGES)
        return _viz().plot_gradcam(
            model,
            images[idx],
            loaded().normalizer,
            path,
            labels=labels[idx],
            target_layer=name,
            max_images=GRADCAM_IMAGES,
        )

    def feature_pca(path: Path):
        images = aligned()
        if images is None:
            return None
        return _viz().plot_pca_features(
            loaded().model,
            images,
            split().test.labels.numpy(),
            loaded().normalizer,
            path,
            max_points=PCA_POINTS,
        )

    add("filters", "First-layer filters", sources, filters, "Red: positive weight, blue: negative.")
    add(
        "activations",
        "Activation maps",
        sources,
        activations,
        f"{ACTIVATION_IMAGES} fixed test images through every stage (forward hooks); the "
        "channels with the strongest mean activation.",
    )
    add(
        "gradcam",
        "Grad-CAM",
        sources,
        gradcam,
        "Where the evidence for the predicted class lies (last spatial stage).",
    )
    add(
        "feature_pca",
        "PCA of penultimate features",
        sources,
        feature_pca,
        f"Test items (at most {PCA_POINTS}) projected on the first two components of the "
        "input to the final layer.",
    )


# ---------------------------------------------------------------- data and study figures


def data_figures(
    config: TrainConfig,
    data: DataCache,
    out: Path,
    reuse: Sequence[Path] = (),
    notes: list[str] | None = None,
) -> list[Figure]:
    """Samples, class distribution and pixel PCA of one data setting, into `out`.

    The file names carry a hash of the setting, so a study whose runs use two different splits
    gets both, and a changed setting never reuses a stale picture. A file of the same name in
    one of the `reuse` folders (a study's figures, for one of its runs) is copied, not redrawn.
    """
    own_subfolder(out.parent, out.name)
    notes = notes if notes is not None else []
    digest = hashlib.sha1(repr(data_key(config)).encode()).hexdigest()[:8]
    split = _Lazy(lambda: data.split(config))
    figures = []
    specs = [
        (
            "samples",
            "Samples per class",
            "Random training images (seeded), one row per class.",
            lambda p: _viz().plot_sample_grid(
                split().train.images, split().train.labels, p, per_class=SAMPLES_PER_CLASS
            ),
        ),
        (
            "class_distribution",
            "Class distribution",
            "Items per class in the train / validation / test parts of the split.",
            lambda p: _viz().plot_class_distribution(
                {
                    "train": split().train.labels,
                    "val": split().val.labels,
                    "test": split().test.labels,
                },
                p,
            ),
        ),
        (
            "pixel_pca",
            "PCA of the training pixels",
            f"Raw training images (at most {PCA_POINTS}, scaled to [0, 1]): the first two "
            "components, and the cumulative explained variance.",
            lambda p: _viz().plot_pca_data(
                split().train.images, split().train.labels, p, max_points=PCA_POINTS
            ),
        ),
    ]
    for key, title, caption, draw in specs:
        path = out / f"data-{digest}-{key}.png"
        borrowed = next((d / path.name for d in reuse if (d / path.name).is_file()), None)
        if not path.exists() and borrowed is not None:
            atomic_write_bytes(path, read_bytes(borrowed, FIGURE))
        # the data of a setting never changes, so an existing file is always current
        if path.exists() or _try_draw(draw, path, title, notes) is not None:
            figures.append(Figure(key, title, path, caption))
    return figures


def validation_overlay(run_dirs: dict[str, Path], out: Path) -> Figure | None:
    """Validation loss and accuracy of every label (first seed) in one figure."""
    histories = {label: load_history(d) for label, d in run_dirs.items()}
    histories = {label: h for label, h in histories.items() if h}
    if not histories:
        return None
    own_subfolder(out.parent, out.name)
    path = out / "validation_curves.png"
    sources = [d / "history.csv" for d in run_dirs.values()]
    # also stale when the set of labels changed (the file is newer than every history then)
    stamp = out / "validation_curves.labels"
    labels_text = "\n".join(histories)
    if not (is_fresh(path, sources) and stamp.is_file() and read_text(stamp) == labels_text):
        _viz().plot_validation_curves(histories, path, "Validation curves (first seed)")
        atomic_write_text(stamp, labels_text)
    return Figure(
        "validation_curves",
        "Validation curves of all models",
        path,
        "Validation loss and accuracy per epoch, first seed of each label.",
    )


# ---------------------------------------------------------------- small pieces


def _try_draw(draw: Callable[[Path], Any], path: Path, title: str, notes: list[str]) -> Any:
    """Draw one figure; a user-level problem (too few items for a PCA, a model that cannot be
    rebuilt) costs that figure, with a note saying why, never the whole report -- which runs
    after hours of training. Anything else is a bug and propagates."""
    try:
        return draw(path)
    except FashionlabError as exc:
        notes.append(f"{title} skipped: {exc}")
        return None


def _viz():
    # imported on first use: matplotlib costs about a second, wasted when every figure is fresh
    return viz


def _load(run_dir: Path):
    return load_model(run_dir)


def _confusion(pred: dict[str, np.ndarray]) -> np.ndarray:
    return confusion_matrix(pred["labels"], pred["logits"])


def _per_class(pred: dict[str, np.ndarray]) -> np.ndarray:
    return per_class_accuracy(pred["labels"], pred["logits"])


def _aligned_test_images(split, pred: dict[str, np.ndarray]) -> np.ndarray | None:
    """The split's test images in the order of the saved predictions, or None if they are not
    the same items (a mismatch would caption one image with another's prediction)."""
    labels = split.test.labels.numpy()
    if len(labels) != len(pred["labels"]) or not np.array_equal(labels, pred["labels"]):
        return None
    if "indices" in pred and not np.array_equal(np.asarray(split.test.indices), pred["indices"]):
        return None
    return split.test.images.numpy()


def collect(
    run_dirs: dict[str, Path],
    out: Path,
    data_dir: str | Path | None = None,
    reuse: Sequence[Path] = (),
) -> Collected:
    """Figures for each labelled run (`label -> run folder`); data and study-level figures go
    into `out` (the report's own figures folder); `reuse`: see `data_figures`."""
    data = DataCache(data_dir)
    runs = {label: run_figures(d, data) for label, d in run_dirs.items()}
    by_setting: dict[tuple, tuple[TrainConfig, list[str]]] = {}
    for label, d in run_dirs.items():
        config = load_config(d)
        by_setting.setdefault(data_key(config), (config, []))[1].append(label)
    data_sets = []
    for config, labels in by_setting.values():
        notes: list[str] = []
        data_sets.append(DataFigures(labels, data_figures(config, data, out, reuse, notes), notes))
    overlay = validation_overlay(run_dirs, out) if len(run_dirs) > 1 else None
    return Collected(runs, data_sets, overlay)
