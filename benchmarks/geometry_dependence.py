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

``--run RUN_DIR`` asks the generator instead: ``--n`` images of the class's token prompts from the run (no cue stated),
each object's geometry fitted by rendering a grid of sizes, offsets and rotations with what the oracles read in the
image and keeping the closest render (:func:`fit_geometry`); then each image's P(class) generated, rendered again at
its fitted geometry, and rendered at the renderer's uniform geometry, overall and split by whether the oracles read the
cue (:func:`generated_geometry`). Where the fitted renders read like the generated images and the uniform ones do
not, the geometry the generator draws is what moves P(class).

    .venv/bin/python benchmarks/geometry_dependence.py CLASSIFIER cross wood --run benchmarks/.cache/validity/runs/fresh15-biased-0
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


def _attribute(cue: str) -> str:
    """The world attribute (colour, background or tag) that ``cue`` is a value of."""
    from probe.world.scenes import VOCAB

    attribute = next((a for a in ("color", "background", "tag") if cue in VOCAB[a]), None)
    if attribute is None:
        raise SystemExit(f"{cue!r} is not a colour, background or tag of the world")
    return attribute


def measure(classifier, class_name: str, cue: str, n: int = 120, seed: int = 0,
            counters: list[str] | None = None) -> list[dict]:
    from probe.analysis._util import classify_probs
    from probe.world.scenes import SIZE_RANGE, VOCAB, render

    attribute = _attribute(cue)
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


#: the fit's grid: sizes and offsets a little past the renderer's bounds (clipped when rendered), rotations within them
_GRID_STEPS = {"size": 7, "offset": 5, "rotation": 5}


