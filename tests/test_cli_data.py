"""`fashionlab data info|fetch`, --version and --help: output, exit codes, one-line errors."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from fashionlab import __version__
from fashionlab.cli import main
from fashionlab.data import CLASS_NAMES
from fashionlab.data import sources as sources_module
from fashionlab.data.sources import FILES

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DIGESTS = {stem: digest for stem, _size, digest in FILES.values()}


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    assert code != 0
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fashionlab: error: ")
    assert "Traceback" not in err
    for word in words:
        assert word in lines[0], lines[0]


# ------------------------------------------------------------------ info


def test_info_table(fashion, capsys) -> None:
    code, out, err = run(["data", "info"], capsys)
    assert code == 0 and err == ""
    assert "verified   yes (SHA-256 of all four files)" in out
    assert "images     60000 train, 10000 test, 28x28 uint8" in out
    assert "pixels     mean 0.2860  std 0.3530 (train)" in out
    for name in CLASS_NAMES:
        assert f"{name:<14}   6000   1000" in out


def test_info_json(fashion, capsys) -> None:
    code, out, _err = run(["data", "info", "--json"], capsys)
    assert code == 0
    info = json.loads(out)
    assert info["verified"] is True
    assert (info["train"], info["test"]) == (60_000, 10_000)
    assert (info["pixel_mean"], info["pixel_std"]) == (0.286, 0.353)
    assert list(info["per_class"]) == list(CLASS_NAMES)
    assert all(c == {"train": 6000, "test": 1000} for c in info["per_class"].values())
    assert info["load_seconds"] >= 0


def test_info_no_verify_on_own_data_warns(idx_dataset, capsys) -> None:
    directory = idx_dataset("own", n_train=100, n_test=20)
    code, out, err = run(["data", "info", "--no-verify", "--data-dir", str(directory)], capsys)
    assert code == 0
    assert err == "fashionlab: warning: checksum verification is OFF\n"
    assert "verified   NO (--no-verify)" in out
    assert "images     100 train, 20 test" in out


def test_info_refuses_own_data_without_no_verify(idx_dataset, capsys) -> None:
    directory = idx_dataset("own")
    code, out, err = run(["data", "info", "--data-dir", str(directory)], capsys)
    assert out == ""
    assert_one_line_error(code, err, "checksum mismatch", str(directory), "--no-verify")


def test_info_on_damaged_data_is_one_line_error(
    bad_dataset, capsys, session_cache, assert_no_partial_files
) -> None:
    directory, bad_file, words = bad_dataset
    code, out, err = run(["data", "info", "--data-dir", str(directory)], capsys)
    assert code == 2 and out == ""
    assert_one_line_error(code, err, str(bad_file), words)
    assert_no_partial_files(session_cache)
    assert_no_partial_files(directory)


def test_nothing_found_is_one_line_error_with_the_fix(isolated_sources, capsys) -> None:
    code, _out, err = run(["data", "info"], capsys)
    assert_one_line_error(
        code, err, "cache", "debian", "download", "apt-get install dataset-fashion-mnist"
    )


def test_unwritable_cache_is_one_line_error(
    tmp_path, isolated_sources, monkeypatch, capsys
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    monkeypatch.setenv("FASHIONLAB_CACHE", str(blocker / "fashion-mnist"))
    code, _out, err = run(["data", "fetch"], capsys)
    assert_one_line_error(code, err, str(blocker / "fashion-mnist"), "cannot write there")


# ------------------------------------------------------------------ fetch


def test_fetch_reports_the_verified_copy(fashion, session_cache, capsys) -> None:
    code, out, _err = run(["data", "fetch"], capsys)
    assert code == 0
    assert out.startswith("verified copy in ")


@pytest.mark.skipif(not DEBIAN_DIR.is_dir(), reason="apt-get install dataset-fashion-mnist")
def test_fetch_into_empty_dir_from_file_mirror(
    tmp_path, isolated_sources, monkeypatch, capsys, assert_no_partial_files
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    for stem in DIGESTS:
        shutil.copyfile(DEBIAN_DIR / f"{stem}.gz", mirror / f"{stem}.gz")
    monkeypatch.setenv("FASHIONLAB_MIRROR", mirror.as_uri())
    target = tmp_path / "my-data"
    code, out, err = run(["data", "fetch", "--data-dir", str(target)], capsys)
    assert (code, err) == (0, "")
    assert out == f"verified copy in {target}\n"
    assert sorted(p.name for p in target.iterdir()) == sorted(DIGESTS)
    for stem, digest in DIGESTS.items():
        assert hashlib.sha256((target / stem).read_bytes()).hexdigest() == digest
    assert_no_partial_files(target)
    assert not isolated_sources.exists()  # filled the folder asked for, not the cache


def test_fetch_into_dir_copies_a_local_verified_copy(
    tmp_path, fashion, session_cache, monkeypatch, capsys
) -> None:
    # Offline machines: with the data in the cache (or the Debian package), no download.
    monkeypatch.setattr(sources_module, "DEBIAN_DIR", tmp_path / "no-debian")
    target = tmp_path / "copy"
    code, out, _err = run(["data", "fetch", "--data-dir", str(target)], capsys)
    assert code == 0 and out == f"verified copy in {target}\n"
    for stem in DIGESTS:
        assert (target / stem).read_bytes() == (session_cache / stem).read_bytes()
    # Run again: already verified there, nothing to do.
    code, out, _err = run(["data", "fetch", "--data-dir", str(target)], capsys)
    assert code == 0 and out == f"verified copy in {target}\n"


def test_fetch_into_unfillable_dir_is_one_line_error(tmp_path, isolated_sources, capsys):
    target = tmp_path / "my-data"
    code, _out, err = run(["data", "fetch", "--data-dir", str(target)], capsys)
    assert_one_line_error(code, err, "download of", "train-images-idx3-ubyte.gz")


# ------------------------------------------------------------------ version and help


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"fashionlab {__version__}\n"


@pytest.mark.parametrize(
    "argv,words",
    [
        (["data", "--help"], ["info", "fetch"]),
        (["data", "info", "--help"], ["--data-dir", "--no-verify", "--json"]),
        (["data", "fetch", "--help"], ["--data-dir"]),
    ],
)
def test_help(argv: list[str], words: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: fashionlab data")
    for word in words:
        assert word in out


def test_data_without_action_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["data"])
    assert info.value.code == 2
    assert "ACTION" in capsys.readouterr().err
