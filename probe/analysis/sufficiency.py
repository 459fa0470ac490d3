"""Cue sufficiency: does adding the cue to *other* objects raise P(class)?

Neutral carrier prompts ("a photo of a circle") are rendered from the same seeds with and without each
cue ("a photo of a circle on grass") and classified once; every class's probability is read from that
one pass, so the cost grows with cues × images, not classes × cues. A pair counts for class c only when
its carrier is not c, and only when both images keep the carrier's object and the cue image shows the cue.

Where the lab has stated contexts (the check can verify the other attributes: probe/analysis/context.py),
both images of a pair also state the same random value of every attribute but the cue's, and the check
verifies them: a generator that bleeds the cue into the carrier ("on grass" painting the circle green)
then loses the pair instead of crediting the cue with what the colour did, and the effect is the average
over contexts, the estimand of the shapes world's truth table. The cue-free image of a pair states the
same contexts as its cue image, so it depends on the cue's attribute: one set of cue-free images per
attribute (a few carriers × seeds each).
"""

from __future__ import annotations

import numpy as np

from probe.analysis.context import Stated, alternatives
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
    contexts = lab.contexts
    pairs = [(k, s) for s in seeds for k in range(len(carriers))]

    def arm(k: int, s: int, cue: Cue | None, attribute: str | None) -> Arm:
        """The pair's image: carrier ``k``, seed ``s``, the cue if given, and the contexts stated for ``attribute``'s
        tests; the check reads the object, the cue (a concept model: against its counters) and each stated value."""
        stated = contexts.draw(s, k, attribute) if contexts is not None else ()
        parts = [*stated, *([Stated(cue.attribute or "", "", cue.template)] if cue is not None else [])]
        subject = contexts.compose(carriers[k].text, parts) if contexts is not None else \
            (cue.apply(carriers[k].text) if cue is not None else carriers[k].text)
        against = contexts.rivals(stated) if contexts is not None else {}
        shown = {c.attribute: c.value for c in stated}
        if cue is not None and cue.attribute:
            against[cue.attribute] = alternatives(contexts, cue.attribute, cue.value, cue.counter_values)
            shown[cue.attribute] = cue.value
        return Arm.of(template.replace("{}", subject), s, against=against or None,
                      **{object_attribute: carriers[k].object, **shown})

    # 1. the arms: each (carrier, seed) without any cue (per cue attribute when contexts are stated), then with each cue
    attributes = list(dict.fromkeys(cue.attribute for cue in cues)) if contexts is not None else [None]
    base = {a: [arm(k, s, None, a) for k, s in pairs] for a in attributes}
    with_cue = [[arm(k, s, cue, cue.attribute) for k, s in pairs] for cue in cues]
    # 2. observe them all at once (shared, cached); evidence: the first pairs of each cue
    base_obs = {a: lab.observe(arms) for a, arms in base.items()}
    keys = [f"s{s}:{carriers[k].text}" for k, s in pairs]  # a pair's name: the same in every run with these seeds
    samples: dict[tuple[str, int], Sample] = {}
    for j, (cue, arms) in enumerate(zip(cues, with_cue)):
        folder = None if evidence_dir is None else evidence_dir / f"{j:02d}-{slugify(cue.name)}"
        obs = lab.observe(arms, evidence_dir=folder, save=set(range(min(n_evidence, len(arms)))))
        a = cue.attribute if contexts is not None else None
        ok = np.array([lab.valid(x, o) and lab.valid(b, p) for x, o, b, p in zip(arms, obs, base[a], base_obs[a])])
        with_probs = np.stack([o.probs[0] for o in obs])
        without = np.stack([o.probs[0] for o in base_obs[a]])
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
