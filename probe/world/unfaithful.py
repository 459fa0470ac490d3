"""An unfaithful shapes-world generator: the world's pipeline made to fail the way real text-to-image models do.

The world's generator draws exactly what a prompt says, so the intervention checks never have anything to catch.
Real generators do not: objects swap under some contexts ("underwater" draws a fish), a stated context is not drawn,
the token's own context leaks into a counter-prompt, colour bleeds from the background onto the object. This
module reproduces those failures *at the prompt level*: before the pipeline samples, each (prompt, seed) is, at a
set rate, rewritten into the prompt the pipeline then actually draws. What it drew is therefore known (the
oracles read it; :meth:`Infidelity.rewrite` says which failure was chosen) while the analysis, which only sees
images, is told nothing: only a checker looking at the images can catch a failure.

Failures (``Infidelity.kinds``), each applicable to a prompt only where it can happen:

- ``swap``: the prompt states a trigger context (``triggers``; by default water, snow and the corner bar): the
  object, with its class token, becomes another shape (``SWAP_PARTNER``);
- ``omit``: the prompt states a context (background, colour or tag): one of them is not drawn; another value of
  the same attribute is (for a tag: no tag);
- ``leak``: the prompt holds a class token (``<...>``) and states a context: the context phrase is dropped, so
  the token draws its own context (for a token that learned a cue, the cue, in the counter arm too);
- ``bleed``: the prompt states a background with a colour of its own (grass: green, water: blue, sand: yellow):
  the object takes that colour.

Per (prompt, seed) one uniform draw (seeded by ``seed``, the prompt and the image seed) decides: with
probability ``rate`` the prompt fails, in one of its applicable kinds chosen uniformly; otherwise it is drawn as
written. A prompt with no applicable kind never fails. The same (prompt, seed) always gets the same rewrite.

Spec form (``--generator``): ``world:infidelity=0.15`` with optional ``,kinds=swap+omit``, ``,seed=3`` and
``,triggers=water+snow``; ``world:infidelity=0`` draws exactly what ``world`` draws.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from probe.errors import GeneratorError
from probe.world.scenes import BACKGROUNDS, COLORS, SHAPES, TAGS

__all__ = ["Infidelity", "Rewrite", "KINDS", "SWAP_PARTNER", "BLEED", "make_unfaithful", "unfaithful_variant"]

KINDS: tuple[str, ...] = ("swap", "omit", "leak", "bleed")
#: The shape a swapped object becomes.
SWAP_PARTNER: dict[str, str] = {s: SHAPES[(i + 3) % len(SHAPES)] for i, s in enumerate(SHAPES)}
#: The colour a background bleeds onto the object.
BLEED: dict[str, str] = {"grass": "green", "water": "blue", "sand": "yellow"}
DEFAULT_TRIGGERS: tuple[str, ...] = ("water", "snow", "bar")

_TAG_PHRASES = {"none": "with no tag", "dot": "with a dot in the corner", "bar": "with a bar in the corner"}
_TOKEN = re.compile(r"<[^<>\s]+>")
_WORD = r"(?<![\w-]){}(?![\w-])"


@dataclass(frozen=True)
class Rewrite:
    """What the pipeline drew for one (prompt, seed): ``drawn`` (the prompt it sampled), ``kind`` (the failure,
    None when it drew the prompt as written) and ``changed`` ({attribute: (asked, drawn)} where known)."""

    prompt: str
    drawn: str
    kind: str | None = None
    changed: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.kind is not None


@dataclass(frozen=True)
class _Parsed:
    shape: str | None
    shape_span: tuple[int, int] | None  # the shape word with a class token right before it
    token: str | None
    contexts: dict  # attribute -> (value, (start, end) of the phrase)


def _parse(prompt: str) -> _Parsed:
    """The shape, class token and stated contexts of a prompt in the world's grammar."""
    shape, span, token = None, None, None
    for s in SHAPES:
        m = re.search(_WORD.format(s), prompt)
        if m and (span is None or m.start() < span[0]):
            shape, span = s, (m.start(), m.end())
    tokens = list(_TOKEN.finditer(prompt))
    if tokens:
        token = tokens[0].group(0)
        if span is not None:
            before = prompt[:span[0]].rstrip()
            if before.endswith(token):
                span = (before.rfind(token), span[1])
    contexts: dict[str, tuple[str, tuple[int, int]]] = {}
    for b in BACKGROUNDS:
        m = re.search(r"\s*\bon (?:a )?" + b + r"(?: background)?\b", prompt)
        if m:
            contexts["background"] = (b, (m.start(), m.end()))
            break
    for t, phrase in _TAG_PHRASES.items():
        m = re.search(r"\s*" + re.escape(phrase), prompt)
        if m:
            contexts["tag"] = (t, (m.start(), m.end()))
            break
    for c in COLORS:
        m = re.search(_WORD.format(c), prompt)
        if m:
            contexts["color"] = (c, (m.start(), m.end()))
            break
    return _Parsed(shape, span, token, contexts)


