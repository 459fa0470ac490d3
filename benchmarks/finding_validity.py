"""Are probe's findings true? Audit shapes-world classifiers with planted cues and score every finding
against the classifier's true behaviour on rendered scenes (probe.world.true_effects).

    .venv/bin/python benchmarks/finding_validity.py train     # the classifiers (cached; probe world classifier)
    .venv/bin/python benchmarks/finding_validity.py audit     # audit each at the demo's settings (resumable)
    .venv/bin/python benchmarks/finding_validity.py score     # recall, precision, false findings, calibration
    .venv/bin/python benchmarks/finding_validity.py all       # the three in turn
    .venv/bin/python benchmarks/finding_validity.py all --quick   # 2 biased + 1 clean (what the suite checks)
    .venv/bin/python benchmarks/finding_validity.py confirm --set heldout   # each audit confirmed on rendered
        # validation scenes from its classifier's training distribution (probe confirm), verdicts scored against the truth
        # in that population (and over uniform contexts); --audit-defaults: the audit-default reanalyses' findings
    .venv/bin/python benchmarks/finding_validity.py reanalyse --run runs/demo --checker concepts --infidelity 0.3
        # the analysis only, again, on a finished run's tokens: the world generator failing at a rate (0, 0.15,
        # 0.3; probe/world/unfaithful.py) under one checker (oracles: the world's; concepts: the world's own CLIP;
        # none: unchecked), scored against the classifier's truth; --checker all --infidelity all: the 3x3 table;
        # --max-pairs 32: with `probe audit`'s confirmation budget instead of the demo's 16 (a row of its own);
        # --audit-defaults: with every analysis setting of `probe audit`'s defaults where the demo's differ (confirmation
        # budget, carriers, adaptive screening): what a user running `probe audit` gets
    .venv/bin/python benchmarks/finding_validity.py table --set heldout   # that table summed over a set's audits
        # (after `all` and one `reanalyse` per audit), exact 95% intervals
    .venv/bin/python benchmarks/finding_validity.py all --set fresh   # a third set (3 biased + 1 clean) for a change
        # diagnosed on the held-out set's own failures: measured where nothing was looked at before (--set fresh2: a
        # fourth, for a change diagnosed on the fresh set's)

Everything is seeded; classifiers and audits are cached under benchmarks/.cache/validity/ (git-ignored), so a
rerun only does what is missing (the confirm phase's verdicts, seconds each, are always decided again). Figures: README "Are the findings true?".
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent / ".cache" / "validity"
ATTRIBUTES = {"background": ["grass", "water", "sand", "snow", "wood"],
              "color": ["red", "green", "blue", "yellow", "purple"],
              "tag": ["dot", "bar"]}
SHAPES = ["circle", "square", "triangle", "star", "cross", "heart"]


# The held-out set: other recipes (planted strength, thumbnail size, hidden-object rate, training length) and other
# seeds. No method change is tuned on it; its figures are the claim, the tuning set's are development figures.
HELDOUT_RECIPES = [
    {"strength": 0.9, "pool": 2, "hide": 0.4, "steps": 800},
    {"strength": 0.99, "pool": 8, "hide": 0.75, "steps": 800},
    {"strength": 0.95, "pool": 4, "hide": 0.5, "steps": 1200},
    {"strength": 0.93, "pool": 2, "hide": 0.7, "steps": 600},
    {"strength": 0.97, "pool": 8, "hide": 0.5, "steps": 1000},
    {"strength": 0.9, "pool": 4, "hide": 0.6, "steps": 800},
]


# The sets after the tuning set, in the order they were made. Each is drawn with its own seed (2026 + draw), trained
# with the held-out recipes from a rotation, and named "<set>-biased-i" / "<set>-clean-i". heldout: never tuned on;
# fresh: made after a change was diagnosed on the held-out set's own failures; fresh2: made after one was diagnosed
# on the fresh set's (sufficiency's stated contexts), for the same reason; fresh3 likewise after fresh2's, fresh4 after
# fresh3's. A set's entry never changes once its
# figures are published: its cached audits are what the README's rows were measured on.
SETS = {
    "heldout": {"biased": 4, "clean": 2, "draw": 1, "seed_offset": 1000, "rotation": 0},
    "fresh": {"biased": 3, "clean": 1, "draw": 2, "seed_offset": 2000, "rotation": 3},
    "fresh2": {"biased": 3, "clean": 1, "draw": 3, "seed_offset": 3000, "rotation": 1},
    # made after the confirmation budget followed each test's own loss rate (diagnosed on fresh2 at 30% infidelity)
    "fresh3": {"biased": 3, "clean": 1, "draw": 4, "seed_offset": 4000, "rotation": 2},
    # made after adaptive screening took sufficiency screens and an ambiguity bound (diagnosed on fresh3's two misses)
    "fresh4": {"biased": 3, "clean": 1, "draw": 5, "seed_offset": 5000, "rotation": 4},
    # made before `probe audit`'s own default analysis (32 confirmation pairs, 4 carriers, adaptive screening) was
    # first measured on every set, and before confirmation near the bar spent the whole budget (diagnosed on the false
    # findings of the five sets before): nothing was looked at on it before either
    "fresh5": {"biased": 3, "clean": 1, "draw": 6, "seed_offset": 6000, "rotation": 5},
    # made after a token shift needed its cue's confirmed sufficiency pairs (13217f6, diagnosed on the six sets
    # before at `probe audit`'s defaults) and only such token shifts were confirmed: their figures' first claim
    "fresh6": {"biased": 3, "clean": 1, "draw": 7, "seed_offset": 7000, "rotation": 0},
    # made to measure a longer confirmation budget (`--max-pairs 64`) against `probe audit`'s 32 where nothing was
    # looked at before: the false findings of the seven sets before were noise at the bar on 32 pairs (README)
    "fresh7": {"biased": 3, "clean": 1, "draw": 8, "seed_offset": 8000, "rotation": 1},
    # made after a class whose images fail the check at the audit's few sampling steps was drawn at more steps
    # (screening.more_steps, diagnosed on fresh7-biased-1's circles) and a cue whose every counter is a suspect kept
    # them all (diagnosed on fresh7 too): nothing was looked at on it before
    "fresh8": {"biased": 3, "clean": 1, "draw": 9, "seed_offset": 9000, "rotation": 2},
    # made after a confirmation could rest on a small slice when Fisher's exact test decides it, never on one image
    # (CONFIRM_RULE "smallslices", diagnosed on the strongest planted cues of fresh2, fresh6 and fresh7, whose
    # validation data held under 5 counter images): nothing was looked at on it before
    "fresh9": {"biased": 3, "clean": 1, "draw": 10, "seed_offset": 10000, "rotation": 3},
    # made after a necessity confirmation the token could not draw started again with the class's name and
    # discovery's association held fixed what clearly goes with P(class) elsewhere (both diagnosed on fresh7 and
    # fresh8's discovery misses): nothing was looked at on it before
    "fresh10": {"biased": 3, "clean": 1, "draw": 11, "seed_offset": 11000, "rotation": 4},
    # the same code as fresh10, made to measure discovery out of sample on more planted cues (fresh10 learned 3)
    "fresh11": {"biased": 3, "clean": 1, "draw": 12, "seed_offset": 12000, "rotation": 5},
    "fresh12": {"biased": 3, "clean": 1, "draw": 13, "seed_offset": 13000, "rotation": 0},
    # made after the confirm phase counted what the user's data find beside the audit (recall with the data) and
    # the summaries turned a cue only the data confirm into a balance step: nothing was looked at on it before
    "fresh13": {"biased": 3, "clean": 1, "draw": 14, "seed_offset": 14000, "rotation": 1},
    # made on 6 December 2026 on an AVX2-only AMD EPYC, where the world's generator samples in float32 (fresh8-13 were
    # sampled in bf16 autocast on a Xeon with AMX); no change to the analysis since fresh13: nothing was looked at on it
    "fresh14": {"biased": 3, "clean": 1, "draw": 15, "seed_offset": 15000, "rotation": 2},
    # made on 6 December 2026, afternoon, on the same EPYC, with no change to the analysis, discovery or confirmation
    # since fresh13: a replication of every figure at the code of the day, nothing looked at on it before
    "fresh15": {"biased": 3, "clean": 1, "draw": 16, "seed_offset": 16000, "rotation": 3},
    # made on 7 December 2026 on an AMD EPYC Zen 4 (native bf16: bf16 autocast sampling, the CPU CI runs on), with no
    # change to the analysis, discovery or confirmation since fresh13: a replication on that CPU, nothing looked at on it
    "fresh16": {"biased": 3, "clean": 1, "draw": 17, "seed_offset": 17000, "rotation": 4},
    # made on 7 December 2026, night, on the same Zen 4, after the analysis changed (token-shift pairs at one steps,
    # discovered cues measured against the listed pass's suspects, min_steps stopping from its step, the sign-flip
    # test and its interval on one path): a replication of every figure at that code, nothing looked at on it before
    "fresh17": {"biased": 3, "clean": 1, "draw": 18, "seed_offset": 18000, "rotation": 5},
}


def plan(n_biased: int = 6, n_clean: int = 2, seed: int = 2026, heldout: bool = False, fresh: bool = False,
         named: str | None = None) -> list[dict]:
    """The classifiers: ``n_biased`` with 1-3 planted cues on random classes (every attribute kind used), and clean ones.

    The default is the tuning set (the world classifier command's defaults at strength 0.97). ``named``: one of
    :data:`SETS` (``heldout=True`` and ``fresh=True`` are the first two), trained with :data:`HELDOUT_RECIPES`.
    """
    named = named or ("heldout" if heldout else "fresh" if fresh else None)
    if named is not None:
        spec = SETS[named]
        items = plan(spec["biased"], spec["clean"], seed=seed + spec["draw"])
        for i, item in enumerate(items):
            item["name"] = f"{named}-{item['name']}"
            item["seed"] += spec["seed_offset"]
            item["recipe"] = HELDOUT_RECIPES[(i + spec["rotation"]) % len(HELDOUT_RECIPES)]
        return items
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
        recipe = item.get("recipe", {"strength": 0.97})
        cmd = [probe, "world", "classifier", "--out", str(path), "--bias", _bias_arg(item["bias"]), "--seed", str(item["seed"])]
        for flag, value in recipe.items():
            cmd += [f"--{flag}", str(value)]
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


def _claim(f: dict) -> dict:
    """What a finding was measured against, as TruthTable.effect's keywords: a necessity claim's own counters, a
    sufficiency claim's own carriers (its sentence names them); None (every other value, every other shape) else."""
    return {"counters": f["details"].get("counter_values") if f["kind"] == "necessity" else None,
            "carriers": f["details"].get("carriers") if f["kind"] == "sufficiency" else None}


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


RULES = {
    "estimate": "point estimate >= 0.15 and q <= 0.05 for 'effect = 0' (BY over the confirmed tests), >= 16 pairs",
    "lower": "as 'estimate', and the 95% interval's lower end >= 0.15",
    "shifted": "q <= 0.05 for the one-sided 'effect <= 0.15' (sign-flip on value - 0.15, BY over the confirmed "
               "tests), >= 16 pairs",
}


def _family(run, threshold: float) -> dict[tuple, float]:
    """Every confirmed test of one audit (cue tests and off-object) -> its q for the shifted null 'effect <= threshold'.

    The same family the engine's false-discovery-rate step pools; p from the per-pair values analysis.json keeps.
    """
    from probe.analysis.stats import fdr, sign_flip_test

    analysis = run.read_analysis() or {}
    keys, pvalues = [], []
    for entry in analysis.get("pairs", []):
        values = (entry.get("confirm") or {}).get("values") or []
        if not values:
            continue
        v = np.asarray(values, float)
        if entry["kind"] == "token-shift" and v.mean() < 0:
            v = -v  # two-sided kind: the claim is in the direction measured
        keys.append((entry["class_index"], entry["cue"], entry["kind"]))
        pvalues.append(sign_flip_test(v - threshold, alternative="greater"))
    for index, info in (analysis.get("classes") or {}).items():
        off = info.get("off_object") or {}
        if off.get("stage") == "confirm" and off.get("values"):
            keys.append((int(index), "off-object", "off-object"))
            pvalues.append(sign_flip_test(np.asarray(off["values"], float) - threshold, alternative="greater"))
    if not keys:
        return {}
    q, _ = fdr(pvalues, method="by")
    return dict(zip(keys, (float(x) for x in q)))


def _passes(rule: str, f: dict, shifted: dict, threshold: float) -> bool:
    if f.get("status") not in ("passes", "weak") or f.get("q") is None:
        return False  # screened only, or inconclusive: never a pass under any rule
    if rule == "estimate":
        return bool(f["passes"])
    if rule == "lower":
        return bool(f["passes"]) and _lo(f) >= threshold
    return f["n_images"] >= 16 and shifted.get(_key(f), 1.0) <= 0.05


def _rate(k: int, n: int) -> dict:
    from probe.analysis.stats import binomial_interval

    if n == 0:
        return {"k": 0, "n": 0, "rate": None, "ci": None}
    lo, hi = binomial_interval(k, n)
    return {"k": k, "n": n, "rate": round(k / n, 3), "ci": [round(lo, 3), round(hi, 3)]}


def score(items: list[dict], truth_n: int = 300, threshold: float = 0.15, remeasure_fresh: bool = False) -> dict:
    """Recall, precision (two yardsticks), false findings on clean classifiers, and calibration (against the
    truth and against a fresh re-measure), per classifier set and per candidate pass rule, with exact
    (Clopper–Pearson) 95% intervals. Off-object findings count in every figure."""
    from probe.classifiers import load_classifier
    from probe.run import RunDir
    from probe.world import true_effects

    rows, tallies = [], {}
    for item in items:
        group = next((g for g in SETS if item["name"].startswith(g + "-")), "tuning")
        run = RunDir(ROOT / "runs" / item["name"])
        if not (run.root / "findings.json").is_file():
            print(f"{item['name']}: not audited; left out of the figures", flush=True)
            continue
        findings = run.read_findings() or []
        truth = true_effects(load_classifier(str(ROOT / "classifiers" / f"{item['name']}.pt2")), n=truth_n)
        shifted = _family(run, threshold)
        planted = [(cls, value) for cls, cues in item["bias"].items() for value in cues.values()]
        strong = [(c, v) for c, v in planted if truth.effect(c, v, "necessity") >= threshold]
        row = {"classifier": item["name"], "set": group, "planted": planted,
               "planted_true": {f"{c}/{v}": round(truth.effect(c, v, "necessity"), 3) for c, v in planted},
               # the recall denominator as decided here, on the unrounded true effect (planted_true is rounded:
               # a cue at +0.1497 reads 0.15 there); `table` counts these
               "learned": [f"{c}/{v}" for c, v in strong]}
        for rule in RULES:
            passing = [f for f in findings if _passes(rule, f, shifted, threshold)]

            def holds(f, own_counters: bool) -> bool:
                claim = _claim(f) if own_counters else {}
                return truth.confirms(f["class_name"], f["cue"], f["kind"], f["effect"], threshold, **claim)

            t = tallies.setdefault((group, rule), {k: 0 for k in (
                "planted", "found", "passing", "true_claim", "true_every", "clean_passing", "off_object_passing",
                "off_object_true", "truth_total", "truth_covered", "fresh_total", "fresh_covered", "cues",
                "cues_true")})
            # a planted cue is found when a passing finding on it is true (a false claim about it finds nothing)
            found = [p for p in strong if any(f["class_name"] == p[0] and f["cue"] == p[1] and holds(f, True)
                                              for f in passing)]
            cues = _cue_precision([(f["class_name"], f["cue"], holds(f, True)) for f in passing])
            cue_passing = [f for f in passing if f["kind"] != "off-object"]
            covered = [f for f in cue_passing if _lo(f) <= truth.effect(
                f["class_name"], f["cue"], f["kind"], **_claim(f)) <= _hi(f)]
            t["planted"] += len(strong)
            t["found"] += len(found)
            t["passing"] += len(passing)
            t["cues"] += cues[1]
            t["cues_true"] += cues[0]
            t["true_claim"] += sum(holds(f, True) for f in passing)
            t["true_every"] += sum(holds(f, False) for f in passing)
            t["off_object_passing"] += sum(f["kind"] == "off-object" for f in passing)
            t["off_object_true"] += sum(f["kind"] == "off-object" and holds(f, True) for f in passing)
            t["clean_passing"] += len(passing) if not item["bias"] else 0
            t["truth_total"] += len(cue_passing)
            t["truth_covered"] += len(covered)
            t.setdefault("bias", []).extend(f["effect"] - truth.effect(
                f["class_name"], f["cue"], f["kind"],
                **_claim(f)) for f in cue_passing)
            if rule == "estimate" and remeasure_fresh:
                fresh = remeasured(item, cue_passing)
                with_fresh = [f for f in cue_passing if _key(f) in fresh]
                t["fresh_total"] += len(with_fresh)
                t["fresh_covered"] += sum(_lo(f) <= fresh[_key(f)] <= _hi(f) for f in with_fresh)
            row[rule] = {"found": [f"{c}/{v}" for c, v in found], "passing": len(passing),
                         "cues": {"true": cues[0], "passing": cues[1]},
                         "false": [f"{f['class_name']}/{f['cue']}/{f['kind']} {f['effect']:+.2f}"
                                   for f in passing if not holds(f, True)]}
        rows.append(row)
        print(f"{row['classifier']:18s} planted {row['planted_true'] or '-'}: "
              + "; ".join(f"{r}: found {len(row[r]['found'])}, passing {row[r]['passing']}, false {row[r]['false'] or '-'}"
                          for r in RULES), flush=True)
    summary = {}
    for (group, rule), t in sorted(tallies.items()):
        summary.setdefault(group, {})[rule] = {
            "rule": RULES[rule],
            "recall (planted cues with a true effect >= 0.15, found passing)": _rate(t["found"], t["planted"]),
            "precision (true effect >= 0.15 against the claim's own counters and carriers)": _rate(t["true_claim"], t["passing"]),
            PER_CUE: _rate(t["cues_true"], t["cues"]),
            "precision (true effect >= 0.15 against every other value)": _rate(t["true_every"], t["passing"]),
            "passing findings on clean classifiers": t["clean_passing"],
            "off-object findings passing (true)": f"{t['off_object_passing']} ({t['off_object_true']})",
            "coverage of the true effect by the 95% interval": _rate(t["truth_covered"], t["truth_total"]),
            "mean (estimate - true effect) of passing cue findings (winner's curse)":
                round(float(np.mean(t["bias"])), 3) if t.get("bias") else None,
            "coverage of a 64-pair re-measure by the 95% interval": _rate(t["fresh_covered"], t["fresh_total"])
            if rule == "estimate" and remeasure_fresh else None,
        }
    print(json.dumps(summary, indent=1))
    _write_score(ROOT / "score.json", rows, summary)
    return summary


#: the per-(class, cue) precision's label, beside the per-finding one: a cue that passes as necessity and as
#: sufficiency is two findings and one (class, cue)
PER_CUE = "precision per (class, cue) (each class's cue with a passing finding counted once: true when one of its " \
          "passing findings is true)"


def _cue_precision(judged: list[tuple[str, str, bool]]) -> tuple[int, int]:
    """(true, passing) over distinct (class, cue) from (class, cue, finding is true) per passing finding: a (class,
    cue) counts once, true when any of its passing findings is (off-object is a cue of its class here)."""
    cues: dict[tuple[str, str], bool] = {}
    for class_name, cue, true in judged:
        cues[(class_name, cue)] = cues.get((class_name, cue), False) or bool(true)
    return sum(cues.values()), len(cues)


def _write_score(path: Path, rows: list[dict], summary: dict) -> None:
    """score.json: the rows already there merged with ``rows`` by classifier (a classifier scored again replaces its
    row), so scoring one set leaves the others' rows for `table`; ``summary`` is of the classifiers just scored
    (``summary_of`` names them)."""
    merged = {}
    if path.is_file():
        merged = {r["classifier"]: r for r in json.loads(path.read_text()).get("rows", [])}
    merged.update({r["classifier"]: r for r in rows})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"rows": list(merged.values()), "summary": summary,
                                "summary_of": [r["classifier"] for r in rows]}, indent=1))


