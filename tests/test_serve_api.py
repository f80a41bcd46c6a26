"""The web app's JSON API (FastAPI TestClient): good uploads, limits, bad input, concurrency."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from fashionlab.data import CLASS_NAMES

pytest.importorskip("fastapi", reason="needs the [serve] extra (fastapi, uvicorn)")
from fashionlab.serve import create_app  # noqa: E402
from fashionlab.serve.app import FORM_OVERHEAD_BYTES  # noqa: E402

LIMIT = 100_000  # bytes; small so that the 413 test needs no big buffers
# The start of a well-formed multipart body whose file part then goes on and on: the limit,
# not a parse error, must be what stops it.
BOUNDARY = "xyz"
FILE_PART_HEAD = (
    b"--xyz\r\n"
    b'Content-Disposition: form-data; name="file"; filename="big.png"\r\n'
    b"Content-Type: image/png\r\n\r\n"
)


@pytest.fixture(scope="module")
def run_dir(tiny_run_dir):
    return tiny_run_dir


@pytest.fixture(scope="module")
def app(run_dir):
    return create_app(run_dir, max_upload_bytes=LIMIT)


@pytest.fixture(scope="module")
def client(app):
    with warnings.catch_warnings():
        # Starlette's TestClient announces, on import, a future switch to httpx2.
        warnings.filterwarnings("ignore", message="Using `httpx`")
        from fastapi.testclient import TestClient
    with TestClient(app, base_url="http://localhost") as c:
        yield c


def encode(pixels: np.ndarray, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def garment(height: int = 80, width: int = 60, seed: int = 0) -> np.ndarray:
    """A dark blob on a light page, like a photo of a piece of clothing."""
    rng = np.random.default_rng(seed)
    page = np.full((height, width), 230, dtype=np.uint8)
    page[10 : height - 10, 15 : width - 15] = rng.integers(20, 80, (height - 20, width - 30))
    return page


GOOD_PNG = encode(garment())


def post(client, data: bytes, name: str = "x.png", **form):
    return client.post("/api/predict", files={"file": (name, data, "image/png")}, data=form)


def assert_healthy(client) -> None:
    """The server still answers a good request correctly."""
    response = post(client, GOOD_PNG)
    assert response.status_code == 200, response.text
    assert response.json()["label"] in CLASS_NAMES


def decode_data_url(url: str) -> Image.Image:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return Image.open(io.BytesIO(base64.b64decode(url[len(prefix) :])))


def png_with_size(width: int, height: int) -> bytes:
    """A valid small PNG whose IHDR is patched to declare width x height (CRC fixed up), so
    only the header lies: the decoder's size check must reject it before decoding."""
    data = bytearray(encode(np.zeros((8, 8), dtype=np.uint8)))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


# ---------------------------------------------------------------------------------- success


def test_predict_png(client):
    response = post(client, GOOD_PNG, top_k="4")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["classes"] == list(CLASS_NAMES)
    assert sum(body["probabilities"]) == pytest.approx(1.0)
    assert len(body["top"]) == 4 and body["top"][0]["class"] == body["label"]
    probs = [t["probability"] for t in body["top"]]
    assert probs == sorted(probs, reverse=True)
    assert any("inverted" in step for step in body["steps"])
    # calibrated by the run's temperature; "unsure" lists at least the top two
    assert body["calibrated"] is True and body["temperature"] > 0
    assert body["unsure"] == (body["top"][0]["probability"] < 0.5)
    seen = decode_data_url(body["input_png"])
    assert seen.size == (28, 28) and seen.mode == "L"
    cam = decode_data_url(body["gradcam_png"])
    assert cam.size == (28, 28) and cam.mode == "RGB"


def test_predict_jpeg_and_as_is(client):
    response = post(client, encode(garment(seed=1), "JPEG", quality=85), name="x.jpg")
    assert response.status_code == 200, response.text
    assert any("JPEG" in step for step in response.json()["steps"])

    item = np.zeros((28, 28), dtype=np.uint8)
    item[4:24, 8:20] = 200
    response = post(client, encode(item), preprocess="false", top_k="1")
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["top"]) == (2 if body["unsure"] else 1)
    assert body["steps"][-1] == "used as is: 28x28, no preprocessing"
    assert np.array_equal(np.asarray(decode_data_url(body["input_png"])), item)


