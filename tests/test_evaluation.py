"""fashionlab.evaluation against scikit-learn, hand-computed values and known McNemar tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn import metrics as skm

from fashionlab import evaluation as ev
from fashionlab.errors import ConfigError, RunError


@pytest.fixture
def small():
    """8 items, 3 classes; 5 right, mistakes at items 1, 3 and 5."""
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 1], dtype=np.int64)
    pred = np.array([0, 1, 1, 2, 2, 0, 2, 1])
    logits = np.full((8, 3), -1.0, dtype=np.float32)
    logits[np.arange(8), pred] = 2.0
    logits[1, 0] = 1.5  # mistakes by confidence: item 3, then 5, then 1
    logits[5, 1] = 0.0
    return labels, logits, pred


def test_accuracy_and_loss_match_hand_values(small):
    labels, logits, pred = small
    assert ev.accuracy(labels, logits) == pytest.approx(5 / 8)
    assert ev.accuracy(labels, pred) == pytest.approx(5 / 8)
    # cross-entropy written out per item with math.log/exp, in float64
    rows = logits.astype(np.float64).tolist()
    expected = (
        sum(math.log(sum(math.exp(v) for v in rows[i])) - rows[i][labels[i]] for i in range(8)) / 8
    )
    assert ev.log_loss(labels, logits) == pytest.approx(expected, rel=1e-12)


def test_log_softmax_is_stable_for_huge_logits():
    z = np.array([[1000.0, 0.0, -1000.0]])
    out = ev.log_softmax(z)
    assert np.all(np.isfinite(out))
    assert out[0, 0] == pytest.approx(0.0)
    assert ev.log_loss(np.array([1]), z) == pytest.approx(1000.0)


def test_report_matches_sklearn(small):
    labels, logits, pred = small
    names = ["a", "b", "c"]
    rep = ev.classification_report(labels, logits, names)
    p, r, f, s = skm.precision_recall_fscore_support(labels, pred, zero_division=0)
    for i, row in enumerate(rep["per_class"]):
        assert row["name"] == names[i]
        assert row["precision"] == pytest.approx(p[i])
        assert row["recall"] == pytest.approx(r[i])
        assert row["f1"] == pytest.approx(f[i])
        assert row["support"] == s[i]
    assert rep["macro"]["f1"] == pytest.approx(skm.f1_score(labels, pred, average="macro"))
    assert rep["weighted"]["f1"] == pytest.approx(skm.f1_score(labels, pred, average="weighted"))
    json.dumps(rep)  # plain Python numbers only


def test_absent_class_gets_zero_row_not_warning():
    labels = np.array([0, 0, 1])
    logits = np.eye(3)[[0, 1, 1]]  # class 2 never appears nor is predicted
    rep = ev.classification_report(labels, logits)
    assert rep["per_class"][2] == {
        "index": 2,
        "name": "2",
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
    }
    acc = ev.per_class_accuracy(labels, logits)
    assert acc[0] == pytest.approx(0.5) and acc[1] == 1.0 and np.isnan(acc[2])
    norm = ev.confusion_matrix(labels, logits, normalize=True)
    assert np.array_equal(norm[2], np.zeros(3))


def test_confusion_and_per_class(small):
    labels, logits, pred = small
    counts = ev.confusion_matrix(labels, logits)
    assert counts.dtype == np.int64
    assert np.array_equal(counts, skm.confusion_matrix(labels, pred))
    assert np.array_equal(counts, [[1, 1, 0], [0, 2, 1], [1, 0, 2]])
    norm = ev.confusion_matrix(labels, logits, normalize=True)
    assert np.allclose(norm.sum(axis=1), 1.0)
    assert np.allclose(ev.per_class_accuracy(labels, logits), [1 / 2, 2 / 3, 2 / 3])


def test_most_confident_mistakes(small):
    labels, logits, _ = small
    m = ev.most_confident_mistakes(labels, logits, k=10)
    # wrong items: 3 (1->2, p=.91), 5 (2->0, p=.84), 1 (0->1, p=.60)
    assert m.indices.tolist() == [3, 5, 1]
    assert m.true.tolist() == [1, 2, 0]
    assert m.predicted.tolist() == [2, 0, 1]
    probs = ev.softmax(logits)
    assert m.confidence == pytest.approx(probs[[3, 5, 1], [2, 0, 1]])
    assert len(ev.most_confident_mistakes(labels, logits, k=1).indices) == 1
    with pytest.raises(ConfigError):
        ev.most_confident_mistakes(labels, logits, k=-1)


def _paired(b: int, c: int, both_right: int = 5, both_wrong: int = 3):
    """Labels and two prediction vectors giving exactly b (A right, B wrong) and c."""
    n = b + c + both_right + both_wrong
    labels = np.zeros(n, dtype=np.int64)
    right_a = np.array([1] * b + [0] * c + [1] * both_right + [0] * both_wrong, dtype=bool)
    right_b = np.array([0] * b + [1] * c + [1] * both_right + [0] * both_wrong, dtype=bool)
    return labels, np.where(right_a, 0, 1), np.where(right_b, 0, 2)


def test_mcnemar_exact_known_table():
    labels, a, b = _paired(10, 2)
    res = ev.mcnemar(labels, a, b)
    assert (res.b, res.c, res.method) == (10, 2, "exact-binomial")
    # 2 * P(X <= 2), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66) / 4096
    assert res.p_value == pytest.approx(2 * 79 / 4096, rel=1e-9)
    assert res.p_value == pytest.approx(0.0386, abs=1e-4)
    assert res.statistic == 2.0
    # symmetric in A and B
    swapped = ev.mcnemar(labels, b, a)
    assert (swapped.b, swapped.c) == (2, 10) and swapped.p_value == pytest.approx(res.p_value)


def test_mcnemar_chi2_large_table_and_logits():
    b_, c_ = 60, 35
    labels, a, b = _paired(b_, c_)
    res = ev.mcnemar(labels, np.eye(3)[a], b)  # logits and labels are both accepted
    assert res.method == "chi2-continuity"
    stat = (abs(b_ - c_) - 1) ** 2 / (b_ + c_)
    assert res.statistic == pytest.approx(stat)
    assert res.p_value == pytest.approx(math.erfc(math.sqrt(stat / 2)), rel=1e-9)
    assert 0.01 < res.p_value < 0.02  # stat = 6.063


def test_mcnemar_edge_cases():
    labels, a, _ = _paired(0, 0)
    same = ev.mcnemar(labels, a, a)
    assert (same.b, same.c, same.p_value) == (0, 0, 1.0)
    labels, a, b = _paired(15, 15)
    assert ev.mcnemar(labels, a, b).p_value == pytest.approx(1.0)
    assert ev.mcnemar(labels, a, b, exact=True).method == "exact-binomial"
    with pytest.raises(RunError):
        ev.mcnemar(labels, a[:-1], b)


def test_summarize_keys_and_values(small):
    labels, logits, pred = small
    out = ev.summarize_predictions(labels, logits, ["a", "b", "c"])
    for key in (
        "test_accuracy",
        "test_loss",
        "macro_f1",
        "weighted_f1",
        "macro_precision",
        "macro_recall",
        "per_class",
    ):
        assert key in out
    assert out["test_accuracy"] == pytest.approx(5 / 8)
    assert out["macro_precision"] == pytest.approx(
        skm.precision_score(labels, pred, average="macro")
    )
    assert out["macro_recall"] == pytest.approx(skm.recall_score(labels, pred, average="macro"))
    assert out["per_class"][1]["accuracy"] == pytest.approx(2 / 3)
    assert out["num_test"] == 8
    json.dumps(out)


def test_mean_std():
    assert ev.mean_std([0.9]) == (0.9, 0.0)
    mean, std = ev.mean_std([0.90, 0.92, 0.94])
    assert mean == pytest.approx(0.92) and std == pytest.approx(0.02)
    with pytest.raises(ConfigError):
        ev.mean_std([])


@pytest.mark.parametrize(
    ("labels", "logits", "match"),
    [
        (np.array([0, 1]), np.zeros((3, 10)), "3 rows but there are 2 labels"),
        (np.array([0, 1]), np.zeros((2,)), r"shape \(N, C\)"),
        (np.array([0, 1]), np.zeros((2, 10, 1)), r"shape \(N, C\)"),
        (np.array([], dtype=np.int64), np.zeros((0, 10)), "empty"),
        (np.array([0, 12]), np.zeros((2, 10)), "out of range"),
        (np.array([0.0, 1.0]), np.zeros((2, 10)), "integers"),
        (np.array([0, 1]), np.full((2, 10), np.nan), "NaN"),
    ],
)
def test_bad_arrays_raise_run_error(labels, logits, match):
    with pytest.raises(RunError, match=match) as info:
        ev.summarize_predictions(labels, logits)
    assert "\n" not in str(info.value)


def test_wrong_number_of_class_names(small):
    labels, logits, _ = small
    with pytest.raises(ConfigError, match="2 class names for 3 classes"):
        ev.classification_report(labels, logits, ["a", "b"])