def _signed(v) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


# the verdict rule a results file was decided under, in its name: "" for the first (no slice under 5 images decides),
# "smallslices" since any slice may decide as Fisher's exact test allows, but never on one image (_without_one);
# "neutral" since a finding without counters of its own (token shift, sufficiency) is compared with the counters a
# necessity test of its cue keeps, less the class's passing values (probe.confirm.confirm._neutral_counters)
CONFIRM_RULE = "neutral"


def confirm(items: list[dict], threshold: float = 0.15, truth_n: int = 300, n_val: int = 3000, checker: str = "oracles",
            label: str = "", audit_defaults: bool = False, rescore: bool = False) -> dict:
    """Issue 20's bar: every audited classifier's findings confirmed on ``n_val`` rendered validation scenes drawn
    from its own training distribution (probe.world.valset, seed 54321: apart from training and audit seeds), the
    world's oracles (``checker="oracles"``) or the world's own CLIP through the concept-model path a user's CLIP takes
    (``"concepts"``: ``probe confirm RUN --val-data DIR --concepts world``) reading the cues.

    Scored against two truth tables (``_confirm_tally``):

    - **in the data** (the yardstick of the bars): ``probe.world.validation_truth``'s ``slice_gap``, the gap the
      confirmation's slices show in expectation among scenes drawn as the validation set is (a necessity or
      token-shift finding on the class's own images, a sufficiency finding on the other classes'), against the
      finding's own counters, each weighed as often as the population shows it. That is what "does it hold on your
      data" asks: an effect that differs between contexts, or a counter the class rarely shows, weighs differently
      there than over uniform contexts;
    - **over uniform contexts** (the audit's yardstick, ``true_effects``), kept for comparison.

    ``audit_defaults``: confirm the findings of each audit's ``reanalyse --audit-defaults`` (what `probe audit`
    finds) instead of the audit at the demo's settings. ``rescore``: score the confirmation.json the last confirm
    phase wrote for each classifier instead of confirming again (after a change to the scoring alone).

    Bars: every passing finding whose effect holds in the data (its sign, at least ``threshold``) is *confirmed*; no
    finding that does not hold is confirmed, passing or not; and what is confirmed on the clean classifiers. A real
    gap below the audit's bar (in mean P(class)) is "weaker", not confirmed."""
    import shutil

    from probe.classifiers import load_classifier
    from probe.confirm import confirm_run
    from probe.run import RunDir
    from probe.run.confirmation import VERDICTS
    from probe.world import true_effects, validation_truth
    from probe.world.valset import validation_images

    rows, tallies = [], {"data": {}, "uniform": {}}
    for item in items:
        source = ROOT / "reanalysed" / f"{item['name']}-oracles-0-auditdefaults" if audit_defaults else \
            ROOT / "runs" / item["name"]
        if not (source / "findings.json").is_file():
            print(f"{item['name']}: not audited{' (reanalyse --audit-defaults)' if audit_defaults else ''}; left out",
                  flush=True)
            continue
        run_dir = ROOT / "confirmed" / source.name  # a copy: the audited run stays as the score phase read it
        model = str(ROOT / "classifiers" / f"{item['name']}.pt2")
        classifier = load_classifier(model, device="cpu")
        # decided again (15-60 s) unless rescoring: a cached confirmation.json keeps the verdict rule it was written under
        if not (rescore and (run_dir / "confirmation.json").is_file()):
            shutil.rmtree(run_dir, ignore_errors=True)
            shutil.copytree(source, run_dir, ignore=shutil.ignore_patterns("report"))
            start = time.perf_counter()
            confirm_run(run_dir, validation_images(model, n=n_val), classifier=classifier, concepts=CHECKERS[checker])
            print(f"confirmed {item['name']} ({checker}) in {time.perf_counter() - start:.0f} s", flush=True)
        run = RunDir(run_dir)
        record = run.read_confirmation()
        verdicts = {(f.class_name, f.cue, f.kind): f.verdict for f in record.findings}
        real = {(f.class_name, f.cue, f.kind): f.decisive.prob_gap for f in record.findings}
        compared = {(f.class_name, f.cue, f.kind): list(f.counter_values) for f in record.findings}
        strengths = {(f.class_name, f.cue, f.kind): record.strength(f) for f in record.findings}
        # each finding with the counters its confirmation compared it with (a token shift's are the neutral ones), so
        # the in-data truth (slice_gap) is of the same slices
        findings = [{**f, "details": {**(f.get("details") or {}),
                                      "counter_values": compared[(f["class_name"], f["cue"], f["kind"])]
                                      or (f.get("details") or {}).get("counter_values")}}
                    for f in (run.read_findings() or []) if (f["class_name"], f["cue"], f["kind"]) in verdicts]
        truths = {"data": validation_truth(model, n=truth_n, model=classifier),
                  "uniform": true_effects(classifier, n=truth_n)}
        row = {"classifier": item["name"]}
        for name, truth in truths.items():
            row[name] = _confirm_tally(tallies[name], item, findings, truth, verdicts, real, threshold,
                                       measured=name == "data", strengths=strengths)
        row.update({"verdicts": {v: sum(1 for f in findings if verdicts[(f["class_name"], f["cue"], f["kind"])] == v)
                                 for v in VERDICTS},
                    "checked_by": record.checked_by, "seconds": record.data.get("seconds")})
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {name: {
        "passing findings that hold (true effect of their sign >= 0.15) confirmed": _rate(t.get("holding_confirmed", 0),
                                                                                         t.get("holding", 0)),
        "passing findings of planted cues that hold, confirmed": _rate(t.get("planted_confirmed", 0), t.get("planted", 0)),
        "passing findings confirmed": _rate(t.get("passing_confirmed", 0), t.get("passing", 0)),
        "false passing findings confirmed": _rate(t.get("false_passing_confirmed", 0), t.get("false_passing", 0)),
        "confirmed findings (any) that do not hold": _rate(t.get("confirmed_false", 0), t.get("confirmed", 0)),
        "passing findings that hold confirmed strong (the real gap's interval clears the bar)":
            _rate(t.get("holding_confirmed_strong", 0), t.get("holding", 0)),
        "false passing findings confirmed strong": _rate(t.get("false_passing_confirmed_strong", 0),
                                                         t.get("false_passing", 0)),
        "strong confirmations (any finding) that do not hold": _rate(t.get("confirmed_strong_false", 0),
                                                                     t.get("confirmed_strong", 0)),
        "any finding confirmed on clean classifiers": t.get("clean_confirmed", 0),
        "of those, holding": t.get("clean_confirmed", 0) - t.get("clean_confirmed_false", 0),
        "cue findings with a verdict": t.get("findings", 0),
        "recall: planted cues learned (true necessity >= 0.15) that pass in the audit":
            _rate(t.get("learned_by_audit", 0), t.get("learned", 0)),
        "recall: planted cues learned that some finding confirmed on the data names (passing or not)":
            _rate(t.get("learned_by_data", 0), t.get("learned", 0)),
        "recall: planted cues learned that pass in the audit or are confirmed on the data":
            _rate(t.get("learned_by_either", 0), t.get("learned", 0)),
    } for name, t in tallies.items()}
    summary = {"in the data (validation population, the kind the confirmation measures)": summary["data"],
               "over uniform contexts (the audit's truth table)": summary["uniform"]}
    print(json.dumps(summary, indent=1))
    scenes = "" if n_val == 3000 else f"{n_val}scenes"
    name = "-".join(x for x in ("confirm_validity", label, checker, scenes, "auditdefaults" if audit_defaults else "",
                                CONFIRM_RULE, time.strftime("%Y-%m-%d")) if x)
    out = Path(__file__).resolve().parent / "results" / f"{name}.json"
    out.write_text(json.dumps({"command": " ".join(sys.argv), "validation_scenes": n_val, "checker": checker,
                               "rows": rows, "summary": summary}, indent=1) + "\n")
    return summary