def test_health_model_docs(client, run_dir):
    assert client.get("/api/health").json() == {
        "status": "ok",
        "model": "s3-base",
        "backend": "torch",
    }
    info = client.get("/api/model").json()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert info["name"] == "s3-base" and info["params"] == metrics["params"]
    assert info["test_accuracy"] == metrics["test_accuracy"]
    assert info["temperature"] == metrics["temperature"] and info["unsure_below"] == 0.5
    assert (
        info["normalization"]["preset"]
        == json.loads((run_dir / "model.json").read_text())["normalization"]["preset"]
    )
    assert info["max_upload_bytes"] == LIMIT and info["gradcam"] is True
    schema = client.get("/openapi.json").json()
    assert "/api/predict" in schema["paths"] and "/api/model" in schema["paths"]
    # No /docs page: FastAPI's loads scripts from a public CDN (offline machines, our CSP).
    assert client.get("/docs").status_code == 404


def test_page_is_self_contained(client):
    response = client.get("/")
    assert response.status_code == 200
    assert 'id="predicted-label"' in response.text and 'id="file-input"' in response.text
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    for path in ("/", "/static/app.js", "/static/style.css"):
        text = client.get(path).text
        assert client.get(path).status_code == 200
        # nothing fetched from elsewhere (the only absolute URL would be an external one)
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path


def test_examples(client):
    payload = client.get("/api/examples").json()
    assert len(payload["examples"]) == 6  # the dataset is present wherever training ran
    labels = [e["label"] for e in payload["examples"]]
    assert len(set(labels)) == 6 and set(labels) <= set(CLASS_NAMES)
    for example in payload["examples"]:
        assert decode_data_url(example["png"]).size == (28, 28)


# ------------------------------------------------------------------------------- bad input


def test_upload_over_the_limit_is_413(client):
    # over the whole-body limit: refused on the Content-Length header alone
    response = post(client, b"\0" * (LIMIT + FORM_OVERHEAD_BYTES + 1))
    assert response.status_code == 413
    assert response.json()["detail"] == "upload too large: the limit is 97.7 KiB"  # LIMIT
    assert response.headers["x-content-type-options"] == "nosniff"
    # over the file limit but within the body's allowance for form framing
    response = post(client, b"\0" * (LIMIT + 1))
    assert response.status_code == 413
    assert_healthy(client)


def test_upload_without_content_length_is_counted(client):
    """A chunked body has no Content-Length: the bytes are counted as they arrive."""

    def chunks():
        yield FILE_PART_HEAD
        for _ in range(20):
            yield b"x" * 10_000

    response = client.post(
        "/api/predict",
        content=chunks(),
        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code == 413
    assert_healthy(client)


def test_lying_content_length_is_not_trusted(app):
    """A client that declares a small body and sends a big one still gets 413."""
    chunk = b"y" * 50_000
    messages = [{"type": "http.request", "body": FILE_PART_HEAD, "more_body": True}]
    messages += [{"type": "http.request", "body": chunk, "more_body": True}] * 10
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/predict",
        "raw_path": b"/api/predict",
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
            (b"content-length", b"100"),
        ],
        "client": ("127.0.0.1", 1234),
        "server": ("localhost", 80),
    }
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 413
    assert len(messages) < 10 - (LIMIT + FORM_OVERHEAD_BYTES) // len(chunk)  # stopped reading


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"this is a text file, not a picture", "not an image"),
        (GOOD_PNG[: len(GOOD_PNG) // 2], "truncated"),
        (png_with_size(50_000, 50_000), "decompression bomb"),  # past Pillow's own guard
        (png_with_size(7_000, 7_000), "decompression bomb"),  # past our 40-megapixel limit
        (png_with_size(0, 28), "zero"),
        (b"", "empty"),
    ],
    ids=["not-an-image", "truncated", "bomb-2.5G-pixels", "bomb-49M-pixels", "zero-width", "empty"],
)
def test_bad_uploads_are_400_with_a_one_line_reason(client, data, reason):
    response = post(client, data)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and reason in detail
    assert_healthy(client)


def test_bad_form_fields(client):
    assert post(client, GOOD_PNG, top_k="11").status_code == 422
    assert post(client, GOOD_PNG, top_k="zero").status_code == 422
    assert client.post("/api/predict", data={"top_k": "3"}).status_code == 422  # no file
    # a real picture that cannot be used as is
    response = post(client, GOOD_PNG, preprocess="false")
    assert response.status_code == 400 and "28x28" in response.json()["detail"]
    assert_healthy(client)


# ------------------------------------------------------------------------------ concurrency


def test_concurrent_requests_all_succeed_with_identical_results(client):
    uploads = [GOOD_PNG, encode(garment(seed=2), "JPEG", quality=80)]
    expected = [post(client, data).json() for data in uploads]
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(lambda i: (i % 2, post(client, uploads[i % 2])), range(16)))
    for k, response in responses:
        assert response.status_code == 200, response.text
        assert response.json() == expected[k]
