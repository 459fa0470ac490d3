"""The whole engine under the null: false-discovery rate and power of probe's cue tests at 10, 100 and 1000 classes.

The engine's real decision machinery runs (probe.analysis.engine.run_cue_tests, probe.analysis.decide.decide_q, _finding): sufficiency
screening (one shared pass, or per class on its confusers), the counter rule, necessity screening with adaptive
extension, candidate selection, confirmation rounds with the futility stop and the top-up of lost pairs, the
false-discovery-rate step and the pass rule. Only the images are synthetic: a :class:`SyntheticLab` answers
``Lab.observe`` with classifier probabilities drawn from a model whose cue effects are set here.

    .venv/bin/python benchmarks/engine_null.py --classes 10,100,1000 --reps 10,10,3
    .venv/bin/python benchmarks/engine_null.py --classes 10 --reps 4 --json out.json

The model of one generated image (prompt, seed), every number seeded by (replication, prompt, seed):

1. a token prompt of class s ("a photo of a <t0003> k0003 on grass", what necessity asks for):
   P(s) = clip(b + effect(s, cue shown) + noise), b ~ U(0.3, 0.6) shared by the arms of one seed (the pair);
2. a carrier prompt ("a photo of a k0007 on grass", what sufficiency asks for): for every class c,
   P(c) = clip(a_c + effect(c, cue shown) + noise_c), a_c ~ U(0.05, 0.35) shared by the arms of one seed;
3. noise ~ Normal(0, ``--noise``) per image and class, independent between the arms of a pair, so under "no
   effect" the arms are exchangeable and the sign-flip test is exact;
4. planted effects: a share (``--planted``) of the (class, cue) pairs, at most one cue per (class, cue category),
   each 0.15, 0.25 or 0.40 in turn; a planted cue raises its class's probability wherever it is shown (so both its
   sufficiency and its necessity test have that true effect). ``--planted 0`` is the complete null.
5. confusers: class c's baseline images name c±1, c±2 (a ring) in their saved top-k, so above 20 classes the
   engine's confuser carriers are c's ring neighbours. The model does not make the probability of a class
   depend on how close the carrier is to it, so it measures the decision machinery, not why confusers help.

A test's true effect is computed from the model: sufficiency, the cue's planted effect on the class; necessity,
the cue's effect minus the mean effect of the counters the counter rule kept. A passing test whose true effect
is not positive is a false discovery. Passing here means meeting the bars (``_finding``'s "passes" before
``checked``: the synthetic images count as checked).

Reported per class count and FDR family ("audit": Benjamini–Yekutieli over the audit's confirmed tests;
"per-class": Benjamini–Bogomolov), both decided on the same replications:

- FDR: the mean over replications of (false passes / passes), and P(any false pass) with its exact
  (Clopper–Pearson) 95% interval over replications, which bounds the FDR from above (FDP <= 1[V > 0]);
- the share of false passes among all passes (pooled), with its Clopper–Pearson interval;
- power at each planted effect: passing planted tests / planted tests, Clopper–Pearson.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from probe.analysis.class_evidence import ClassRun  # noqa: E402
from probe.analysis.config import AnalysisConfig  # noqa: E402
from probe.analysis.cues import Cue, default_cues  # noqa: E402
from probe.analysis.decide import _finding, decide_q  # noqa: E402
from probe.analysis.engine import run_cue_tests  # noqa: E402
from probe.analysis.lab import Lab, Observation  # noqa: E402
from probe.analysis.plan import class_carriers  # noqa: E402
from probe.analysis.stats import FDR_FAMILIES, binomial_interval  # noqa: E402

EFFECTS = (0.15, 0.25, 0.40)
_SUBJECT = re.compile(r"(<t(\d+)> )?k(\d+)")
_NOWHERE = Path("/nonexistent-probe-engine-null")  # class folders: nothing is read or written there


def label(c: int) -> str:
    return f"k{c:04d}"


@dataclass
class World:
    """The synthetic classifier's behaviour: planted effects {(class, cue name): effect} and the noise."""

    n_classes: int
    cues: list[Cue]
    plants: dict[tuple[int, str], float]
    noise: float = 0.2
    seed: int = 0
    carrier_template: str = "a photo of a {}"
    _by_template: dict = field(default_factory=dict)
    _effect_rows: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for cue in self.cues:  # what a prompt (subject replaced by "{}") shows
            self._by_template[self.carrier_template.replace("{}", cue.template)] = cue.name
        for (c, name), effect in self.plants.items():
            self._effect_rows.setdefault(name, np.zeros(self.n_classes))[c] = effect

    def cue_of(self, template: str) -> str | None:
        """The cue a cue or counter template shows (None: a counter that is no cue)."""
        return self._by_template.get(self.carrier_template.replace("{}", template))

    def effect(self, c: int, cue: str | None) -> float:
        return self.plants.get((c, cue), 0.0) if cue is not None else 0.0

    def _rng(self, *parts) -> np.random.Generator:
        return np.random.default_rng([self.seed, zlib.crc32("|".join(map(str, parts)).encode())])

    def observe(self, prompt: str, seed: int):
        """The classifier's probabilities on image (prompt, seed): a full vector (carrier images) or a one-class
        lookup (token images: necessity reads only its class)."""
        m = _SUBJECT.search(prompt)
        if m is None:
            raise ValueError(f"synthetic lab: no class in prompt {prompt!r}")
        s = int(m.group(3))
        cue = self._by_template.get(prompt[:m.start()] + "{}" + prompt[m.end():])
        if m.group(1):  # 1. a token prompt of class s
            rng = self._rng("pair", s, seed)
            base = rng.uniform(0.3, 0.6)
            noise = self._rng(prompt, seed).normal(0.0, self.noise)
            return _OneClass(s, float(np.clip(base + self.effect(s, cue) + noise, 0.0, 1.0)))
        # 2. a carrier prompt: every class's probability
        base = self._rng("carrier", s, seed).uniform(0.05, 0.35, self.n_classes)
        noise = self._rng(prompt, seed).normal(0.0, self.noise, self.n_classes)
        shift = self._effect_rows.get(cue)
        p = base + noise if shift is None else base + shift + noise
        return np.clip(p, 0.0, 1.0).astype(np.float32)