def _confirm_tally(tally: dict, item: dict, findings: list[dict], truth, verdicts: dict, real: dict, threshold: float,
                   measured: bool, strengths: dict | None = None) -> dict:
    """One classifier's confirmations scored against one truth table (added into ``tally``); its row.

    ``measured``: judge each finding by the gap the confirmation's slices show in expectation (``TruthTable.slice_gap``:
    the class's own images for necessity and token-shift findings, the other classes' for sufficiency, against its own
    counters, each value and shape weighed as often as the population draws it); else by the finding's own kind and
    claim, as the audit is judged."""
    from probe.confirm.confirm import OWN_KINDS

    def true_effect(f) -> float:
        if not measured:
            return truth.effect(f["class_name"], f["cue"], f["kind"], **_claim(f))
        kind = "necessity" if f["kind"] in OWN_KINDS else "sufficiency"
        return truth.slice_gap(f["class_name"], f["cue"], kind, counters=f["details"].get("counter_values") or None)

    def holds(f) -> bool:
        t = true_effect(f)
        return bool(f["effect"] and np.sign(t) == np.sign(f["effect"]) and abs(t) >= threshold)

    def verdict(f) -> str:
        return verdicts[(f["class_name"], f["cue"], f["kind"])]

    def text(f, extra: str) -> str:
        return f"{f['class_name']}/{f['cue']}/{f['kind']} {f['effect']:+.2f} (true {true_effect(f):+.2f}{extra})"

    def strong(f) -> bool:  # confirmed, the real gap's whole interval beyond the bar (Confirmation.strength)
        return (strengths or {}).get((f["class_name"], f["cue"], f["kind"])) == "strong"

    planted = {(c, v) for c, cues in item["bias"].items() for v in cues.values()}
    passing = [f for f in findings if f.get("passes")]
    confirmed = [f for f in findings if verdict(f) == "confirmed"]
    # recall as the validity benchmark counts it (a planted cue the classifier learned, found through a true finding
    # on it), by the audit alone and by the audit with the user's data: a finding the generated test missed can be
    # confirmed there
    learned = [p for p in sorted(planted) if truth.effect(p[0], p[1], "necessity") >= threshold]
    by_audit = [p for p in learned if any((f["class_name"], f["cue"]) == p and holds(f) for f in passing)]
    by_data = [p for p in learned if any((f["class_name"], f["cue"]) == p and holds(f) for f in confirmed)]
    counts = {
        "passing": len(passing), "passing_confirmed": sum(verdict(f) == "confirmed" for f in passing),
        "holding": sum(holds(f) for f in passing),
        "holding_confirmed": sum(holds(f) and verdict(f) == "confirmed" for f in passing),
        "planted": sum(holds(f) for f in passing if (f["class_name"], f["cue"]) in planted),
        "planted_confirmed": sum(holds(f) and verdict(f) == "confirmed" for f in passing
                                 if (f["class_name"], f["cue"]) in planted),
        "false_passing": sum(not holds(f) for f in passing),
        "false_passing_confirmed": sum(not holds(f) and verdict(f) == "confirmed" for f in passing),
        "confirmed": len(confirmed), "confirmed_false": sum(not holds(f) for f in confirmed),
        "holding_confirmed_strong": sum(holds(f) and strong(f) for f in passing),
        "false_passing_confirmed_strong": sum(not holds(f) and strong(f) for f in passing),
        "confirmed_strong": sum(strong(f) for f in confirmed),
        "confirmed_strong_false": sum(strong(f) and not holds(f) for f in confirmed),
        "findings": len(findings),
        "learned": len(learned), "learned_by_audit": len(by_audit), "learned_by_data": len(by_data),
        "learned_by_either": len(set(by_audit) | set(by_data)),
        "clean_confirmed": 0 if item["bias"] else len(confirmed),
        "clean_confirmed_false": 0 if item["bias"] else sum(not holds(f) for f in confirmed),
    }
    for key, value in counts.items():
        tally[key] = tally.get(key, 0) + value
    return {"planted_true": {f"{c}/{v}": round(truth.effect(c, v, "necessity"), 3) for c, v in sorted(planted)},
            "learned, found by": {f"{c}/{v}": "+".join(w for w, ps in (("audit", by_audit), ("data", by_data))
                                                         if (c, v) in ps) or "neither" for c, v in learned},
            "passing": [text(f, f", real P gap {_signed(real[(f['class_name'], f['cue'], f['kind'])])}") + f": {verdict(f)}"
                        + (" (strong)" if strong(f) else "") for f in passing],
            "confirmed (any finding)": [text(f, f", holds {holds(f)}, passes {bool(f.get('passes'))}") for f in confirmed]}


