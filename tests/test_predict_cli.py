"""`fashionlab predict` and `fashionlab export` on a tiny trained run."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from fashionlab.cli import main
from fashionlab.data import CLASS_NAMES, load_fashion_mnist
from fashionlab.models import build_config
from fashionlab.training import train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    # s4-ann: the CLI does not care which model it is, and the export check below runs it on
    # the whole 10,000-image test set (split "random" = the official test set). fp32: the
    # ONNX file computes in float32, so only an fp32 run's torch backend agrees to 1e-5.
    config = build_config(
        "s4-ann",
        {"epochs": 1, "train_subset": 256, "eval_subset": 200, "split": "random",
         "precision": "fp32"},
    )  # fmt: skip
    return train(config, tmp_path_factory.mktemp("runs"), quiet=True)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A photo-like PNG (dark garment on a light page), a JPEG, and 28x28 test items as .npy."""
    folder = tmp_path_factory.mktemp("images")
    page = np.full((90, 70), 235, dtype=np.uint8)
    page[15:80, 20:50] = 40  # a dark "trouser" shape
    Image.fromarray(page).save(folder / "photo.png")
    Image.fromarray(page).convert("RGB").save(folder / "photo.jpg", quality=90)
    test = load_fashion_mnist().test_images[:4].numpy()
    for i, item in enumerate(test):
        np.save(folder / f"item{i}.npy", item)
    (folder / "notes.png").write_text("not an image")
    return folder


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_predict_prints_a_table_per_image(run_dir, images, capsys):
    code, out, err = run_cli(capsys, "predict", run_dir, images / "photo.png", images / "photo.jpg")
    assert code == 0, err
    lines = out.splitlines()
    # a header per image ("PATH" or "PATH: unsure (A or B)"), its top 3, then one note on
    # what the probabilities are
    assert lines[0].split(": unsure")[0] == str(images / "photo.png")
    assert lines[4].split(": unsure")[0] == str(images / "photo.jpg")
    for rank, line in zip((1, 2, 3), lines[1:4], strict=True):
        match = re.match(rf"\s+{rank}\. (.+?)\s+(\d+\.\d\d)%", line)
        assert match and match.group(1) in CLASS_NAMES, line
    assert len(lines) == 9 and "temperature scaling" in lines[8]


def test_predict_json(run_dir, images, capsys):
    code, out, err = run_cli(
        capsys, "predict", run_dir, images / "photo.png", images / "item0.npy", "--json",
        "--top-k", "5",
    )  # fmt: skip
    assert code == 0, err
    results = json.loads(out)
    assert [r["file"] for r in results] == [str(images / "photo.png"), str(images / "item0.npy")]
    for result in results:
        probs = [p["probability"] for p in result["predictions"]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True)
        assert all(p["class"] in CLASS_NAMES for p in result["predictions"])
        assert result["steps"] and all(isinstance(s, str) for s in result["steps"])
    assert any("inverted" in step for step in results[0]["steps"])  # dark on light page


def test_no_preprocess_uses_a_28x28_npy_as_is(run_dir, images, capsys):
    code, out, err = run_cli(
        capsys, "predict", run_dir, images / "item1.npy", "--no-preprocess", "--json"
    )
    assert code == 0, err
    [result] = json.loads(out)
    assert result["steps"] == ["read a 28x28 .npy array", "used as is: 28x28, no preprocessing"]

    # a 70x90 photo cannot be used as is
    code, out, err = run_cli(capsys, "predict", run_dir, images / "photo.png", "--no-preprocess")
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and "28x28" in err


@pytest.mark.extra("export")
def test_onnx_backend_agrees_with_torch(run_dir, images, capsys):
    files = [images / f"item{i}.npy" for i in range(4)] + [images / "photo.png"]
    results = {}
    for backend in ("torch", "onnx"):
        code, out, err = run_cli(capsys, "predict", run_dir, *files, "--json", "--backend", backend)
        assert code == 0, err
        results[backend] = json.loads(out)
    assert (run_dir / "model.onnx").is_file()
    for t, o in zip(results["torch"], results["onnx"], strict=True):
        assert t["predictions"][0]["class"] == o["predictions"][0]["class"]
        assert t["predictions"][0]["probability"] == pytest.approx(
            o["predictions"][0]["probability"], abs=1e-5
        )


def test_bad_image_among_several_gives_one_line_and_nonzero_exit(run_dir, images, capsys):
    missing = images / "missing.png"
    code, out, err = run_cli(
        capsys, "predict", run_dir, images / "notes.png", images / "photo.png", missing
    )
    assert code == 2
    assert out.splitlines()[0] == str(images / "photo.png")  # the good one is still classified
    errors = err.splitlines()
    assert len(errors) == 2 and "Traceback" not in err
    assert errors[0].startswith("fashionlab: error: ") and str(images / "notes.png") in errors[0]
    assert "not an image" in errors[0]
    assert str(missing) in errors[1]


def test_bad_run_folder_or_top_k_is_one_line(tmp_path, run_dir, images, capsys):
    for argv in (
        ("predict", tmp_path / "nope", images / "photo.png"),
        ("predict", run_dir, images / "photo.png", "--top-k", "0"),
    ):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == ""
        assert len(err.splitlines()) == 1 and err.startswith("fashionlab: error:")


@pytest.mark.extra("export")
def test_export_writes_onnx_and_checks_the_whole_test_set(run_dir, capsys):
    (run_dir / "model.onnx").unlink(missing_ok=True)
    code, out, err = run_cli(capsys, "export", run_dir, "--format", "onnx")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == str(run_dir / "model.onnx") and (run_dir / "model.onnx").is_file()
    match = re.search(r"on ([\d,]+) test images: (\S+)$", lines[1])
    assert match, lines[1]
    assert int(match.group(1).replace(",", "")) == 10_000
    assert float(match.group(2)) < 1e-4


@pytest.mark.extra("export")
def test_export_to_a_chosen_path(run_dir, tmp_path, capsys):
    target = tmp_path / "out" / "m.onnx"
    target.parent.mkdir()
    code, out, err = run_cli(capsys, "export", run_dir, "--output", target, "--no-check")
    assert code == 0, err
    assert out.splitlines() == [str(target)] and target.stat().st_size > 0