def fit_geometry(image: torch.Tensor, shape: str, color: str, background: str, tag: str) -> dict:
    """The (size, x, y, rotation) of the renderer's grid whose render of (shape, color, background, tag) is closest to
    ``image`` (3, 32, 32) in [0, 1] (mean squared error after a 3x3 box blur, so the background's texture matters less
    than the object's outline), clipped to the renderer's bounds."""
    from probe.world.scenes import OFFSET_RANGE, ROTATION_RANGE, SIZE_RANGE, attribute_index, render_batch

    sizes = np.linspace(SIZE_RANGE[0] - 0.06, SIZE_RANGE[1] + 0.06, _GRID_STEPS["size"])
    offsets = np.linspace(-OFFSET_RANGE - 0.04, OFFSET_RANGE + 0.04, _GRID_STEPS["offset"])
    rotations = np.linspace(-ROTATION_RANGE, ROTATION_RANGE, _GRID_STEPS["rotation"])
    grid = np.array([(a, b, c, d) for a in sizes for b in offsets for c in offsets for d in rotations])
    n = len(grid)
    attributes = {"shape": np.full(n, attribute_index("shape", shape)), "color": np.full(n, attribute_index("color", color)),
                  "background": np.full(n, attribute_index("background", background)),
                  "tag": np.full(n, attribute_index("tag", tag)),
                  "size": grid[:, 0], "x": grid[:, 1], "y": grid[:, 2], "rotation": grid[:, 3]}
    renders, _ = render_batch(attributes, generator=torch.Generator().manual_seed(0))
    box = torch.ones(1, 1, 3, 3) / 9

    def smooth(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.conv2d(x.reshape(-1, 1, *x.shape[-2:]), box, padding=1).reshape(x.shape)

    best = grid[int(((smooth(renders) - smooth(image[None].float())) ** 2).mean(dim=(1, 2, 3)).argmin())]
    return {"size": float(np.clip(best[0], *SIZE_RANGE)), "x": float(np.clip(best[1], -OFFSET_RANGE, OFFSET_RANGE)),
            "y": float(np.clip(best[2], -OFFSET_RANGE, OFFSET_RANGE)), "rotation": float(best[3])}


def generated_geometry(run_dir: Path, classifier, class_name: str, cue: str, n: int = 80, seed: int = 920_000) -> dict:
    """Step 1-3 of ``--run`` (module docstring): the run's class token drawn ``n`` times by the world's generator at
    the run's sampling settings, each image fitted and rendered again; P(class) per way of drawing it."""
    from probe.analysis._util import classify_probs, generate
    from probe.generators import load_generator
    from probe.world import load_oracles
    from probe.world.scenes import render

    attribute = _attribute(cue)
    run_dir = Path(run_dir)
    token_file = next(iter(sorted(run_dir.glob(f"classes/*-{class_name}/token.safetensors"))), None)
    if token_file is None:
        raise SystemExit(f"{run_dir} has no token for {class_name!r}")
    settings = json.loads((run_dir / "analysis.json").read_text()).get("generation") or {}
    generator = load_generator("world", device="cpu")
    token = generator.load_token(str(token_file))
    templates = json.loads((run_dir / "config.json").read_text())["audit"]["token"]["templates"]
    prompts = [templates[i % len(templates)].format(f"{token} {class_name}") for i in range(n)]
    # 1. the token's images, no cue stated, and what the oracles read in each
    images = generate(generator, prompts, list(range(seed, seed + n)),
                      {k: settings[k] for k in ("steps", "guidance_scale") if k in settings})
    read = load_oracles().predict(images)
    keep = [i for i in range(n) if read["shape"][i] == class_name]
    index = list(classifier.labels).index(class_name)
    # 2. each kept image rendered again at its fitted geometry and at the renderer's uniform geometry
    fitted, uniform, geometry = [], [], []
    for i in keep:
        g = fit_geometry(images[i], class_name, read["color"][i], read["background"][i], read["tag"][i])
        geometry.append(g)
        scene = (class_name, read["color"][i], read["background"][i], read["tag"][i])
        fitted.append(render(*scene, seed=seed + i, **g).image01())
        uniform.append(render(*scene, seed=seed + i).image01())
    # 3. P(class) per way of drawing, overall and by whether the oracles read the cue
    p = {"generated": classify_probs(classifier, images[keep])[:, index],
         "rendered, fitted geometry": classify_probs(classifier, torch.stack(fitted))[:, index],
         "rendered, uniform geometry": classify_probs(classifier, torch.stack(uniform))[:, index]}
    has_cue = np.array([read[attribute][i] == cue for i in keep])

    def mean(x) -> float | None:
        return round(float(np.mean(x)), 3) if len(x) else None

    return {"run": run_dir.name, "class": class_name, "cue": cue, "images": n, "kept (the oracles read the class)": len(keep),
            "with the cue": int(has_cue.sum()),
            "P(class)": {k: mean(v) for k, v in p.items()},
            "P(class) with the cue": {k: mean(v[has_cue]) for k, v in p.items()},
            "P(class) without the cue": {k: mean(v[~has_cue]) for k, v in p.items()},
            "fitted geometry, mean (sd)": {k: [round(float(np.mean([g[k] for g in geometry])), 3),
                                              round(float(np.std([g[k] for g in geometry])), 3)] for k in geometry[0]}
            if geometry else {}}


def main() -> int:
    from probe.classifiers import load_classifier

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("classifier", help="a shapes-world classifier (.pt2 with its labels sidecar)")
    p.add_argument("class_name")
    p.add_argument("cue")
    p.add_argument("--n", type=int, default=120, help="scenes in the cue arm (the counters share as many)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--counters", default=None, help="comma-separated counter values (default: every other value)")
    p.add_argument("--run", type=Path, default=None,
                   help="a finished world run of this classifier: fit the geometry of its token's images instead")
    a = p.parse_args()
    classifier = load_classifier(a.classifier, device="cpu")
    if a.run is not None:
        print(json.dumps(generated_geometry(a.run, classifier, a.class_name, a.cue, n=a.n)), flush=True)
        return 0
    for row in measure(classifier, a.class_name, a.cue, a.n, a.seed, a.counters.split(",") if a.counters else None):
        print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