class _Drawn:
    """What the faithful world draws for a cue phrase the truth table does not name (a discovered or general-vocabulary
    phrase such as "dark blue" or "a wood grain"): the phrase's prompt and its counters' prompts are drawn on ``n``
    seeds each and read by the world's oracles; the attribute whose majority value differs between the cue and its
    counters is what the phrase changes in this world, and the finding is scored as that value against those values.
    Cached per (class, templates)."""

    def __init__(self, n: int = 6):
        from probe.domains import domains
        from probe.generators import load_generator

        self.n, self.cache = n, {}
        self.generator = load_generator("world", device="cpu")
        self.oracles = domains()["world"].scorer()

    def _values(self, prompt: str) -> dict[str, str]:
        """{attribute: the value at least 2 of 3 images show} (an attribute the prompt leaves to chance has none)."""
        from collections import Counter

        images = self.generator.generate([prompt] * self.n, list(range(880_000, 880_000 + self.n)))
        read = self.oracles.predict(images)
        out = {}
        for attribute, values in read.items():
            value, count = Counter(values).most_common(1)[0]
            if attribute != "shape" and count * 3 >= 2 * self.n:
                out[attribute] = value
        return out

    def __call__(self, class_name: str, template: str, counters: list[str]) -> tuple[str, str, list[str]] | None:
        """(attribute, value, counter values) the phrase stands for in the world, or None (it draws nothing the world
        can tell apart from its counters)."""
        key = (class_name, template, tuple(counters))
        if key not in self.cache:
            cue = self._values("a photo of a " + template.format(class_name))
            others = [self._values("a photo of a " + t.format(class_name)) for t in counters]
            found = None
            for attribute, value in cue.items():
                against = sorted({o[attribute] for o in others if o.get(attribute, value) != value})
                if against:
                    found = (attribute, value, against)
                    break
            self.cache[key] = found
        return self.cache[key]


