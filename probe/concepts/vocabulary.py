"""The concept vocabulary that cue discovery searches: about a thousand phrases in groups.

Each group (scenes, backgrounds, materials, textures, colours, objects, people, text and watermarks, styles,
lighting, viewpoints) has one template that puts a phrase around the object: ``"{} on {phrase}"`` makes
"{} on grass", the cue template a prompt is built from. Counters of a discovered cue come from its own group
(another background for a background), so a necessity test swaps like for like.

``load_vocabulary()`` reads the bundled file (``probe/concepts/vocabulary.json``); ``load_vocabulary(path)``
adds a user's file of the same shape (``{"groups": {name: {"template": ..., "phrases": [...]}}}``), and
``replace=True`` uses the user's file alone. Torch-free.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from probe.errors import ProbeError

__all__ = ["Phrase", "Vocabulary", "VocabularyError", "load_vocabulary", "MIN_BUNDLED_PHRASES"]

BUNDLED = "vocabulary.json"
MIN_BUNDLED_PHRASES = 1000  # what the bundled file promises (tested)


class VocabularyError(ProbeError):
    """A vocabulary file is missing or misshapen."""


@dataclass(frozen=True)
class Phrase:
    """One phrase of a group, and the cue template it makes (``{}`` where the object goes)."""

    group: str
    phrase: str
    template: str

    def __post_init__(self) -> None:
        if self.template.count("{}") != 1:
            raise VocabularyError(f"vocabulary phrase {self.phrase!r} ({self.group}) makes the template "
                                  f"{self.template!r}, which must hold '{{}}' once where the object goes")

    def text(self, subject: str) -> str:
        """The phrase around ``subject``: "star on grass"."""
        return self.template.replace("{}", subject)


@dataclass(frozen=True)
class Vocabulary:
    """Phrases in groups, in file order; ``source`` says where they came from."""

    phrases: tuple[Phrase, ...]
    source: str = "bundled"

    def __len__(self) -> int:
        return len(self.phrases)

    @property
    def groups(self) -> dict[str, list[int]]:
        """{group: indices of its phrases}."""
        out: dict[str, list[int]] = {}
        for i, p in enumerate(self.phrases):
            out.setdefault(p.group, []).append(i)
        return out

    def __repr__(self) -> str:
        sizes = ", ".join(f"{g} {len(ix)}" for g, ix in self.groups.items())
        return f"Vocabulary({len(self)} phrases from {self.source}: {sizes})"


def _parse(data, where: str) -> list[Phrase]:
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, dict) or not groups:
        raise VocabularyError(f"vocabulary {where!r} must hold {{\"groups\": {{name: {{\"template\": \"{{}} on "
                              "{phrase}\", \"phrases\": [...]}}}}}}; see probe/concepts/vocabulary.json")
    out: list[Phrase] = []
    for name, group in groups.items():
        template = group.get("template") if isinstance(group, dict) else None
        phrases = group.get("phrases") if isinstance(group, dict) else None
        if not isinstance(template, str) or "{phrase}" not in template or not isinstance(phrases, list):
            raise VocabularyError(f"vocabulary {where!r}: group {name!r} needs a 'template' holding {{}} and "
                                  "{phrase} (e.g. \"{} on {phrase}\") and a list of 'phrases'")
        for phrase in phrases:
            if not isinstance(phrase, str) or not phrase.strip() or "{" in phrase:
                raise VocabularyError(f"vocabulary {where!r}: group {name!r} has the phrase {phrase!r}; "
                                      "phrases are plain non-empty text")
            text = unicodedata.normalize("NFC", " ".join(phrase.split()))  # "café" one way, one space between words
            out.append(Phrase(str(name), text, template.replace("{phrase}", text)))
    return out


def load_vocabulary(path: str | Path | None = None, *, replace: bool = False) -> Vocabulary:
    """The bundled vocabulary, plus (or, with ``replace``, instead of it) the groups of the JSON file ``path``.

    Phrases are read in Unicode NFC with their spaces collapsed. A template that appears twice (the same phrase in the
    same place), or a phrase a group already has in any case ("Grass" beside "grass", or the user's "{} in front of
    grass" in a group that has "{} on grass": both would be the cue "grass (backgrounds)", and one could be chosen as
    the other's counter), is kept once, the first time."""
    phrases: list[Phrase] = []
    source = "bundled"
    if path is None or not replace:
        text = resources.files("probe.concepts").joinpath(BUNDLED).read_text(encoding="utf-8")
        phrases += _parse(json.loads(text), "bundled vocabulary")
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise VocabularyError(f"vocabulary file {str(p)!r} does not exist; pass a JSON file shaped like "
                                  "probe/concepts/vocabulary.json")
        try:
            data = json.loads(p.read_text(encoding="utf-8-sig"))  # a BOM too
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise VocabularyError(f"vocabulary file {str(p)!r} is not valid JSON ({e}); fix it") from e
        phrases += _parse(data, str(p))
        source = str(p) if replace else f"bundled + {p}"
    seen, unique = set(), []
    for ph in phrases:
        keys = {ph.template.casefold(), (ph.group, ph.phrase.casefold())}
        if not keys & seen:
            seen |= keys
            unique.append(ph)
    return Vocabulary(tuple(unique), source)