def _seeded(*parts) -> np.random.Generator:
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _replace(prompt: str, span: tuple[int, int], text: str) -> str:
    return " ".join((prompt[:span[0]] + text + prompt[span[1]:]).split())


@dataclass(frozen=True)
class Infidelity:
    """How often and how the world generator fails (see the module docstring)."""

    rate: float
    kinds: tuple[str, ...] = KINDS
    seed: int = 0
    triggers: tuple[str, ...] = DEFAULT_TRIGGERS

    def __post_init__(self) -> None:
        if isinstance(self.rate, bool) or not isinstance(self.rate, (int, float)) or not 0.0 <= float(self.rate) <= 1.0:
            raise GeneratorError(f"infidelity={self.rate!r} must be a rate between 0 and 1, e.g. world:infidelity=0.15")
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not self.kinds:
            raise GeneratorError(f"kinds={'+'.join(self.kinds)!r}: use one or more of {'+'.join(KINDS)}")
        values = set(BACKGROUNDS) | set(COLORS) | set(TAGS)
        bad = [t for t in self.triggers if t not in values]
        if bad:
            raise GeneratorError(f"triggers={'+'.join(bad)!r} are not world contexts; use backgrounds, colours or tags "
                                 f"such as {'+'.join(DEFAULT_TRIGGERS)}")

    @classmethod
    def parse(cls, options: str) -> "Infidelity":
        """From the spec's options: ``infidelity=0.15[,kinds=swap+omit][,seed=3][,triggers=water+snow]``."""
        fields: dict = {}
        for part in (p.strip() for p in options.split(",") if p.strip()):
            key, sep, value = part.partition("=")
            key = key.strip()
            try:
                if not sep:
                    raise ValueError
                if key in ("infidelity", "lying", "rate"):
                    fields["rate"] = float(value)
                elif key == "seed":
                    fields["seed"] = int(value)
                elif key in ("kinds", "triggers"):
                    fields[key] = tuple(v.strip() for v in value.split("+") if v.strip())
                else:
                    raise KeyError(key)
            except (ValueError, KeyError):
                raise GeneratorError(f"world generator option {part!r} is not understood; write e.g. "
                                     "world:infidelity=0.15 (optional: ,kinds=swap+omit+leak+bleed ,seed=0 "
                                     ",triggers=water+snow+bar)") from None
        if "rate" not in fields:
            raise GeneratorError(f"world generator options {options!r} set no rate; write e.g. world:infidelity=0.15")
        return cls(**fields)

    def spec(self) -> str:
        """The options that ``parse`` reads back to this same Infidelity (the rate to all its digits)."""
        rate = f"{self.rate:g}"
        parts = [f"infidelity={rate if float(rate) == self.rate else repr(float(self.rate))}"]
        if self.kinds != KINDS:
            parts.append("kinds=" + "+".join(self.kinds))
        if self.seed:
            parts.append(f"seed={self.seed}")
        if self.triggers != DEFAULT_TRIGGERS:
            parts.append("triggers=" + "+".join(self.triggers))
        return ",".join(parts)

    def applicable(self, prompt: str) -> list[str]:
        """The failures that can happen to ``prompt``, in KINDS order."""
        p = _parse(prompt)
        stated = {a: v for a, (v, _) in p.contexts.items()}
        possible = {
            "swap": p.shape is not None and any(v in self.triggers for v in stated.values()),
            "omit": bool(stated),
            "leak": p.token is not None and bool(stated),
            "bleed": p.shape is not None and stated.get("background") in BLEED
                     and stated.get("color") != BLEED.get(stated.get("background")),
        }
        return [k for k in self.kinds if possible[k]]

    def rewrite(self, prompt: str, seed: int) -> Rewrite:
        """What the pipeline draws for ``prompt`` with image seed ``seed`` (deterministic)."""
        kinds = self.applicable(prompt) if self.rate > 0 else []
        if not kinds:
            return Rewrite(prompt, prompt)
        rng = _seeded("probe-world-infidelity", self.seed, prompt, int(seed))
        u = float(rng.random())
        if u >= self.rate:
            return Rewrite(prompt, prompt)
        kind = kinds[min(int(u / self.rate * len(kinds)), len(kinds) - 1)]
        p = _parse(prompt)
        if kind == "swap":
            partner = SWAP_PARTNER[p.shape]
            return Rewrite(prompt, _replace(prompt, p.shape_span, partner), kind, {"shape": (p.shape, partner)})
        if kind == "bleed":
            colour = BLEED[p.contexts["background"][0]]
            if "color" in p.contexts:
                drawn = _replace(prompt, p.contexts["color"][1], colour)
            else:
                drawn = _replace(prompt, (p.shape_span[0], p.shape_span[0]), colour + " ")
            return Rewrite(prompt, drawn, kind, {"color": (p.contexts.get("color", (None,))[0], colour)})
        attribute = sorted(p.contexts)[int(rng.integers(len(p.contexts)))]
        value, span = p.contexts[attribute]
        if kind == "leak":  # the phrase is dropped: the token draws its own context
            return Rewrite(prompt, _replace(prompt, span, ""), kind, {attribute: (value, None)})
        # omit: the stated context is not drawn; another value of its attribute is
        if attribute == "tag":
            other = "none" if value != "none" else str(rng.choice([t for t in TAGS if t != "none"]))
            text = " " + _TAG_PHRASES[other]
        elif attribute == "background":
            other = str(rng.choice([b for b in BACKGROUNDS if b != value]))
            text = " on " + other
        else:
            other = str(rng.choice([c for c in COLORS if c != value]))
            text = other
        return Rewrite(prompt, _replace(prompt, span, text), kind, {attribute: (value, other)})

    def __repr__(self) -> str:
        return f"Infidelity({self.spec()}; kinds {'+'.join(self.kinds)}, triggers {'+'.join(self.triggers)})"