def _templates(f: dict) -> tuple[str, list[str]] | None:
    """The prompt template of a finding's cue and of its counters, from its details (None when it has none)."""
    d = f.get("details") or {}
    proposed = d.get("proposed") if isinstance(d.get("proposed"), dict) else {}
    template = proposed.get("template") or d.get("template")
    counters = d.get("counter_templates") or proposed.get("counters") or []
    return (template, list(counters)) if template and counters else None


class Judge:
    """Whether a finding is true against a classifier's truth table: a cue the table names, on the claim's own
    counters and carriers; a phrase it does not name (discovered, or from a general vocabulary), as what the faithful
    world draws for it (:class:`_Drawn`) against what it draws for the counters. ``mapped`` says how each such phrase
    was read; :meth:`stands_for` gives the (attribute, value) a finding is about, for recall."""

    def __init__(self, truth, threshold: float = 0.15):
        self.truth, self.threshold = truth, threshold
        self.known = set(truth.frame["cue"])
        self.mapped: dict[str, str] = {}
        self._drawn = None

    def _stands(self, f: dict):
        templates = _templates(f)
        self._drawn = self._drawn or _Drawn()
        return self._drawn(f["class_name"], *templates) if templates else None

    def stands_for(self, f: dict) -> tuple[str, str] | None:
        if f["kind"] == "off-object":
            return None
        if f["cue"] in self.known:
            row = self.truth.row(f["class_name"], f["cue"], f["kind"])
            return str(row["attribute"]), str(row["value"])
        stands = self._stands(f)
        return None if stands is None else (stands[0], stands[1])

    def __call__(self, f: dict) -> bool:
        if f["cue"] in self.known or f["kind"] == "off-object":
            return self.truth.confirms(f["class_name"], f["cue"], f["kind"], f["effect"], self.threshold, **_claim(f))
        stands = self._stands(f)
        label = f"{f['class_name']}/{f['cue']}/{f['kind']}"
        if stands is None:
            self.mapped[label] = "draws nothing the world tells from its counters: false"
            return False
        attribute, value, against = stands
        claim = _claim(f)
        true_effect = self.truth.value_effect(f["class_name"], attribute, value, f["kind"],
                                              against if f["kind"] == "necessity" else None, claim["carriers"])
        self.mapped[label] = f"{attribute}={value} against {', '.join(against)}: true {true_effect:+.2f}"
        return bool(f["effect"] * true_effect > 0 and abs(true_effect) >= self.threshold)


