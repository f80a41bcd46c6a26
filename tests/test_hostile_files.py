"""Round two of hostile input: a user's own files beside and inside fashionlab's folders, links
and special files where run files should be, readers that must stay bounded, Markdown that must
stay text, configs refused before a folder exists, planning that must stay linear, trackers
that must not hang.

Each case asserts the one-line message, the exit code, a bound on time, and that nothing outside
the command's own folder changed (a user's file planted beside and inside survives byte for
byte)."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_run, one_line_error, tree_snapshot

from fashionlab._io import CannotWrite, atomic_write_text
from fashionlab._read import UnreadableFile, read_bytes, read_csv_rows, read_json
from fashionlab.cli import main
from fashionlab.errors import ConfigError
from fashionlab.models import build_config
from fashionlab.report.markdown import md_code_span, md_fence, md_text
from fashionlab.studies.spec import load_study, plan_study
from fashionlab.training import train

THESIS = b"\\documentclass{article} years of work \x00\xff"


def tiny(model: str = "s4-ann", **overrides):
    return build_config(model, {"epochs": 1, "train_subset": 128, "eval_subset": 100, **overrides})


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    return train(tiny(name="good"), tmp_path_factory.mktemp("hostile-files"), quiet=True)


def one_run_study(folder: Path, name: str = "s", *options: str) -> Path:
    """A finished one-run study (one epoch on 128 images) in `folder/name`."""
    study = folder / f"{name}.yaml"
    study.write_text(f"name: {name}\nseeds: [1]\nruns: [{{model: s4-ann}}]\n")
    args = ["--set", "epochs=1", "--set", "train_subset=128", "--set", "eval_subset=100"]
    assert main(["study", str(study), "--out", str(folder / name), "-q", *args, *options]) == 0
    return folder / name


@pytest.fixture(scope="module")
def small_study(tmp_path_factory) -> Path:
    """A finished one-run study with its report (what the scoreboard gathers)."""
    return one_run_study(tmp_path_factory.mktemp("hostile-study"), "small")


def bounded(argv: list[str], seconds: float = 60.0) -> int:
    """`main(argv)` that must return within `seconds` (a hang on a FIFO fails the test instead
    of blocking the suite: the blocked thread is a daemon)."""
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(main(argv)), daemon=True)
    started = time.perf_counter()
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{argv[0]} still running after {seconds} s"
    assert time.perf_counter() - started < seconds
    return result[0]


def plant(folder: Path, name: str = "thesis.tex") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(THESIS)
    return path


# -- a user's files ------------------------------------------------------------------------------


def test_a_folder_that_only_looks_like_a_run_is_not_emptied(tmp_path, capsys):
    """The reported case: `config.yaml` once counted as proof that fashionlab made a folder."""
    folder = tmp_path / "runs" / "p"
    (folder / "config.yaml").parent.mkdir(parents=True)
    (folder / "config.yaml").write_text("")
    thesis = plant(folder)
    beside = plant(tmp_path / "runs", "notes.txt")
    argv = ["train", "--model", "s2-ann", "--name", "p", "--runs-dir", str(tmp_path / "runs")]
    for extra in ([], ["--overwrite"]):
        assert bounded([*argv, "--epochs", "1", *extra]) == 2
        assert "not a folder fashionlab made" in one_line_error(capsys)
    assert thesis.read_bytes() == THESIS and beside.read_bytes() == THESIS
    assert sorted(p.name for p in folder.iterdir()) == ["config.yaml", "thesis.tex"]


def test_a_users_study_yaml_is_not_replaced(tmp_path, capsys):
    out = tmp_path / "mine"
    plant(out, "study.yaml")
    study = tmp_path / "s.yaml"
    study.write_text("name: s\nruns: [{model: s4-ann}]\n")
    for extra in ([], ["--overwrite"]):
        assert bounded(["study", str(study), "--out", str(out), "--set", "epochs=1", *extra]) == 2
        assert "not a folder fashionlab made" in one_line_error(capsys)
    assert (out / "study.yaml").read_bytes() == THESIS
    assert [p.name for p in out.iterdir()] == ["study.yaml"]


@pytest.mark.slow
def test_a_users_readme_is_not_overwritten_by_the_scoreboard(small_study, tmp_path, capsys):
    out = tmp_path / "board"
    readme = plant(out, "README.md")
    before = tree_snapshot(tmp_path)
    assert bounded(["report", "--scoreboard", str(small_study), "--out", str(out)]) == 2
    assert "not a folder fashionlab made" in one_line_error(capsys)
    assert readme.read_bytes() == THESIS
    assert tree_snapshot(tmp_path) == before
    fresh = tmp_path / "fresh"
    assert bounded(["report", "--scoreboard", str(small_study), "--out", str(fresh)]) == 0
    capsys.readouterr()
    assert (fresh / "README.md").is_file() and (fresh / ".fashionlab-scoreboard").is_file()
    # its own folder again: rewritten; a linked study subfolder in it: refused
    assert bounded(["report", "--scoreboard", str(small_study), "--out", str(fresh)]) == 0
    capsys.readouterr()
    shutil.rmtree(fresh / "small")
    elsewhere = tmp_path / "elsewhere"
    plant(elsewhere)
    (fresh / "small").symlink_to(elsewhere, target_is_directory=True)
    assert bounded(["report", "--scoreboard", str(small_study), "--out", str(fresh)]) == 2
    assert "is a link or not a folder" in one_line_error(capsys)
    assert [p.name for p in elsewhere.iterdir()] == ["thesis.tex"]


@pytest.mark.parametrize(
    "command", ["report", "robustness", pytest.param("export", marks=pytest.mark.extra("export"))]
)
def test_commands_that_add_files_write_only_into_folders_fashionlab_made(
    good_run, tmp_path, capsys, command
):
    """A copy of a run without its marker is the user's folder now: nothing is added to it."""
    run = copy_run(good_run, tmp_path)
    (run / ".fashionlab-run").unlink()
    thesis = plant(run)
    before = tree_snapshot(tmp_path)
    assert bounded([command, str(run)]) == 2
    assert "not a run folder fashionlab made" in one_line_error(capsys)
    assert tree_snapshot(tmp_path) == before and thesis.read_bytes() == THESIS


