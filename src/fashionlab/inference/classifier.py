"""Classify new images with a trained run: the library behind `fashionlab predict` and the
web app (`fashionlab.serve`), which are thin layers over `Classifier`.

Logits come from `train.predict.predict_logits`, the path the run's own test pass took, with
the precision and test-time augmentation the run recorded: a batch of the run's test images
gets the logits in its predictions.npz.

A `Classifier` is built once from a run folder and then reused: loading rebuilds the model,
and the ONNX backend may export it first, so neither belongs in a per-image code path.

Thread safety: one `Classifier` may be shared by many threads (the web server decodes and
classifies uploads in a thread pool). PyTorch calls are serialised by a lock: a forward pass on
its own would be safe, but Grad-CAM temporarily registers a forward hook and switches the
module's train/eval mode, and a concurrent forward pass would run through that hook and
overwrite the activation being differentiated. onnxruntime's `InferenceSession.run` is
thread-safe, so the ONNX backend classifies without the lock (Grad-CAM still needs torch).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from fashionlab.errors import ConfigError, ImageError, RunError
from fashionlab.evaluation import NO_VALIDATION, UNSURE_BELOW, run_temperature, softmax
from fashionlab.inference.imaging import SIZE
from fashionlab.models import gradcam_layer
from fashionlab.runs import load_metrics
from fashionlab.runs.weights import LoadedModel, load_model
from fashionlab.training.predict import PredictSettings, predict_logits

Backend = Literal["torch", "onnx"]
BACKENDS: tuple[str, ...] = ("torch", "onnx")
DEFAULT_TOP_K = 3


class Classifier:
    """A trained model ready to classify 28x28 uint8 images (light object on black).

    Build it with `Classifier.from_run(run_dir, backend=...)`. Inputs are what
    `fashionlab.inference.imaging.prepare_image` returns; normalisation is the run's own.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        backend: Backend = "torch",
        onnx_path: Path | None = None,
        onnx_threads: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        self.loaded = loaded
        self.backend: Backend = backend
        self.class_names: tuple[str, ...] = tuple(loaded.class_names)
        self._lock = threading.Lock()
        self.device = next(loaded.model.parameters()).device
        try:
            metrics = load_metrics(loaded.run_dir)
        except RunError:  # a damaged metrics.json: the config's precision, resolved here
            metrics = {}
        # As the run's test pass computed its logits: its recorded precision and TTA views.
        self.settings = PredictSettings.of_run(loaded.config, metrics, self.device)
        # The temperature fitted on the run's validation logits; None for runs without them,
        # whose probabilities are the model's own (uncalibrated).
        self.temperature: float | None = run_temperature(metrics)
        self.unsure_below = UNSURE_BELOW
        self._onnx = None
        self.onnx_path: Path | None = None
        if backend == "onnx":
            # onnxruntime only when asked for
            from fashionlab.inference.onnx import OnnxPredictor, ensure_onnx

            self.onnx_path = ensure_onnx(loaded, onnx_path)
            self._onnx = OnnxPredictor(self.onnx_path, threads=onnx_threads)
        self._cam_layer = _gradcam_layer_name(loaded.model)

    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        backend: Backend = "torch",
        device: str | torch.device = "cpu",
        onnx_path: str | Path | None = None,
        onnx_threads: int | None = None,
    ) -> Classifier:
        """Load the run's model once. `backend="onnx"` uses `onnx_path` (default
        RUN/model.onnx), exporting it first if it is missing or older than the weights;
        `onnx_threads` is onnxruntime's intra-op thread count (default: its own choice).
        PyTorch's thread count is process-wide: set it with `torch.set_num_threads`."""
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        loaded = load_model(run_dir, device=device)
        path = None if onnx_path is None else Path(onnx_path)
        return cls(loaded, backend, path, onnx_threads)

    # -- facts about the model -----------------------------------------------------------------

    @property
    def model_name(self) -> str:
        return str(self.loaded.info.get("model", self.loaded.config.model))

    @property
    def params(self) -> int:
        return int(sum(p.numel() for p in self.loaded.model.parameters()))

    @property
    def has_gradcam(self) -> bool:
        return self._cam_layer is not None

    # -- inference -----------------------------------------------------------------------------

    def logits(self, images: Any) -> np.ndarray:
        """float32 (N, 10) logits for uint8 images (N, 28, 28) or one image (28, 28), through
        `predict_logits` with the run's recorded precision and test-time augmentation (the
        ONNX backend: its float32 graph, with the same views)."""
        batch = torch.from_numpy(_as_batch(images))
        normalizer = self.loaded.normalizer
        if self._onnx is not None:
            onnx = self._onnx
            settings = PredictSettings("fp32", self.settings.tta_flip, self.settings.tta_shift)
            forward = lambda x: torch.from_numpy(onnx.logits(x.numpy()))  # noqa: E731
            logits = predict_logits(forward, batch, normalizer, settings=settings).numpy()
        else:
            with self._lock:
                # Under the lock: Grad-CAM switches the module's mode and hooks it meanwhile.
                logits = predict_logits(
                    self.loaded.model, batch, normalizer, self.device, self.settings
                ).numpy()
        if not np.isfinite(logits).all():
            raise RunError(
                f"{self.loaded.run_dir}: the model gave NaN or infinite scores; its weights "
                "are unusable: re-train the run"
            )
        return logits

    @property
    def calibrated(self) -> bool:
        return self.temperature is not None

    @property
    def calibration_note(self) -> str:
        """One sentence on what the probabilities are, for the CLI and the web page."""
        if self.temperature is None:
            return NO_VALIDATION
        return (
            f"probabilities calibrated by temperature scaling (T = {self.temperature:.3f}, "
            "fitted on the run's validation split)"
        )

    def probabilities(self, images: Any, calibrated: bool = True) -> np.ndarray:
        """float64 (N, 10) softmax probabilities; divided by the run's temperature first when
        it has one (`calibrated=False`: the model's raw softmax). The ranking never changes."""
        logits = self.logits(images).astype(np.float64)
        if calibrated and self.temperature is not None:
            logits = logits / self.temperature
        return softmax(logits)

    def classify(self, image: Any, top_k: int = DEFAULT_TOP_K) -> dict[str, Any]:
        """One uint8 28x28 image -> {"label", "classes", "probabilities", "top", "unsure",
        "calibrated", "temperature"}: every class with its (calibrated) probability in class
        order and the `top_k` most probable, best first. `unsure` is true when the top
        probability is below `unsure_below` (0.5): then at least the top two are listed."""
        top_k = check_top_k(top_k, len(self.class_names))
        batch = _as_batch(image)
        if len(batch) != 1:
            raise ImageError(f"classify takes one image, got {len(batch)}; use probabilities()")
        probs = self.probabilities(batch)[0]
        # stable sort on -p: equal probabilities keep class order, so results are deterministic
        order = np.argsort(-probs, kind="stable")
        unsure = bool(probs[order[0]] < self.unsure_below)
        shown = max(top_k, 2) if unsure else top_k
        top = [{"class": self.class_names[i], "probability": float(probs[i])} for i in order]
        return {
            "label": top[0]["class"],
            "classes": list(self.class_names),
            "probabilities": [float(p) for p in probs],
            "top": top[:shown],
            "unsure": unsure,
            "calibrated": self.calibrated,
            "temperature": self.temperature,
        }

    def gradcam(self, image: Any, target_class: int | None = None) -> np.ndarray | None:
        """Grad-CAM map (28, 28) float32 in [0, 1] for one uint8 image and `target_class`
        (default: the predicted class); None for a model without a spatial layer (an MLP).
        Always computed with the PyTorch model: ONNX has no gradients."""
        if self._cam_layer is None:
            return None
        batch = _as_batch(image)
        if len(batch) != 1:
            raise ImageError(f"gradcam takes one image, got {len(batch)}")
        from fashionlab.viz.gradcam import compute_gradcam  # matplotlib only when needed

        targets = None if target_class is None else [int(target_class)]
        with self._lock:
            result = compute_gradcam(
                self.loaded.model,
                torch.from_numpy(batch),
                self.loaded.normalizer,
                target_layer=self._cam_layer,
                target_classes=targets,
            )
        return None if result is None else result.cams[0]

    def __repr__(self) -> str:
        return (
            f"Classifier({str(self.loaded.run_dir)!r}, model={self.model_name!r}, "
            f"backend={self.backend!r})"
        )


