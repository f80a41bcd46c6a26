"""Optional dependencies (pyproject's extras) and the one-line error that names the missing one."""

from __future__ import annotations

import importlib.util

from fashionlab.errors import FashionlabError

# extra -> the modules it provides (import names)
EXTRAS: dict[str, tuple[str, ...]] = {
    "serve": ("fastapi", "uvicorn", "multipart"),
    "export": ("onnx", "onnxruntime"),
    "ray": ("ray",),
    "audit": ("cleanlab",),
    "track": ("tensorboard", "mlflow"),
}


class MissingExtra(FashionlabError):
    """An optional dependency is not installed."""


def missing_modules(extra: str) -> list[str]:
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def require_extra(extra: str, needed_for: str) -> None:
    """Raise a one-line MissingExtra naming the extra to install if any of its modules is
    missing; cheap (no import) when they are all there."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtra(
            f"{needed_for} needs {', '.join(missing)}, which is not installed: "
            f"pip install 'fashionlab[{extra}]'"
        )