#: --checker -> the analysis's --concepts: the world's oracles, the world's own CLIP, or nothing.
CHECKERS = {"oracles": "auto", "concepts": "world", "none": "none"}
RATES = (0.0, 0.15, 0.3)


def reanalyse(run_dir: Path, checker: str, rate: float, threshold: float = 0.15, truth_n: int = 300,
              max_pairs: int | None = None, again: bool = False, screen_extend: tuple[int, ...] | None = None,
              audit_defaults: bool = False, steps: int | None = None, guidance: float | None = None) -> dict:
    """The analysis only, again, on ``run_dir``'s tokens (copied; the run is not touched) with the world generator
    failing at ``rate`` and the interventions judged by ``checker``; its findings scored against the classifier's
    true behaviour on rendered scenes. Cached per (run, checker, rate) under .cache/validity/reanalysed/; the cache
    does not know the code that wrote it: ``again`` (``--again``) analyses anew after a change to the analysis.
    ``max_pairs``, ``screen_extend``, ``steps`` (sampling steps), ``guidance`` (the classifier-free guidance scale):
    analysis settings other than the audit's (each row says which; the tokens stay as learned); ``audit_defaults``:
    `probe audit`'s default for every setting the demo's analysis (``DEMO_ANALYSIS``) changes."""
    import shutil

    from probe.analysis import AnalysisConfig, analyze_run
    from probe.classifiers import load_classifier
    from probe.generators import load_generator
    from probe.run import RunDir
    from probe.run.summary import clears_bar
    from probe.world import true_effects

    source = RunDir(run_dir)
    audit_config = json.loads((source.root / "config.json").read_text())["audit"]
    model = Path(audit_config["model"])
    bias = json.loads(model.with_suffix("").with_suffix(".bias.json").read_text())["bias"] if \
        model.with_suffix("").with_suffix(".bias.json").is_file() else {}
    dest = ROOT / "reanalysed" / (f"{source.root.name}-{checker}-{rate:g}" + (f"-pairs{max_pairs}" if max_pairs else "")
                                  + (f"-extend{'-'.join(map(str, screen_extend)) or '0'}" if screen_extend is not None
                                     else "") + (f"-steps{steps}" if steps else "")
                                  + (f"-g{guidance:g}" if guidance else "")
                                  + ("-auditdefaults" if audit_defaults else ""))
    classifier = load_classifier(str(model), device="cpu")
    if again or not (dest / "findings.json").is_file():
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(source.root, dest, ignore=shutil.ignore_patterns(
            "analysis", "analysis.json", "findings.json", "findings.parquet", "report", "summary.csv"))
        cfg = analysis_config(source, audit_defaults).replace(concepts=CHECKERS[checker])
        if max_pairs:  # the confirmation budget of `probe audit`'s defaults (32) instead of the demo's (16), say
            cfg = cfg.replace(max_pairs=max_pairs)
        if screen_extend is not None:  # adaptive screening's rounds (the demo's, say) instead of the audit's
            cfg = cfg.replace(screen_extend=screen_extend)
        if steps:  # sampling steps of the analysis instead of the audit's (the tokens stay as trained)
            cfg = cfg.replace(steps=steps)
        if guidance:  # the guidance scale of the analysis's images instead of the audit's (the tokens as learned)
            cfg = cfg.replace(guidance_scale=guidance)
        start = time.perf_counter()
        analyze_run(dest, classifier, load_generator(f"world:infidelity={rate}", device="cpu"), cfg)
        (dest / "reanalysed.json").write_text(json.dumps({"seconds": round(time.perf_counter() - start, 1)}))
    findings = RunDir(dest).read_findings() or []
    truth = true_effects(classifier, n=truth_n)
    passing = [f for f in findings if f.get("passes")]
    unverified = [f for f in findings if f.get("status") == "unverified"]
    planted = [(c, v) for c, cues in bias.items() for v in cues.values()]
    strong = [(c, v) for c, v in planted if truth.effect(c, v, "necessity") >= threshold]

    true = Judge(truth, threshold)
    mapped = true.mapped

    analysis = RunDir(dest).read_analysis() or {}
    strongest = [f for f in passing if clears_bar(f, analysis)]
    row = {
        "run": source.root.name, "checker": checker, "infidelity": rate, **({"max_pairs": max_pairs} if max_pairs else {}),
        **({"screen_extend": list(screen_extend)} if screen_extend is not None else {}),
        **({"steps": steps} if steps else {}), **({"guidance": guidance} if guidance else {}),
        **({"analysis": "probe audit defaults"} if audit_defaults else {}),
        "checked_by": analysis.get("interventions_checked_by"),
        "planted_true": {f"{c}/{v}": round(truth.effect(c, v, "necessity"), 3) for c, v in planted},
        # a planted cue is found when a passing finding on it is true (a false claim about it finds nothing)
        "recall": _rate(sum(any(f["class_name"] == c and f["cue"] == v and true(f) for f in passing)
                            for c, v in strong), len(strong)),
        "precision": _rate(sum(true(f) for f in passing), len(passing)),
        "precision per (class, cue)": _rate(*_cue_precision([(f["class_name"], f["cue"], true(f)) for f in passing])),
        "passing": [f"{f['class_name']}/{f['cue']}/{f['kind']} {f['effect']:+.2f} "
                    f"({'true' if true(f) else 'FALSE'}, {'strong' if clears_bar(f, analysis) else 'moderate'})"
                    for f in passing],
        # the summary's *strong* passing findings only (the whole 95% interval beyond the bar): the same figures
        "strong": {"recall": _rate(sum(any(f["class_name"] == c and f["cue"] == v and true(f) for f in strongest)
                                       for c, v in strong), len(strong)),
                   "precision": _rate(sum(true(f) for f in strongest), len(strongest))},
        "unverified (met the bars, nobody checked)": [
            f"{f['class_name']}/{f['cue']}/{f['kind']} {f['effect']:+.2f} ({'true' if true(f) else 'FALSE'})"
            for f in unverified],
        "phrases the truth table does not name, scored as what the world draws": mapped,
        "excluded pairs (of attempted)": f"{sum(int(f.get('excluded') or 0) for f in findings)} of "
                                         f"{sum(int(f.get('attempted') or 0) for f in findings)}",
        "images_generated": analysis.get("images_generated"),
        "seconds": json.loads((dest / "reanalysed.json").read_text()).get("seconds")
        if (dest / "reanalysed.json").is_file() else None,
    }
    print(json.dumps(row), flush=True)
    return row


