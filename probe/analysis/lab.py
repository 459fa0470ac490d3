"""The lab: generate an image once per (prompt, seed, steps), check the intervention, classify it, keep the evidence.

Every intervention test (sufficiency, necessity, token shift) asks for *arms*: a prompt, a seed, and what
the image must show for the arm to count (the object kept, the cue attribute set as asked). The lab

1. generates the arms it has not seen yet, in batches, and drops the pixels after use;
2. asks the intervention check (a domain's oracles or a concept model, probe/analysis/checks.py) what each
   image shows, when there is one, and marks the arm valid only if the image shows what was asked: an intervention that lost its object, or did not set the
   cue, is evidence of nothing and is excluded by the tests;
3. classifies each image with every classifier it holds (the audited one first);
4. saves an image as evidence when asked, with its path relative to the run directory;
5. writes each batch's observations to the run's analysis journal (probe/run/journal.py), when it has one, and
   takes an image it is asked for from there instead of generating it again: an interrupted analysis resumes.

Results are cached by (prompt, seed, sampling steps), so cues of one attribute share their arms and confirmation rounds
reuse nothing but what they are meant to reuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.analysis._util import classify_probs, generate
from probe.analysis.checks import ConceptModelCheck, OracleCheck
from probe.files import save_png, slugify


def evidence_name(prompt: str, seed: int, steps: int | None = None) -> str:
    """The evidence file of (prompt, seed[, steps other than the run's]): the prompt's slug, cut, and a hash of the
    whole prompt, since prompts that differ only after the cut ("... swimming in the sea" / "... in the water") shared
    one file, the later image replacing the earlier one's evidence."""
    import hashlib

    digest = hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:8]
    return f"{slugify(prompt, 48)}-{digest}_s{int(seed)}" + (f"_k{int(steps)}" if steps is not None else "") + ".png"


@dataclass(frozen=True)
class Arm:
    """One image to observe: ``expect`` maps attributes to the value the image must show; ``against`` maps an
    attribute to the values it must show it *more than* (a concept model's check, probe/analysis/checks.py: a
    cue against its counters, a counter against its cue; the oracles read one value and ignore it)."""

    prompt: str
    seed: int
    expect: tuple[tuple[str, str], ...] = ()
    against: tuple[tuple[str, tuple[str, ...]], ...] = ()
    steps: int | None = None  # sampling steps, where a pair needs both arms drawn alike (else the lab's for the prompt)

    @staticmethod
    def of(prompt: str, seed: int, against: dict[str, tuple] | None = None, *, steps: int | None = None,
           **expect: str | None) -> "Arm":
        rivals = tuple(sorted((k, tuple(str(x) for x in v if x)) for k, v in (against or {}).items() if k in expect))
        return Arm(prompt, int(seed), tuple(sorted((k, v) for k, v in expect.items() if v is not None)), rivals,
                   None if steps is None else int(steps))


@dataclass
class Observation:
    probs: list[np.ndarray]  # one probability vector per classifier
    concepts: dict[str, str] | None  # what the scorer read (None without a scorer)
    evidence: str | None = None


@dataclass
class Lab:
    generator: object
    classifiers: list
    gen_kwargs: dict = field(default_factory=dict)
    batch_size: int = 16
    check: OracleCheck | ConceptModelCheck | None = None  # probe/analysis/checks.py
    run_root: Path | None = None
    contexts: object | None = None  # probe.analysis.context.StatedContexts: what cue tests state besides the cue
    images_generated: int = 0  # every image the analysis generated: here, and those counted in with :meth:`count`
    stage: str = "analysis"  # what the images generated now are for (the engine's steps; probe.auditing.cost's stages)
    by_stage: dict = field(default_factory=dict)  # {stage: images generated}
    # what ``--budget`` caps: images at ``gen_kwargs``' sampling steps, an image drawn at k times those steps counting
    # k (device time goes with the steps; :attr:`more_steps`)
    budget_spent: float = 0.0
    # {text in a prompt: sampling steps}: the prompts of a class drawn at more steps than ``gen_kwargs`` say from some
    # point on (probe/analysis/screening.py :func:`more_steps`); their images are cached as every other's, by (prompt,
    # seed): the seeds drawn after that point are fresh ones
    more_steps: dict = field(default_factory=dict)
    journal: object | None = None  # probe.run.journal.Journal: observations on disk, read back by a resumed analysis
    images_restored: int = 0  # of images_generated, those read back from the journal instead of generated again
    _seen: dict = field(default_factory=dict)

    _plan: list | None = None

    def observe(self, arms: list[Arm], *, evidence_dir: Path | None = None, save: set[int] = frozenset()) -> list[Observation]:
        """Observations for ``arms`` (in order); the arms at positions in ``save`` are kept as evidence PNGs.

        Inside :meth:`batched`'s planning pass the request is only recorded and blank observations come back.
        """
        keys = [self.key(a) for a in arms]
        wanted = {keys[i]: evidence_dir for i in save} if evidence_dir is not None else {}
        if self._plan is not None:
            self._plan.append((keys, wanted))
            return [self._seen.get(k) or self._blank() for k in keys]
        self._generate(keys, wanted)
        return [self._seen[k] for k in keys]

    def key(self, arm: Arm) -> tuple[str, int, int | None]:
        """The image an arm asks for: (prompt, seed, sampling steps). The steps are part of it: an image of a prompt
        drawn at other steps is another image (a class drawn at more steps from some point on, :attr:`more_steps`)."""
        return arm.prompt, arm.seed, arm.steps if arm.steps is not None else self.settings(arm.prompt).get("steps")

    def observed(self) -> dict:
        """Every image observed so far: {(prompt, seed, steps): Observation} (a read-only view: what was generated,
        its classifier probabilities and what the check read in it)."""
        from types import MappingProxyType

        return MappingProxyType(self._seen)

    def batched(self, measure):
        """``measure()`` run twice: a planning pass that only collects the images it asks for, then one
        generation of all of them in full batches, then the real pass from the cache. Many small requests
        (one cue, one candidate at a time) cost what one large batch costs."""
        self._generate(*self._planned(measure))
        return measure()

    def pending(self, measure) -> list[tuple[str, int]]:
        """The (prompt, seed, steps) images ``measure()`` would generate now, in order, without generating them (a planning
        pass, as in :meth:`batched`): what a round costs before it is spent (``AnalysisConfig.max_images``)."""
        return self._todo(*self._planned(measure))

    def _planned(self, measure) -> tuple[list[tuple[str, int]], dict]:
        """The planning pass: ``measure()`` with requests recorded, not generated; (keys in order, evidence wanted)."""
        self._plan = []
        try:
            measure()
        finally:
            plan, self._plan = self._plan, None
        keys, wanted = [], {}
        for k, w in plan:
            keys += k
            wanted.update(w)
        return keys, wanted

    def count(self, n: int, stage: str | None = None, weight: float = 1.0) -> None:
        """Count ``n`` generated images against ``stage`` (default: the current one), each costing ``weight`` images
        of the run's sampling steps (:meth:`weight`). The lab counts its own; images generated elsewhere for the
        analysis (off-object's cross-attention images) are counted in here, so that analysis.json's
        ``images_generated`` and ``--budget`` see every image in one place."""
        self.images_generated += int(n)
        self.budget_spent += int(n) * float(weight)
        key = stage or self.stage
        self.by_stage[key] = self.by_stage.get(key, 0) + int(n)

    def _todo(self, keys: list[tuple[str, int]], wanted: dict) -> list[tuple[str, int]]:
        return [k for k in dict.fromkeys(keys) if k not in self._seen or (k in wanted and self._seen[k].evidence is None)]

    def widths(self) -> tuple[int, ...]:
        """The class count of each classifier's probability vectors (what the journal's records must have)."""
        return tuple(len(p) for p in self._blank().probs)

    def _blank(self) -> Observation:
        n = len(getattr(self.classifiers[0], "labels", None) or []) or int(getattr(self.classifiers[0], "num_classes", 1))
        return Observation([np.zeros(n, np.float32) for _ in self.classifiers], None)

    def settings(self, prompt: str) -> dict:
        """The sampling settings of ``prompt``'s image: ``gen_kwargs``, with the steps of :attr:`more_steps` where one of
        its texts is in the prompt."""
        steps = next((n for text, n in self.more_steps.items() if text in prompt), None)
        return self.gen_kwargs if steps is None else {**self.gen_kwargs, "steps": int(steps)}

    def weight(self, prompt: str, steps: int | None = None) -> float:
        """What one image of ``prompt`` (at ``steps``, default its settings') costs in images of the run's sampling
        steps: its steps over ``gen_kwargs``' (1 where either names none)."""
        base = self.gen_kwargs.get("steps")
        steps = self.settings(prompt).get("steps") if steps is None else steps
        return float(steps) / float(base) if base and steps else 1.0

    def cost(self, keys) -> float:
        """What generating the (prompt, seed, steps) ``keys`` costs against ``--budget`` (:meth:`weight` each)."""
        return sum(self.weight(prompt, steps) for prompt, _, steps in keys)

    def _generate(self, keys: list[tuple[str, int]], wanted: dict) -> None:
        todo = self._todo(keys, wanted)
        by_steps: dict[int | None, list] = {}  # one batch never mixes sampling settings
        for key in todo:
            by_steps.setdefault(key[2], []).append(key)
        for group in by_steps.values():
            self._generate_group(group, wanted)

    def _generate_group(self, todo: list[tuple[str, int, int | None]], wanted: dict) -> None:
        steps = todo[0][2] if todo else self.gen_kwargs.get("steps")
        kwargs = self.gen_kwargs if steps is None else {**self.gen_kwargs, "steps": int(steps)}
        todo = self._restore(todo, wanted, steps)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start:start + self.batch_size]
            images = generate(self.generator, [k[0] for k in chunk], [k[1] for k in chunk], kwargs)
            self.count(len(chunk), weight=self.weight(chunk[0][0], steps))
            probs = [classify_probs(c, images, self.batch_size) for c in self.classifiers]
            concepts = self.check.read(images) if self.check is not None else [None] * len(chunk)
            for i, key in enumerate(chunk):
                path = None
                if key in wanted:
                    file = Path(wanted[key]) / evidence_name(key[0], key[1], None if steps == self.gen_kwargs.get("steps")
                                                             else steps)
                    save_png(file, images[i])
                    path = file.relative_to(self.run_root).as_posix() if self.run_root else file.as_posix()
                old = self._seen.get(key)
                self._seen[key] = Observation([p[i] for p in probs], concepts[i], path or (old.evidence if old else None))
            self._journal(chunk, steps)

    def _restore(self, todo: list[tuple[str, int, int | None]], wanted: dict, steps) -> list[tuple[str, int, int | None]]:
        """The images of ``todo`` the journal holds become observations (counted as generated, so that the analysis's
        image counts and ``--budget`` are what an uninterrupted one would see); returns the rest, to generate. An image
        wanted as evidence is taken only when its saved PNG is still in the run."""
        if self.journal is None or not todo:
            return todo
        from probe.analysis.checks import Reading
        from probe.run import RunDir

        run = RunDir(self.run_root) if self.run_root is not None else None
        left = []
        for key in todo:
            found = self.journal.get(key[0], key[1], steps)
            saved = run.resolve(found.evidence) if found is not None and found.evidence and run is not None else None
            evidence = found.evidence if saved is not None and saved.is_file() else None  # inside the run, still there
            if found is None or (key in wanted and evidence is None) or (self.check is not None) != (found.reading is not None):
                left.append(key)
                continue
            reading = found.reading
            if reading is not None and found.scores is not None:
                reading = Reading(reading)
                reading.scores = found.scores
            old = self._seen.get(key)
            self._seen[key] = Observation(list(found.probs), reading, evidence or (old.evidence if old else None))
            self.count(1, weight=self.weight(key[0], steps))
            self.images_restored += 1
        return left

    def _journal(self, chunk: list[tuple[str, int]], steps) -> None:
        if self.journal is None:
            return
        from probe.run.journal import Journalled

        entries = []
        for key in chunk:
            prompt, seed = key[0], key[1]
            seen = self._seen[key]
            concepts = seen.concepts
            entries.append((prompt, seed, steps, Journalled(
                tuple(seen.probs), dict(concepts) if concepts is not None else None,
                getattr(concepts, "scores", None), seen.evidence)))
        self.journal.append(entries)

    def valid(self, arm: Arm, observation: Observation) -> bool:
        """Did the image show what the arm asked for? True when nothing can be checked."""
        if self.check is None or observation.concepts is None:
            return True
        return self.check.valid(arm, observation.concepts)

    @property
    def checks(self) -> str | None:
        """What judged the interventions (None: nothing did)."""
        return None if self.check is None else self.check.name
