"""The data audit: duplicates, suspect labels and cleaned scores, on synthetic data where the
truth is planted, through the library and the `fashionlab audit` command."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import write_idx_dataset

from fashionlab.audit import (
    AuditSettings,
    CrossValSettings,
    audit_data,
    cross_validated_probabilities,
    exact_duplicates,
    find_suspect_labels,
    keep_masks,
    nearest_train,
    pixel_embedding,
    subset_accuracies,
)
from fashionlab.cli import main
from fashionlab.config import TrainConfig
from fashionlab.data import dataset as dataset_module
from fashionlab.data import load_fashion_mnist, load_from_directory, make_split
from fashionlab.data.dataset import candidate_sources
from fashionlab.data.splits import stratified_folds
from fashionlab.errors import ConfigError, RunError
from fashionlab.models import build_config
from fashionlab.report.audit_flags import audit_flags
from fashionlab.runs import load_audit, load_predictions
from fashionlab.training import train

pytest.importorskip("cleanlab")

N_TRAIN, N_TEST = 900, 300
FLIPPED_TRAIN = np.arange(5, N_TRAIN, 30)  # 30 planted label flips in train
FLIPPED_TEST = np.arange(7, N_TEST, 25)  # 12 in test
ACROSS = {(0, 3), (1, 10)}  # exact copies: (test index, train index)
NEAR = {(2, 20), (4, 41)}  # near copies: the training image plus +-1 noise


def _images(labels: np.ndarray, templates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noise = rng.normal(0, 40, (len(labels), 28, 28))
    return np.clip(0.5 * templates[labels] + 60 + noise, 0, 255).astype(np.uint8)


def synthetic_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    """Ten noisy class templates, with planted duplicates and label flips (the truth)."""
    rng = np.random.default_rng(seed)
    templates = rng.integers(0, 256, (10, 28, 28)).astype(np.float64)
    train_labels = np.arange(N_TRAIN) % 10
    test_labels = np.arange(N_TEST) % 10
    train = _images(train_labels, templates, rng)
    test = _images(test_labels, templates, rng)
    for t, r in ACROSS:
        test[t], test_labels[t] = train[r], train_labels[r]
    for t, r in NEAR:
        jitter = rng.integers(-1, 2, (28, 28))
        test[t] = np.clip(train[r].astype(int) + jitter, 0, 255).astype(np.uint8)
        test_labels[t] = train_labels[r]
    train[700] = train[600]  # an exact duplicate within train
    train_labels[700] = train_labels[600]
    flip = lambda y: (y + 3) % 10  # noqa: E731
    train_labels[FLIPPED_TRAIN] = flip(train_labels[FLIPPED_TRAIN])
    test_labels[FLIPPED_TEST] = flip(test_labels[FLIPPED_TEST])
    return {
        "train-images": train,
        "train-labels": train_labels.astype(np.uint8),
        "test-images": test,
        "test-labels": test_labels.astype(np.uint8),
    }


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Iterator[Path]:
    """The synthetic dataset's folder. Training refuses data that is not the checksummed
    Fashion-MNIST, so the loader is handed the synthetic arrays as if that folder had been
    verified (its per-process memo of loaded sources); every other step is the real one."""
    folder = write_idx_dataset(tmp_path_factory.mktemp("synthetic") / "data", synthetic_arrays())
    key = (str(candidate_sources(folder)[0].path), True)
    dataset_module._LOADED[key] = load_from_directory(folder, verify=False)
    yield folder
    dataset_module._LOADED.pop(key, None)


TINY_CV = CrossValSettings(model="mlp", folds=3, epochs=20, seed=0, model_args={"hidden": [64]})


def _run(tmp: Path, data_dir: Path, name: str, seed: int) -> Path:
    config = build_config(
        "mlp", {"epochs": 8, "seed": seed, "name": name, "model_args": {"hidden": [64]}}
    )
    return train(config, tmp, quiet=True, data_dir=data_dir)


# ---------------------------------------------------------------- duplicates


def test_exact_duplicates_are_found_within_and_across():
    rng = np.random.default_rng(1)
    train = rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (20, 28, 28), dtype=np.uint8)
    train[9] = train[2]
    test[5] = test[1]
    test[7] = train[30]
    test[8] = train[30]
    groups = {g.kind: sorted(g.members) for g in exact_duplicates(train, test)}
    assert groups == {
        "within train": [("train", 2), ("train", 9)],
        "within test": [("test", 1), ("test", 5)],
        "across": [("test", 7), ("test", 8), ("train", 30)],
    }


def test_planted_near_duplicates_and_nothing_else_above_the_threshold():
    rng = np.random.default_rng(2)
    train = rng.integers(0, 256, (400, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (100, 28, 28), dtype=np.uint8)
    planted = {3: 17, 40: 250, 77: 399}
    for t, r in planted.items():
        test[t] = np.clip(train[r].astype(int) + rng.integers(-3, 4, (28, 28)), 0, 255)
    test[90] = train[123]  # an exact copy is a near-duplicate too (cosine 1)
    planted[90] = 123
    nearest = nearest_train(*pixel_embedding(train, test, components=64))
    found = nearest.above(0.99)
    assert sorted(found.tolist()) == sorted(planted)
    assert {int(t): int(nearest.index[t]) for t in found} == planted
    assert nearest.cosine[90] == pytest.approx(1.0, abs=1e-5)
    assert found[0] == 90  # most similar first
    others = np.delete(nearest.cosine, list(planted))
    assert others.max() < 0.5  # independent random images are far from every training image


def test_pixel_embedding_is_the_principal_component_projection():
    rng = np.random.default_rng(4)
    train = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    test = rng.integers(0, 256, (40, 28, 28), dtype=np.uint8)
    train_emb, test_emb = pixel_embedding(train, test, components=12)
    x = train.reshape(300, -1).astype(np.float64)
    mean = x.mean(0)
    _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
    expected = (test.reshape(40, -1) - mean) @ vt[:12].T
    # each component is defined up to its sign
    np.testing.assert_allclose(np.abs(test_emb), np.abs(expected), rtol=1e-4, atol=1e-2)
    assert train_emb.shape == (300, 12) and train_emb.dtype == np.float32


def test_embedding_and_similarity_errors_are_one_line():
    images = np.zeros((5, 28, 28), np.uint8)
    with pytest.raises(ConfigError, match="components must be"):
        pixel_embedding(images, images, components=10)
    with pytest.raises(ConfigError, match="uint8 images"):
        pixel_embedding(images.astype(np.float32), images)
    with pytest.raises(ConfigError, match="differ in width"):
        nearest_train(np.ones((3, 4)), np.ones((2, 5)))
    with pytest.raises(ConfigError, match="NaN"):
        nearest_train(np.full((3, 4), np.nan), np.ones((2, 4)))


# ---------------------------------------------------------------- folds


def test_stratified_folds_partition_and_keep_class_proportions():
    labels = np.repeat(np.arange(10), 97)
    folds = stratified_folds(labels, 4, seed=3)
    joined = np.concatenate(folds)
    assert sorted(joined.tolist()) == list(range(len(labels)))
    sizes = [len(f) for f in folds]
    assert max(sizes) - min(sizes) <= 1
    for fold in folds:
        counts = np.bincount(labels[fold], minlength=10)
        assert counts.max() - counts.min() <= 1
    assert [f.tolist() for f in stratified_folds(labels, 4, seed=3)] == [f.tolist() for f in folds]


def test_a_cross_validation_split_tests_on_its_fold(synthetic):
    data = load_fashion_mnist(synthetic)
    split = make_split(data, "random", 0.1, seed=5, cv=(3, 1))
    fold = stratified_folds(data.train_labels.numpy(), 3, seed=5)[1]
    assert split.test_pool == "train"
    assert np.array_equal(split.test.indices, fold)
    assert np.array_equal(split.test.labels.numpy(), data.train_labels.numpy()[fold])
    rest = np.concatenate([split.train.indices, split.val.indices])
    assert not set(rest) & set(fold)
    assert len(rest) + len(fold) == N_TRAIN
    assert len(split.val.indices) == round(0.1 * len(rest))


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"cv_folds": 3}, "go together"),
        ({"cv_folds": 3, "cv_fold": 3}, "cv_fold must be 0..2"),
        ({"cv_folds": 3, "cv_fold": 0, "split": "pooled"}, "use split random"),
        ({"cv_folds": 1, "cv_fold": 0}, "greater than or equal to 2"),
    ],
)
def test_cross_validation_config_errors(values, words):
    with pytest.raises(ValueError, match=words):
        TrainConfig(model="mlp", **values)


# ---------------------------------------------------------------- labels


def test_planted_label_flips_rank_above_clean_items(synthetic, tmp_path):
    data = load_fashion_mnist(synthetic)
    result = cross_validated_probabilities(TINY_CV, tmp_path / "cache", data, synthetic, quiet=True)
    assert result.train_probs.shape == (N_TRAIN, 10)
    assert min(result.fold_accuracy) > 0.85  # the folds learnt the classes despite the flips
    labels = data.train_labels.numpy()
    suspects = find_suspect_labels(labels, result.train_probs)
    flipped = set(FLIPPED_TRAIN.tolist())
    found = suspects.indices.tolist()
    # What cleanlab flags is (nearly) all planted, and it finds most of them
    assert len(flipped & set(found)) >= 0.9 * len(found)
    assert len(flipped & set(found)) >= 0.6 * len(flipped)
    # Ranked by the probability of the given label, the flips come before the clean items
    given_probability = result.train_probs[np.arange(len(labels)), labels]
    lowest = np.argsort(given_probability, kind="stable")[: len(flipped)]
    assert len(flipped & set(lowest.tolist())) >= 0.9 * len(flipped)
    assert suspects.given_probability.tolist() == sorted(suspects.given_probability.tolist())
    # and the label the models suggest is the planted truth
    truth = (labels - 3) % 10
    assert np.mean(suspects.suggested == truth[suspects.indices]) >= 0.9

    # the folds are cached: a second call trains nothing
    stamps = sorted(p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("model.safetensors"))
    second = cross_validated_probabilities(TINY_CV, tmp_path / "cache", data, synthetic, quiet=True)
    assert not any(result.reused) and all(second.reused)
    np.testing.assert_array_equal(second.train_probs, result.train_probs)
    again = sorted(p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("model.safetensors"))
    assert stamps == again and len(stamps) == TINY_CV.folds


def test_suspect_label_input_errors():
    probs = np.full((4, 3), 1 / 3)
    with pytest.raises(ConfigError, match="sum to 1"):
        find_suspect_labels(np.array([0, 1, 2, 0]), probs * 2)
    with pytest.raises(ConfigError, match="probabilities for 3 labels"):
        find_suspect_labels(np.array([0, 1, 2]), probs)
    with pytest.raises(ConfigError, match="have no items"):
        find_suspect_labels(np.array([0, 1, 1, 0]), probs)


# ---------------------------------------------------------------- scores


def test_subset_accuracies_use_the_right_items():
    masks = keep_masks(6, near_duplicates=np.array([1]), suspects=np.array([2, 3]))
    indices = np.array([5, 4, 3, 2, 1, 0])  # the run saw the items in another order
    labels = np.array([0, 0, 0, 0, 0, 0])
    predicted = np.array([0, 1, 0, 1, 1, 0])  # wrong on items 4, 2, 1
    acc = subset_accuracies(indices, labels, predicted, masks)
    assert acc["full test set"] == {"accuracy": 0.5, "n": 6}
    assert acc["without near-duplicates"] == {"accuracy": 3 / 5, "n": 5}  # drops item 1
    assert acc["without suspect labels"] == {"accuracy": 2 / 4, "n": 4}  # drops 2 and 3
    assert acc["without both"] == {"accuracy": 2 / 3, "n": 3}  # items 0, 4, 5


# ---------------------------------------------------------------- the whole audit


@pytest.fixture(scope="module")
def audited_study(synthetic, tmp_path_factory) -> tuple[Path, dict]:
    """A two-label, two-seed study on the synthetic data, audited with its runs."""
    from fashionlab.studies import run_study

    root = tmp_path_factory.mktemp("audit-study")
    spec = root / "study.yaml"
    spec.write_text(
        "name: tiny\nseeds: [1, 2]\n"
        "overrides: {epochs: 6}\n"
        "runs:\n"
        "  - {label: wide, model: mlp, overrides: {model_args: {hidden: [64]}}}\n"
        "  - {label: narrow, model: mlp, overrides: {model_args: {hidden: [4]}}}\n"
        "compare:\n  - {a: wide, b: narrow, claim: 'wider is better'}\n"
    )
    study = run_study(spec, root / "out", quiet=True, data_dir=synthetic, make_report=False)
    settings = AuditSettings(crossval=TINY_CV, gallery=10)
    result = audit_data(study=study, settings=settings, data_dir=synthetic, quiet=True)
    return study, result


@pytest.mark.slow
def test_the_audit_finds_what_was_planted(audited_study):
    study, result = audited_study
    folder = study / "audit"
    assert load_audit(folder) == result
    assert result["exact"]["across"]["groups"] == len(ACROSS)
    assert result["exact"]["within train"]["groups"] == 1
    near = set(result["flags"]["test_near_duplicates"])
    planted = {t for t, _ in ACROSS | NEAR}
    assert planted <= near
    with (folder / "near_duplicates.csv").open() as handle:
        pixel_rows = [r for r in csv.DictReader(handle) if r["embedding"] == "pixels"]
    assert {(int(r["test_index"]), int(r["train_index"])) for r in pixel_rows} == ACROSS | NEAR
    suspects = result["flags"]["test_suspect_labels"]
    hits = set(FLIPPED_TEST.tolist()) & set(suspects[: len(FLIPPED_TEST)])
    assert len(hits) >= 0.75 * len(FLIPPED_TEST)
    assert result["labels"]["train"]["count"] >= 0.6 * len(FLIPPED_TRAIN)
    assert result["test_probabilities"].startswith("the given runs")
    for name in ("exact_duplicates", "near_duplicates", "suspect_labels_test",
                 "suspect_labels_train", "scores"):  # fmt: skip
        assert (folder / f"{name}.csv").is_file()
    for name in ("near_duplicates_pixels", "suspect_labels_test", "suspect_labels_train"):
        assert (folder / "figures" / f"{name}.png").is_file()


def test_cleaned_scores_are_computed_from_the_flagged_indices(audited_study):
    study, result = audited_study
    flags = result["flags"]
    drop = {
        "without near-duplicates": set(flags["test_near_duplicates"]),
        "without suspect labels": set(flags["test_suspect_labels_scored"]),
    }
    drop["without both"] = drop["without near-duplicates"] | drop["without suspect labels"]
    drop["full test set"] = set()
    assert result["scored_suspects"]["source"].startswith("the cross-validation models")
    assert len(result["scores"]) == 4
    for row in result["scores"]:
        pred = load_predictions(row["run"])
        right = pred["labels"] == pred["logits"].argmax(1)
        for name, dropped in drop.items():
            keep = np.array([i not in dropped for i in pred["indices"]])
            assert row["subsets"][name]["n"] == keep.sum()
            assert row["subsets"][name]["accuracy"] == pytest.approx(right[keep].mean())
    (cmp,) = result["comparisons"]
    assert (cmp["a"], cmp["b"]) == ("wide", "narrow")
    assert cmp["subsets"]["full test set"]["pairs"] == 2
    assert cmp["verdict"]


@pytest.mark.slow
def test_reports_link_the_audit_and_mark_flagged_mistakes(audited_study):
    study, result = audited_study
    audit_html = (study / "audit" / "report.html").read_text()
    assert "Suspect labels" in audit_html and "without near-duplicates" in audit_html
    assert "wide vs narrow" in audit_html
    assert (study / "audit" / "report.md").is_file()
    study_html = (study / "report.html").read_text()
    assert 'id="audit"' in study_html and "audit/report.html" in study_html
    flags = audit_flags(study / "wide-seed1")
    suspect = result["flags"]["test_suspect_labels"][0]
    assert flags[suspect].startswith("suspect label")
    assert "near-dup of train" in flags[result["flags"]["test_near_duplicates"][0]]
    assert main(["report", str(study / "wide-seed1")]) == 0
    run_html = (study / "wide-seed1" / "report.html").read_text()
    assert (
        "From the study&#39;s data audit" in run_html or "From the study's data audit" in run_html
    )
    figure = study / "wide-seed1" / "figures" / "misclassified.png"
    assert figure.stat().st_mtime_ns >= (study / "audit" / "audit.json").stat().st_mtime_ns


@pytest.mark.slow
def test_audit_cli_with_a_run_and_no_cross_validation(synthetic, tmp_path, capsys):
    run = _run(tmp_path / "runs", synthetic, "one", seed=0)
    out = tmp_path / "audit"
    code = main(["audit", "--run", str(run), "--folds", "0", "--out", str(out),
                 "--data-dir", str(synthetic), "-q"])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "across train/test" in text and "train not searched" in text and "one:" in text
    result = json.loads((out / "audit.json").read_text())
    assert result["labels"]["train"] is None and result["crossval"] is None
    assert "features" in result["near"]  # the run's penultimate features
    assert main(["report", str(out)]) == 0  # an audit folder's report can be rebuilt


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--threshold", "2"], "cosine similarity"),
        (["--run", "/nonexistent/run"], "not a finished run folder"),
        (["--folds", "1"], "folds must be 2..20"),
        (["--cv-model", "nope"], "nope"),
        (["--components", "0"], "--components"),
    ],
)
def test_audit_cli_errors_are_one_line(args, words, tmp_path, capsys):
    code = main(["audit", "--out", str(tmp_path / "a"), "-q", *args])
    err = capsys.readouterr().err
    assert code != 0
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_audit_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    code = main(["audit", "--out", str(tmp_path / "mine"), "--folds", "0", "-q"])
    assert code != 0 and "not a folder fashionlab made" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_a_corrupt_audit_file_is_a_one_line_error(tmp_path):
    (tmp_path / "audit.json").write_text("{not json")
    with pytest.raises(RunError, match="run 'fashionlab audit' again"):
        load_audit(tmp_path)
