"""Cue lists: what can be said in a prompt around the object.

A *cue* is a background ("{} on grass"), a co-occurring object ("{} on a plate"), a colour
("red {}"), a tag ("{} with a blue tag in the corner"), a style or lighting. ``{}`` stands for the
object phrase (a class name, or "S_c name" for a token prompt). Each cue has counter-contexts that
replace it in necessity tests. Cues come from the curated default list, a user's file, or a domain
(the shapes world's attributes, handed in through probe.domains).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from probe.analysis.errors import AnalysisError
from probe.run.format import template_phrase  # noqa: F401  (named here since the cue list introduced it)

__all__ = ["Cue", "Carrier", "load_cues", "default_cues", "cues_from_vocabulary"]

DEFAULT_CUES_FILE = "default_cues.json"


@dataclass(frozen=True)
class Cue:
    """One candidate cue.

    ``template`` contains ``{}`` for the object phrase; ``counters`` are
    templates that replace the cue in necessity tests. ``attribute``/``value``
    tie the cue to a concept scorer's output (the shapes world's oracles).
    """

    name: str
    template: str
    counters: tuple[str, ...] = ()
    category: str = "other"
    description: str = ""
    attribute: str | None = None
    value: str | None = None
    counter_values: tuple = ()  # the attribute value each counter shows (a domain's cues), for intervention checks

    def __post_init__(self) -> None:
        if not str(self.name).strip():
            raise AnalysisError(f"cue name {self.name!r} is empty; give every cue a short name such as 'grass'.")
        for t in (self.template, *self.counters):
            if t.count("{}") != 1:
                raise AnalysisError(
                    f"cue {self.name!r}: template {t!r} must contain '{{}}' exactly once where the object goes, "
                    "e.g. '{} on grass'."
                )
        object.__setattr__(self, "counters", tuple(self.counters))
        object.__setattr__(self, "counter_values", tuple(self.counter_values))
        if self.counter_values and len(self.counter_values) != len(self.counters):
            raise AnalysisError(f"cue {self.name!r}: counter_values must name one value per counter.")
        if not self.description:
            object.__setattr__(self, "description", self.name)

    def apply(self, subject: str) -> str:
        return self.template.replace("{}", subject)

    def counter_prompts(self, subject: str) -> list[str]:
        return [c.replace("{}", subject) for c in self.counters]

    def to_dict(self) -> dict:
        d = {
            "name": self.name,
            "template": self.template,
            "counters": list(self.counters),
            "category": self.category,
            "description": self.description,
        }
        if self.attribute is not None:
            d.update(attribute=self.attribute, value=self.value, counter_values=list(self.counter_values))
        return d

    def without_counters(self, drop: set[str]) -> "Cue":
        """This cue with the counters in ``drop`` (templates) removed."""
        from dataclasses import replace

        keep = [i for i, t in enumerate(self.counters) if t not in drop]
        values = tuple(self.counter_values[i] for i in keep) if self.counter_values else ()
        return replace(self, counters=tuple(self.counters[i] for i in keep), counter_values=values)


@dataclass(frozen=True)
class Carrier:
    """A neutral object phrase cues are attached to; ``class_index`` if it names a class."""

    text: str
    class_index: int | None = None
    object: str | None = None  # the value a domain's scorer reads for this carrier's object (checked when set)


CONCEPT_OBJECT = "object"  # the attribute a concept model reads the class's own object under (probe.analysis.checks)


def _cue_from_obj(obj, where: str) -> Cue:
    if not isinstance(obj, dict) or "name" not in obj:
        raise AnalysisError(f"{where}: each cue must be an object with at least 'name' (and 'template'); got {obj!r}.")
    if obj.get("attribute") == CONCEPT_OBJECT:
        raise AnalysisError(f"{where}: cue {obj['name']!r} names the attribute {CONCEPT_OBJECT!r}, which is reserved "
                            f"for the class's own object; call it something else (e.g. '{CONCEPT_OBJECT}s' for things "
                            "beside it)")
    template = obj.get("template") or "{} " + str(obj["name"])
    if "{}" not in template:
        template = "{} " + template
    return Cue(
        name=str(obj["name"]),
        template=template,
        counters=tuple(obj.get("counters", ())),
        category=str(obj.get("category", "other")),
        description=str(obj.get("description", "")),
        attribute=obj.get("attribute"),
        value=obj.get("value"),
        counter_values=tuple(obj.get("counter_values", ())),
    )


def _parse_text_line(line: str, where: str) -> Cue:
    # "template [| counter; counter]" -- a phrase without {} is appended after the object.
    main, _, rest = line.partition("|")
    main = main.strip()
    template = main if "{}" in main else "{} " + main
    counters = [c.strip() for c in rest.split(";") if c.strip()]
    counters = [c if "{}" in c else "{} " + c for c in counters]
    name = template_phrase(template)
    return Cue(name=name or main, template=template, counters=tuple(counters), description=name or main)


def load_cues(path: str | Path | None = None) -> list[Cue]:
    """Load a cue list: the curated default (``None``), a JSON file or a text file.

    JSON: a list of cue objects (or ``{"cues": [...]}``) with ``name`` and
    ``template`` and optional ``counters``, ``category``, ``description``.
    Text: one cue per line, ``{} on grass | {} on sand; {} on snow``; a phrase
    without ``{}`` is put after the object; ``#`` starts a comment.
    """
    if path is None:
        text = resources.files("probe.analysis").joinpath(DEFAULT_CUES_FILE).read_text(encoding="utf-8")
        where = "default cue list"
        suffix = ".json"
    else:
        p = Path(path)
        if not p.is_file():
            raise AnalysisError(f"cues file {str(p)!r} does not exist; pass a .json or .txt cue list (see docs/analysis.md).")
        try:
            text = p.read_text(encoding="utf-8-sig")  # a BOM (Windows editors) is not a cue
        except (OSError, UnicodeDecodeError) as e:
            raise AnalysisError(f"cues file {str(p)!r}: not readable as UTF-8 text ({e}); save it as UTF-8") from e
        where = str(p)
        suffix = p.suffix.lower()
    cues: list[Cue] = []
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise AnalysisError(f"cues file {where!r} is not valid JSON ({e}); fix it or use one cue per line in a .txt file.") from e
        items = data.get("cues") if isinstance(data, dict) else data
        if not isinstance(items, list):
            raise AnalysisError(f"cues file {where!r} must hold a list of cues or {{'cues': [...]}}.")
        cues = [_cue_from_obj(o, where) for o in items]
    else:
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                cues.append(_parse_text_line(line, where))
    if not cues:
        raise AnalysisError(f"cues file {where!r} holds no cues; add at least one line such as '{{}} on grass'.")
    names = [c.name for c in cues]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise AnalysisError(f"cues file {where!r} repeats cue names {dup}; give every cue a unique name.")
    return cues


def default_cues() -> list[Cue]:
    """The curated cue list for real-world generators (backgrounds, objects, people, text, styles, lighting)."""
    return load_cues(None)


def _others(values: list[str], v: str, k: int = 2) -> list[str]:
    i = values.index(v)
    rest = values[i + 1 :] + values[:i]
    return rest[:k]


def cues_from_vocabulary(
    backgrounds: list[str], colors: list[str], tags: list[str], tag_phrases: dict[str, str] | None = None
) -> list[Cue]:
    """Cues for an attribute vocabulary in the shapes world's caption grammar.

    Backgrounds read "{} on grass", colours "red {}", tags use ``tag_phrases``
    (value -> phrase, e.g. {"dot": "with a dot in the corner", "none": "with no tag"}).
    Counter-contexts are every other value of the same attribute (and "no tag" for tags).
    """
    none_words = {"none", "no", ""}
    phrases = dict(tag_phrases or {})
    cues: list[Cue] = []
    bgs = [b for b in backgrounds if b not in none_words]
    for b in bgs:
        cues.append(
            Cue(
                name=b,
                template="{} on " + b,
                counters=tuple("{} on " + o for o in _others(bgs, b, k=len(bgs))),
                counter_values=tuple(_others(bgs, b, k=len(bgs))),
                category="background",
                description=f"{b} backgrounds",
                attribute="background",
                value=b,
            )
        )
    cols = [c for c in colors if c not in none_words]
    for c in cols:
        cues.append(
            Cue(
                name=c if c not in bgs else f"{c} object",
                template=c + " {}",
                counters=tuple(o + " {}" for o in _others(cols, c, k=len(cols))),
                counter_values=tuple(_others(cols, c, k=len(cols))),
                category="color",
                description=f"{c} objects",
                attribute="color",
                value=c,
            )
        )
    tg = [t for t in tags if t not in none_words]
    none_phrase = next((phrases[t] for t in tags if t in none_words and t in phrases), None)
    for t in tg:
        phrase = phrases.get(t, f"with a {t} tag in the corner")
        counter_values = list(_others(tg, t, k=len(tg)))
        counters = [phrases.get(o, f"with a {o} tag in the corner") for o in counter_values]
        if none_phrase:
            counters.append(none_phrase)
            counter_values.append(next(t for t in tags if t in none_words and t in phrases))
        cues.append(
            Cue(
                name=t,
                template="{} " + phrase,
                counters=tuple("{} " + c for c in counters),
                counter_values=tuple(counter_values),
                category="tag",
                description=f"a corner {t} ({phrase})",
                attribute="tag",
                value=t,
            )
        )
    return cues