class _OneClass:
    """A probability vector that only knows one class (a token image: the engine reads its class only)."""

    def __init__(self, index: int, value: float):
        self.index, self.value = index, value

    def __getitem__(self, c):
        if c != self.index:
            raise IndexError(f"synthetic token image of class {self.index} was asked for class {c}")
        return self.value


class _Images(dict):
    """The lab's cache of observed images, computed on access from the world (nothing kept but the keys)."""

    def __init__(self, world: World):
        super().__init__()
        self.world = world
        self.made: set = set()

    def __contains__(self, key) -> bool:
        return key in self.made

    def get(self, key, default=None):
        return self[key] if key in self.made else default

    def __getitem__(self, key):
        if key not in self.made:
            raise KeyError(key)
        return Observation([self.world.observe(key[0], key[1])], None)  # (prompt, seed, steps): the world has no steps

    def __setitem__(self, key, value) -> None:
        self.made.add(key)


class _Classifier:
    def __init__(self, n: int):
        self.labels = [label(c) for c in range(n)]


@dataclass
class SyntheticLab(Lab):
    """probe's Lab with the generator and classifier replaced by :class:`World`: ``observe`` and ``batched`` are
    the real ones (planning pass, cache); only ``_generate`` is synthetic. Nothing is checked (every arm valid)."""

    world: World | None = None

    def __post_init__(self) -> None:
        self._seen = _Images(self.world)

    def _generate(self, keys, wanted) -> None:
        todo = [k for k in dict.fromkeys(keys) if k not in self._seen]
        for key in todo:
            self._seen[key] = None
        if hasattr(self, "count"):
            self.count(len(todo))
        else:
            self.images_generated += len(todo)


def make_classes(n: int) -> list[ClassRun]:
    """Finished classes as the engine reads them: one token prompt each, baseline top-k naming the ring neighbours."""
    out = []
    for c in range(n):
        ring = [(c + d) % n for d in (1, -1, 2, -2) if (c + d) % n != c]
        topk = [{"index": c, "label": label(c), "prob": 0.5}] + [
            {"index": j, "label": label(j), "prob": round(0.2 / (1 + r), 4)} for r, j in enumerate(dict.fromkeys(ring))]
        metrics = {"status": "done", "class_index": c, "class_name": label(c), "token_change": {"moved": True},
                   "prompts": {"templates": ["a photo of a {}"], "token": [f"a photo of a <t{c:04d}> {label(c)}"],
                               "baseline": [f"a photo of a {label(c)}"]},
                   "images": [{"path": f"images/baseline_p0_s{s}.png", "kind": "baseline", "seed": s, "topk": topk}
                              for s in range(2)]}
        out.append(ClassRun(c, label(c), _NOWHERE / f"c{c:04d}", metrics))
    return out