@pytest.mark.extra("export")
def test_export_never_replaces_a_file_it_did_not_write(good_run, tmp_path, capsys):
    target = plant(tmp_path, "model.onnx")
    assert bounded(["export", str(good_run), "--output", str(target), "--no-check"]) == 2
    assert "not an ONNX file fashionlab exported" in one_line_error(capsys)
    assert target.read_bytes() == THESIS


# -- links ---------------------------------------------------------------------------------------


def test_a_linked_figures_folder_is_not_written_through(good_run, tmp_path, capsys):
    """The reported case: `report` followed `figures -> elsewhere` and overwrote what it found."""
    run = copy_run(good_run, tmp_path)
    shutil.rmtree(run / "figures", ignore_errors=True)
    elsewhere = tmp_path / "elsewhere"
    plant(elsewhere, "loss_curves.png")
    (run / "figures").symlink_to(elsewhere, target_is_directory=True)
    before = tree_snapshot(elsewhere)
    assert bounded(["report", str(run)]) == 2
    assert "is a link or not a folder" in one_line_error(capsys)
    assert tree_snapshot(elsewhere) == before
    assert (elsewhere / "loss_curves.png").read_bytes() == THESIS


@pytest.mark.slow
def test_a_linked_study_figures_folder_and_a_linked_marker(tmp_path, capsys):
    out = one_run_study(tmp_path, "study", "--no-report")
    elsewhere = tmp_path / "elsewhere"
    thesis = plant(elsewhere)
    shutil.rmtree(out / "figures", ignore_errors=True)
    (out / "figures").symlink_to(elsewhere, target_is_directory=True)
    assert bounded(["report", str(out)]) == 2
    assert "is a link or not a folder" in one_line_error(capsys)
    assert [p.name for p in elsewhere.iterdir()] == ["thesis.tex"]
    assert thesis.read_bytes() == THESIS
    # a marker that is a link proves nothing
    other = tmp_path / "other"
    plant(other)
    os.symlink(out / ".fashionlab-study", other / ".fashionlab-study")
    args = ["--set", "epochs=1", "--set", "train_subset=128", "--set", "eval_subset=100"]
    study = tmp_path / "study.yaml"
    assert bounded(["study", str(study), "--out", str(other), *args, "--overwrite"]) == 2
    assert "not a folder fashionlab made" in one_line_error(capsys)
    assert (other / "thesis.tex").read_bytes() == THESIS


