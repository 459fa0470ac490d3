"""Where does a classifier's dependence on a cue live? One (class, cue) of a shapes-world classifier, rendered at
several object geometries.

The generated necessity pairs of near-bar cues carry less of the dependence than the same scenes rendered
(benchmarks/generated_vs_rendered.py: the generator's objects without the cue read as their class more than their
renderings do). This script asks whether the object's geometry is why: the truth table averages over the renderer's
uniform geometry (size 0.62-0.80, centre offset up to 0.12, rotation up to 12 degrees), and a generator that draws its
objects more canonically than that samples the part of the geometry where the classifier needs the cue least.

1. ``--n`` scenes of the class with the cue and ``--n`` with each counter (the other values of the cue's attribute, or
   ``--counters``), every other attribute drawn uniformly, seeded;
2. the same scenes rendered under each geometry condition: the renderer's uniform geometry, the smallest and the
   largest object size, and centred and upright at uniform size;
3. per condition, the mean P(class) of the cue arm and of the counter arms and their difference, the necessity
   effect over uniform contexts (the truth table's estimand, restricted to that geometry).

    .venv/bin/python benchmarks/geometry_dependence.py benchmarks/.cache/validity/classifiers/fresh15-biased-0.pt2 cross wood

Prints one JSON row per condition.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: geometry conditions: what each fixes (the rest is drawn as the renderer draws it)
CONDITIONS = {"uniform": {}, "smallest": {"size": "low"}, "largest": {"size": "high"},
              "centred, upright": {"x": 0.0, "y": 0.0, "rotation": 0.0}}


def measure(classifier, class_name: str, cue: str, n: int = 120, seed: int = 0,
            counters: list[str] | None = None) -> list[dict]:
    from probe.analysis._util import classify_probs
    from probe.world.scenes import SIZE_RANGE, VOCAB, render

    attribute = next((a for a in ("color", "background", "tag") if cue in VOCAB[a]), None)
    if attribute is None:
        raise SystemExit(f"{cue!r} is not a colour, background or tag of the world")
    counters = list(counters or [v for v in VOCAB[attribute] if v != cue])
    index = list(classifier.labels).index(class_name)
    # 1. the scenes: every attribute but the cue's drawn uniformly, one seed per scene
    rng = np.random.default_rng(seed)
    arms = {value: [] for value in [cue, *counters]}
    per = {cue: n, **{v: max(1, n // len(counters)) for v in counters}}
    for value, k in per.items():
        for _ in range(k):
            scene = {a: str(rng.choice([v for v in VOCAB[a]])) for a in ("color", "background", "tag")}
            scene[attribute] = value
            arms[value].append((scene, int(rng.integers(1 << 30))))
    rows = []
    for name, fixed in CONDITIONS.items():
        geometry = {k: (SIZE_RANGE[0] if v == "low" else SIZE_RANGE[1] if v == "high" else v) for k, v in fixed.items()}

        # 2. the same scenes under this geometry
        def p_class(value: str) -> float:
            images = torch.stack([torch.as_tensor(np.asarray(render(class_name, s["color"], s["background"], s["tag"],
                                                                     seed=k, **geometry).image)).permute(2, 0, 1)
                                  for s, k in arms[value]]).float() / 255
            return float(classify_probs(classifier, images)[:, index].mean())

        # 3. the arms' P(class) and the necessity effect
        p_cue = p_class(cue)
        p_counters = float(np.mean([p_class(v) for v in counters]))
        rows.append({"class": class_name, "cue": cue, "geometry": name, "fixed": geometry, "scenes per arm": per[cue],
                     "P(class) cue arm": round(p_cue, 3), "P(class) counter arms": round(p_counters, 3),
                     "necessity effect": round(p_cue - p_counters, 3), "counters": counters})
    return rows


def main() -> int:
    from probe.classifiers import load_classifier

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("classifier", help="a shapes-world classifier (.pt2 with its labels sidecar)")
    p.add_argument("class_name")
    p.add_argument("cue")
    p.add_argument("--n", type=int, default=120, help="scenes in the cue arm (the counters share as many)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--counters", default=None, help="comma-separated counter values (default: every other value)")
    a = p.parse_args()
    classifier = load_classifier(a.classifier, device="cpu")
    for row in measure(classifier, a.class_name, a.cue, a.n, a.seed, a.counters.split(",") if a.counters else None):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