def plant(n: int, cues: list[Cue], share: float, rng: np.random.Generator) -> dict[tuple[int, str], float]:
    """Step 4 of the model: ``share`` of the (class, cue) pairs, at most one cue per (class, category)."""
    if share <= 0:
        return {}
    by_category: dict[str, list[Cue]] = {}
    for cue in cues:
        by_category.setdefault(cue.category, []).append(cue)
    k = 0
    plants = {}
    per_class = max(1, round(share * len(cues)))
    for c in range(n):
        categories = rng.permutation(sorted(by_category))[:per_class]
        for cat in categories:
            cue = by_category[cat][int(rng.integers(len(by_category[cat])))]
            plants[(c, cue.name)] = EFFECTS[k % len(EFFECTS)]
            k += 1
    return plants


def true_effect(world: World, test) -> float:
    own = world.effect(test.cls.index, test.cue.name)
    if test.kind == "sufficiency":
        return own
    counters = [world.effect(test.cls.index, world.cue_of(t)) for t in test.cue.counters]
    return own - (float(np.mean(counters)) if counters else 0.0)


def analysis_config(**changes) -> AnalysisConfig:
    """The engine's defaults, with what needs the run's own images off (token shift, attributions, off-object)."""
    return AnalysisConfig(token_shift=False, off_object=False, attributions=False, n_evidence=0, **changes)


def replicate(n: int, rep: int, *, planted: float, noise: float, cfg: AnalysisConfig, families=FDR_FAMILIES,
              cues: list[Cue] | None = None) -> dict:
    """One replication at ``n`` classes: the engine's cue tests on a fresh synthetic world, decided under each
    FDR family. Returns counts per family and the images the engine asked for. ``cues``: default, the curated list."""
    cues = list(cues) if cues is not None else default_cues()
    rng = np.random.default_rng([2026, n, rep])
    world = World(n, cues, plant(n, cues, planted, rng), noise=noise, seed=1_000_003 * rep + n)
    classes = make_classes(n)
    labels = [label(c) for c in range(n)]
    lab = SyntheticLab(generator=None, classifiers=[_Classifier(n)], batch_size=cfg.batch_size, world=world)
    carriers = class_carriers(cfg, labels, set(), classes)
    t0 = time.perf_counter()
    ct = run_cue_tests(cfg, lab, classes, cues, labels, carriers, generator=None, object_attribute=None,
                       object_of=lambda _cls: None, evidence_root=_NOWHERE)
    confirmed = [t for t in ct.candidates if t.confirm is not None and t.confirm.n > 0]
    truth = {id(t): true_effect(world, t) for t in ct.tests}
    out = {"tests": len(ct.tests), "candidates": len(ct.candidates), "confirmed": len(confirmed),
           "images": lab.images_generated, "planted_tests": {str(e): sum(1 for t in ct.tests if truth[id(t)] == e)
                                                             for e in EFFECTS},
           "null_tests": sum(1 for t in ct.tests if truth[id(t)] <= 0), "carriers": cfg.carrier_source_for(n),
           "dropped_counters": sum(len(v) for v in ct.suspects.values()), "families": {}}
    for family in families:
        decide_q(cfg, family, confirmed)
        passes = [t for t in ct.tests if (f := _finding(cfg, t)) is not None and f.passes]
        false = sum(1 for t in passes if truth[id(t)] <= 0)
        out["families"][family] = {"passes": len(passes), "false": false,
                                   "true_by_effect": {str(e): sum(1 for t in passes if truth[id(t)] == e)
                                                      for e in EFFECTS}}
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return out


