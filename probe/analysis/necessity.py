"""Cue necessity: does P(class) drop when the cue is swapped for a counter-context in the class's own prompts?

The reference prompt states the cue explicitly ("a photo of a <probe-3> star on grass"); each counter
prompt swaps in a counter-context ("... star on sand"), same seed. Stating the cue makes the test
independent of whether the token happened to learn it. One paired value per (prompt, seed): P(class |
cue) minus the mean of P(class | counter) over the counters that passed the check. A pair counts only
when the cue image keeps the object and shows the cue, and at least one counter image keeps the object
and shows its counter-value: an intervention that turned the heart into a cross says nothing about
backgrounds. Where the lab has stated contexts (a concept scorer checks the other attributes), both arms
of a pair also state the same random values of the other attributes, and the scorer checks those too:
the effect is then the class's dependence on the cue averaged over contexts, not in the token's habitual
one (probe/analysis/context.py).

Counters are chosen by a rule, stated in the report: a counter-value that is itself a cue, for this
class or another one (its screened sufficiency effect on any class is at least the effect threshold in
size), is dropped, because a counter the classifier likes or dislikes makes every other value look
like a dependence.
"""

from __future__ import annotations

import numpy as np

from probe.analysis.context import Stated, alternatives
from probe.analysis.cues import Cue, template_phrase
from probe.analysis.lab import Arm, Lab
from probe.analysis.sample import Sample


def measure_necessity(lab: Lab, class_index: int, cue: Cue, token_prompts: list[tuple[str, str]], seeds: list[int], *,
                      object_value: str | None = None, object_attribute: str = "shape", rotate: bool = False,
                      evidence_dir=None, n_evidence: int = 4) -> Sample:
    """The class's necessity sample for ``cue``. ``token_prompts`` are (template, subject) pairs.

    ``rotate``: one counter per pair, taken in turn (same expected value as all counters, a third of the
    images); used when confirming, where the arms are not shared with other cues. Each pair is keyed
    ``"s{seed}:p{prompt index}"``.
    """
    if not cue.counters:
        return Sample("necessity", class_index, cue.name, extra={"skipped": "no counters"})
    values = cue.counter_values or (None,) * len(cue.counters)
    contexts = lab.contexts
    # 1. arms: the cue stated, and the counters swapped in, per (prompt, seed); with stated contexts
    #    (probe/analysis/context.py) both arms also state the pair's random values of the other attributes
    keys = [(i, s) for s in seeds for i in range(len(token_prompts))]

    refs, counters = [], []
    for n, (i, s) in enumerate(keys):
        template, subject = token_prompts[i]
        stated = contexts.draw(s, i, cue.attribute) if contexts is not None else ()
        shown = {object_attribute: object_value, **{c.attribute: c.value for c in stated}}

        def phrase(cue_template: str) -> str:
            if contexts is None:
                return template.replace("{}", cue_template.replace("{}", subject))
            return template.replace("{}", contexts.compose(subject, [*stated, Stated(cue.attribute or "", "", cue_template)]))

        # a concept model checks each arm against its own alternatives: the cue against the counters, a counter
        # against the cue, and with stated contexts each against every other value of its attribute too; a stated
        # context against its attribute's other values (probe/analysis/checks.py); the oracles read one value and
        # ignore ``against``
        context_rivals = contexts.rivals(stated) if contexts is not None else {}
        rivals = {**context_rivals, **({cue.attribute: alternatives(contexts, cue.attribute, cue.value, values)}
                                       if cue.attribute else {})}
        refs.append(Arm.of(phrase(cue.template), s, against=rivals, **shown,
                           **({cue.attribute: cue.value} if cue.attribute else {})))
        chosen = [n % len(cue.counters)] if rotate else range(len(cue.counters))
        counters.append([Arm.of(phrase(cue.counters[c]), s, **shown,
                                against={**context_rivals, **({cue.attribute: alternatives(
                                    contexts, cue.attribute, values[c], [cue.value])} if cue.attribute else {})},
                                **({cue.attribute: values[c]} if cue.attribute and values[c] else {}))
                         for c in chosen])
    # 2. observe (cached: cues of one attribute share their arms); evidence from the first pairs
    save = set(range(min(max(1, n_evidence // 2), len(refs))))
    ref_obs = lab.observe(refs, evidence_dir=evidence_dir, save=save)
    flat = [a for group in counters for a in group]
    flat_obs = lab.observe(flat, evidence_dir=evidence_dir, save=set(range(min(max(1, n_evidence // 2), len(flat)))))
    # 3. one value per pair, from the valid counters only
    diffs, excluded, lost, at, kept = [], 0, 0, 0, []
    for (i, s), ref, ref_o, group in zip(keys, refs, ref_obs, counters):
        obs = flat_obs[at:at + len(group)]
        at += len(group)
        ok = [lab.valid(a, o) for a, o in zip(group, obs)]
        if not lab.valid(ref, ref_o) or not any(ok):
            excluded += 1
            lost += (not lab.valid(ref, ref_o)) + sum(not k for k in ok)
            continue
        lost += sum(not k for k in ok)
        counter_p = np.mean([o.probs[0][class_index] for o, k in zip(obs, ok) if k])
        diffs.append(float(ref_o.probs[0][class_index] - counter_p))
        kept.append(f"s{s}:p{i}")
    evidence = [o.evidence for o in flat_obs if o.evidence][: max(1, n_evidence - 1)]
    evidence += [o.evidence for o in ref_obs if o.evidence][: n_evidence - len(evidence)]
    return Sample("necessity", class_index, cue.name, diffs=np.asarray(diffs, np.float64), attempted=len(refs),
                  excluded=excluded, evidence=evidence,
                  extra={"counters": [template_phrase(c) for c in cue.counters],
                         "images_failed_check": lost}, keys=kept)


def neutral_counters(cue: Cue, suspects: set[str]) -> tuple[Cue, list[str]]:
    """``cue`` without the counters in ``suspects`` (templates of cues whose screened sufficiency effect
    on some class reached the effect threshold in size); returns the cue and the dropped counter phrases.

    When every counter is a suspect the cue keeps them all (nothing dropped): no neutral counter is left, and a test
    against all of them, named in the finding's sentence, is better than none. Measured on fresh7-biased-1 (a
    shapes-world classifier with a planted heart/water worth +0.28): a few noisy screens made every other
    background a suspect, so no class's water necessity was tested at all. The audit (``probe.analysis.engine``) and
    a re-test of a finished run (``RunContext.kept_counters``) both decide by this function."""
    if every_counter_suspect(cue, suspects):
        return cue, []
    dropped = [t for t in cue.counters if t in suspects]
    return cue.without_counters(set(dropped)), [template_phrase(t) for t in dropped]


def every_counter_suspect(cue: Cue, suspects: set[str]) -> bool:
    """Whether :func:`neutral_counters` kept ``cue``'s counters only because every one of them is a suspect."""
    return bool(cue.counters) and all(t in suspects for t in cue.counters)