# -- special files -------------------------------------------------------------------------------


REGULAR = "not a regular file"


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, argv, words",
    [
        ("model.safetensors", ["evaluate", "{run}"], REGULAR),
        ("history.csv", ["report", "{run}"], REGULAR),
        ("env.json", ["report", "{run}"], REGULAR),
        ("metrics.json", ["runs", "{parent}"], "metrics.json unreadable"),
        ("metrics.json", ["evaluate", "{run}"], REGULAR),
        ("predictions.npz", ["compare", "{run}", "{good}"], REGULAR),
        ("checkpoint.pt", ["train", "--resume", "{run}"], REGULAR),
        # no regular config.yaml: the folder is not recognised as a run at all
        ("config.yaml", ["evaluate", "{run}"], "not a study folder"),
        ("config.yaml", ["report", "{run}"], "not a study folder"),
        ("model.json", ["predict", "{run}", "{image}"], REGULAR),
    ],
)
def test_a_fifo_in_a_run_folder_does_not_hang(good_run, tmp_path, capsys, name, argv, words):
    run = copy_run(good_run, tmp_path)
    if name == "checkpoint.pt":
        (run / "complete").unlink()
    (run / name).unlink(missing_ok=True)
    os.mkfifo(run / name)
    image = tmp_path / "item.npy"
    np.save(image, np.zeros((28, 28), np.uint8))
    values = {"run": run, "parent": tmp_path, "good": good_run, "image": image}
    code = bounded([a.format(**values) for a in argv], seconds=60)
    out = capsys.readouterr()
    if argv[0] == "runs":  # the table goes on, the run is listed with its problem
        assert code == 0 and words in out.out
        return
    assert code == 2, out.err
    assert words in out.err and out.err.strip().count("\n") == 0, out.err


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_history_linked_to_a_device_is_refused_at_once(good_run, tmp_path, capsys, device):
    run = copy_run(good_run, tmp_path)
    (run / "history.csv").unlink()
    (run / "history.csv").symlink_to(device)
    assert bounded(["report", str(run)], seconds=20) == 2
    assert "history.csv: not a regular file" in one_line_error(capsys)


# -- bounded readers -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "content, words",
    [
        ("epoch,val_loss\n1," + "9" * 200_000 + "\n", "not valid CSV"),
        ("epoch,val_loss\n1,0.5,7,8\n", "does not match the header"),
        ("epoch,val_loss\n1,abc\n", "is not a number"),
        ("epoch,val_loss\n" + "1,0.5\n" * 20, None),
    ],
)
def test_a_damaged_history_is_one_line(good_run, tmp_path, capsys, content, words):
    run = copy_run(good_run, tmp_path)
    (run / "history.csv").write_text(content)
    code = bounded(["report", str(run)])
    if words is None:
        assert code == 0  # well-formed, if odd: reported
        return
    assert code == 2
    assert words in one_line_error(capsys)


def test_a_history_over_its_size_cap_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "history.csv"
    with path.open("wb") as handle:
        handle.truncate(17 << 20)  # sparse: 17 MiB of zeros on no disk
    with pytest.raises(UnreadableFile, match="larger than 16 MiB"):
        read_csv_rows(path)


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, argv",
    [
        ("metrics.json", ["evaluate", "{run}"]),
        ("metrics.json", ["report", "{run}"]),
        ("model.json", ["evaluate", "{run}"]),
        ("env.json", ["report", "{run}"]),
    ],
)
def test_json_nested_100000_deep_is_one_line(good_run, tmp_path, capsys, name, argv):
    run = copy_run(good_run, tmp_path)
    (run / name).write_text(DEEP)
    assert bounded([a.format(run=run) for a in argv], seconds=30) == 2
    assert "nested too deeply" in one_line_error(capsys)


