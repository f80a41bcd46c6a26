"""examples/quickstart.ipynb, executed cell by cell in a real Jupyter kernel on a small subset."""

from __future__ import annotations

from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient", reason="the dev extra (nbclient) is not installed")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


@pytest.mark.slow
def test_quickstart_notebook_runs(tmp_path: Path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "the notebook needs one cell tagged 'parameters'"
    params[0].source = (
        f"EPOCHS = 1\nTRAIN_SUBSET = 512\nEVAL_SUBSET = 200\nRUNS_DIR = {str(tmp_path / 'runs')!r}"
    )
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, on failure

    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 3  # sample grid, learning curves, confusion matrix: shown inline
    text = "\n".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                     for o in outputs)  # fmt: skip
    assert "p_value" in text and "->" in text
    runs = tmp_path / "runs"
    assert (runs / "s0-m1-seed42" / "complete").exists()
    assert (runs / "s3-base-seed42" / "report.html").is_file()