def analysis_config(run, audit_defaults: bool = False):
    """The analysis settings of ``run`` (a RunDir audited at the demo's settings), or with ``audit_defaults`` what
    `probe audit` would have analysed it with: its defaults wherever the demo's (``DEMO_ANALYSIS``) differ."""
    from probe.analysis import AnalysisConfig

    cfg = AnalysisConfig.from_dict(dict((run.read_analysis() or {}).get("config") or {}))
    if audit_defaults:
        from probe.world.demo import DEMO_ANALYSIS
        default = AnalysisConfig()
        cfg = cfg.replace(**{name: getattr(default, name) for name in _demo_changes(DEMO_ANALYSIS, default)})
    return cfg


def _demo_changes(demo, default) -> list[str]:
    """The analysis settings the demo's config sets otherwise than ``AnalysisConfig()``."""
    import dataclasses

    return [f.name for f in dataclasses.fields(default) if getattr(demo, f.name) != getattr(default, f.name)]


def table(items: list[dict], threshold: float = 0.15, results: Path | None = None, root: Path | None = None) -> dict:
    """Issue 19's table over a set of classifiers: per (checker, infidelity), recall, precision and passing findings
    on the clean classifiers summed over the set's audits, with exact 95% intervals. The faithful world under the
    oracles is each audit's own analysis (the score phase's "estimate" rule); every other cell is a ``reanalyse`` row
    (run it first). A cell missing for some classifier says how many it covers and which it lacks (a missing
    reanalyse file or score.json row); a cell measured twice on one classifier (a row tagged with a later code)
    counts its last row. Strong findings (the whole interval clears the bar) are counted over the rows that record
    strength, and the cell says how many classifiers those are. Precision is given per finding and per (class, cue)
    (a cue passing as necessity and as sufficiency is two findings, one cue). The recall denominator of a score.json
    row is the planted cues score decided were learned (``learned``, on the unrounded true effect); a row written
    before score stored it is read from its rounded ``planted_true`` and the cell names it.
    ``results``/``root``: the folders of the reanalyse rows and of the audits' score.json (this benchmark's own)."""
    results = results or Path(__file__).resolve().parent / "results"
    root = root or ROOT
    score_rows = {r["classifier"]: r for r in json.loads((root / "score.json").read_text())["rows"]} \
        if (root / "score.json").is_file() else {}

    def new_cell() -> dict:
        return {**{k: 0 for k in (
            "classifiers", "found", "planted", "passing", "true", "clean_passing", "unverified", "strong_true",
            "strong_passing", "strength_recorded", "cues_true", "cues", "cues_recorded")}, "names": [], "rounded": []}

    cells: dict[tuple, dict] = {("oracles", 0.0): new_cell()}  # the audits' own cell, listed even with no score.json
    for item in items:
        name, clean = item["name"], not item["bias"]
        rows = []
        if name in score_rows:  # the audit itself: the faithful world, the oracles checking
            r = score_rows[name]
            est = r["estimate"]
            learned = r.get("learned")
            planted = len(learned) if learned is not None else \
                sum(v >= threshold for v in r["planted_true"].values())  # an older row: rounded, see the docstring
            cues = est.get("cues")
            rows.append({"checker": "oracles", "infidelity": 0.0, "found": len(est["found"]), "planted": planted,
                         "passing": est["passing"], "true": est["passing"] - len(est["false"]), "unverified": 0,
                         **({"cues_true": cues["true"], "cues": cues["passing"], "cues_recorded": 1} if cues else {}),
                         **({} if learned is not None else {"rounded_planted": 1})})
        out = results / f"validity_reanalysed_{name}.json"
        for r in json.loads(out.read_text()) if out.is_file() else []:
            cues_true, cues = _row_cues(r)
            rows.append({"checker": r["checker"] + (f", {r['max_pairs']} pairs" if r.get("max_pairs") else "")
                         + (f", screen_extend={tuple(r['screen_extend'])}" if r.get("screen_extend") is not None else "")
                         + (f", {r['steps']} sampling steps" if r.get("steps") else "")
                         + (f", guidance {r['guidance']:g}" if r.get("guidance") else "")  # not the audit's own cell
                         + (f", {r['analysis']}" if r.get("analysis") else ""),
                         "infidelity": r["infidelity"], "found": r["recall"]["k"],
                         "planted": r["recall"]["n"], "passing": r["precision"]["n"], "true": r["precision"]["k"],
                         "unverified": len(r["unverified (met the bars, nobody checked)"]),
                         "cues_true": cues_true, "cues": cues, "cues_recorded": 1,
                         **({"strong_true": r["strong"]["precision"]["k"], "strong_passing": r["strong"]["precision"]["n"],
                             "strength_recorded": 1} if r.get("strong") else {})})
        latest = {(r["checker"], r["infidelity"]): r for r in rows}  # a cell measured again (a later code's row) counts once
        for r in latest.values():
            c = cells.setdefault((r["checker"], r["infidelity"]), new_cell())
            c["classifiers"] += 1
            c["names"].append(name)
            if r.get("rounded_planted"):
                c["rounded"].append(name)
            for key in ("found", "planted", "passing", "true", "unverified", "strong_true", "strong_passing",
                        "strength_recorded", "cues_true", "cues", "cues_recorded"):
                c[key] += r.get(key, 0)
            c["clean_passing"] += r["passing"] if clean else 0
    summary = {}
    for (checker, rate), c in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lacking = [item["name"] for item in items if item["name"] not in c["names"]]
        summary[f"{checker} @ {rate:g}"] = {
            "classifiers": c["classifiers"],
            "classifiers lacking": _compact(lacking, items),
            "recall": _rate(c["found"], c["planted"]),
            "precision": _rate(c["true"], c["passing"]),
            # the same passing findings, each class's cue once (true when one of its passing findings is true);
            # over the rows that record it (a score.json row written before score counted cues does not)
            "precision per (class, cue)": {"classifiers": c["cues_recorded"], **_rate(c["cues_true"], c["cues"])},
            "passing on clean classifiers": c["clean_passing"],
            "unverified (met the bars, nobody checked)": c["unverified"],
            # rows since 5 December record each passing finding's strength (strong: the whole interval clears
            # the bar); older rows do not, and are left out here
            "strong findings true": {"classifiers": c["strength_recorded"], **_rate(c["strong_true"],
                                                                                    c["strong_passing"])},
            **({"recall denominator from rounded planted_true (score.json rows before 'learned')":
                _compact(c["rounded"], items)} if c["rounded"] else {}),
        }
    for cell, s in summary.items():  # what each cell lacks, said where it is read, not only inside the JSON
        if s["classifiers lacking"]:
            print(f"{cell}: {s['classifiers']} of {len(items)} classifiers; lacks {', '.join(s['classifiers lacking'])}",
                  file=sys.stderr)
    print(json.dumps(summary, indent=1))
    return summary


