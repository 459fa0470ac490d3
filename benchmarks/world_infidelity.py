"""What the unfaithful world generator draws, measured: at a rate, how many images fail and whether the oracles and
the world's own concept model see each failure (probe/world/unfaithful.py, probe/world/assets/concepts).

    .venv/bin/python benchmarks/world_infidelity.py --rate 0.3 --n 96

Prompts state every context (colour, background, tag) and carry a class token half of the time (so every kind of
failure can happen); images are sampled at the demo's 5 DDIM steps. Writes benchmarks/results/world_infidelity.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    import torch

    from probe.analysis.checks import ConceptModelCheck
    from probe.concepts import load_concepts
    from probe.generators import load_generator
    from probe.world.domain import world_cues
    from probe.world.oracles import load_oracles
    from probe.world.scenes import BACKGROUNDS, COLORS, SHAPES, TAGS
    from probe.world.text import TAG_PHRASES

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rate", type=float, default=0.3)
    p.add_argument("--n", type=int, default=96)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    asked, prompts = [], []
    for i in range(a.n):
        v = {"shape": SHAPES[rng.integers(6)], "color": COLORS[rng.integers(5)],
             "background": BACKGROUNDS[rng.integers(5)], "tag": TAGS[rng.integers(3)]}
        # a token the world's text encoder has never seen draws like its initialisation: the plain class
        subject = (f"<probe-{SHAPES.index(v['shape'])}> " if i % 2 else "") + v["shape"]
        asked.append(v)
        prompts.append(f"a photo of a {v['color']} {subject} on {v['background']} {TAG_PHRASES[v['tag']]}")
    seeds = list(range(500, 500 + a.n))
    generator = load_generator(f"world:infidelity={a.rate}", device="cpu")
    for i in range(1, a.n, 2):  # the tokens exist (initialised from "a") so the prompts tokenise as an audit's do
        token = f"<probe-{SHAPES.index(asked[i]['shape'])}>"
        if token not in generator.tokenizer.get_vocab():
            generator.add_token(token, "a")
    rewrites = [generator.infidelity.rewrite(p_, s) for p_, s in zip(prompts, seeds)]
    images = torch.cat([generator.generate(prompts[i:i + 16], seeds[i:i + 16], steps=a.steps)
                        for i in range(0, a.n, 16)])
    oracle = load_oracles().predict(images)
    check = ConceptModelCheck(load_concepts("world"), list(SHAPES), world_cues(), object_attribute="shape")
    clip = check.predict(images)
    attrs = ("shape", "color", "background", "tag")
    by_kind: dict[str, dict] = {}
    for i, r in enumerate(rewrites):
        kind = r.kind or "faithful"
        row = by_kind.setdefault(kind, {"images": 0, "oracles see a failure": 0, "world CLIP sees a failure": 0,
                                        "world CLIP agrees with the oracles": 0})
        row["images"] += 1
        row["oracles see a failure"] += any(oracle[x][i] != asked[i][x] for x in attrs)
        row["world CLIP sees a failure"] += any(clip[x][i] != asked[i][x] for x in attrs)
        row["world CLIP agrees with the oracles"] += all(clip[x][i] == oracle[x][i] for x in attrs)
    failed = sum(r.failed for r in rewrites)
    result = {"rate": a.rate, "images": a.n, "steps": a.steps, "failed (the wrapper's draw)": failed,
              "failed share": round(failed / a.n, 3),
              "oracle-seen failure share": round(sum(v["oracles see a failure"] for v in by_kind.values()) / a.n, 3),
              "by kind": by_kind, "seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(result, indent=1))
    out = Path(__file__).resolve().parent / "results" / "world_infidelity.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
