"""The FastAPI application: one page and a small JSON API, thin over `fashionlab.inference`.

Endpoints:

* `GET /`: the page (self-contained: its script and style come from `/static`, nothing from
  the network; a Content-Security-Policy enforces that).
* `POST /api/predict`: multipart with `file` (the image) and optional `top_k`, `preprocess`;
  returns the class probabilities, the top-k, the preprocessing steps, the 28x28 image the
  model saw and a Grad-CAM overlay, both as PNG data URLs.
* `GET /api/health`, `GET /api/model`, `GET /api/examples` (a few test images), and
  `/openapi.json` (no `/docs` page: FastAPI's loads its scripts from a public CDN, which an
  offline machine cannot reach and this page's policy would not allow).

Untrusted uploads: bodies over the limit get 413 (see `middleware.BodySizeLimit`); anything
that is not a usable image gets 400 with a one-line `detail` (decoding is
`fashionlab.inference.imaging`, which checks the declared size before decoding a pixel); every
request is independent, so the server keeps serving after a bad one.

Concurrency: `/api/predict` is a plain `def`, so Starlette runs it in its thread pool; the
`Classifier` serialises torch calls itself. What a burst of uploads may hold is bounded
(`serve.limits`): decodes reserve their peak memory from a budget before decoding, at most a
fixed number of predictions wait at once (the rest get 503), and the health, model and example
endpoints are `async`, so they answer from the event loop without queueing behind decodes.
Only the Host names given are served (`TrustedHostMiddleware`: no DNS rebinding), and no
response names a file or folder of the server.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from fashionlab import __version__
from fashionlab._read import read_text
from fashionlab.data import CLASS_NAMES
from fashionlab.errors import ConfigError, FashionlabError, ImageError, RunError, one_line
from fashionlab.inference import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_TOP_K,
    Backend,
    Classifier,
    prepare_image,
)
from fashionlab.runs import load_metrics
from fashionlab.serve.encoding import png_data_url
from fashionlab.serve.examples import ExampleImages
from fashionlab.serve.limits import (
    DEFAULT_DECODE_BUDGET_BYTES,
    DEFAULT_MAX_WAITING,
    DecodeBudget,
    WaitingRoom,
)
from fashionlab.serve.middleware import BodySizeLimit, SecurityHeaders, format_bytes

DEFAULT_MAX_UPLOAD_BYTES = 5 * 1024 * 1024
# Room for the multipart framing and the small form fields around the file itself; the file
# alone is then checked against max_upload_bytes exactly.
FORM_OVERHEAD_BYTES = 64 * 1024
# Host names served by default; `fashionlab serve --host` adds the one it listens on.
LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "[::1]")
STATIC_DIR = Path(__file__).parent / "static"
# The page needs nothing outside this server; images are data: URLs (results) or blob: URLs
# (the local preview of the picked file).
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


# Form fields of POST /api/predict. Module level, not inside create_app: with postponed
# annotations FastAPI resolves these names in the module's globals.
UploadField = Annotated[
    UploadFile, File(description="the image: PNG, JPEG, WebP, GIF, BMP or a 28x28 .npy")
]
TopKField = Annotated[int, Form(ge=1, le=len(CLASS_NAMES), description="classes to list")]
PreprocessField = Annotated[
    bool,
    Form(
        description="make it look like Fashion-MNIST first (grayscale, light object on black, "
        "cropped, centred); false: the image must already be 28x28"
    ),
]


def create_app(
    run_dir: str | Path,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    *,
    backend: Backend = "torch",
    data_dir: str | Path | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    onnx_threads: int | None = None,
    classifier: Classifier | None = None,
    allowed_hosts: tuple[str, ...] | list[str] = LOCAL_HOSTS,
    decode_budget_bytes: int = DEFAULT_DECODE_BUDGET_BYTES,
    max_waiting: int = DEFAULT_MAX_WAITING,
) -> FastAPI:
    """The app for one run; its model is loaded here, once (a bad run folder fails now, before
    a server starts). `classifier` lets a caller share one already loaded."""
    if max_upload_bytes <= 0:
        raise ConfigError(f"max_upload_bytes must be positive, got {max_upload_bytes}")
    run_dir = Path(run_dir)
    clf = classifier or Classifier.from_run(run_dir, backend=backend, onnx_threads=onnx_threads)
    model_summary = _model_summary(clf, run_dir, max_upload_bytes)
    examples = ExampleImages(data_dir, clf.class_names)
    budget = DecodeBudget(decode_budget_bytes)
    waiting = WaitingRoom(max_waiting)
    index_html = read_text(STATIC_DIR / "index.html")

    app = FastAPI(
        title="fashionlab",
        version=__version__,
        description=f"Classify clothing images with the Fashion-MNIST model of run "
        f"`{run_dir.name}` ({clf.model_name}).",
        docs_url=None,
        redoc_url=None,
    )
    app.state.classifier = clf
    # The size limit wraps the whole app, so nothing reads a body before it has counted it;
    # the security headers (added last = outermost) go on every response, its 413s included.
    too_large = f"upload too large: the limit is {format_bytes(max_upload_bytes)}"
    app.add_middleware(
        BodySizeLimit, max_body_bytes=max_upload_bytes + FORM_OVERHEAD_BYTES, detail=too_large
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(FashionlabError)
    def _user_error(_request: Request, exc: FashionlabError) -> JSONResponse:
        # Bad input is the client's fault (400); anything else from the library (the ONNX
        # session failing, say) is ours (500). Either way one line, and no traceback leaks.
        status = 400 if isinstance(exc, (ImageError, ConfigError)) else 500
        return JSONResponse({"detail": one_line(exc)}, status_code=status)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(index_html, headers={"Content-Security-Policy": PAGE_CSP})

    @app.get("/api/health", summary="Liveness: the model is loaded and answering")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": clf.model_name, "backend": clf.backend}

    @app.get("/api/model", summary="The served model: name, size, test accuracy, input format")
    async def model() -> dict[str, Any]:
        return model_summary

    @app.get("/api/examples", summary="A few Fashion-MNIST test images as PNG data URLs")
    def example_images() -> dict[str, Any]:
        return examples.payload()

    @app.post("/api/predict", summary="Classify one uploaded image")
    def predict(
        file: UploadField, top_k: TopKField = DEFAULT_TOP_K, preprocess: PreprocessField = True
    ) -> dict[str, Any]:
        # Read one byte past the limit: enough to know it is over without reading it all.
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(status_code=413, detail=too_large)
        with waiting.enter():
            image, steps = prepare_image(
                data, preprocessing=preprocess, max_pixels=max_pixels, memory_gate=budget.reserve
            )
            del data
            result = clf.classify(image, top_k=top_k)
            cam = clf.gradcam(image, target_class=clf.class_names.index(result["label"]))
        return {
            **result,
            "steps": steps,
            "input_png": png_data_url(image),
            "gradcam_png": None if cam is None else png_data_url(_overlay(image, cam)),
        }

    return app


def _overlay(image: Any, cam: Any) -> Any:
    from fashionlab.viz.gradcam import overlay_heatmap  # matplotlib: only once a CAM exists

    return overlay_heatmap(image, cam)


def _model_summary(clf: Classifier, run_dir: Path, max_upload_bytes: int) -> dict[str, Any]:
    try:
        metrics = load_metrics(run_dir)
    except RunError:  # a corrupt metrics.json should not keep the model from being served
        metrics = {}
    accuracy = metrics.get("test_accuracy")
    if not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy):
        accuracy = None  # JSON has no NaN
    norm = clf.loaded.info.get("normalization", {})
    scalar = {k: norm[k] for k in ("mean", "std") if isinstance(norm.get(k), (int, float))}
    return {
        "name": clf.model_name,
        "run": run_dir.name,
        "params": clf.params,
        "test_accuracy": accuracy,
        # zscore's mean/std are 28x28 arrays: name the preset rather than send 1,568 numbers
        "normalization": {"preset": norm.get("preset"), **scalar},
        "class_names": list(clf.class_names),
        "backend": clf.backend,
        # The run's own test-pass precision, which every prediction here uses too.
        "precision": clf.settings.precision,
        # Probabilities are divided by the run's fitted temperature when it has one.
        "temperature": clf.temperature,
        "calibration": clf.calibration_note,
        "unsure_below": clf.unsure_below,
        "gradcam": clf.has_gradcam,
        "max_upload_bytes": max_upload_bytes,
        "input": "28x28 grayscale, light object on black (uploads are preprocessed to match)",
    }