@pytest.mark.extra("serve")
def test_deep_json_in_a_study_and_in_serve(good_run, tmp_path, capsys):
    from fashionlab.errors import RunError
    from fashionlab.serve import create_app

    study = tmp_path / "study"
    study.mkdir()
    (study / ".fashionlab-study").touch()
    (study / "study.json").write_text(DEEP)
    assert bounded(["report", str(study)], seconds=30) == 2
    assert "nested too deeply" in one_line_error(capsys)
    run = copy_run(good_run, tmp_path)
    (run / "model.json").write_text(DEEP)
    with pytest.raises(RunError, match="nested too deeply"):
        create_app(run)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, edit, words",
    [
        ("metrics.json", lambda m: {**m, "train_seconds": "x"}, "'train_seconds' must be a num"),
        ("metrics.json", lambda m: {**m, "test_accuracy": True}, "'test_accuracy' must be a num"),
        ("metrics.json", lambda m: {**m, "per_class": "x"}, "'per_class' must be an array"),
        ("env.json", lambda e: [e], "expected a JSON object, found array"),
    ],
)
def test_values_of_the_wrong_type_are_one_line(good_run, tmp_path, capsys, name, edit, words):
    run = copy_run(good_run, tmp_path)
    path = run / name
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    assert bounded(["report", str(run)]) == 2
    assert words in one_line_error(capsys)


@pytest.mark.parametrize(
    "edit, words",
    [
        (lambda s: {**s, "rows": [{**s["rows"][0], "runs": ["../../elsewhere"]}]}, "'runs'"),
        (lambda s: {**s, "rows": [{**s["rows"][0], "train_seconds": "x"}]}, "'train_seconds'"),
        (lambda s: {**s, "rows": "x"}, "no 'rows'"),
        (lambda s: {**s, "invocation": {"study_file": 3}}, "'study_file' must be a string"),
    ],
)
def test_a_damaged_study_json_is_one_line_and_writes_nothing_outside(
    tmp_path, capsys, edit, words
):
    out = one_run_study(tmp_path, "study", "--no-report")
    summary = out / "study.json"
    summary.write_text(json.dumps(edit(json.loads(summary.read_text()))))
    elsewhere = tmp_path / "elsewhere"
    plant(elsewhere)
    before = tree_snapshot(tmp_path)
    assert bounded(["report", str(out)]) == 2
    assert words in one_line_error(capsys)
    assert bounded(["report", "--scoreboard", str(out), "--out", str(tmp_path / "b")]) == 2
    assert words in one_line_error(capsys)
    assert tree_snapshot(tmp_path) == before


def test_unreadable_files_and_unwritable_folders_are_one_line(tmp_path, monkeypatch):
    """Permissions cannot be taken from root (the test machines' user): the system calls are
    made to fail as they do for anyone else."""
    path = tmp_path / "history.csv"
    path.write_text("epoch\n1\n")
    real_open = os.open

    def denied(name, flags, *args):
        if str(name) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(name))
        return real_open(name, flags, *args)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(UnreadableFile, match="history.csv: cannot read it \\(Permission denied"):
        read_bytes(path, 1024)
    monkeypatch.undo()

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    with pytest.raises(CannotWrite, match="report.md: cannot write it \\(Read-only file system"):
        atomic_write_text(tmp_path / "report.md", "x")
    assert not (tmp_path / "report.md").exists()


def test_where_values_are_read_with_the_bounded_yaml_loader(tmp_path, capsys):
    levels = ["&a [" + ", ".join(["x"] * 9) + "]"]
    levels += [f"&{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]" for i in range(8)]
    bomb = "[" + ", ".join(levels) + "]"  # 9**9 values once expanded, on one line
    started = time.perf_counter()
    assert main(["runs", str(tmp_path), "--where", f"model={bomb}"]) == 2
    assert time.perf_counter() - started < 2.0
    assert "--where model=...: refused" in one_line_error(capsys)


def test_npz_members_are_sized_before_they_are_unpacked(tmp_path):
    import zipfile

    from fashionlab._read import load_npz

    path = tmp_path / "predictions.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.uint8))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("logits.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, {**header, "shape": (64 << 20,)})
            for _ in range(64):  # 64 MiB of zeros, deflated to about 64 KiB
                member.write(bytes(1 << 20))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(UnreadableFile, match="unpack to more than 16 MiB"):
        load_npz(path, unpacked_limit=16 << 20)


def test_a_pickled_checkpoint_is_refused_without_warnings(good_run, tmp_path, capfd):
    import pickle

    run = copy_run(good_run, tmp_path)
    (run / "complete").unlink()
    (run / "checkpoint.pt").write_bytes(pickle.dumps({"a": 1}))
    assert main(["train", "--resume", str(run)]) == 2
    err = capfd.readouterr().err.strip()
    assert err.count("\n") == 0 and "Warning" not in err, err
    assert "checkpoint.pt: not a file of tensors" in err


