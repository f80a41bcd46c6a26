"""End to end: `fashionlab serve` in a subprocess, the page driven by Debian's Chromium.

Uses the system Chromium through Playwright's sync API (never `playwright install`: no
browser downloads). Skipped where /usr/bin/chromium or Playwright is missing.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from fashionlab.data import CLASS_NAMES

# The server imports torch and loads the model; on a busy shared machine that takes a while.
STARTUP_TIMEOUT_S = 90

pytestmark = [
    pytest.mark.browser,
    pytest.mark.extra("serve"),
]


@pytest.fixture(scope="module")
def run_dir(tiny_run_dir):
    return tiny_run_dir


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(run_dir, tmp_path):
    """Base URL of a `fashionlab serve` subprocess; always stopped afterwards."""
    port = free_loopback_port()
    log = (tmp_path / "server.log").open("w")  # a file, not a pipe: a full pipe would block it
    proc = subprocess.Popen(
        [sys.executable, "-m", "fashionlab", "serve", str(run_dir), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited ({proc.returncode}):\n{_read(tmp_path)}")
            try:
                if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server not up after {STARTUP_TIMEOUT_S} s:\n{_read(tmp_path)}")
            time.sleep(0.25)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


def _read(tmp_path: Path) -> str:
    return (tmp_path / "server.log").read_text()[-3000:]


@pytest.mark.slow
def test_upload_shows_prediction(server, tmp_path, chromium_page):
    picture = np.full((120, 90), 240, dtype=np.uint8)
    picture[10:110, 25:65] = 30  # a dark, tall garment on a light page
    image_path = tmp_path / "garment.png"
    Image.fromarray(picture).save(image_path)

    page = chromium_page
    requests: list[str] = []
    console_errors: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on(
        "console",
        lambda msg: console_errors.append(msg.text) if msg.type == "error" else None,
    )
    page.goto(server + "/")
    page.set_input_files("#file-input", str(image_path))
    page.wait_for_function(
        "names => names.includes(document.querySelector('#predicted-label').textContent)",
        arg=list(CLASS_NAMES),
        timeout=30_000,
    )
    label = page.text_content("#predicted-label")
    assert page.locator("#bars .bar-row").count() == 3
    assert page.get_attribute("#model-input", "src").startswith("data:image/png;base64,")
    assert page.get_attribute("#gradcam", "src").startswith("data:image/png;base64,")
    assert page.locator("#steps li").count() >= 3
    assert page.is_hidden("#error")
    # the probabilities are the run's calibrated ones, and the page says so
    assert "calibrated (temperature" in page.text_content("#calibration")
    unsure = page.text_content("#predicted-unsure")
    assert unsure == "" or unsure.startswith(f"unsure: {label} or ")
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

    assert label in CLASS_NAMES
    assert (tmp_path / "page.png").stat().st_size > 0
    assert not console_errors, console_errors
    # the page is self-contained: every request went to this server (or was a local URL)
    foreign = [u for u in requests if not u.startswith((server, "data:", "blob:"))]
    assert not foreign, foreign
