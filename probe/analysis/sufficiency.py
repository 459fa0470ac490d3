"""Cue sufficiency: does adding the cue to *other* objects raise P(class)?

Neutral carrier prompts ("a photo of a circle") are rendered from the same seeds with and without each
cue ("a photo of a circle on grass") and classified once; every class's probability is read from that
one pass, so the cost grows with cues × images, not classes × cues. A pair counts for class c only when
its carrier is not c, and only when both images keep the carrier's object and the cue image shows the cue.
"""

from __future__ import annotations

import numpy as np

from probe.analysis.cues import Carrier, Cue
from probe.analysis.lab import Arm, Lab
from probe.analysis.sample import Sample
from probe.files import slugify


def measure_sufficiency(lab: Lab, cues: list[Cue], classes: list[int], carriers: list[Carrier], seeds: list[int], *,
                        template: str = "a photo of a {}", object_attribute: str = "shape",
                        evidence_dir=None, n_evidence: int = 4) -> dict[tuple[str, int], Sample]:
    """Samples for every (cue name, class index): P(class | carrier + cue) - P(class | carrier), paired by seed.

    Each pair is keyed ``"s{seed}:{carrier}"``: its images do not depend on the classifier, so two runs with
    the same generator and seeds see the very same images under the same key."""
    # 1. the arms: each (carrier, seed) without any cue, then with each cue
    pairs = [(k, s) for s in seeds for k in range(len(carriers))]
    base = [Arm.of(template.replace("{}", carriers[k].text), s, **{object_attribute: carriers[k].object})
            for k, s in pairs]
    with_cue = [[Arm.of(template.replace("{}", cue.apply(carriers[k].text)), s,
                        against={cue.attribute: cue.counter_values} if cue.attribute else None,  # a concept model's check
                        **{object_attribute: carriers[k].object, **({cue.attribute: cue.value} if cue.attribute else {})})
                 for k, s in pairs] for cue in cues]
    # 2. observe them all at once (shared, cached); evidence: the first pairs of each cue
    base_obs = lab.observe(base)
    keys = [f"s{s}:{carriers[k].text}" for k, s in pairs]  # a pair's name: the same in every run with these seeds
    samples: dict[tuple[str, int], Sample] = {}
    for j, (cue, arms) in enumerate(zip(cues, with_cue)):
        folder = None if evidence_dir is None else evidence_dir / f"{j:02d}-{slugify(cue.name)}"
        obs = lab.observe(arms, evidence_dir=folder, save=set(range(min(n_evidence, len(arms)))))
        ok = np.array([lab.valid(a, o) and lab.valid(b, p) for a, o, b, p in zip(arms, obs, base, base_obs)])
        with_probs = np.stack([o.probs[0] for o in obs])
        without = np.stack([o.probs[0] for o in base_obs])
        evidence = [o.evidence for o in obs if o.evidence]
        # 3. one sample per class: the pairs whose carrier is another class
        for c in classes:
            usable = np.array([carriers[k].class_index != c for k, _ in pairs])
            keep = usable & ok
            samples[(cue.name, c)] = Sample(
                "sufficiency", c, cue.name, diffs=(with_probs[keep, c] - without[keep, c]).astype(np.float64),
                attempted=int(usable.sum()), excluded=int((usable & ~ok).sum()), evidence=list(evidence),
                extra={"carriers": sorted({carriers[k].text for k, _ in pairs if carriers[k].class_index != c})},
                keys=[key for key, kept in zip(keys, keep) if kept])
    return samples
