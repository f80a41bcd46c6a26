"""The web app of `fashionlab serve`: a page and a JSON API over `fashionlab.inference`.

`create_app(run_dir, max_upload_bytes=...)` returns a FastAPI application; the model is loaded
once, when the app is created. See `fashionlab.serve.app` for the endpoints.
"""

from fashionlab.serve.app import DEFAULT_MAX_UPLOAD_BYTES, create_app

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "create_app"]