def check_top_k(top_k: int, num_classes: int) -> int:
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)):
        raise ConfigError(f"top_k must be an integer, got {top_k!r}")
    if not 1 <= top_k <= num_classes:
        raise ConfigError(f"top_k must be between 1 and {num_classes}, got {top_k}")
    return int(top_k)


def _as_batch(images: Any) -> np.ndarray:
    """uint8 (N, 28, 28) from one (28, 28) image or a batch; anything else is an ImageError."""
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    batch = np.asarray(images)
    if batch.ndim == 2:
        batch = batch[None]
    if batch.ndim != 3 or batch.shape[1:] != (SIZE, SIZE):
        raise ImageError(
            f"expected a {SIZE}x{SIZE} image (or a batch N x {SIZE} x {SIZE}), got shape "
            f"{tuple(np.shape(images))}; prepare it with fashionlab.inference.imaging.prepare_image"
        )
    if batch.dtype != np.uint8:
        raise ImageError(f"expected uint8 pixels 0..255, got {batch.dtype}")
    return np.ascontiguousarray(batch)


def _gradcam_layer_name(model: torch.nn.Module) -> str | None:
    """Name (for compute_gradcam) of the layer `models.gradcam_layer` picks; None for MLPs."""
    layer = gradcam_layer(model)
    if layer is None:
        return None
    return next((name for name, m in model.named_modules() if m is layer), None)


__all__ = ["BACKENDS", "Classifier", "check_top_k"]
