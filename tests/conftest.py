"""Shared fixtures.

Every test runs with FASHIONLAB_CACHE in a per-session temp folder and FASHIONLAB_MIRROR at a
file:// URL that does not exist: no test reads or writes the user's real cache, and none can
reach the network. The real dataset comes from the Debian package
(/usr/share/datasets/fashion-mnist): the first load of a session decodes its .gz files and
keeps decoded copies in the session cache, as a user's first load would.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from fashionlab.data import FashionMNIST, encode_idx, load_fashion_mnist
from fashionlab.data import dataset as dataset_module
from fashionlab.data import sources as sources_module
from fashionlab.data.sources import FILES

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.extra("serve", ...)`: skip, naming the extra, where it is not installed
    (a contributor with `pip install -e '.[dev]'` gets skips, not errors)."""
    from fashionlab._extras import missing_modules

    for marker in item.iter_markers("extra"):
        for extra in marker.args:
            missing = missing_modules(extra)
            if missing:
                pytest.skip(f"needs the [{extra}] extra ({', '.join(missing)} not installed)")


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist (`make test` runs 2 workers), give each worker its share of the
    cores, for its own torch and for every process it starts: two workers with a full set of
    spinning OpenMP threads each would make small tensor ops many times slower."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        threads = max(1, (os.cpu_count() or 1) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


_share_the_cores_between_workers()


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point the loader at a session cache and an unreachable mirror; yield the cache path."""
    root = tmp_path_factory.mktemp("fashionlab-env")
    cache = root / "cache" / "fashion-mnist"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FASHIONLAB_CACHE", str(cache))
        mp.setenv("FASHIONLAB_MIRROR", (root / "no-mirror").as_uri())
        mp.setenv("XDG_CACHE_HOME", str(root / "xdg"))
        # A developer's own FASHIONLAB_DATA would silently replace the real dataset.
        mp.delenv("FASHIONLAB_DATA", raising=False)
        # Ray starts its workers at niceness 15: beside other work on the test machine's 2
        # cores they waited minutes for CPU and the Ray tests timed out (docs/distributed.md).
        mp.setenv("RAY_worker_niceness", "0")
        yield cache


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """Run a test with one torch thread: the test machines' 2 cores are shared with other
    work, and under load two spinning OpenMP threads make small tensor ops ~100x slower."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session")
def session_cache(_isolated_data_env: Path) -> Path:
    return _isolated_data_env


@pytest.fixture(scope="session")
def fashion(_isolated_data_env: Path) -> FashionMNIST:
    """The real, verified dataset (loaded once per session; later loads hit the cache)."""
    if not DEBIAN_DIR.is_dir():
        pytest.skip(f"{DEBIAN_DIR} missing: apt-get install dataset-fashion-mnist")
    return load_fashion_mnist()


def left_in_temp(temp: Path) -> list[str]:
    """What a finished command left in its temporary folder (its TMPDIR), less PyTorch's own
    per-user compile cache, which any program that loads torch._dynamo makes."""
    return [p.name for p in temp.iterdir() if not p.name.startswith("torchinductor_")]


