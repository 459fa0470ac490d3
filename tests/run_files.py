"""A small valid run directory, made without models, for the tests of damaged run files.

``make_valid_run`` writes the synthetic run of ``probe.report.synthetic`` (the documented layout), adds the
per-pair data ``probe compare`` needs to analysis.json (one entry per cue finding, confirmed ones with a
``confirm`` stage, as the analysis engine writes them) and rewrites findings.json/.parquet with the real writer
(``RunDir.write_findings``), so `probe check`, `probe compare` and `probe report` all run on it.
"""

from __future__ import annotations

import json
from pathlib import Path

from probe.report.synthetic import make_synthetic_run
from probe.run import RunDir
from probe.run.records import FINDING_FIELDS, PAIR_KINDS


def make_valid_run(path: Path, n_classes: int = 3, seed: int = 0) -> Path:
    run = make_synthetic_run(path, n_classes, images_per_kind=1, attributions=False, history_steps=4, seed=seed)
    rows = json.loads((run / "findings.json").read_text())
    RunDir(run).write_findings(rows, list(FINDING_FIELDS))
    analysis = json.loads((run / "analysis.json").read_text())
    pairs = []
    for k, f in enumerate(rows):
        if f["kind"] not in PAIR_KINDS:
            continue
        keys = [f"s{100 * k + i}:p0" for i in range(4)]
        entry = {"kind": f["kind"], "class_index": f["class_index"], "class_name": f["class_name"], "cue": f["cue"],
                 "screen": {"keys": keys, "values": [0.1, 0.2, 0.0, 0.3], "attempted": 4, "excluded": 0}}
        if f["status"] in ("passes", "weak", "inconclusive"):
            confirm = [f"s{100000 + 100 * k + i}:p0" for i in range(6)]
            entry["confirm"] = {"keys": confirm, "values": [0.4, 0.5, 0.3, 0.6, 0.2, 0.5], "attempted": 6, "excluded": 0}
        pairs.append(entry)
    analysis["pairs"] = pairs
    analysis["config"] = {"thresholds": {"min_effect": 0.1, "weak_effect": 0.05, "fdr_q": 0.05,
                                         "two_sided_kinds": ["token-shift"]}}
    (run / "analysis.json").write_text(json.dumps(analysis, indent=1))
    return run
