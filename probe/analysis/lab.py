"""The lab: generate an image once per (prompt, seed), check the intervention, classify it, keep the evidence.

Every intervention test (sufficiency, necessity, token shift) asks for *arms*: a prompt, a seed, and what
the image must show for the arm to count (the object kept, the cue attribute set as asked). The lab

1. generates the arms it has not seen yet, in batches, and drops the pixels after use;
2. asks the domain's concept scorer what each image shows (when there is one) and marks the arm valid
   only if the image shows what was asked: an intervention that lost its object, or did not set the
   cue, is evidence of nothing and is excluded by the tests;
3. classifies each image with every classifier it holds (the audited one first);
4. saves an image as evidence when asked, with its path relative to the run directory.

Results are cached by (prompt, seed), so cues of one attribute share their arms and confirmation rounds
reuse nothing but what they are meant to reuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.analysis._util import classify_probs, generate
from probe.files import save_png, slugify


@dataclass(frozen=True)
class Arm:
    """One image to observe: ``expect`` maps attributes to the value the image must show."""

    prompt: str
    seed: int
    expect: tuple[tuple[str, str], ...] = ()

    @staticmethod
    def of(prompt: str, seed: int, **expect: str | None) -> "Arm":
        return Arm(prompt, int(seed), tuple(sorted((k, v) for k, v in expect.items() if v is not None)))


@dataclass
class Observation:
    probs: list[np.ndarray]  # one probability vector per classifier
    concepts: dict[str, str] | None  # what the scorer read (None without a scorer)
    evidence: str | None = None


class ConceptCheck:
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


@dataclass
class Lab:
    generator: object
    classifiers: list
    gen_kwargs: dict = field(default_factory=dict)
    batch_size: int = 16
    check: ConceptCheck | None = None
    run_root: Path | None = None
    contexts: object | None = None  # probe.analysis.context.StatedContexts: what necessity pairs state besides the cue
    images_generated: int = 0
    _seen: dict = field(default_factory=dict)

    _plan: list | None = None

    def observe(self, arms: list[Arm], *, evidence_dir: Path | None = None, save: set[int] = frozenset()) -> list[Observation]:
        """Observations for ``arms`` (in order); the arms at positions in ``save`` are kept as evidence PNGs.

        Inside :meth:`batched`'s planning pass the request is only recorded and blank observations come back.
        """
        keys = [(a.prompt, a.seed) for a in arms]
        wanted = {keys[i]: evidence_dir for i in save} if evidence_dir is not None else {}
        if self._plan is not None:
            self._plan.append((keys, wanted))
            return [self._seen.get(k) or self._blank() for k in keys]
        self._generate(keys, wanted)
        return [self._seen[k] for k in keys]

    def batched(self, measure):
        """``measure()`` run twice: a planning pass that only collects the images it asks for, then one
        generation of all of them in full batches, then the real pass from the cache. Many small requests
        (one cue, one candidate at a time) cost what one large batch costs."""
        self._plan = []
        try:
            measure()
        finally:
            plan, self._plan = self._plan, None
        keys, wanted = [], {}
        for k, w in plan:
            keys += k
            wanted.update(w)
        self._generate(keys, wanted)
        return measure()

    def _blank(self) -> Observation:
        n = len(getattr(self.classifiers[0], "labels", None) or []) or int(getattr(self.classifiers[0], "num_classes", 1))
        return Observation([np.zeros(n, np.float32) for _ in self.classifiers], None)

    def _generate(self, keys: list[tuple[str, int]], wanted: dict) -> None:
        todo = [k for k in dict.fromkeys(keys) if k not in self._seen or (k in wanted and self._seen[k].evidence is None)]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            images = generate(self.generator, [p for p, _ in chunk], [s for _, s in chunk], self.gen_kwargs)
            self.images_generated += len(chunk)
            probs = [classify_probs(c, images, self.batch_size) for c in self.classifiers]
            concepts = self.check.read(images) if self.check is not None else [None] * len(chunk)
            for i, key in enumerate(chunk):
                path = None
                if key in wanted:
                    file = Path(wanted[key]) / f"{slugify(key[0], 60)}_s{key[1]}.png"
                    save_png(file, images[i])
                    path = file.relative_to(self.run_root).as_posix() if self.run_root else file.as_posix()
                old = self._seen.get(key)
                self._seen[key] = Observation([p[i] for p in probs], concepts[i], path or (old.evidence if old else None))

    def valid(self, arm: Arm, observation: Observation) -> bool:
        """Did the image show what the arm asked for? True when nothing can be checked."""
        if self.check is None or observation.concepts is None:
            return True
        read = observation.concepts  # an attribute the scorer does not read cannot be checked (a scorer without vocab)
        return all(read[a] == v for a, v in arm.expect if a in read and self.check.checkable(a, v))

    @property
    def checks(self) -> str | None:
        """What judged the interventions (None: nothing did)."""
        return None if self.check is None else self.check.name