def tiny_arrays(n_train: int = 100, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    """Random uint8 images and balanced labels in the four files' layout (key -> array)."""
    rng = np.random.default_rng(seed)
    return {
        "train-images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test-images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test-labels": (np.arange(n_test) % 10).astype(np.uint8),
    }


def write_idx_dataset(
    directory: Path,
    arrays: dict[str, np.ndarray] | None = None,
    gz: bool = False,
) -> Path:
    """Write four IDX files (raw, or gzipped as `<stem>.gz`) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, array in (arrays or tiny_arrays()).items():
        stem = FILES[key][0]
        data = encode_idx(array)
        if gz:
            (directory / f"{stem}.gz").write_bytes(gzip.compress(data, compresslevel=1))
        else:
            (directory / stem).write_bytes(data)
    return directory


@pytest.fixture
def idx_dataset(tmp_path: Path) -> Callable[..., Path]:
    """Factory: `idx_dataset(name="tiny", n_train=100, n_test=20, seed=0, gz=False,
    arrays=None)` writes a small valid MNIST-format dataset (or the given arrays) to
    tmp_path/name and returns the folder."""

    def make(
        name: str = "tiny",
        n_train: int = 100,
        n_test: int = 20,
        seed: int = 0,
        gz: bool = False,
        arrays: dict[str, np.ndarray] | None = None,
    ) -> Path:
        arrays = arrays or tiny_arrays(n_train, n_test, seed)
        return write_idx_dataset(tmp_path / name, arrays, gz=gz)

    return make


@pytest.fixture
def isolated_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Nothing found anywhere: an empty per-test cache (returned), no Debian package, no
    mirror, and nothing remembered from earlier loads in this process."""
    cache = tmp_path / "cache" / "fashion-mnist"
    monkeypatch.setenv("FASHIONLAB_CACHE", str(cache))
    monkeypatch.setenv("FASHIONLAB_MIRROR", (tmp_path / "no-mirror").as_uri())
    monkeypatch.setattr(sources_module, "DEBIAN_DIR", tmp_path / "no-debian")
    monkeypatch.setattr(dataset_module, "_LOADED", {})
    return cache


@pytest.fixture
def assert_no_partial_files() -> Callable[[Path], None]:
    """Checker: no temp file of our atomic writers (`.<name>.<random>.tmp`) under a folder."""

    def check(directory: Path) -> None:
        leftovers = sorted(directory.rglob(".*.tmp")) if directory.exists() else []
        assert leftovers == [], f"partial files left behind: {leftovers}"

    return check


# ------------------------------------------------------------------ broken datasets
# Each case damages one file of a valid tiny dataset and returns (damaged file, words the
# error must contain). Shared by the API tests and the CLI tests.


def _path(d: Path, key: str) -> Path:
    return d / FILES[key][0]


def _rewrite(d: Path, key: str, array: np.ndarray) -> Path:
    path = _path(d, key)
    path.write_bytes(encode_idx(array))
    return path


def _missing(d: Path) -> tuple[Path, str]:
    path = _path(d, "train-labels")
    path.unlink()
    return path, "file not found"


def _truncated_gzip(d: Path) -> tuple[Path, str]:
    raw = _path(d, "train-images")
    gz = raw.with_name(raw.name + ".gz")
    data = gzip.compress(raw.read_bytes())
    gz.write_bytes(data[: len(data) // 2])
    raw.unlink()
    return gz, "truncated gzip"


def _shorter_than_header(d: Path) -> tuple[Path, str]:
    path = _path(d, "train-images")
    path.write_bytes(path.read_bytes()[:-100])
    return path, "truncated"


def _trailing_bytes(d: Path) -> tuple[Path, str]:
    path = _path(d, "test-labels")
    path.write_bytes(path.read_bytes() + b"\x00\x01")
    return path, "trailing bytes"


def _wrong_magic(d: Path) -> tuple[Path, str]:
    path = _path(d, "test-images")
    path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])
    return path, "bad magic"


def _unknown_type_byte(d: Path) -> tuple[Path, str]:
    path = _path(d, "train-labels")
    data = path.read_bytes()
    path.write_bytes(data[:2] + b"\x07" + data[3:])
    return path, "unknown IDX element type 0x07"


def _float_images(d: Path) -> tuple[Path, str]:
    return _rewrite(d, "train-images", np.zeros((100, 28, 28), np.float32)), "float32"


def _int_labels(d: Path) -> tuple[Path, str]:
    # int32 labels would be accepted by a loose loader and silently widened.
    return _rewrite(d, "test-labels", np.arange(20, dtype=np.int32) % 10), "int32"


def _images_27x28(d: Path) -> tuple[Path, str]:
    return _rewrite(d, "train-images", np.zeros((100, 27, 28), np.uint8)), "(100, 27, 28)"


def _images_2d(d: Path) -> tuple[Path, str]:
    return _rewrite(d, "test-images", np.zeros((20, 784), np.uint8)), "(20, 784)"


def _count_mismatch(d: Path) -> tuple[Path, str]:
    _rewrite(d, "train-labels", np.zeros(99, np.uint8))
    return _path(d, "train-images"), "100 images but train-labels-idx1-ubyte has 99 labels"


def _label_out_of_range(d: Path) -> tuple[Path, str]:
    labels = (np.arange(20) % 10).astype(np.uint8)
    labels[7] = 10
    return _rewrite(d, "test-labels", labels), "label 10 at item 7 outside 0..9"


def _empty_file(d: Path) -> tuple[Path, str]:
    path = _path(d, "test-images")
    path.write_bytes(b"")
    return path, "file is empty"


def _directory_instead_of_file(d: Path) -> tuple[Path, str]:
    path = _path(d, "train-images")
    path.unlink()
    path.mkdir()
    return path, "is a directory"


BAD_DATASETS = {
    "missing-file": _missing,
    "truncated-gzip": _truncated_gzip,
    "raw-shorter-than-header": _shorter_than_header,
    "trailing-bytes": _trailing_bytes,
    "wrong-magic": _wrong_magic,
    "unknown-type-byte": _unknown_type_byte,
    "float-images": _float_images,
    "int32-labels": _int_labels,
    "images-27x28": _images_27x28,
    "images-2d": _images_2d,
    "count-mismatch": _count_mismatch,
    "label-outside-0-9": _label_out_of_range,
    "empty-file": _empty_file,
    "directory-instead-of-file": _directory_instead_of_file,
}


@pytest.fixture(params=list(BAD_DATASETS))
def bad_dataset(request: pytest.FixtureRequest, idx_dataset) -> tuple[Path, Path, str]:
    """(dataset folder, damaged file, expected words), one test per kind of damage."""
    directory = idx_dataset("broken")
    bad_file, words = BAD_DATASETS[request.param](directory)
    return directory, bad_file, words


@pytest.fixture(scope="session")
def tiny_run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1-epoch s3-base run on 256 images, trained once per session and shared by the
    inference, API and browser tests (they only read it)."""
    from fashionlab.models import build_config
    from fashionlab.training import train

    config = build_config("s3-base", {"epochs": 1, "train_subset": 256, "eval_subset": 200})
    return train(config, tmp_path_factory.mktemp("tiny-runs"), quiet=True)


CHROMIUM = Path("/usr/bin/chromium")
# Debian's Chromium, headless, with the background services off: this machine's closed
# network refuses their connections, which only slows start-up and clutters the logs.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def chromium_page():
    """A fresh page in the system Chromium via Playwright (never `playwright install`)."""
    if not CHROMIUM.exists():
        pytest.skip("needs /usr/bin/chromium (Debian package chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


# -- for tests of hostile input ------------------------------------------------------------------


def tree_snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` (path -> size, mtime), to show nothing else changed."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and not p.is_symlink()
    }


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    """The command's stderr, asserted to be one line and no traceback."""
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    return err


def copy_run(good_run: Path, tmp_path: Path, name: str = "copy") -> Path:
    """A copy of a finished run folder, to damage without touching the original."""
    run = tmp_path / name
    shutil.copytree(good_run, run, ignore=shutil.ignore_patterns(".lock"))
    return run
