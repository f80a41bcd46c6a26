"""Files a careless or hostile person could hand a user: nothing outside the intended folder is
written or deleted, nothing hangs, nothing allocates without bound, and each case is a
one-line error with a non-zero exit."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import copy_run, one_line_error, tree_snapshot

from fashionlab.cli import main
from fashionlab.data import encode_idx
from fashionlab.data.idx import read_idx_bytes
from fashionlab.errors import DataError, RunError
from fashionlab.models import build_config
from fashionlab.runs import claim_folder
from fashionlab.training import train


# Nine levels of nine aliases each: 9**9 = 387 million strings once expanded, in 320 bytes.
def _bomb() -> str:
    lines = []
    for level in range(9):
        name = chr(ord("a") + level)
        item = f"*{chr(ord('a') + level - 1)}" if level else '"x"'
        lines.append(f"{name}: &{name} [{', '.join([item] * 9)}]\n")
    return "".join(lines)


BOMB = _bomb()


def tiny(model: str = "s4-ann", **overrides):
    base = {"epochs": 1, "train_subset": 128, "eval_subset": 100, **overrides}
    return build_config(model, base)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    return train(tiny(name="good"), tmp_path_factory.mktemp("hostile-runs"), quiet=True)


# -- names that become paths --------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", ".", "/etc", "../x", "a/b", ".hidden", "-x", "x" * 200])
def test_a_study_name_must_be_one_safe_folder_name(tmp_path, monkeypatch, capsys, name):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    study = tmp_path / "s.yaml"
    study.write_text(json.dumps({"name": name, "runs": [{"model": "s4-ann"}]}))
    before = tree_snapshot(tmp_path)
    assert main(["study", str(study), "--overwrite", "--set", "epochs=1"]) == 2
    assert "not a safe folder name" in one_line_error(capsys)
    assert tree_snapshot(tmp_path) == before


@pytest.mark.parametrize("name", ["../x", "/tmp/abs", "..", "a/b"])
def test_train_name_must_be_one_safe_folder_name(tmp_path, capsys, name):
    runs = tmp_path / "runs"
    assert main(["train", "--model", "s4-ann", "--name", name, "--runs-dir", str(runs)]) == 2
    assert "not a safe folder name" in one_line_error(capsys)
    assert not any(tmp_path.iterdir())


def test_overwrite_removes_only_folders_fashionlab_made(tmp_path, capsys):
    foreign = tmp_path / "runs" / "mine"
    foreign.mkdir(parents=True)
    (foreign / "thesis.tex").write_text("years of work")
    args = ["train", "--model", "s4-ann", "--name", "mine", "--runs-dir", str(tmp_path / "runs")]
    assert main([*args, "--epochs", "1", "--overwrite"]) == 2
    assert "not a folder fashionlab made" in one_line_error(capsys)
    assert (foreign / "thesis.tex").read_text() == "years of work"


def test_a_study_out_folder_that_is_not_a_study_is_left_alone(tmp_path, capsys):
    out = tmp_path / "src"
    out.mkdir()
    (out / "main.py").write_text("print('hi')")
    study = tmp_path / "s.yaml"
    study.write_text("name: s\nruns: [{model: s4-ann}]\n")
    before = tree_snapshot(tmp_path)
    for extra in ([], ["--overwrite"]):
        assert main(["study", str(study), "--out", str(out), "--set", "epochs=1", *extra]) == 2
        assert "not a" in one_line_error(capsys)
    assert tree_snapshot(tmp_path) == before


def test_one_folder_one_command(tmp_path):
    folder = tmp_path / "run"
    with claim_folder(folder):
        with pytest.raises(RunError, match=f"in use by process {os.getpid()}"):
            with claim_folder(folder):
                pass
    with claim_folder(folder):  # released: the next command may have it
        pass


@pytest.mark.slow
def test_two_trainings_into_one_folder_exactly_one_proceeds(tmp_path):
    argv = [sys.executable, "-m", "fashionlab", "train", "--model", "s4-ann", "--epochs", "2"]
    argv += ["--train-subset", "2000", "--eval-subset", "500", "--runs-dir", str(tmp_path)]
    argv += ["--name", "same", "-q"]
    procs = [subprocess.Popen(argv, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2).strip()
    assert "is in use by process" in loser or "already holds" in loser, loser
    assert (tmp_path / "same" / "complete").exists()


# -- bounded parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["description", "overrides", "grid"])
def test_a_yaml_alias_bomb_in_a_study_file_fails_fast(tmp_path, capsys, where):
    body = {
        "description": "description: *i\n",
        "overrides": "overrides: {model_args: {hidden: *i}}\n",
        "grid": "runs: [{model: s4-ann, grid: {lr: *i}}]\n",
    }[where]
    study = tmp_path / "bomb.yaml"
    runs = "" if where == "grid" else "runs: [{model: s4-ann}]\n"
    study.write_text(BOMB + "name: bomb\n" + runs + body)
    assert len(study.read_bytes()) < 500
    started = time.perf_counter()
    assert main(["study", str(study), "--dry-run"]) == 2
    assert time.perf_counter() - started < 1.0
    err = one_line_error(capsys)
    assert "aliases are expanded" in err and len(err) < 300


@pytest.mark.extra("serve")
def test_a_yaml_alias_bomb_in_a_run_folder_fails_fast(good_run, tmp_path, capsys):
    run = copy_run(good_run, tmp_path)
    (run / "config.yaml").write_text(BOMB + "model: s4-ann\n")
    image = tmp_path / "item.npy"
    np.save(image, np.zeros((28, 28), np.uint8))
    for argv in (
        ["predict", str(run), str(image)],
        ["evaluate", str(run)],
        ["train", "--resume", str(run)],
        ["serve", str(run), "--port", "0"],
    ):
        started = time.perf_counter()
        assert main(argv) == 2, argv
        assert time.perf_counter() - started < 1.0
        err = one_line_error(capsys)
        assert "aliases are expanded" in err and len(err) < 300, err


def test_a_yaml_alias_bomb_in_set_fails_fast(capsys):
    started = time.perf_counter()
    assert main(["train", "--model", "s4-ann", "--set", f"model_args={BOMB}"]) == 2
    assert time.perf_counter() - started < 1.0
    assert len(one_line_error(capsys)) < 300


def test_a_fifo_as_a_study_file_does_not_hang(tmp_path, capsys):
    fifo = tmp_path / "study.yaml"
    os.mkfifo(fifo)
    assert main(["study", str(fifo), "--dry-run"]) == 2
    assert "not a regular file" in one_line_error(capsys)


# -- untrusted run folders -----------------------------------------------------------------------


HUGE = "does not match"  # refused at the safetensors header, before the model is built


def _edit_json(path: Path, edit) -> None:
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))


@pytest.mark.parametrize(
    "case, edit, words",
    [
        ("huge", lambda i: {**i, "model": "mlp", "model_args": {"hidden": [3 * 10**6]}}, HUGE),
        ("no-model", lambda i: {k: v for k, v in i.items() if k != "model"}, "model"),
        ("a-list", lambda i: [i], "JSON object"),
        ("bad-norm", lambda i: {**i, "normalization": {"preset": "x"}}, "normalization"),
        ("zero-std", lambda i: {**i, "normalization": {**i["normalization"], "std": 0}}, "std"),
        ("other-model", lambda i: {**i, "model": "s4-cnn1"}, "does not match"),
        ("unknown", lambda i: {**i, "model": "no-such"}, "no-such"),
    ],
)
def test_a_run_folders_model_json_is_checked_before_anything_is_built(
    good_run, tmp_path, capsys, case, edit, words
):
    run = copy_run(good_run, tmp_path)
    _edit_json(run / "model.json", edit)
    image = tmp_path / "item.npy"
    np.save(image, np.zeros((28, 28), np.uint8))
    started = time.perf_counter()
    assert main(["predict", str(run), str(image)]) == 2
    assert time.perf_counter() - started < 5.0
    assert words in one_line_error(capsys)


@pytest.mark.extra("serve")
def test_non_finite_weights_are_refused_not_predicted(good_run, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    run = copy_run(good_run, tmp_path)
    state = load_file(run / "model.safetensors")
    save_file(
        {k: torch.full_like(v, float("nan")) for k, v in state.items()}, run / "model.safetensors"
    )
    image = tmp_path / "item.npy"
    np.save(image, np.zeros((28, 28), np.uint8))
    assert main(["predict", str(run), str(image)]) == 2
    assert "NaN or infinite" in one_line_error(capsys)
    from fashionlab.serve import create_app

    with pytest.raises(RunError, match="NaN or infinite"):
        create_app(run)


@pytest.mark.extra("serve")
def test_metrics_that_are_not_an_object(good_run, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from fashionlab.serve import create_app

    run = copy_run(good_run, tmp_path)
    (run / "metrics.json").write_text("[]")
    with TestClient(create_app(run), base_url="http://localhost") as client:
        assert client.get("/api/model").json()["test_accuracy"] is None  # served regardless
    assert main(["evaluate", str(run)]) == 2
    assert "expected a JSON object" in one_line_error(capsys)
    (run / "metrics.json").write_text("{}")
    assert main(["evaluate", str(run)]) == 2  # nothing to compare is not "matches"
    assert "no test metrics to compare" in one_line_error(capsys)


@pytest.mark.parametrize("payload", [{"a": 1}, [1, 2], {"config": {}, "model": {}, "state": []}])
def test_a_wrong_structure_checkpoint_is_a_one_line_error(good_run, tmp_path, capsys, payload):
    run = copy_run(good_run, tmp_path)
    (run / "complete").unlink()
    torch.save(payload, run / "checkpoint.pt")
    assert main(["train", "--resume", str(run)]) == 2
    assert "checkpoint" in one_line_error(capsys)


# -- unbounded config values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag",
    [["--batch-size", "100000000000000000000"], ["--threads", "1000000"], ["--epochs", "10**9"]],
)
def test_config_values_that_allocate_are_bounded(tmp_path, capsys, flag):
    value = str(10**9) if flag[1] == "10**9" else flag[1]
    argv = ["train", "--model", "s4-ann", "--runs-dir", str(tmp_path), flag[0], value]
    assert main(argv) == 2
    assert "less than or equal" in one_line_error(capsys)
    assert not any(tmp_path.iterdir())


def test_a_study_planning_a_million_runs_is_refused_at_once(tmp_path, capsys):
    study = tmp_path / "big.yaml"
    axis = list(range(1000))
    study.write_text(
        json.dumps(
            {"name": "big", "runs": [{"model": "s4-ann", "grid": {"lr": axis, "seed": axis}}]}
        )
    )
    started = time.perf_counter()
    assert main(["study", str(study), "--dry-run"]) == 2
    assert time.perf_counter() - started < 2.0
    err = one_line_error(capsys)
    assert "1,000,000 runs" in err and "max_runs" in err


# -- the data layer ------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_small_gzip_that_expands_to_gigabytes_is_not_decompressed(tmp_path):
    header = encode_idx(np.zeros((10, 28, 28), np.uint8))
    path = tmp_path / "bomb.gz"
    compressor = gzip.GzipFile(path, "wb", compresslevel=9)
    compressor.write(header)
    block = bytes(1 << 24)
    for _ in range(128):  # 2 GiB of zeros after a header that declares 7,856 bytes
        compressor.write(block)
    compressor.close()
    assert path.stat().st_size < 3 << 20
    started = time.perf_counter()
    data = read_idx_bytes(path)
    assert time.perf_counter() - started < 1.0
    assert len(data) == len(header) + 1  # read one byte past the header's size, no more
    with pytest.raises(DataError, match="trailing bytes"):
        from fashionlab.data import parse_idx

        parse_idx(data, "bomb")


def test_a_header_declaring_too_much_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge"
    path.write_bytes(b"\x00\x00\x08\x03" + (100_000).to_bytes(4, "big") * 3)
    with pytest.raises(DataError, match="declares"):
        read_idx_bytes(path)


def test_an_idx_file_that_is_a_device_is_refused(tmp_path):
    link = tmp_path / "train-images-idx3-ubyte"
    link.symlink_to("/dev/zero")
    with pytest.raises(DataError, match="not a regular file"):
        read_idx_bytes(link)


# -- the disk ------------------------------------------------------------------------------------


def test_a_full_disk_during_a_checkpoint_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    import errno

    import fashionlab.training.checkpoint as checkpoint

    def full(payload, path):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    argv = ["train", "--model", "s4-ann", "--epochs", "1", "--train-subset", "128"]
    assert main([*argv, "--eval-subset", "100", "--runs-dir", str(tmp_path), "-q"]) == 2
    err = one_line_error(capsys)
    assert "no space left" in err and "--resume" in err
    assert not list(tmp_path.rglob(".*.tmp"))


def test_leftover_temp_files_are_removed_on_the_next_start(good_run, tmp_path):
    run = copy_run(good_run, tmp_path)
    stale = run / ".checkpoint.pt.k3j4h5g6.tmp"
    stale.write_bytes(b"half a checkpoint")
    other = run / "notes.tmp"  # not one of ours: kept
    other.write_text("mine")
    with claim_folder(run):
        pass
    assert not stale.exists() and other.exists()


# -- the server ----------------------------------------------------------------------------------


@pytest.fixture
def server_app(good_run):
    from fashionlab.serve import create_app

    return create_app(good_run, decode_budget_bytes=64 << 20, max_waiting=2)


def _png(width: int, height: int, mode: str) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (width, height)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.extra("serve")
def test_the_server_refuses_what_its_decode_budget_cannot_hold(server_app):
    from fastapi.testclient import TestClient

    big = _png(6000, 6000, "RGBA")  # 36 MP: 288 MB at its peak, a 64 MB budget
    assert len(big) < 5 << 20
    with TestClient(server_app, base_url="http://localhost") as client:
        response = client.post("/api/predict", files={"file": ("x.png", big, "image/png")})
        assert response.status_code == 413 and "too large to decode" in response.json()["detail"]
        small = _png(64, 64, "RGBA")
        ok = client.post("/api/predict", files={"file": ("x.png", small, "image/png")})
        assert ok.status_code == 200


@pytest.mark.extra("serve")
def test_health_answers_while_decodes_wait(server_app):
    from fastapi.testclient import TestClient

    budget = next(
        cell.cell_contents
        for route in server_app.routes
        if getattr(route, "name", "") == "predict"
        for cell in (route.endpoint.__closure__ or ())
        if type(cell.cell_contents).__name__ == "DecodeBudget"
    )
    with TestClient(server_app, base_url="http://localhost") as client:
        with budget.reserve(budget.budget):  # every decode now waits
            started = time.perf_counter()
            assert client.get("/api/health").status_code == 200
            assert time.perf_counter() - started < 0.5


@pytest.mark.extra("serve")
def test_the_server_serves_only_its_host_names_and_no_paths(server_app, good_run):
    from fastapi.testclient import TestClient

    with TestClient(server_app, base_url="http://evil.example") as client:
        assert client.get("/api/health").status_code == 400
    with TestClient(server_app, base_url="http://localhost") as client:
        for path in ("/api/health", "/api/model", "/api/examples", "/openapi.json"):
            body = client.get(path).text
            assert str(good_run) not in body and "/usr/share" not in body, path
        assert client.get("/docs").status_code == 404


@pytest.mark.extra("serve")
def test_a_trickling_connection_is_closed(good_run):
    import uvicorn

    from fashionlab.serve import create_app
    from fashionlab.serve.limits import deadline_protocol

    config = uvicorn.Config(
        create_app(good_run), host="127.0.0.1", port=0, log_level="error",
        http=deadline_protocol(1.0), limit_concurrency=8,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            started = time.monotonic()
            closed = False
            for byte in b"GET /api/health HTTP/1.1\r\nHost: localhost\r\n":
                try:
                    sock.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                sock.settimeout(0.3)
                try:
                    if sock.recv(1024) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
            assert closed and time.monotonic() - started < 4.0
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_model_args_that_are_not_a_mapping(capsys):
    assert main(["train", "--model", "s4-ann", "--set", "model_args=oops"]) == 2
    assert "model_args must be a mapping" in one_line_error(capsys)


@pytest.mark.extra("serve")
def test_examples_do_not_name_the_servers_folders(good_run, tmp_path):
    from fastapi.testclient import TestClient

    from fashionlab.serve import create_app

    missing = tmp_path / "secret-data-folder"
    app = create_app(good_run, data_dir=missing)
    with TestClient(app, base_url="http://localhost") as client:
        body = client.get("/api/examples").json()
    assert body["examples"] == [] and "secret-data-folder" not in json.dumps(body)
