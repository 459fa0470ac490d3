"""Discovery in the shapes world (issue 19 §3): planted cues left off the tested list must be proposed and confirmed.

For every biased classifier of the validity sets (benchmarks/finding_validity.py; its runs' tokens are reused, the
analysis runs again on a copy), the analysis is re-run on its planted classes with the whole attribute family of
every planted cue (backgrounds, colours or tags) removed from the listed cues: only discovery can bring them
back. Clean classifiers are re-analysed on three classes with every family removed (nothing listed at all): a
discovered cue that passes there is a false finding. Scored against the renderer's truth (``probe.world.true_effects``), with exact 95%
intervals:

- recall: planted cues with a true effect ≥ 0.15 whose cue passes as a *discovered* finding;
- precision: passing discovered findings that are true (true effect ≥ 0.15 in the claimed direction);
- clean: passing discovered findings on clean classifiers (bar: none).

    .venv/bin/python benchmarks/discovery_recall.py --set both      # cached per (run, family, class)
    .venv/bin/python benchmarks/discovery_recall.py --set tuning --quick
    .venv/bin/python benchmarks/discovery_recall.py --set fresh2 --checker concepts   # the world's CLIP checks and
        # proposes: its phrases, and what the attributions mark outside the object (a concept model's source only)
    .venv/bin/python benchmarks/discovery_recall.py --set fresh9 --audit-defaults   # with `probe audit`'s default
        # analysis (confirmation budget, carriers, adaptive screening, the class-name fallback) instead of the demo's

The audit runs must exist (``benchmarks/finding_validity.py audit --set both`` makes them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import finding_validity as fv  # noqa: E402  (the validity sets, their cache and the exact intervals)

#: the proposal rule the cached analyses were made with, in their folder names: "held" since the association with
#: P(class) holds fixed what clearly goes with it in the other groups (discovery.partial_association); the rows
#: before it (no tag) stay as they were measured
PROPOSAL_RULE = "held"

FAMILIES = {"background": "backgrounds", "color": "colours", "tag": "text and watermarks"}
OUT = fv.ROOT / "discovery"


def reanalyse(run_dir: Path, families: tuple[str, ...], classes: tuple[int, ...] | None, checker: str = "oracles",
              audit_defaults: bool = False, discover_images: int | None = None) -> Path:
    """The analysis again on a copy of ``run_dir`` with ``families`` removed from the world's cue list, checked (and
    proposed from) by ``checker`` (fv.CHECKERS: the world's oracles or its CLIP); ``audit_defaults``: with `probe
    audit`'s default analysis settings instead of the demo's the run was audited with; ``discover_images``: plain
    images per class for the proposals' association other than the analysis's default (a row of its own); cached."""
    from probe.analysis import analyze_run
    from probe.classifiers import load_classifier
    from probe.generators import load_generator
    from probe.run import RunDir
    from probe.world.domain import world_cues

    tag = "all" if classes is None else "-".join(map(str, classes))
    dest = OUT / (f"{run_dir.name}-no-{'-'.join(families)}-{tag}" + ("" if checker == "oracles" else f"-{checker}")
                  + ("-auditdefaults" if audit_defaults else "")
                  + (f"-disc{discover_images}" if discover_images is not None else "") + f"-{PROPOSAL_RULE}")
    if (dest / "findings.json").is_file():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns(
        "analysis", "analysis.json", "findings.json", "findings.parquet", "report", "summary.csv"))
    cfg = fv.analysis_config(RunDir(run_dir), audit_defaults).replace(classes=classes, discover=3,
                                                                      concepts=fv.CHECKERS[checker])
    if discover_images is not None:
        cfg = cfg.replace(discover_images=discover_images)
    model = json.loads((run_dir / "config.json").read_text())["audit"]["model"]
    listed = [c for c in world_cues() if c.attribute not in families]
    start = time.perf_counter()
    analyze_run(dest, load_classifier(model, device="cpu"), load_generator("world", device="cpu"), cfg, cues=listed)
    (dest / "seconds.json").write_text(json.dumps({"seconds": round(time.perf_counter() - start, 1)}))
    return dest


def _commit() -> str | None:
    """The checkout's commit, to tag a report with the code it measured."""
    import subprocess

    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                          text=True)
    return done.stdout.strip() or None if done.returncode == 0 else None


def discovered_passing(dest: Path) -> list[dict]:
    from probe.run import RunDir

    return [f for f in (RunDir(dest).read_findings() or [])
            if f.get("passes") and str((f.get("details") or {}).get("category", "")).startswith("discovered")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", choices=["tuning", "both", *fv.SETS], default="both")
    p.add_argument("--checker", choices=["oracles", "concepts"], default="oracles",
                   help="what checks the interventions and reads phrases: the world's oracles, or its own CLIP")
    p.add_argument("--quick", action="store_true", help="the first 2 biased and 1 clean classifier of each set")
    p.add_argument("--threshold", type=float, default=0.15)
    p.add_argument("--threads", type=int, default=1, help="torch threads (other work shares the machine)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--audit-defaults", action="store_true",
                   help="analyse with `probe audit`'s default settings (what a user's audit discovers) instead of the "
                        "demo's the runs were audited with")
    p.add_argument("--discover-images", type=int, default=None,
                   help="plain-prompt images per class for the proposals' association with P(class), instead of the "
                        "analysis's default (its own cached rows)")
    args = p.parse_args()
    import torch

    from probe.world import true_effects
    from probe.world.scenes import SHAPES

    torch.set_num_threads(args.threads)
    sets = {"tuning": ["tuning"], "both": ["tuning", "heldout"]}.get(args.set, [args.set])
    report = {}
    for name in sets:
        items = fv.plan() if name == "tuning" else fv.plan(named=name)
        if args.quick:
            items = [i for i in items if i["bias"]][:2] + [i for i in items if not i["bias"]][:1]
        hits, strong_n, true_n, passing_n, clean_passing, rows = 0, 0, 0, 0, 0, []
        for item in items:
            run = fv.ROOT / "runs" / item["name"]
            if not (run / "findings.json").is_file():
                print(f"skip {item['name']}: no audit run (benchmarks/finding_validity.py audit)", flush=True)
                continue
            from probe.classifiers import load_classifier

            truth = true_effects(load_classifier(str(fv.ROOT / "classifiers" / f"{item['name']}.pt2"), device="cpu"),
                                 n=300)
            judge = fv.Judge(truth, args.threshold)  # also phrases the table does not name (a concept model's)
            # one analysis per classifier: the families of its planted cues removed from the list, on its planted
            # classes (clean: every family removed, on the first three classes)
            planted = [(cls, family, value) for cls, cues in item["bias"].items() for family, value in cues.items()]
            families = tuple(sorted({f for _, f, _ in planted})) if planted else tuple(FAMILIES)
            classes = tuple(sorted({SHAPES.index(c) for c, _, _ in planted})) if planted else (0, 1, 2)
            jobs = [(families, classes, cls, value) for cls, _, value in planted] or [(families, classes, None, None)]
            for family, classes, cls, value in jobs:
                dest = reanalyse(run, family, classes, args.checker, args.audit_defaults, args.discover_images)
                found = discovered_passing(dest)
                if cls is not None and (cls, value) != (jobs[0][2], jobs[0][3]):
                    found_for_counts = []  # one analysis serves every planted cue of the classifier: count once
                else:
                    found_for_counts = found
                good = [f for f in found if judge(f)]
                passing_n += len(found_for_counts)
                true_n += len(good) if found_for_counts else 0
                if not item["bias"]:
                    clean_passing += len(found)
                proposed = (json.loads((dest / "analysis.json").read_text()).get("cues") or {}).get("discovered", {})
                row = {"run": item["name"], "removed": family, "planted": f"{cls}/{value}" if cls else None,
                       "proposed": {c: [q["phrase"] for q in v] for c, v in proposed.items()},
                       "proposed because": {c: [q.get("reason") for q in v] for c, v in proposed.items()},
                       "passing discovered": [f"{f['class_name']}/{f['cue']}/{f['kind']} {f['effect']:+.2f} "
                                              f"({'true' if judge(f) else 'FALSE'})" for f in found],
                       "phrases read as what the world draws": dict(judge.mapped),
                       "seconds": json.loads((dest / "seconds.json").read_text())["seconds"]
                       if (dest / "seconds.json").is_file() else None}
                if cls is not None:
                    true_effect = truth.effect(cls, value, "necessity")
                    row["true_effect"] = round(true_effect, 3)
                    if true_effect >= args.threshold:
                        strong_n += 1
                        hits += any(f["class_name"] == cls and (judge.stands_for(f) or ("", ""))[1] == value
                                    for f in found)
                print(json.dumps(row), flush=True)
                rows.append(row)
        report[name] = {"checker": args.checker, "analysis": "probe audit defaults" if args.audit_defaults else
                        "the demo's settings", "discover_images": args.discover_images or "default",
                        "proposal_rule": PROPOSAL_RULE,
                        "code": _commit(), "recall": fv._rate(hits, strong_n), "precision": fv._rate(true_n, passing_n),
                        "clean classifiers: passing discovered": clean_passing, "rows": rows}
        print(f"{name}: discovery recall {hits}/{strong_n}, precision {true_n}/{passing_n}, "
              f"clean passing {clean_passing}", flush=True)
        print(json.dumps({k: v for k, v in report[name].items() if k != "rows"}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
