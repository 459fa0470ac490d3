"""Intervention checks: did a generated image show what its prompt asked for?

An intervention test asks for *arms* (probe/analysis/lab.py): a prompt, a seed, and what the image must show
(``Arm.expect``: attribute -> value) and what it must show it more than (``Arm.against``: attribute -> the other
values). A check reads every generated image once and then judges each arm that uses the image. Two kinds,
one interface (``name``, ``vocab``, ``checkable``, ``read``, ``valid``):

- :class:`OracleCheck`: a domain's concept scorer, e.g. the shapes world's oracles, which name the one value of
  each attribute an image shows; an arm is valid when every expected value is the value read.
- :class:`ConceptModelCheck`: a zero-shot image-text model (probe.concepts.ConceptModel: CLIP or SigLIP) over
  the audit's vocabulary. The object must win among the class name and its nearest confusers; a cue arm must
  show its cue more than the cue's counters, a counter arm its counter more than the cue.

Without a check every generated image counts as showing what its prompt asks for, and the findings built on
such images are *unverified* (probe/analysis/policy.py).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from probe.analysis.cues import CONCEPT_OBJECT, Cue, template_phrase
from probe.analysis.errors import AnalysisError

__all__ = ["CONCEPT_OBJECT", "OracleCheck", "ConceptModelCheck", "Reading", "check_for_run", "concept_cues",
           "counter_value", "listed_cues", "run_oracles"]


class OracleCheck:
    """Validates arms with a concept scorer (``predict(images01) -> {attribute: [value, ...]}``).

    Expectations on attributes or values the scorer does not know are not checked (they cannot be).
    """

    def __init__(self, scorer, vocab: dict[str, list[str]] | None = None, name: str = "concept scorer"):
        self.scorer = scorer
        self.vocab = vocab if vocab is not None else getattr(scorer, "vocab", None)
        self.name = name

    def checkable(self, attribute: str, value: str) -> bool:
        if self.vocab is None:
            return True
        return attribute in self.vocab and value in self.vocab[attribute]

    def read(self, images01) -> list[dict[str, str]]:
        predicted = self.scorer.predict(images01)
        return [{a: values[i] for a, values in predicted.items()} for i in range(images01.shape[0])]

    def valid(self, arm, reading: dict | None) -> bool:
        """Every expected value the scorer reads is the value it read."""
        if reading is None:
            return True
        return all(reading[a] == v for a, v in arm.expect if a in reading and self.checkable(a, v))


def run_oracles(analysis) -> "OracleCheck | None":
    """The oracles of the installed domain that checked a finished run (``analysis``: its AnalysisSummary), or None
    when the run was not checked by a domain's oracles (later commands then need a concept model)."""
    from probe.domains import domains

    name = analysis.domain if analysis is not None and isinstance(analysis.domain, str) else None
    domain = domains().get(name) if name else None
    if domain is None or domain.scorer is None or "oracles" not in (analysis.checked_by or ""):
        return None
    return OracleCheck(domain.scorer(), name=f"{domain.name} oracles")


def listed_cues(analysis) -> list[Cue]:
    """The cues a finished run's analysis listed (``analysis``: its AnalysisSummary); a damaged entry is one cue
    fewer, not a crash."""
    from probe.errors import ProbeError

    listed = (analysis.cues or {}).get("list") if analysis is not None and isinstance(analysis.cues, dict) else None
    cues = []
    for c in listed or []:
        if isinstance(c, dict) and isinstance(c.get("name"), str) and isinstance(c.get("template"), str):
            try:
                cues.append(Cue(**{k: (tuple(c[k]) if isinstance(c[k], list) else c[k]) for k in
                                   ("name", "template", "counters", "category", "description", "attribute", "value",
                                    "counter_values") if k in c}))
            except (ProbeError, TypeError):
                continue
    return cues