def summarise(reps: list[dict]) -> dict:
    """FDR and power over replications, with exact (Clopper–Pearson) 95% intervals."""
    def cp(k: int, m: int):
        return [round(x, 4) for x in binomial_interval(int(k), int(m))] if m else None

    out = {"reps": len(reps), "tests_per_rep": round(float(np.mean([r["tests"] for r in reps])), 1),
           "confirmed_per_rep": round(float(np.mean([r["confirmed"] for r in reps])), 1),
           "images_per_class": round(float(np.mean([r["images"] for r in reps])) / reps[0]["n"], 1),
           "seconds_per_rep": round(float(np.mean([r["seconds"] for r in reps])), 1),
           "carriers": reps[0]["carriers"], "families": {}}
    for family in reps[0]["families"]:
        fam = [r["families"][family] for r in reps]
        passes, false = sum(f["passes"] for f in fam), sum(f["false"] for f in fam)
        any_false = sum(1 for f in fam if f["false"] > 0)
        fdp = [f["false"] / f["passes"] if f["passes"] else 0.0 for f in fam]
        power = {}
        for e in EFFECTS:
            k = sum(f["true_by_effect"][str(e)] for f in fam)
            m = sum(r["planted_tests"][str(e)] for r in reps)
            if m:
                power[str(e)] = {"found": k, "of": m, "power": round(k / m, 4), "ci": cp(k, m)}
        out["families"][family] = {
            "passes": passes, "false": false, "fdr": round(float(np.mean(fdp)), 4),
            "any_false": any_false, "any_false_ci": cp(any_false, len(fam)),
            "false_share_ci": cp(false, passes), "power": power,
            "null_pass_rate": cp(false, sum(r["null_tests"] for r in reps))}
    return out


def simulate(n: int, reps: int, *, planted: float, noise: float = 0.2, cfg: AnalysisConfig | None = None,
             families=FDR_FAMILIES, cues: list[Cue] | None = None, say=print) -> dict:
    """``reps`` replications at ``n`` classes, summarised (:func:`summarise`)."""
    cfg = cfg or analysis_config()
    rows = []
    for rep in range(reps):
        row = replicate(n, rep, planted=planted, noise=noise, cfg=cfg, families=families, cues=cues)
        row["n"] = n
        rows.append(row)
        say(f"  {n} classes, planted {planted}, rep {rep + 1}/{reps}: {row['tests']} tests, {row['confirmed']} confirmed, "
            + ", ".join(f"{k}: {v['passes']} pass ({v['false']} false)" for k, v in row["families"].items())
            + f" [{row['seconds']} s]")
    return summarise(rows)


def show(n: int, planted: float, s: dict) -> str:
    lines = [f"{n} classes, planted share {planted}: {s['reps']} reps, {s['tests_per_rep']} tests and "
             f"{s['confirmed_per_rep']} confirmed per rep, {s['images_per_class']} images/class, carriers "
             f"{s['carriers']}, {s['seconds_per_rep']} s/rep"]
    for family, f in s["families"].items():
        power = "; ".join(f"{e}: {p['found']}/{p['of']} = {p['power']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]"
                          for e, p in f["power"].items())
        ci = f["any_false_ci"]
        lines.append(f"  {family:9s} FDR {f['fdr']:.3f}; P(any false pass) {f['any_false']}/{s['reps']} "
                     f"[{ci[0]:.2f}, {ci[1]:.2f}]; false {f['false']} of {f['passes']} passes"
                     + (f" [{f['false_share_ci'][0]:.3f}, {f['false_share_ci'][1]:.3f}]" if f["false_share_ci"] else "")
                     + (f"; power {power}" if power else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", default="10,100,1000", help="class counts, comma-separated")
    ap.add_argument("--reps", default="10", help="replications per class count (one number, or one per count)")
    ap.add_argument("--planted", default="0,0.05", help="planted shares of (class, cue) pairs (0: the complete null)")
    ap.add_argument("--noise", type=float, default=0.2, help="SD of one image's probability noise")
    ap.add_argument("--carriers", default="auto", choices=("auto", "spread", "confusers"))
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    counts = [int(x) for x in args.classes.split(",")]
    reps = [int(x) for x in args.reps.split(",")]
    reps = reps * len(counts) if len(reps) == 1 else reps
    if len(reps) != len(counts):
        ap.error("--reps: one number, or one per class count")
    cfg = analysis_config(carrier_source=args.carriers)
    results = []
    for n, r in zip(counts, reps):
        for planted in (float(x) for x in args.planted.split(",")):
            s = simulate(n, r, planted=planted, noise=args.noise, cfg=cfg)
            print(show(n, planted, s), flush=True)
            results.append({"classes": n, "planted": planted, "noise": args.noise, **s})
    if args.json:
        Path(args.json).write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
