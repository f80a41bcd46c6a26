"""fashionlab.inference.onnx: torch -> ONNX -> onnxruntime gives the same logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fashionlab.errors import RunError

onnx = pytest.importorskip("onnx", reason="needs the [export] extra (onnx, onnxruntime)")
from fashionlab.inference.onnx import OnnxPredictor, export_onnx  # noqa: E402


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(16 * 7 * 7, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def make_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 10)
    )


def trained_looking(model: nn.Module) -> nn.Module:
    """Non-trivial batch-norm running statistics, left in train mode: the exporter must switch
    to eval mode itself, or the ONNX graph would use batch statistics."""
    torch.manual_seed(0)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 28, 28) * 2 + 0.5)
    return model


def torch_logits(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module", autouse=True)
def _few_threads():
    # The test machine's cores are shared; one thread is plenty for these tiny models.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("build", [SmallCNN, make_mlp], ids=["cnn", "mlp"])
def test_onnx_logits_match_torch(tmp_path, build):
    model = trained_looking(build())
    path = export_onnx(model, tmp_path / "model.onnx")
    assert path == tmp_path / "model.onnx" and path.is_file()
    assert model.training  # mode restored
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temp file left

    predictor = OnnxPredictor(path, threads=1)
    rng = np.random.default_rng(0)
    for batch in (1, 7):  # dynamic batch axis: neither is the export batch size (2)
        x = rng.normal(size=(batch, 1, 28, 28)).astype(np.float32)
        got = predictor.logits(x)
        assert got.shape == (batch, 10) and got.dtype == np.float32
        np.testing.assert_allclose(got, torch_logits(model, x), atol=1e-4, rtol=0)
    assert predictor.logits(np.zeros((0, 1, 28, 28), np.float32)).shape == (0, 10)


def test_graph_has_named_dynamic_batch_and_opset(tmp_path):
    path = export_onnx(make_mlp(), tmp_path / "m.onnx", opset=17)
    graph = onnx.load(str(path))
    (inp,), (out,) = graph.graph.input, graph.graph.output
    assert (inp.name, out.name) == ("input", "logits")
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [1, 28, 28]
    assert graph.opset_import[0].version == 17


def test_failed_export_keeps_the_old_file(tmp_path):
    path = export_onnx(make_mlp(), tmp_path / "m.onnx")
    before = path.read_bytes()
    wrong = nn.Sequential(nn.Flatten(), nn.Linear(784, 5))
    with pytest.raises(ValueError, match=r"expected \(2, 10\)"):
        export_onnx(wrong, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


@pytest.mark.parametrize(
    "content",
    [b"", b"this is not an onnx file", bytes(range(256)) * 4],
    ids=["empty", "text", "binary"],
)
def test_corrupt_onnx_gives_run_error(tmp_path, content):
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(RunError, match="cannot load ONNX model") as info:
        OnnxPredictor(path)
    assert "\n" not in str(info.value)


def test_truncated_onnx_gives_run_error(tmp_path):
    path = export_onnx(make_mlp(), tmp_path / "m.onnx")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(RunError, match="cannot load ONNX model"):
        OnnxPredictor(path)


def test_missing_onnx_gives_run_error(tmp_path):
    with pytest.raises(RunError, match="not found"):
        OnnxPredictor(tmp_path / "missing.onnx")


def test_logits_checks_the_input_shape(tmp_path):
    predictor = OnnxPredictor(export_onnx(make_mlp(), tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        predictor.logits(np.zeros((2, 28, 28), np.float32))
    # float64 input is converted rather than rejected
    assert predictor.logits(np.zeros((2, 1, 28, 28))).shape == (2, 10)