def check_for_run(analysis, concepts: str, labels: list[str], extra: list[Cue] = (), *, error: type[Exception],
                  none_means: str, unchecked: str) -> tuple["OracleCheck | ConceptModelCheck", str]:
    """The check (and its name) of a command that reads a finished run's images or the user's (``probe confirm``,
    ``probe generate --balance``): ``concepts`` "auto" is the installed domain's oracles that checked the run; a
    CLIP or SigLIP hub id or folder is that concept model over the run's listed cues and ``extra`` (cues the list
    lacks); "none" is refused, since nothing would be checked. Never a model named by the run directory.
    ``error`` is the command's one-line error; ``none_means`` and ``unchecked`` say what would go unchecked."""
    from probe.classifiers.labels import object_name

    if concepts == "none":
        raise error(f"--concepts none {none_means}; pass a CLIP or SigLIP hub id or folder (world runs: leave "
                    "--concepts at auto for the world's oracles)")
    if concepts == "auto":
        oracles = run_oracles(analysis)
        if oracles is None:
            checked = analysis.checked_by if analysis is not None and isinstance(analysis.checked_by, str) else ""
            if checked.startswith("concepts: "):  # a run directory never names the model a later command loads
                raise error(f"this run's images were checked by {checked[:80]!r}, and a run directory does not choose "
                            f"the models probe loads, so {unchecked}; pass --concepts with the same CLIP or SigLIP "
                            "hub id or folder the audit used")
            raise error(f"this run was not checked by an installed domain's oracles, so {unchecked}; pass --concepts "
                        "with a CLIP or SigLIP hub id or folder (e.g. openai/clip-vit-large-patch14)")
        return oracles, oracles.name
    from probe.concepts import load_concepts

    model = load_concepts(concepts)
    cues = concept_cues(listed_cues(analysis))
    known = {(c.attribute, c.value) for c in cues}
    for cue in extra:
        if (cue.attribute, cue.value) not in known:
            cues.append(cue)
            known.add((cue.attribute, cue.value))
    return ConceptModelCheck(model, [object_name(n) for n in labels], cues), f"concepts: {model.name}"


class Reading(dict):
    """What a concept model read on one image: ``{attribute: the winning value}`` (what token shift counts), with
    the raw scores over the check's phrases kept for judging arms against their own alternatives."""

    scores: np.ndarray


def counter_value(cue_names: dict[str, str], counter: str) -> str:
    """The value a counter template states: the name of the cue with that template, else its words."""
    return cue_names.get(counter, template_phrase(counter))


def concept_cues(cues: list[Cue], object_attribute: str = CONCEPT_OBJECT) -> list[Cue]:
    """Cues a concept model can check: a cue without an attribute (the curated list, a user's file) gets its
    category as attribute, its name as value and a value for each counter (the name of the cue it equals, else
    its words). A domain's cues keep theirs.

    The check reads the class's object under ``object_attribute``, so a category of that name (the curated list's
    co-occurring objects: "on a plate", "next to a car") becomes ``"<category>s"``: a plate is not what the subject
    is, and an arm expects both (before, a necessity arm got the keyword twice and the analysis stopped; the check
    counted "plate" among the class names)."""
    names = {c.template: c.name for c in cues}
    out = []
    for cue in cues:
        if cue.attribute is not None:
            out.append(cue)
            continue
        attribute = cue.category if cue.category != object_attribute else f"{cue.category}s"
        out.append(replace(cue, attribute=attribute, value=cue.name,
                           counter_values=tuple(counter_value(names, t) for t in cue.counters)))
    return out