def test_read_json_refuses_other_kinds_and_names_the_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('"a string"')
    with pytest.raises(UnreadableFile, match="x.json: expected a JSON object, found string"):
        read_json(path)


# -- Markdown ------------------------------------------------------------------------------------


def test_markdown_helpers_keep_text_as_text():
    assert md_text("<script>alert(1)</script>") == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert md_text("a | b\n# not a heading") == "a \\| b # not a heading"
    assert md_text("# h") == "\\# h" and md_text("1. item") == "1\\. item"
    assert md_text("[click](javascript:x)") == "\\[click\\](javascript:x)"
    assert md_text("test_accuracy 0.91") == "test_accuracy 0.91"  # intraword '_' is no emphasis
    assert md_fence("a ```` b") == "`````" and md_fence("plain") == "```"
    assert md_code_span("a `b` c") == "``a `b` c``"


@pytest.mark.slow
def test_a_hostile_study_title_label_claim_and_config_stay_text(tmp_path, capsys):
    study = tmp_path / "s.yaml"
    study.write_text(
        "name: s\n"
        "title: '<script>alert(1)</script>'\n"
        "description: \"x\\n# Injected heading\\n[link](javascript:alert(1))\"\n"
        "seeds: [1]\n"
        "runs:\n"
        "  - {model: s4-ann, label: '<img src=x onerror=alert(1)>'}\n"
        "  - {model: s4-ann, label: 'b|c', overrides: {lr: 0.002}}\n"
        "compare: [{a: '<img src=x onerror=alert(1)>', b: 'b|c', claim: '<b>bold</b>'}]\n"
        "overrides: {epochs: 1, train_subset: 128, eval_subset: 100}\n"
    )
    out = tmp_path / "study"
    assert bounded(["study", str(study), "--out", str(out)], seconds=300) == 0
    capsys.readouterr()
    report = (out / "report.md").read_text()
    assert "<script" not in report and "<img" not in report and "<b>" not in report
    assert "\n# Injected" not in report
    assert not re.search(r"(?<!\\)\]\(javascript", report)  # a link only when unescaped
    assert "&lt;script&gt;" in report
    board = tmp_path / "board"
    assert bounded(["report", "--scoreboard", str(out), "--out", str(board)]) == 0
    readme = (board / "README.md").read_text()
    assert "<script" not in readme and "<img" not in readme


@pytest.mark.slow
def test_a_config_value_cannot_close_the_code_fence(good_run, tmp_path):
    from fashionlab.report import write_report

    run = copy_run(good_run, tmp_path)
    config = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(config + "# ```\n# <script>alert(1)</script>\n")
    write_report(run)
    report = (run / "report.md").read_text()
    fence = md_fence(config + "# ```")
    assert fence == "````" and report.count(fence) == 2
    inside = report.split(fence)[1]
    assert "<script>alert(1)</script>" in inside  # shown as it is, inside the fence only


# -- refused before a folder exists --------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, words",
    [
        ("seed=18446744073709551616", "less than or equal to 4294967295"),
        ("seed=-1", "greater than or equal to 0"),
        ("device=gpu7", "unknown device 'gpu7'"),
        ("corruption_augment=[nope]", "unknown corruption 'nope'"),
        ("model_args.activation=nope", "bad model_args"),
    ],
)
def test_a_refused_config_leaves_nothing_behind(tmp_path, capsys, setting, words):
    runs = tmp_path / "runs"
    argv = ["train", "--model", "s2-ann", "--runs-dir", str(runs), "--epochs", "1"]
    assert bounded([*argv, "--set", setting]) == 2
    assert words in one_line_error(capsys)
    assert not runs.exists()
    # and the same command without the bad value is not told about a leftover folder
    good = ["--set", "train_subset=128", "--set", "eval_subset=100", "-q"]
    assert bounded([*argv, *good]) == 0


def test_a_study_refuses_an_unrunnable_config_before_its_folder_exists(tmp_path, capsys):
    study = tmp_path / "s.yaml"
    study.write_text(
        "name: s\nruns:\n  - {model: s4-ann}\n"
        "  - {model: s2-ann, overrides: {device: gpu7, model_args: {width: 3}}}\n"
    )
    out = tmp_path / "out"
    assert bounded(["study", str(study), "--out", str(out)]) == 2
    err = one_line_error(capsys)
    assert "s2-ann: unknown device 'gpu7'" in err
    assert not out.exists()


