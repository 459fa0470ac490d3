"""The quick-start notebook stays in step with the API: its cells compile and every probe.X it uses exists."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import probe
import probe.world

NOTEBOOK = Path(__file__).parents[1] / "notebooks" / "quickstart.ipynb"


def test_quickstart_cells_compile_and_use_existing_api():
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert len(code) >= 5
    for source in code:
        tree = ast.parse(source)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "probe":
                assert hasattr(probe, node.attr), f"notebook uses probe.{node.attr}, which does not exist"
            if isinstance(node, ast.ImportFrom) and node.module == "probe.world":
                for alias in node.names:
                    assert hasattr(probe.world, alias.name), alias.name
