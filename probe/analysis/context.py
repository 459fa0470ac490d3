"""Stated contexts: the other attributes of a cue test's pair, drawn at random and stated in both images.

A class token draws its own habitual context. On a validity-benchmark classifier (biased-1) the heart
token drew a bar tag in 11 of 12 images, and with a bar tag that classifier calls a yellow heart a
circle; "a blue heart" against "a yellow heart" then measured +0.41 although, over all scenes, the
difference is +0.11. "The class depends on blue" is a claim about the class in general, so its estimand
is the average over the other attributes. When the intervention check (a domain's oracles, or a concept
model) can check them, each pair therefore states one value of every *other* attribute, drawn at random,
the same in both arms; the check verifies them as it verifies the object and the cue (a concept model: the
stated value must beat the attribute's other values), so a pair differs in the cue alone, and the pairs
sample the contexts uniformly, as the shapes world's truth table does (probe.world.true_effects). Only
attributes whose values exclude one another are stated: the cues that name their own attribute. Sufficiency
pairs state them too, around the carrier ("a photo of a red circle on sand"), so a cue that bleeds into the
carrier (SD's "on grass" painting it green) loses its pair (probe/analysis/sufficiency.py).

1. ``StatedContexts.from_cues``: per attribute, every (value, template) that the cue list states, the
   counters included (a tag's "with no tag"); attributes the scorer cannot check are left unstated.
2. ``draw(seed, index, skip)``: one option per attribute but ``skip`` (the tested cue's), from a
   generator seeded by the pair and the attribute, so two runs with the same seeds state the same contexts
   and cues of one attribute share their arms.
3. ``compose(subject, parts)``: the phrase with every part in the cue list's attribute order, e.g.
   "blue <probe-5> heart on sand with a dot in the corner".
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from probe.analysis.cues import Cue

__all__ = ["Stated", "StatedContexts", "alternatives"]


@dataclass(frozen=True)
class Stated:
    """One attribute value as a prompt template (``"{} on sand"``, ``"blue {}"``)."""

    attribute: str
    value: str
    template: str


@dataclass(frozen=True)
class StatedContexts:
    options: dict  # attribute -> tuple[Stated, ...], in the cue list's attribute order

    @classmethod
    def from_cues(cls, cues: list[Cue], check) -> "StatedContexts | None":
        """The contexts a cue list can state and ``check`` (the oracles or a concept model) can verify; None when
        there are none."""
        if check is None:
            return None
        options: dict[str, dict[str, Stated]] = {}
        for cue in cues:
            if not cue.attribute:
                continue
            pairs = [(cue.value, cue.template), *zip(cue.counter_values, cue.counters)]
            for value, template in pairs:
                if value and check.checkable(cue.attribute, str(value)):
                    stated = Stated(cue.attribute, str(value), template)
                    options.setdefault(cue.attribute, {}).setdefault(str(value), stated)
        kept = {a: tuple(o.values()) for a, o in options.items() if len(o) >= 2}
        return cls(kept) if kept else None

    @property
    def attributes(self) -> list[str]:
        return list(self.options)

    def draw(self, seed: int, index: int, skip: str | None) -> tuple[Stated, ...]:
        """The context of pair (``seed``, ``index``) for a test on attribute ``skip``."""
        out = []
        for attribute, options in self.options.items():
            if attribute == skip:
                continue
            rng = np.random.default_rng([int(seed), int(index), zlib.crc32(attribute.encode())])
            out.append(options[int(rng.integers(len(options)))])
        return tuple(out)

    def rivals(self, stated) -> dict[str, tuple[str, ...]]:
        """Per stated part's attribute, the other values it could have stated: what a concept model must find the
        stated value beats (probe/analysis/checks.py; the oracles read one value and need none)."""
        return {p.attribute: tuple(o.value for o in self.options.get(p.attribute, ()) if o.value != p.value)
                for p in stated}

    def alternatives(self, attribute: str | None, value, known=()) -> tuple[str, ...]:
        """What an arm that shows ``attribute=value`` must show it more than (a concept model's check): ``known`` (the
        test's own counters, or the cue) and, for an attribute whose values exclude one another (stated here), every
        other value of it. A counter the counter rule dropped is still a colour the arm must not show: with "blue"
        tested against red and yellow only, a blue arm that came out purple passed the check."""
        known = tuple(str(v) for v in known if v)
        if not attribute or attribute not in self.options:
            return known
        return tuple(dict.fromkeys([*known, *(o.value for o in self.options[attribute] if o.value != str(value))]))

    def compose(self, subject: str, parts) -> str:
        """``subject`` with every part's template applied, in attribute order (unknown attributes last)."""
        rank = {a: i for i, a in enumerate(self.options)}
        phrase = subject
        for part in sorted(parts, key=lambda p: rank.get(p.attribute, len(rank))):
            phrase = part.template.replace("{}", phrase)
        return phrase

    def describe(self) -> str:
        attributes = ", ".join(self.attributes)
        return (f"each necessity and sufficiency pair states a random value of every other attribute ({attributes}), "
                "the same in both images, checked by the intervention check")


def alternatives(contexts: "StatedContexts | None", attribute: str | None, value, known=()) -> tuple[str, ...]:
    """:meth:`StatedContexts.alternatives`, or just ``known`` without stated contexts (nothing says which values exclude
    one another): what necessity and sufficiency arms put in ``against``."""
    if contexts is None:
        return tuple(str(v) for v in known if v)
    return contexts.alternatives(attribute, value, known)
