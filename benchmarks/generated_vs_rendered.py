"""Is a necessity finding's size the generator's or the classifier's? One finding measured three ways.

A finding near the bar can be false for two reasons: its estimate was the high end of the noise (passing estimates
lean upward, because large ones are the ones kept), or the generator draws the cue so that it moves the classifier
more than the real thing does. This script tells them apart for one (class, cue) of a finished shapes-world run:

1. the necessity test again on ``--pairs`` fresh pairs (the audit's own procedure, ``measure_necessity``, on seeds
   apart from screening and confirmation; a copy of the run is used, nothing is written to it);
2. every generated image rendered again by the world's renderer with what the oracles read in it (shape, colour,
   background, tag) and ``--geometries`` random geometries: the same pairs, drawn faithfully;
3. the truth table (``probe.world.true_effects``) against the same counters, over uniform contexts.

Counters are the cue's, less those the run's counter rule dropped for the class, as the audit measured it.

If (1) is below the bar, the audit's pass was noise at the bar; if (1) is above it and (2) below, the generator
overstates the cue.

    .venv/bin/python benchmarks/generated_vs_rendered.py RUN_DIR square snow [--pairs 64] [--guidance 2]

``--guidance`` draws the pairs at another classifier-free guidance scale than the audit sampled with, ``--steps`` at
another number of sampling steps (the token as learned): whether the generator's distance from the faithful rendering
is a matter of its sampling settings.

Prints one JSON row.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(run_dir: Path, class_name: str, cue_name: str, pairs: int = 64, seed: int = 810_000,
            geometries: int = 4, subject: str = "token", guidance: float | None = None, truth_table=None,
            classifier=None, generator=None, steps: int | None = None, scheduler: str | None = None) -> dict:
    """One row (see the module's docstring). ``classifier`` (the run's, loaded), ``generator`` (the world's) and
    ``truth_table`` (``true_effects`` of that classifier) are loaded here when not given: a caller measuring many
    tests passes them once."""
    from probe.analysis._util import classify_probs
    from probe.analysis.class_evidence import load_token
    from probe.analysis.necessity import measure_necessity
    from probe.analysis.retest import RunContext
    from probe.classifiers import load_classifier
    from probe.generators import load_generator
    from probe.world import true_effects
    from probe.world.scenes import render

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / run_dir.name
        shutil.copytree(run_dir, run, ignore=shutil.ignore_patterns("report"))
        if classifier is None:
            classifier = load_classifier(json.loads((run / "config.json").read_text())["audit"]["model"], device="cpu")
        generator = generator if generator is not None else load_generator("world", device="cpu")
        context = RunContext.open(run, classifier, generator)
        if guidance is not None:  # the pairs drawn at another guidance scale than the audit's (the token as learned)
            context.lab.gen_kwargs["guidance_scale"] = float(guidance)
        if steps is not None:  # ... or at another number of sampling steps, every class alike
            context.lab.gen_kwargs["steps"] = int(steps)
            context.lab.more_steps.clear()
        if scheduler is not None:  # ... or with another sampler (a --scheduler name), the token as learned
            context.lab.gen_kwargs["scheduler"] = scheduler
        cls = context.resolve_class(class_name)
        cue = context.kept_counters(cls, context.cues[cue_name])  # the audit's counter rule, as the finding was measured
        if cue.attribute not in ("background", "color", "tag"):
            raise SystemExit(f"{cue_name!r} is not a world cue with an attribute the renderer sets")
        load_token(generator, cls)
        prompts = cls.token_prompts(context.cfg.necessity_templates)
        if subject == "name":  # the class's plain name in the token's place: its common look, not its most confident
            prompts = [(template, cls.name) for template, _ in prompts]
        seeds = list(range(seed, seed + math.ceil(pairs / len(prompts))))
        lab = context.lab
        # 1. the audit's necessity test on fresh pairs
        sample = lab.batched(lambda: measure_necessity(lab, cls.index, cue, prompts, seeds,
                                                       object_value=context.object_value(cls),
                                                       object_attribute=context.object_attribute or "object"))
        # 2. each generated arm, its P(class) and what the oracles read; the same scene rendered faithfully
        by_seed: dict[int, list[tuple[dict, float]]] = {}
        for (_, s, _steps), observation in lab.observed().items():  # (prompt, seed, steps)
            if observation.concepts and observation.concepts.get("shape") == cls.name:
                by_seed.setdefault(s, []).append((observation.concepts, float(observation.probs[0][cls.index])))
        rng = np.random.default_rng(seed)
        generated, rendered, levels = [], [], {"cue": ([], []), "counter": ([], [])}
        counters = set(cue.counter_values or ())
        for arms in by_seed.values():
            cue_arms = [a for a in arms if a[0].get(cue.attribute) == cue.value]
            counter_arms = [a for a in arms if a[0].get(cue.attribute) in counters]
            if not cue_arms or not counter_arms:
                continue
            scene_seeds = [int(x) for x in rng.integers(0, 2**30, geometries)]

            def faithful(reading: dict) -> float:
                images = torch.stack([torch.as_tensor(np.asarray(render(
                    cls.name, reading["color"], reading["background"], reading["tag"], seed=k).image)).permute(2, 0, 1)
                    for k in scene_seeds]).float() / 255
                return float(classify_probs(classifier, images)[:, cls.index].mean())

            g_cue, g_counter = cue_arms[0][1], float(np.mean([p for _, p in counter_arms]))
            r_cue, r_counter = faithful(cue_arms[0][0]), float(np.mean([faithful(r) for r, _ in counter_arms]))
            generated.append(g_cue - g_counter)
            rendered.append(r_cue - r_counter)
            for key, g, r in (("cue", g_cue, r_cue), ("counter", g_counter, r_counter)):
                levels[key][0].append(g)
                levels[key][1].append(r)
        # 3. the truth table over uniform contexts, against the finding's counters
        table = truth_table if truth_table is not None else true_effects(classifier, n=300)
        truth = table.effect(cls.name, cue.name, "necessity", counters=list(cue.counter_values or ()) or None)

    def mean_ci(values) -> list:
        v = np.asarray(values, dtype=float)
        half = 1.96 * v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else float("nan")
        return [round(float(v.mean()), 3), round(float(v.mean() - half), 3), round(float(v.mean() + half), 3)]

    effect = sample.effect()
    return {"run": run_dir.name, "class": cls.name, "cue": cue.name, "subject": subject,
            "guidance": context.lab.gen_kwargs.get("guidance_scale"), "steps": context.lab.gen_kwargs.get("steps"),
            "scheduler": context.lab.gen_kwargs.get("scheduler"), "pairs": int(sample.n),
            "excluded": sample.excluded,
            "fresh necessity [mean, 95% CI]": [round(effect.mean, 3), round(effect.ci_low, 3), round(effect.ci_high, 3)],
            "pairs rendered again": len(generated),
            "generated, those pairs": mean_ci(generated), "rendered from the oracles' readings": mean_ci(rendered),
            "mean P(class) cue arm, generated / rendered": [round(float(np.mean(x)), 3) for x in levels["cue"]],
            "mean P(class) counter arms, generated / rendered": [round(float(np.mean(x)), 3) for x in levels["counter"]],
            "counters": list(cue.counter_values or ()), "truth table (uniform contexts)": round(truth, 3)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("class_name")
    p.add_argument("cue")
    p.add_argument("--pairs", type=int, default=64)
    p.add_argument("--seed", type=int, default=810_000, help="first seed (apart from the audit's 7000+ and 107000+)")
    p.add_argument("--geometries", type=int, default=4, help="renders per generated image (random geometry)")
    p.add_argument("--subject", choices=("token", "name"), default="token",
                   help="what the prompts draw: the class token (the audit's necessity test) or the class's plain name")
    p.add_argument("--guidance", type=float, default=None,
                   help="draw the pairs at this classifier-free guidance scale instead of the audit's (the token as learned)")
    p.add_argument("--steps", type=int, default=None,
                   help="draw the pairs at this many sampling steps instead of the audit's (the token as learned)")
    p.add_argument("--scheduler", default=None,
                   help="draw the pairs with this sampler (a --scheduler name: ddpm, euler-ancestral, ...) instead of "
                        "the audit's (the token as learned)")
    a = p.parse_args()
    print(json.dumps(measure(a.run, a.class_name, a.cue, a.pairs, a.seed, a.geometries, a.subject, a.guidance,
                             steps=a.steps, scheduler=a.scheduler)),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
