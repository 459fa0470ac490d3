"""benchmarks/concept_cost.py --tiny: the concept-model cost benchmark's code path on the CPU (the GPU figures in
the README come from the same script on a lent H200)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "concept_cost.py"


def test_tiny_benchmark_scores_each_kind_through_probe_s_concept_model(tmp_path):
    out = tmp_path / "rows.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--models",
                           "openai/clip-vit-base-patch32,google/siglip-so400m-patch14-384", "--json", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["model"], r["kind"], r["dtype"]) for r in rows] == [
        ("openai/clip-vit-base-patch32", "clip", "float32"), ("google/siglip-so400m-patch14-384", "siglip", "float32")]
    assert all(r["s_per_image_b16"] > 0 and r["model_only_s_per_image_b64"] > 0 for r in rows)
    assert "| openai/clip-vit-base-patch32 | float32 |" in done.stdout
    bad = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--models", "openai/clip-vit-huge"],
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "unknown model(s) openai/clip-vit-huge; choose from" in bad.stderr
