"""notebooks/compare_runs.ipynb runs top to bottom against a real ablation's store."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_the_notebook_shows_the_ablation_table_and_plot(ablated_project, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("PODIUM_ABLATION", "tiny_split")
    monkeypatch.setenv("PODIUM_TRACKING_URI", f"sqlite:///{ablated_project / 'mlflow.db'}")
    notebook = nbformat.read(REPO / "notebooks" / "compare_runs.ipynb", as_version=4)
    nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(REPO / "notebooks")}},
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    markdown = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "# Ablation `tiny_split`" in markdown
    assert "| original | 2 |" in markdown and "| folder | 2 |" in markdown
    assert any("image/png" in o.get("data", {}) for o in outputs)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "deepfake.split.strategy" in html  # the parameter that differs between runs
