"""Are probe's findings true? Audit shapes-world classifiers with planted cues and score every finding
against the classifier's true behaviour on rendered scenes (probe.world.true_effects).

    .venv/bin/python benchmarks/finding_validity.py train     # the classifiers (cached; probe world classifier)
    .venv/bin/python benchmarks/finding_validity.py audit     # audit each at the demo's settings (resumable)
    .venv/bin/python benchmarks/finding_validity.py score     # recall, precision, false findings, calibration
    .venv/bin/python benchmarks/finding_validity.py all       # the three in turn
    .venv/bin/python benchmarks/finding_validity.py all --quick   # 2 biased + 1 clean (what the suite checks)

Everything is seeded and cached under benchmarks/.cache/validity/ (git-ignored), so a rerun only does
what is missing. Figures: README "Are the findings true?".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent / ".cache" / "validity"
ATTRIBUTES = {"background": ["grass", "water", "sand", "snow", "wood"],
              "color": ["red", "green", "blue", "yellow", "purple"],
              "tag": ["dot", "bar"]}
SHAPES = ["circle", "square", "triangle", "star", "cross", "heart"]


def plan(n_biased: int = 6, n_clean: int = 2, seed: int = 2026) -> list[dict]:
    """The classifiers: ``n_biased`` with 1-3 planted cues on random classes (every attribute kind used), and clean ones."""
    rng = random.Random(seed)
    kinds = list(ATTRIBUTES)
    out = []
    for i in range(n_biased):
        classes = rng.sample(SHAPES, rng.randint(1, 3))
        bias = {}
        for j, cls in enumerate(classes):
            attribute = kinds[(i + j) % len(kinds)]  # cycle the kinds so each appears in several classifiers
            bias[cls] = {attribute: rng.choice(ATTRIBUTES[attribute])}
        out.append({"name": f"biased-{i}", "bias": bias, "seed": 100 + i})
    for i in range(n_clean):
        out.append({"name": f"clean-{i}", "bias": {}, "seed": 200 + i})
    return out


def _bias_arg(bias: dict) -> str:
    return ",".join(f"{cls}={value}" for cls, cues in bias.items() for value in cues.values())


def train(items: list[dict]) -> None:
    probe = str(Path(sys.executable).with_name("probe"))
    for item in items:
        path = ROOT / "classifiers" / f"{item['name']}.pt2"
        if path.is_file():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        cmd = [probe, "world", "classifier", "--out", str(path), "--bias", _bias_arg(item["bias"]),
               "--strength", "0.97", "--seed", str(item["seed"])]
        subprocess.run(cmd, check=True)
        print(f"trained {item['name']} ({item['bias'] or 'clean'}) in {time.perf_counter() - start:.0f} s", flush=True)


def audit(items: list[dict]) -> None:
    from probe.auditing.loop import audit as run_audit
    from probe.world.demo import demo_config

    for item in items:
        out = ROOT / "runs" / item["name"]
        if (out / "findings.json").is_file():
            continue
        start = time.perf_counter()
        config = demo_config(out=out, report=False, model=ROOT / "classifiers" / f"{item['name']}.pt2")
        run_audit(config, progress=False)
        print(f"audited {item['name']} in {time.perf_counter() - start:.0f} s", flush=True)


def _key(f: dict) -> tuple:
    return (f["class_index"], f["cue"], f["kind"])


def _lo(f: dict) -> float:
    return -1.0 if f["ci_low"] is None else f["ci_low"]


def _hi(f: dict) -> float:
    return 1.0 if f["ci_high"] is None else f["ci_high"]


def remeasured(item: dict, passing: list[dict], n_pairs: int = 64) -> dict:
    """Each passing finding's effect measured again on 64 fresh pairs (cached): the audit's own estimand."""
    cache = ROOT / "runs" / item["name"] / "remeasured.json"
    done = {tuple(json.loads(k)): v for k, v in json.loads(cache.read_text()).items()} if cache.is_file() else {}
    todo = [f for f in passing if _key(f) not in done]
    if todo:
        from probe.analysis import Finding, remeasure
        from probe.classifiers import load_classifier
        from probe.generators import load_generator
        from probe.world import bundled_generator_path

        classifier = load_classifier(str(ROOT / "classifiers" / f"{item['name']}.pt2"), device="cpu")
        generator = load_generator(str(bundled_generator_path()), device="cpu")
        for f in todo:
            sample = remeasure(ROOT / "runs" / item["name"], classifier, generator, Finding.from_dict(f), n_pairs=n_pairs)
            done[_key(f)] = sample.mean
        cache.write_text(json.dumps({json.dumps(list(k)): v for k, v in done.items()}))
    return done


def score(items: list[dict], truth_n: int = 300, threshold: float = 0.15) -> dict:
    """Recall, precision, false findings and calibration over every audited classifier."""
    from probe.classifiers import load_classifier
    from probe.run import RunDir
    from probe.world import true_effects

    rows, totals = [], {"planted": 0, "found": 0, "top": 0, "passing": 0, "true": 0, "clean_false": 0,
                        "ci_total": 0, "ci_covered": 0}
    for item in items:
        run = RunDir(ROOT / "runs" / item["name"])
        findings = [f for f in (run.read_findings() or []) if f.get("kind") != "off-object"]
        truth = true_effects(load_classifier(str(ROOT / "classifiers" / f"{item['name']}.pt2")), n=truth_n)
        passing = [f for f in findings if f.get("passes")]
        true_ones = [f for f in passing if truth.confirms(f["class_name"], f["cue"], f["kind"], f["effect"], threshold,
                                                          counters=f["details"].get("counter_values") if f["kind"] == "necessity" else None)]
        planted = [(cls, value) for cls, cues in item["bias"].items() for value in cues.values()]
        found = [p for p in planted if any(f["class_name"] == p[0] and f["cue"] == p[1] for f in passing)]
        top = []
        for cls, value in planted:
            ranked = [f for f in passing if f["class_name"] == cls]
            if ranked and ranked[0]["cue"] == value:
                top.append((cls, value))
        fresh = remeasured(item, passing)
        with_fresh = [f for f in passing if _key(f) in fresh]
        covered = [f for f in with_fresh if _lo(f) <= fresh[_key(f)] <= _hi(f)]
        row = {"classifier": item["name"], "planted": planted, "found": len(found), "top": len(top),
               "passing": len(passing), "true": len(true_ones),
               "false": [f"{f['class_name']}/{f['cue']}/{f['kind']} {f['effect']:+.2f}" for f in passing
                         if f not in true_ones]}
        rows.append(row)
        totals["planted"] += len(planted)
        totals["found"] += len(found)
        totals["top"] += len(top)
        totals["passing"] += len(passing)
        totals["true"] += len(true_ones)
        totals["ci_total"] += len(with_fresh)
        totals["ci_covered"] += len(covered)
        if not item["bias"]:
            totals["clean_false"] += len(passing)
    summary = {
        "recall": totals["found"] / max(totals["planted"], 1),
        "recall_top": totals["top"] / max(totals["planted"], 1),
        "precision": totals["true"] / max(totals["passing"], 1) if totals["passing"] else 1.0,
        "false_findings_clean": totals["clean_false"],
        "calibration": totals["ci_covered"] / totals["ci_total"] if totals["ci_total"] else None,
        **totals,
    }
    for row in rows:
        print(f"{row['classifier']:10s} planted {row['planted'] or '-'}: found {row['found']}, top {row['top']}; "
              f"passing {row['passing']}, true {row['true']}; false: {row['false'] or '-'}")
    print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in summary.items()}, indent=1))
    (ROOT / "score.json").write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return summary


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("phase", choices=["train", "audit", "score", "all"])
    p.add_argument("--quick", action="store_true", help="2 biased + 1 clean classifier")
    a = p.parse_args()
    items = plan()
    if a.quick:
        items = items[:2] + [i for i in items if not i["bias"]][:1]
    print(f"classifiers: {[(i['name'], i['bias'] or 'clean') for i in items]}", flush=True)
    if a.phase in ("train", "all"):
        train(items)
    if a.phase in ("audit", "all"):
        audit(items)
    if a.phase in ("score", "all"):
        score(items)
    return 0


if __name__ == "__main__":
    sys.exit(main())
