"""Export a trained model to ONNX, run it with onnxruntime, and check it against PyTorch.

Contract of an exported file: one input `input`, float32 (N, 1, 28, 28), already normalised
exactly as in training; one output `logits`, float32 (N, 10); N is a dynamic axis.

Exporter: the TorchScript-based one (`torch.onnx.export(..., dynamo=False)`). torch 2.13's
default (dynamo) exporter needs the `onnxscript` package, which is not a dependency; the
TorchScript exporter needs only `onnx` and handles every layer our models use (conv, batch
norm, pooling, linear, dropout, activations). It is deprecated upstream but present in 2.13,
which the project pins.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from fashionlab._extras import require_extra
from fashionlab._io import atomic_write_with
from fashionlab._read import WEIGHTS, open_regular, read_bytes
from fashionlab.data import prepare_data
from fashionlab.errors import RunError, one_line
from fashionlab.models.base import INPUT_SHAPE, NUM_CLASSES
from fashionlab.runs import require_ours
from fashionlab.runs.weights import WEIGHTS_FILE, LoadedModel
from fashionlab.training.predict import predict_logits

try:
    import onnx
    import onnxruntime as ort
except ImportError:  # the export extra is optional: say which one to install, in one line
    require_extra("export", "ONNX export and the onnx backend")
    raise

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17
ONNX_FILENAME = "model.onnx"
# The metadata entry that ties an exported file to the weights it was exported from.
WEIGHTS_SHA256 = "fashionlab.weights_sha256"
# float32 kernels of onnxruntime and PyTorch sum in different orders; for our models that moves
# logits by ~1e-6. A wrong graph (batch norm in train mode, a missing layer) is off by ~0.1.
CHECK_ATOL = 1e-4
# Export-time self check: onnxruntime vs torch on a random batch. Float32 kernels differ in
# summation order, so exact equality is not expected; 1e-3 still catches any real mismatch
# (wrong batch-norm mode, a dropped layer), which shows up as errors of order 0.1.
_VERIFY_ATOL = 1e-3
_VERIFY_RTOL = 1e-3


def export_onnx(
    model: torch.nn.Module,
    path: str | os.PathLike,
    opset: int = DEFAULT_OPSET,
    verify: bool = True,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Write `model` as ONNX to `path` (atomically) and return the path.

    The model is exported in eval mode (batch norm uses its running statistics, dropout is
    off) and its train/eval mode is restored afterwards. The file is checked with
    `onnx.checker` and, if `verify`, run once with onnxruntime against torch before it
    replaces `path`, so a bad export never overwrites a good file. `metadata` goes into the
    file's metadata_props.
    """
    path = Path(path)
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        # Batch of 2, not 1: the exporter may fold a size-1 batch dimension into constants.
        sample = torch.randn(2, *INPUT_SHAPE, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected = model(sample.to(device)).float().cpu().numpy()
        if expected.shape != (2, NUM_CLASSES):
            raise ValueError(
                f"model maps (2, 1, 28, 28) to {tuple(expected.shape)}; expected (2, 10)"
            )

        def write(tmp: str) -> None:
            with warnings.catch_warnings():
                # The TorchScript exporter announces its own deprecation on every call.
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(
                    model,
                    (sample.to(device),),
                    tmp,
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                    do_constant_folding=True,
                )
            if metadata:
                exported = onnx.load(tmp)
                onnx.helper.set_model_props(exported, metadata)
                onnx.save(exported, tmp)
            # Path form: the checker then also handles models stored with external data.
            onnx.checker.check_model(tmp, full_check=True)
            if verify:
                got = OnnxPredictor(tmp).logits(sample.numpy())
                if not np.allclose(got, expected, atol=_VERIFY_ATOL, rtol=_VERIFY_RTOL):
                    worst = float(np.max(np.abs(got - expected)))
                    raise RuntimeError(
                        f"ONNX export does not match torch (max |diff| {worst:.3g}); "
                        f"{path} was not written"
                    )

        atomic_write_with(path, write)
    finally:
        model.train(was_training)
    return path


class OnnxPredictor:
    """An exported model on onnxruntime's CPU provider. `logits` is safe to call from several
    threads at once (InferenceSession.run is thread-safe)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise RunError(f"ONNX model not found: {self.path}")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        # Errors go through our exceptions, not onnxruntime's stderr logger.
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Exception subclasses
            raise RunError(f"cannot load ONNX model {self.path}: {one_line(exc)}") from None

        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise RunError(
                f"ONNX model {self.path} has {len(inputs)} inputs and {len(outputs)} outputs; "
                "expected one of each"
            )
        shape = list(inputs[0].shape)
        if len(shape) != 4 or shape[1:] != list(INPUT_SHAPE):
            raise RunError(
                f"ONNX model {self.path} takes input of shape {shape}; expected [N, 1, 28, 28]"
            )
        if list(outputs[0].shape)[-1:] != [NUM_CLASSES]:
            raise RunError(
                f"ONNX model {self.path} gives output of shape {outputs[0].shape}; expected [N, 10]"
            )
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name

    def logits(self, x: np.ndarray) -> np.ndarray:
        """float32 (N, 1, 28, 28), normalised as in training -> float32 (N, 10) logits."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1:] != INPUT_SHAPE:
            raise ValueError(f"expected input of shape (N, 1, 28, 28), got {x.shape}")
        if x.shape[0] == 0:
            return np.zeros((0, NUM_CLASSES), dtype=np.float32)
        try:
            (out,) = self._session.run([self.output_name], {self.input_name: x})
        except Exception as exc:
            raise RunError(f"ONNX model {self.path} failed to run: {one_line(exc)}") from None
        return np.asarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        return f"OnnxPredictor({str(self.path)!r})"


def weights_digest(run_dir: Path) -> str:
    """SHA-256 of the run's weights file: what an exported ONNX file records it came from."""
    digest = hashlib.sha256()
    with open_regular(run_dir / WEIGHTS_FILE) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recorded_digest(path: Path) -> str | None:
    """The weights digest an ONNX file records, or None (not ours, older, or unreadable)."""
    try:
        model = onnx.load_from_string(read_bytes(path, WEIGHTS))
    except Exception:  # onnx raises DecodeError and others for a damaged file
        return None
    return next((p.value for p in model.metadata_props if p.key == WEIGHTS_SHA256), None)


def onnx_target(run_dir: Path, path: Path | None = None) -> Path:
    """Where an export of the run goes. By default RUN/model.onnx, in a run folder fashionlab
    made (whatever stands under that name there is replaced: the name is fashionlab's). An
    explicit `path` that already holds a file no fashionlab export wrote (no weights digest in
    its metadata) is the user's, and is never replaced (RunError)."""
    if path is None:
        require_ours(run_dir)
        path = run_dir / ONNX_FILENAME
        foreign = path.exists() and not path.is_file()  # a folder or a FIFO: not ours to remove
    else:
        path = Path(path)
        foreign = path.is_symlink() or (
            path.exists() and (not path.is_file() or recorded_digest(path) is None)
        )
    if foreign:
        raise RunError(
            f"{path}: exists and is not an ONNX file fashionlab exported; choose another "
            "--output or move it away"
        )
    return path


def ensure_onnx(loaded: LoadedModel, path: Path | None = None) -> Path:
    """RUN/model.onnx (or `path`), exported from `loaded.model` unless the file there was
    exported from these very weights (the SHA-256 of model.safetensors in its metadata): a
    re-trained run, or a file planted beside the weights, never answers for them."""
    path = onnx_target(loaded.run_dir, path)
    digest = weights_digest(loaded.run_dir)
    if path.is_file() and recorded_digest(path) == digest:
        return path
    try:
        return export_onnx(loaded.model, path, metadata={WEIGHTS_SHA256: digest})
    except OSError as exc:
        raise RunError(
            f"cannot write the ONNX model to {path} ({exc.strerror or exc}); "
            "export it elsewhere with 'fashionlab export RUN --output PATH' or use the "
            "torch backend"
        ) from None


def compare_on_test_set(
    loaded: LoadedModel, onnx_path: Path, data_dir: str | Path | None = None
) -> tuple[float, int]:
    """(max |onnx - torch| over all logits, number of images) on the run's whole test split,
    both through `predict_logits` in float32 (the exported graph is float32), with the run's
    saved normaliser (the one the exported model is used with).

    The run's `eval_subset` is dropped: it only shortens evaluation during training, while an
    export check should see every test image of the split."""
    config = loaded.config.model_copy(update={"eval_subset": None})
    split, _ = prepare_data(config, data_dir)
    images, normalizer = split.test.images, loaded.normalizer
    expected = predict_logits(loaded.model, images, normalizer)
    predictor = OnnxPredictor(onnx_path)
    got = predict_logits(
        lambda x: torch.from_numpy(predictor.logits(x.numpy())), images, normalizer
    )
    return float((got - expected).abs().max()), len(images)


__all__ = [
    "CHECK_ATOL",
    "DEFAULT_OPSET",
    "INPUT_NAME",
    "ONNX_FILENAME",
    "OUTPUT_NAME",
    "OnnxPredictor",
    "compare_on_test_set",
    "ensure_onnx",
    "export_onnx",
    "onnx_target",
]