#: a passing finding as reanalyse's row writes it: "class/cue/kind +0.23 (true, strong)"
_PASSING = re.compile(r"^(?P<cls>[^/]+)/(?P<cue>.+)/(?P<kind>[a-z-]+) [+-]\d+\.\d+ \((?P<true>true|FALSE)\b")


def _row_cues(r: dict) -> tuple[int, int]:
    """A reanalyse row's per-(class, cue) precision: stored since it was added, else read from its passing list."""
    if r.get("precision per (class, cue)"):
        return r["precision per (class, cue)"]["k"], r["precision per (class, cue)"]["n"]
    judged = []
    for text in r.get("passing", []):
        m = _PASSING.match(text)
        if m is None:
            raise ValueError(f"{r.get('run')}: passing finding {text!r} is not in reanalyse's format")
        judged.append((m["cls"], m["cue"], m["true"] == "true"))
    return _cue_precision(judged)


def _compact(names: list[str], items: list[dict]) -> list[str]:
    """``names`` with a set all of whose classifiers in ``items`` are listed written once, as "fresh14-* (4)"."""
    sets: dict[str, list[str]] = {}
    for item in items:
        sets.setdefault(item["name"].rsplit("-", 2)[0] if item["name"].count("-") >= 2 else item["name"],
                        []).append(item["name"])
    out, done = [], set()
    for name in names:
        group = name.rsplit("-", 2)[0] if name.count("-") >= 2 else name
        members = sets.get(group, [name])
        if len(members) > 1 and all(m in names for m in members):
            if group not in done:
                out.append(f"{group}-* ({len(members)})")
                done.add(group)
        else:
            out.append(name)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("phase", choices=["train", "audit", "score", "all", "confirm", "reanalyse", "table"])
    p.add_argument("--run", type=Path, default=Path("runs/demo"), help="reanalyse: the finished run whose tokens to use")
    p.add_argument("--checker", choices=[*CHECKERS, "all"], default="oracles",
                   help="reanalyse: oracles (the world's), concepts (the world's own CLIP), none (unchecked); confirm: who "
                        "reads the cues on the validation images (oracles or concepts)")
    p.add_argument("--infidelity", default="0", help="reanalyse: the world generator's failure rate, or 'all' (0, 0.15, 0.3)")
    p.add_argument("--max-pairs", type=int, default=None,
                   help="reanalyse: the confirmation budget per test instead of the audit's (a row of its own)")
    p.add_argument("--n-val", type=int, default=3000,
                   help="confirm: validation scenes per classifier (a cue planted at 99%% leaves about 5 counter images "
                        "of its class in 3000; a slice that small decides only when its images do)")
    p.add_argument("--screen-extend", default=None,
                   help="reanalyse: adaptive screening's seeds per round instead of the audit's, e.g. 4 or 4,8 (0: none)")
    p.add_argument("--steps", type=int, default=None,
                   help="reanalyse: sampling steps of the analysis instead of the audit's (a row of its own)")
    p.add_argument("--guidance", type=float, default=None,
                   help="reanalyse: the analysis's classifier-free guidance scale instead of the audit's (a row of its own)")
    p.add_argument("--audit-defaults", action="store_true",
                   help="reanalyse: with `probe audit`'s default analysis settings where the demo's differ (a row of its "
                        "own); confirm: confirm those reanalyses' findings instead of the demo-settings audits'")
    p.add_argument("--rescore", action="store_true",
                   help="confirm: score the last confirm phase's confirmation.json again instead of confirming anew")
    p.add_argument("--again", action="store_true",
                   help="reanalyse: analyse anew instead of reading the cached analysis (after a change to the analysis)")
    p.add_argument("--quick", action="store_true", help="2 biased + 1 clean classifier")
    p.add_argument("--set", choices=["tuning", "both", "untuned", *SETS], default="tuning",
                   help="tuning: the classifiers methods were developed on; heldout: other recipes and seeds, never tuned "
                        "on; fresh, fresh2: later sets for changes diagnosed on the set before (see SETS); untuned: "
                        "every set but the tuning set (for `table`: sums over all of them)")
    p.add_argument("--remeasure", action="store_true",
                   help="also re-measure each passing finding on 64 fresh pairs (the audit's self-consistency)")
    a = p.parse_args()
    if a.phase == "reanalyse":
        rates = RATES if a.infidelity == "all" else (float(a.infidelity),)
        checkers = list(CHECKERS) if a.checker == "all" else [a.checker]
        extend = None if a.screen_extend is None else tuple(int(x) for x in a.screen_extend.split(",") if int(x))
        rows = [reanalyse(a.run, c, r, max_pairs=a.max_pairs, again=a.again, screen_extend=extend,
                          audit_defaults=a.audit_defaults, steps=a.steps, guidance=a.guidance)
                for r in rates for c in checkers]
        out = Path(__file__).resolve().parent / "results" / f"validity_reanalysed_{a.run.name}.json"
        key = lambda r: (r["infidelity"], r["checker"], r.get("max_pairs") or 0, str(r.get("screen_extend")),  # noqa: E731
                         r.get("steps") or 0, r.get("guidance") or 0, r.get("analysis") or "", r.get("code") or "")  # a row tagged with its code stays
        done = {key(r): r for r in json.loads(out.read_text())} if out.is_file() else {}
        done.update({key(r): r for r in rows})
        out.write_text(json.dumps(sorted(done.values(), key=key), indent=1) + "\n")
        return 0
    items = {"tuning": plan(), "both": plan() + plan(named="heldout"), **{n: plan(named=n) for n in SETS},
             "untuned": [item for n in SETS for item in plan(named=n)]}[a.set]
    if a.quick:
        items = items[:2] + [i for i in items if not i["bias"]][:1]
    print(f"classifiers: {[(i['name'], i['bias'] or 'clean') for i in items]}", flush=True)
    if a.phase in ("train", "all"):
        train(items)
    if a.phase in ("audit", "all"):
        audit(items)
    if a.phase in ("score", "all"):
        score(items, remeasure_fresh=a.remeasure)
    if a.phase == "table":
        table(items)
    if a.phase == "confirm":
        train(items)
        audit(items)
        if a.checker not in ("oracles", "concepts"):
            p.error("confirm: --checker must be oracles or concepts (something must read the cues on the images)")
        confirm(items, checker=a.checker, label=a.set + ("-quick" if a.quick else ""), n_val=a.n_val,
                audit_defaults=a.audit_defaults, rescore=a.rescore)
    return 0


if __name__ == "__main__":
    sys.exit(main())
