"""benchmarks/gpu_step.py --tiny: the GPU benchmark's code path on the CPU, and a peak-RSS check that chunking the
gradient lowers the memory a step adds (a regression here would show on a GPU as the issue-9 peak)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_step.py"


def test_tiny_benchmark_prints_the_figures_and_chunking_lowers_peak_rss(tmp_path):
    out = tmp_path / "rows.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--rows", "unchunked,max-batch-1", "--batch", "4",
                           "--warmup", "0", "--repeats", "1", "--json", str(out)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("# probe gpu_step: CPU")
    for name in ("unchunked", "max-batch-1"):
        row = next(line for line in lines if line.startswith(f"| {name} |"))
        assert re.search(r"\| [0-9.]+ s/step \| [0-9]+ MiB RSS added by the step \([0-9]+ MiB peak\) \|$", row), row
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["max-batch-1"]["max_batch"] == 1 and rows["unchunked"]["max_batch"] is None
    assert all(r["s_per_step"] > 0 for r in rows.values())
    # Each row ran in its own process: the step's own RSS. Four images' decode graphs at once vs one at a time
    # (measured 161 vs 70 MiB here); well below 3/4 even with allocator noise.
    assert rows["max-batch-1"]["step_rss_mib"] < 0.75 * rows["unchunked"]["step_rss_mib"], rows