class ConceptModelCheck:
    """Judges arms with a zero-shot concept model (``score(images01, phrases) -> (N, P) logits``).

    ``objects``: the object names an arm may expect (class names, sufficiency carriers); ``cues`` as made by
    :func:`concept_cues`. Each value is scored through one phrase ("a photo of a star", "a photo of something on
    grass"). An expected object must beat its ``confusers`` nearest objects (by the model's text embeddings; all
    others when there are fewer); an expected cue value must beat the values in the arm's ``against``.
    """

    def __init__(self, model, objects: list[str], cues: list[Cue], *, object_attribute: str = CONCEPT_OBJECT,
                 confusers: int = 8, subject: str = "something"):
        self.model = model
        self.name = f"concepts: {getattr(model, 'name', type(model).__name__)}"
        self.object_attribute = object_attribute
        self.objects = list(dict.fromkeys(str(o) for o in objects if str(o).strip()))
        phrases = [f"a photo of a {o}" for o in self.objects]
        self._index: dict[tuple[str, str], int] = {(object_attribute, o): i for i, o in enumerate(self.objects)}
        self.vocab: dict[str, list[str]] = {object_attribute: list(self.objects)}
        self.phrases, self.subject = phrases, subject
        self.extend(cues)
        self.confusers = self._nearest_objects(confusers)

    def extend(self, cues: list[Cue]) -> None:
        """Make more cues checkable (discovered ones): their values and counters get phrases. Images read before
        carry no score for them, and are judged only on what they were read for (``_beats``)."""
        for cue in cues:
            if cue.attribute is None:
                continue
            if cue.attribute == self.object_attribute:
                raise AnalysisError(f"cue {cue.name!r} names the attribute {cue.attribute!r}, which the concept model "
                                    "reads the class's own object under; give the cue another attribute (e.g. "
                                    f"{cue.attribute + 's'!r}) in the cue file")
            for value, template in [(cue.value, cue.template), *zip(cue.counter_values, cue.counters)]:
                key = (cue.attribute, str(value))
                if value and key not in self._index:
                    self._index[key] = len(self.phrases)
                    self.phrases.append("a photo of " + template.replace("{}", self.subject))
                    self.vocab.setdefault(cue.attribute, []).append(str(value))

    def _nearest_objects(self, k: int) -> dict[str, list[str]]:
        """For each object, the ``k`` others whose phrases the model embeds closest (its likeliest mix-ups)."""
        n = len(self.objects)
        if n <= k + 1:
            return {o: [p for p in self.objects if p != o] for o in self.objects}
        emb = np.asarray(self.model.embed_texts(self.phrases[:n]), dtype=np.float32)
        sims = emb @ emb.T
        np.fill_diagonal(sims, -np.inf)
        order = np.argsort(-sims, axis=1)[:, :k]
        return {o: [self.objects[j] for j in order[i]] for i, o in enumerate(self.objects)}

    def checkable(self, attribute: str, value: str) -> bool:
        return (attribute, str(value)) in self._index

    def read(self, images01) -> list[Reading]:
        scores = np.asarray(self.model.score(images01, self.phrases), dtype=np.float32)
        out = []
        for row in scores:
            reading = Reading({a: max(values, key=lambda v: row[self._index[(a, v)]]) for a, values in self.vocab.items()})
            reading.scores = row
            out.append(reading)
        return out

    def predict(self, images01) -> dict[str, list[str]]:
        """The concept-scorer view (``{attribute: [winning value per image]}``), for token shift."""
        readings = self.read(images01)
        return {a: [r[a] for r in readings] for a in self.vocab}

    def _beats(self, row: np.ndarray, attribute: str, value: str, others) -> bool:
        if self._index[(attribute, value)] >= len(row):
            return True  # read before the phrase existed (an image shared with an earlier test): not judged on it
        own = row[self._index[(attribute, value)]]
        rivals = [row[self._index[(attribute, o)]] for o in others
                  if o != value and (attribute, o) in self._index and self._index[(attribute, o)] < len(row)]
        return not rivals or own > max(rivals)

    def valid(self, arm, reading: Reading | None) -> bool:
        if reading is None or not hasattr(reading, "scores"):
            return True
        against = dict(arm.against)
        for attribute, value in arm.expect:
            if not self.checkable(attribute, value):
                continue
            if attribute == self.object_attribute:
                others = self.confusers.get(value, [])
            else:
                others = against.get(attribute, ())
            if not self._beats(reading.scores, attribute, value, others):
                return False
        return True
