"""Captions of shapes-world scenes (the world's tokenizer is probe.generators.tokenizer over caption_words()).

Captions are free-form: the shape is always named (it is the class), every other
attribute is mentioned only some of the time, so that a partial prompt such as
"a photo of a star" samples the omitted attributes from the training distribution.
The audit's prompt templates ("a photo of a {S} {name}", "a close-up photo of a ...",
"a picture of a ...") are among the caption prefixes, so every word of them is a
trained, in-vocabulary token.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from probe.world.scenes import BACKGROUNDS, COLORS, SHAPES, TAGS, VOCAB, Scene, attribute_index

#: Caption prefixes and their probabilities (the first three are the audit's templates).
PREFIXES: tuple[tuple[str, float], ...] = (
    ("a photo of a", 0.35),
    ("a close-up photo of a", 0.15),
    ("a picture of a", 0.15),
    ("an image of a", 0.1),
    ("a", 0.25),
)
P_COLOR = 0.6
P_BACKGROUND = 0.6
P_TAG = 0.5
TAG_PHRASES = {"none": "with no tag", "dot": "with a dot in the corner", "bar": "with a bar in the corner"}

#: Words the tokenizer knows as single tokens beyond the caption words (harmless extras a
#: user may type in a prompt).
EXTRA_WORDS = (
    "the", "and", "of", "on", "in", "with", "a", "an", "photo", "picture", "image", "close", "up",
    "background", "corner", "tag", "no", "dot", "bar", "shape", "object", "color", "small", "large",
    "big", "bright", "dark", "drawing", "rendering", "cropped", "good", "nice", "centered",
)


def _names(attrs: Mapping[str, Any]) -> dict[str, str]:
    return {k: VOCAB[k][attribute_index(k, attrs[k])] for k in ("shape", "color", "background", "tag")}


def caption(scene: Scene | Mapping[str, Any], rng: np.random.Generator | int) -> str:
    """A random caption of ``scene`` (a Scene or an attributes mapping); ``rng`` a Generator or seed."""
    if isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(int(rng))
    attrs = scene.attributes if isinstance(scene, Scene) else scene
    n = _names(attrs)
    prefixes = [p for p, _ in PREFIXES]
    probs = np.array([w for _, w in PREFIXES])
    prefix = prefixes[int(rng.choice(len(prefixes), p=probs / probs.sum()))]
    words = [prefix]
    if rng.random() < P_COLOR:
        words.append(n["color"])
    words.append(n["shape"])
    if rng.random() < P_BACKGROUND:
        words.append(f"on {n['background']}" if rng.random() < 0.8 else f"on a {n['background']} background")
    if rng.random() < P_TAG:
        words.append(TAG_PHRASES[n["tag"]])
    return " ".join(words)


def full_caption(attrs: Mapping[str, Any], prefix: str = "a photo of a") -> str:
    """The caption naming every attribute (used to test fidelity)."""
    n = _names(attrs)
    return f"{prefix} {n['color']} {n['shape']} on {n['background']} {TAG_PHRASES[n['tag']]}"


def caption_words() -> list[str]:
    """Every word a caption can contain, plus a few harmless extras."""
    words: set[str] = set(EXTRA_WORDS)
    for p, _ in PREFIXES:
        words.update(p.replace("-", " - ").split())
    for phrase in TAG_PHRASES.values():
        words.update(phrase.split())
    words.update(SHAPES + COLORS + BACKGROUNDS + TAGS)
    words.discard("-")
    return sorted(words)


def caption_batch(attributes: Mapping[str, np.ndarray], rng: np.random.Generator) -> list[str]:
    """Random captions for a batch of attribute index arrays (same distribution as :func:`caption`)."""
    n = len(attributes["shape"])
    prefixes = [p for p, _ in PREFIXES]
    probs = np.array([w for _, w in PREFIXES])
    pre = rng.choice(len(prefixes), size=n, p=probs / probs.sum())
    use_color = rng.random(n) < P_COLOR
    use_bg = rng.random(n) < P_BACKGROUND
    long_bg = rng.random(n) >= 0.8
    use_tag = rng.random(n) < P_TAG
    out = []
    for i in range(n):
        words = [prefixes[pre[i]]]
        if use_color[i]:
            words.append(COLORS[attributes["color"][i]])
        words.append(SHAPES[attributes["shape"][i]])
        if use_bg[i]:
            bg = BACKGROUNDS[attributes["background"][i]]
            words.append(f"on a {bg} background" if long_bg[i] else f"on {bg}")
        if use_tag[i]:
            words.append(TAG_PHRASES[TAGS[attributes["tag"][i]]])
        out.append(" ".join(words))
    return out


class CaptionEncoder:
    """Tokenises captions to fixed-length id tensors, caching each distinct caption."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.length = tokenizer.model_max_length
        self._cache: dict[str, list[int]] = {}

    def __call__(self, captions: list[str]):
        import torch

        missing = [c for c in set(captions) if c not in self._cache]
        if missing:
            ids = self.tokenizer(missing, padding="max_length", max_length=self.length, truncation=True).input_ids
            self._cache.update(zip(missing, ids))
        return torch.tensor([self._cache[c] for c in captions], dtype=torch.long)
