"""How one finding's `probe confirm` verdict varies with the validation set drawn (shapes world).

``python benchmarks/confirm_draws.py runs/demo heart dot --n 10000 30000 --seeds 54321 1 2 3`` confirms the run's
necessity finding on (class, cue) against validation sets drawn from the run's world classifier's training
distribution (``probe.world.valset.validation_images``), one per size and seed, rendering only the class's scenes
(the necessity verdict reads the class's own images), and prints per draw the verdict, the slices and the mean
P(class) gap beside the finding's truth in that population (``validation_truth(...).slice_gap``). A finding whose
truth in the data sits at the audit's bar is confirmed on some draws and *weaker* on others: this measures how often.

Works on a copy of the run; writes ``benchmarks/results/confirm_draws-RUN-CLASS-CUE-DATE.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("class_name")
    p.add_argument("cue")
    p.add_argument("--classifier", default="biased", help="the world classifier whose training distribution to draw")
    p.add_argument("--n", type=int, nargs="+", default=[10000], help="scenes drawn per validation set (all classes)")
    p.add_argument("--seeds", type=int, nargs="+", default=[54321, 1, 2])
    args = p.parse_args()

    from probe.confirm import ClassifierSource, confirm_run
    from probe.world.valset import validation_images, validation_truth

    truth = validation_truth(args.classifier, n=300).slice_gap(args.class_name, args.cue, "necessity")
    print(f"{args.class_name}/{args.cue} necessity, truth in the data population: {truth:+.3f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.n:
            for seed in args.seeds:
                start = time.perf_counter()
                images = validation_images(args.classifier, n, seed=seed, classes=[args.class_name])
                copy = Path(tmp) / f"run-{n}-{seed}"
                shutil.copytree(args.run, copy, ignore=shutil.ignore_patterns(".probe*", "report"))
                record = confirm_run(copy, images, source=ClassifierSource(device="cpu"))
                f = next((f for f in record.findings
                          if (f.class_name, f.kind, f.cue) == (args.class_name, "necessity", args.cue)), None)
                if f is None:
                    print(f"{args.run} has no necessity finding on {args.class_name}/{args.cue}", file=sys.stderr)
                    return 2
                d = f.decisive
                row = {"n": n, "seed": seed, "class_images": len(images), "verdict": f.verdict,
                       "strength": record.strength(f), "with_cue": d.cue.n, "without": d.counter.n,
                       "accuracy_gap": round(d.gap, 3), "p": d.p, "prob_gap": round(f.own.prob_gap, 3),
                       "prob_ci": [round(f.own.prob_low, 3), round(f.own.prob_high, 3)],
                       "seconds": round(time.perf_counter() - start, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    seen = sum(r["verdict"] in ("confirmed", "weaker") for r in rows)
    confirmed = sum(r["verdict"] == "confirmed" for r in rows)
    print(f"{confirmed} of {len(rows)} draws confirm it, {seen} see it (confirmed or weaker)")
    out = Path(__file__).resolve().parent / "results" / \
        f"confirm_draws-{args.run.name}-{args.class_name}-{args.cue}-{time.strftime('%Y-%m-%d')}.json"
    out.write_text(json.dumps({"command": " ".join(sys.argv), "truth_in_data": round(truth, 3), "rows": rows,
                               "confirmed": confirmed, "seen": seen}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
