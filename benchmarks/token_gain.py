"""Does the class token make its class more recognisable on fresh seeds? The paired accuracy change per run and pooled.

Each finished class's evaluation images are drawn with the plain prompt and with the token on the same templates and
seeds (probe/analysis/evaluation.py); this prints, per run and over all runs given, the accuracy of each and the
paired change with Newcombe's 95% interval and the exact McNemar p.

    .venv/bin/python benchmarks/token_gain.py runs/demo benchmarks/.cache/validity/runs/fresh16-*
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    from probe.analysis.evaluation import gain_text, token_gain
    from probe.run import RunDir

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    rows, pooled = [], []
    print("| run | classes | baseline acc | token acc | paired change |")
    print("|---|---|---|---|---|")
    for path in args.runs:
        metrics = [m for _, m in RunDir(path).finished_classes() if m.get("status") == "done"]
        pooled += metrics
        gain = token_gain(metrics)
        base = sum(m["baseline"]["accuracy"] for m in metrics) / max(len(metrics), 1)
        token = sum(m["token"]["accuracy"] for m in metrics) / max(len(metrics), 1)
        rows.append({"run": path.name, "classes": len(metrics), "baseline_accuracy": round(base, 4),
                     "token_accuracy": round(token, 4), "change": gain_text(gain)})
        print(f"| {path.name} | {len(metrics)} | {base:.2f} | {token:.2f} | {gain_text(gain)} |")
    total = token_gain(pooled)
    print(f"pooled over {len(args.runs)} runs: {gain_text(total)}")
    if args.json:
        args.json.write_text(json.dumps({"command": " ".join(sys.argv), "rows": rows, "pooled": gain_text(total),
                                         "pooled_effect": None if total is None else
                                         [total.mean, total.ci_low, total.ci_high, total.n, total.p]}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