# -- planning ------------------------------------------------------------------------------------


def test_planning_is_linear_and_max_runs_has_a_ceiling(tmp_path, capsys):
    grid = [round(0.001 * (i + 1), 4) for i in range(50)]
    spec = {
        "name": "big",
        "max_runs": 10_000,
        "seeds": list(range(100)),
        "runs": [{"model": m, "grid": {"lr": grid}} for m in ("s4-ann", "s2-ann")],
    }
    path = tmp_path / "big.yaml"
    path.write_text(json.dumps(spec))
    started = time.perf_counter()
    planned = plan_study(load_study(path), tmp_path / "out")
    assert len(planned) == 10_000
    assert time.perf_counter() - started < 30  # quadratic twin search took minutes here
    path.write_text(json.dumps({**spec, "max_runs": 10_001}))
    assert main(["study", str(path), "--dry-run"]) == 2
    assert "max_runs: Input should be less than or equal to 10000" in one_line_error(capsys)


@pytest.mark.parametrize("labels", [("x y", "x-y"), ("a/b", "a-b"), ("..c", "c")])
def test_two_labels_for_one_folder_are_refused_at_load(tmp_path, labels):
    a, b = labels
    path = tmp_path / "s.yaml"
    path.write_text(
        json.dumps({"name": "s", "runs": [{"model": "s4-ann", "label": x} for x in labels]})
    )
    with pytest.raises(ConfigError, match="would share the run folders") as caught:
        plan_study(load_study(path), tmp_path / "out")
    assert repr(a) in str(caught.value) and repr(b) in str(caught.value)
    assert not (tmp_path / "out").exists()


# -- trackers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("uri", ["http://127.0.0.1:1", "sqlite:////proc/fashionlab-x.db"])
def test_an_unreachable_tracker_costs_the_run_seconds_and_one_line(
    tmp_path, capsys, monkeypatch, uri
):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        monkeypatch.delenv(name, raising=False)
    argv = ["train", "--model", "s4-ann", "--runs-dir", str(tmp_path), "-q", "--log", "mlflow"]
    argv += ["--epochs", "1", "--set", "train_subset=128", "--set", "eval_subset=100"]
    assert bounded(argv, seconds=60) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mlflow logging stopped" in err[0], err
    assert (tmp_path / "s4-ann-seed42" / "complete").exists()
    assert bounded(["track", "import", str(tmp_path)], seconds=60) == 2
    assert "MLflow store" in one_line_error(capsys)


def test_a_study_with_an_unreachable_tracker_goes_on(tmp_path, capsys, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////proc/fashionlab-x.db")
    study = tmp_path / "s.yaml"
    study.write_text("name: s\nseeds: [1]\nruns: [{model: s4-ann}]\n")
    argv = ["study", str(study), "--out", str(tmp_path / "out"), "--log", "mlflow", "-q"]
    argv += ["--set", "epochs=1", "--set", "train_subset=128", "--set", "eval_subset=100"]
    assert bounded([*argv, "--no-report"], seconds=120) == 0
    err = capsys.readouterr().err
    assert err.count("mlflow logging off") == 1 and "Traceback" not in err


def test_serve_help_names_no_page_it_lacks(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    assert "/docs" not in capsys.readouterr().out


def test_an_npz_member_declaring_a_huge_shape_is_refused_before_allocation(tmp_path):
    import zipfile

    from fashionlab._read import load_npz

    path = tmp_path / "predictions.npz"
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1, np.float32))
    with zipfile.ZipFile(path, "w") as archive, archive.open("logits.npy", "w") as member:
        np.lib.format.write_array_header_1_0(member, {**header, "shape": (10**6, 10**6)})
    with pytest.raises(UnreadableFile, match="unpack to more than 512 MiB"):
        load_npz(path)


def test_an_npz_member_with_a_malformed_header_is_one_line(tmp_path):
    import zipfile

    from fashionlab._read import load_npz

    path = tmp_path / "predictions.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("logits.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': <<<}   \n")
    with pytest.raises(UnreadableFile, match="predictions.npz: corrupt \\(not an .npy header"):
        load_npz(path)
