"""Training to a time budget: the arithmetic, the warm-up's plan, a budget too short for one
epoch, a schedule laid out for the chosen epochs, and a resume that keeps them."""

from __future__ import annotations

import csv
import json
import time

import pytest

from fashionlab.cli import main
from fashionlab.config import TrainConfig, parse_duration
from fashionlab.errors import ConfigError
from fashionlab.models import build_config
from fashionlab.training import resume, train
from fashionlab.training.budget import MARGIN, BudgetPlan, epochs_for_budget, plan_budget

SMALL = {"train_subset": 1024, "eval_subset": 200}


@pytest.mark.parametrize(
    "text, seconds", [("30s", 30), ("2m", 120), ("1.5h", 5400), ("90", 90), (" 2 min ", 120)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert TrainConfig(model="s2-cnn", budget=text).budget == seconds


@pytest.mark.parametrize("bad", ["2x", "m", "-1m", "1m30"])
def test_a_bad_duration_is_one_line(bad, capsys, tmp_path):
    assert main(["train", "--model", "s2-cnn", f"--budget={bad}", "--runs-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "budget" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_the_arithmetic_with_a_simulated_step_cost():
    # 120 s budget, 10 s spent, 20 s an epoch, 5 s to test: (120 * 0.96 - 10 - 5) // 20 = 5
    assert epochs_for_budget(120, 10, 20, 5) == int((120 * (1 - MARGIN) - 15) // 20) == 5
    assert epochs_for_budget(120, 10, 200, 5) == 0  # not even one
    assert epochs_for_budget(120, 200, 20, 5) == 0  # the warm-up spent it all
    plan = BudgetPlan(
        budget_seconds=120, seconds_before_training=10, step_seconds=0.05, steps_per_epoch=380,
        epoch_overhead_seconds=1.0, eval_item_seconds=1e-4, final_eval_items=16000, epochs=5,
    )  # fmt: skip
    assert plan.epoch_seconds == pytest.approx(380 * 0.05 + 1.0)
    assert plan.predicted_seconds == pytest.approx(10 + 5 * plan.epoch_seconds + 1.6 + 1.0)
    assert plan.predicted_seconds <= 120


def test_the_warm_up_plans_within_the_budget_on_real_batches():
    config = build_config("s2-ann", {**SMALL, "budget": 60})
    plan = plan_budget(config, time.monotonic())
    assert plan.steps_per_epoch == 1024 * 9 // 10 // 128 + 1  # 921 training items, batch 128
    assert plan.step_seconds > 0 and plan.eval_item_seconds > 0 and plan.epoch_overhead_seconds > 0
    assert plan.final_eval_items == 200 + 200  # eval_subset: 200 test and 200 validation items
    assert 1 <= plan.epochs and plan.predicted_seconds <= 60


def test_a_budget_too_short_for_one_epoch_is_one_line_and_leaves_nothing(tmp_path, capsys):
    argv = ["train", "--model", "s2-cnn", "--budget", "1s", "--runs-dir", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "too short for one epoch" in err and "one epoch alone" in err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow  # a budgeted run takes its budget
def test_a_budgeted_run_records_its_plan_and_anneals_its_schedule(tmp_path):
    overrides = {**SMALL, "budget": 8, "scheduler": "onecycle", "lr": 1e-3}
    run = train(build_config("s2-ann", overrides), tmp_path, quiet=True)
    config = TrainConfig(**__import__("yaml").safe_load((run / "config.yaml").read_text()))
    metrics = json.loads((run / "metrics.json").read_text())
    plan = metrics["budget"]
    assert config.budget == 8 and config.epochs == plan["epochs"] == metrics["epochs_run"]
    assert plan["predicted_seconds"] <= 8 and plan["seconds_used"] > 0
    # one-cycle laid out for the chosen epochs: the last epoch ends at the schedule's floor,
    # far below its peak, instead of being cut at the peak by a time limit
    with (run / "history.csv").open() as handle:
        rates = [float(row["lr"]) for row in csv.DictReader(handle)]
    assert len(rates) == config.epochs and rates[-1] == min(rates) and rates[-1] < 1e-4


@pytest.mark.slow
def test_a_budgeted_run_resumes_with_its_chosen_epochs(tmp_path):
    config = build_config("s2-ann", {**SMALL, "budget": 8})
    run = train(config, tmp_path, quiet=True, stop_after=1)
    stored = (run / "config.yaml").read_text()
    chosen = TrainConfig(**__import__("yaml").safe_load(stored)).epochs
    resume(run, quiet=True)
    assert (run / "config.yaml").read_text() == stored  # not measured again
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == chosen


@pytest.mark.slow
def test_budget_from_the_python_api(tmp_path):
    import fashionlab

    run = fashionlab.train("s2-ann", runs_dir=tmp_path, quiet=True, budget="6s", **SMALL)
    assert run.metrics["budget"]["budget_seconds"] == 6
    with pytest.raises(ConfigError, match="one-process PyTorch runs"):
        train(build_config("numpy-mlp", {**SMALL, "budget": 30}), tmp_path / "np", quiet=True)