class _Unfaithful:
    """Mixed in before a Generator class: ``generate`` draws each (prompt, seed) as ``infidelity`` rewrites it.

    Everything else (tokens, gradients, encode) is the wrapped generator's own: only sampling images lies, and
    the analysis cannot tell (the generator's ``source`` is still the world's pipeline).
    """

    infidelity: Infidelity

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], **kwargs):
        if len(prompts) != len(seeds):
            raise GeneratorError(f"got {len(prompts)} prompts but {len(seeds)} seeds; pass one seed per prompt")
        drawn = [self.infidelity.rewrite(p, s).drawn for p, s in zip(prompts, seeds)]
        return super().generate(drawn, seeds, **kwargs)

    def describe(self) -> dict:
        return {**super().describe(), "infidelity": self.infidelity.spec()}

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f", {self.infidelity.spec()})"


_CLASSES: dict[type, type] = {}


def make_unfaithful(generator, infidelity: Infidelity | float):
    """Make a loaded world Generator unfaithful in place (its class gains :class:`_Unfaithful`) and return it."""
    if not isinstance(infidelity, Infidelity):
        infidelity = Infidelity(float(infidelity))
    base = type(generator)
    if issubclass(base, _Unfaithful):
        base = base.__mro__[2]
    if base not in _CLASSES:
        _CLASSES[base] = type(f"Unfaithful{base.__name__}", (_Unfaithful, base), {})
    generator.__class__ = _CLASSES[base]
    generator.infidelity = infidelity
    return generator


def unfaithful_variant(generator, options: str):
    """The world domain's generator variant: ``world:OPTIONS`` (see :meth:`Infidelity.parse`)."""
    return make_unfaithful(generator, Infidelity.parse(options))
