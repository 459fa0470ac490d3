"""What did spending the budget near the bar change? The same analysis, decided as the rule before it would have.

Since 5 December a confirmation whose interval still holds the effect bar goes on to ``max_pairs``
(probe/analysis/plan.py ``confirmed_enough``); before, it stopped at ``min_pairs`` once its interval was narrow
enough. Confirmation rounds draw their seeds from the round's number, so what the old rule would have measured is a
prefix of what the new one measured: this script cuts every confirmation of a ``finding_validity.py reanalyse`` result
back to the first round at which the old rule stops, decides the run again from those records (the same
Benjamini-Yekutieli step, no model loaded) in a copy, and scores both against the classifier's truth table.

    .venv/bin/python benchmarks/near_bar_counterfactual.py benchmarks/.cache/validity/reanalysed/RUN-oracles-0-auditdefaults [...]

``--decide-only``: nothing cut; the runs decided again by today's decision step (its "old rule" column is then
"decided now"), for a change to the decision alone (the token shift's corroboration, 5 December).

The re-decided column uses today's decision step, the "new rule" column the findings as stored: after a change to
the decision (the token shift's corroboration, 13217f6) compare like with like by running ``--decide-only`` too; the
README's near-bar table was computed before that change.

Prints one JSON row per run (old and new: recall, precision, passing, confirmation pairs) and a sum; the pairs
of a round lost to failed checks are apportioned (``attempted`` is kept per test, not per round).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from finding_validity import Judge, _rate  # noqa: E402

KINDS = ("sufficiency", "necessity", "token-shift")  # probe.analysis.engine._confirm_all's seed blocks


def _round_of(key: str, kind: str, seed: int) -> int:
    """The confirmation round a pair was drawn in, from its seed (``seed + 100_000 * (1 + kind) + 1000 * round``)."""
    drawn = int(re.match(r"s(-?\d+):", key).group(1))
    return (drawn - seed - 100_000 * (1 + KINDS.index(kind))) // 1000


def _old_prefix(cfg, data: dict) -> dict:
    """``data`` (a test's confirmation record) cut back to where the rule before 5 December stopped."""
    from probe.analysis.per_class import sample_of
    from probe.analysis.plan import confirmed_enough, narrow_enough

    rounds = [_round_of(k, data["kind"], cfg.seed) for k in data["keys"]]
    total = len(rounds)
    for last in sorted(set(rounds)):
        keep = [i for i, r in enumerate(rounds) if r <= last]
        cut = {**data, "keys": [data["keys"][i] for i in keep]}
        for field in ("diffs", "before", "after"):
            if data.get(field):  # a token shift keeps before/after, a paired test diffs
                cut[field] = [data[field][i] for i in keep]
        cut["attempted"] = max(len(keep), round(int(data.get("attempted", total)) * len(keep) / max(total, 1)))
        cut["excluded"] = cut["attempted"] - len(keep)
        sample = sample_of(cut)
        two_sided = data["kind"] in cfg.thresholds.two_sided_kinds
        narrow = sample.n >= cfg.thresholds.min_pairs and narrow_enough(cfg, sample.effect())
        if narrow or confirmed_enough(cfg, sample, two_sided):
            return cut
    return data


def counterfactual(dest: Path, cut: bool = True) -> dict:
    """``dest`` decided again from its records, each confirmation cut back to the old stop (``cut``), or as measured
    (``cut=False``: today's decision step on the same pairs, e.g. after a change to it), scored beside its findings."""
    from probe.analysis import AnalysisConfig
    from probe.analysis.decide import decide_run
    from probe.classifiers import load_classifier
    from probe.run import RunDir
    from probe.run.class_analysis import CLASS_ANALYSIS
    from probe.world import true_effects

    run = RunDir(dest)
    cfg = AnalysisConfig.from_dict(run.read_analysis()["config"])
    model = Path(json.loads((dest / "config.json").read_text())["audit"]["model"])
    bias_file = model.with_suffix("").with_suffix(".bias.json")
    bias = json.loads(bias_file.read_text())["bias"] if bias_file.is_file() else {}
    truth = true_effects(load_classifier(str(model), device="cpu"), n=300)
    planted = [(c, v) for c, cues in bias.items() for v in cues.values()]
    strong = [(c, v) for c, v in planted if truth.effect(c, v, "necessity") >= 0.15]
    judge = Judge(truth, 0.15)

    def scored(findings, pairs) -> dict:
        passing = [f for f in findings if f.get("passes")]
        # a planted cue is found through a true passing finding on it (a false claim about it finds nothing)
        return {"recall": _rate(sum(any(f["class_name"] == c and f["cue"] == v and judge(f) for f in passing)
                                    for c, v in strong), len(strong)),
                "precision": _rate(sum(judge(f) for f in passing), len(passing)),
                "passing": [f"{f['class_name']}/{f['cue']}/{f['kind']} {f['effect']:+.2f} "
                            f"({'true' if judge(f) else 'FALSE'})" for f in passing],
                "confirmation pairs": pairs}

    new_pairs = old_pairs = 0
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / dest.name
        shutil.copytree(dest, copy, ignore=shutil.ignore_patterns("*.png", "*.jpg", "report"))
        for path in sorted(copy.glob("classes/*/" + CLASS_ANALYSIS)):
            record = json.loads(path.read_text())
            for test in record["tests"]:
                if test.get("confirm"):
                    new_pairs += len(test["confirm"]["keys"])
                    test["confirm"] = _old_prefix(cfg, test["confirm"]) if cut else test["confirm"]
                    old_pairs += len(test["confirm"]["keys"])
            path.write_text(json.dumps(record))
        decide_run(copy, cfg)  # writes the copy's findings.json, read as the stored ones are
        old = RunDir(copy).read_findings() or []
    new = run.read_findings() or []
    return {"run": dest.name, "old rule": scored(old, old_pairs), "new rule": scored(new, new_pairs)}


def main() -> int:
    args = sys.argv[1:]
    cut = "--decide-only" not in args
    rows = [counterfactual(Path(d), cut=cut) for d in args if d != "--decide-only"]
    for row in rows:
        print(json.dumps(row), flush=True)
    total = {}
    for rule in ("old rule", "new rule"):
        s = {"found": 0, "strong": 0, "true": 0, "passing": 0, "pairs": 0}
        for r in rows:
            s["found"] += r[rule]["recall"]["k"]
            s["strong"] += r[rule]["recall"]["n"]
            s["true"] += r[rule]["precision"]["k"]
            s["passing"] += r[rule]["precision"]["n"]
            s["pairs"] += r[rule]["confirmation pairs"]
        total[rule] = {"recall": _rate(s["found"], s["strong"]), "precision": _rate(s["true"], s["passing"]),
                       "confirmation pairs": s["pairs"]}
    print(json.dumps({"runs": len(rows), **total}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
