"""Classify new images with a trained run: image preparation (`imaging`), the `Classifier`
(`classifier`), and the ONNX export with its check against PyTorch (`onnx`, imported on
demand: it loads onnxruntime)."""

from fashionlab.inference.classifier import (
    BACKENDS,
    DEFAULT_TOP_K,
    Backend,
    Classifier,
    check_top_k,
)
from fashionlab.inference.imaging import DEFAULT_MAX_PIXELS, SIZE, prepare_image

__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_TOP_K",
    "SIZE",
    "Backend",
    "Classifier",
    "check_top_k",
    "prepare_image",
]
