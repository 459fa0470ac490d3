"""The analysis's shared plan: what the audit (``engine``) and the tests after it (``retest``) both do.

Both open a finished run and measure cues on it with the same procedure, so that a re-measured or
hypothesised effect means what the audit's effects mean:

1. :func:`finished_classes`: the classes whose tokens are done, in class order.
2. :func:`generation_settings`: the sampling settings the tokens were learned with (steps, guidance,
   scheduler, batch), overridable by the analysis settings.
3. :func:`set_up`: the intervention check (a domain's oracles, or a concept model: CLIP or SigLIP), the
   stated contexts and the :class:`~probe.analysis.lab.Lab` that generates, checks and classifies: a
   :class:`Setup`.
4. :func:`choose_carriers`: the neutral objects a sufficiency cue is added to; :func:`class_carriers`: each
   class's (a spread of class names shared by all, or the class's own nearest confusers).
5. :func:`confirm_round`: one round of fresh pairs for one :class:`Test`;
   :func:`confirmed_enough`: whether a test's confirmation may stop (enough pairs and a tight interval,
   the budget spent, or futility).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from probe.analysis.class_evidence import ClassRun, load_token
from probe.analysis.config import AnalysisConfig
from probe.analysis.confusers import confusers
from probe.analysis.context import StatedContexts
from probe.analysis.cues import Carrier, Cue
from probe.analysis.checks import CONCEPT_OBJECT, ConceptModelCheck, OracleCheck, concept_cues
from probe.analysis.lab import Arm, Lab
from probe.analysis.necessity import measure_necessity
from probe.analysis.policy import attempt_budget, excluded_limit
from probe.analysis.sample import Sample
from probe.analysis.stats import binomial_interval
from probe.analysis.sufficiency import measure_sufficiency
from probe.classifiers.labels import object_name
from probe.analysis.token_shift import shift_samples
from probe.run import RunConfig, RunDir
from probe.run.records import UNCHECKED, UNCHECKED_NOTE

__all__ = ["Setup", "Test", "choose_carriers", "class_carriers", "confirm_round", "confirmed_enough", "finished_classes",
           "generation_settings", "set_up"]


@dataclass
class Test:
    """One (kind, class, cue) test through screening and confirmation."""

    kind: str
    cls: ClassRun
    cue: Cue
    screen: Sample
    confirm: Sample | None = None
    effect: object = None  # the deciding Effect (confirmation), set when the audit decides
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.kind, self.cls.index, self.cue.name)

    @property
    def failure(self) -> float:
        """The generator's own failure rate on this test's class (``extra["generator_failure"]``, 0 when unset)."""
        return float(self.extra.get("generator_failure", 0.0))

    def necessity_prompts(self, k: int) -> list[tuple[str, str]]:
        """(template, subject) of the necessity arms: the class's token prompts, or, for a test drawn with the class's
        name (``extra["drawn_with_name"]``, probe/analysis/screening.py :func:`name_instead`), the same templates with
        the class's name as the subject."""
        prompts = self.cls.token_prompts(k)
        name = self.extra.get("drawn_with_name")
        return [(template, str(name)) for template, _ in prompts] if name else prompts

    def draw_with_name(self, lost: Sample, record: str) -> bool:
        """Switch this necessity test, whose token images lost the class (``lost``: the sample that showed it), to the
        class's name (``extra["drawn_with_name"]``; what the token measured goes in ``extra[record]``). False, and
        nothing changed, for another kind, a test already drawn with the name, or a placeholder class name
        ("LABEL_3": nothing to draw)."""
        from probe.classifiers.labels import is_generic, object_name

        name = object_name(self.cls.name).strip()
        if self.kind != "necessity" or self.extra.get("drawn_with_name") or not name or is_generic([name]):
            return False
        self.extra["drawn_with_name"] = name
        self.extra.pop("sampling_steps", None)  # the name's prompts are drawn at the run's steps (no token in them)
        self.extra[record] = {"effect": round(lost.mean, 4) if lost.n else None, "n": lost.n, "excluded": lost.excluded}
        return True

    def inconclusive(self, sample: Sample) -> bool:
        """Whether ``sample`` lost too many pairs to failed interventions to say anything (policy.excluded_limit)."""
        return sample.excluded_share > excluded_limit(self.failure)


def finished_classes(run: RunDir, only=None) -> list[ClassRun]:
    """The run's classes with status "done" (those in ``only``, when given), sorted by class index."""
    out = []
    for d, m in run.finished_classes():
        if m["status"] == "done" and (only is None or m["class_index"] in only):
            out.append(ClassRun(m["class_index"], str(m.get("class_name") or m["class_index"]), d, m))
    return sorted(out, key=lambda c: c.index)


def generation_settings(cfg: AnalysisConfig, run_config: RunConfig | dict | None) -> dict:
    """Keyword arguments of ``generator.generate``: what the audit sampled with (the run's effective settings,
    ``RunConfig.effective``: steps, guidance, scheduler, images per chunk), ``cfg.steps`` and
    ``cfg.guidance_scale`` where set."""
    effective = RunDir.run_config(run_config).effective
    kw = {}
    steps = cfg.steps if cfg.steps is not None else effective.steps
    guidance = cfg.guidance_scale if cfg.guidance_scale is not None else effective.guidance_scale
    if steps is not None:
        kw["steps"] = int(steps)
    if guidance is not None:
        kw["guidance_scale"] = float(guidance)
    if effective.scheduler:
        kw["scheduler"] = effective.scheduler
    if effective.max_batch:
        kw["max_batch"] = int(effective.max_batch)
    return kw


def choose_carriers(cfg: AnalysisConfig, labels: list[str], objects: set[str]) -> list[Carrier]:
    """The carriers of sufficiency tests: ``cfg.carriers``, else ``cfg.n_carriers`` class names spread over
    the labels. A carrier that is an object the check knows is checked as that object."""
    def carrier(text: str, index: int | None) -> Carrier:
        return Carrier(text, index, text if text in objects else None)

    if cfg.carriers:
        by_name = {str(n): i for i, n in enumerate(labels)}
        return [carrier(t, by_name.get(t)) for t in cfg.carriers]
    names = [(i, object_name(n)) for i, n in enumerate(labels) if str(n).strip()]
    if not names:
        return [Carrier("object"), Carrier("thing")]
    k = min(cfg.n_carriers, len(names))
    picks = [names[int(round(j * (len(names) - 1) / max(k - 1, 1)))] for j in range(k)] if k > 1 else names[:1]
    seen, out = set(), []
    for i, n in picks:
        if i not in seen:
            seen.add(i)
            out.append(carrier(n, i))
    return out


def class_carriers(cfg: AnalysisConfig, labels: list[str], objects: set[str],
                   classes: list[ClassRun]) -> dict[int, list[Carrier]]:
    """Each class's sufficiency carriers, {class index: carriers}, by ``cfg.carrier_source_for(len(labels))``:

    - "given" or "spread": :func:`choose_carriers`, one list shared by every class (the same object: the engine
      then measures every class in one pass, as before confusers existed);
    - "confusers": the class's ``cfg.n_carriers`` nearest confusers (:func:`probe.analysis.confusers.confusers`,
      from the run's saved top-k on the class's baseline images), topped up from the spread list when the saved
      top-k names fewer (the class itself never carries its own test).
    """
    spread = choose_carriers(cfg, labels, objects)
    if cfg.carrier_source_for(len(labels)) != "confusers":
        return {cls.index: spread for cls in classes}
    out: dict[int, list[Carrier]] = {}
    for cls in classes:
        near = confusers(cls.metrics, cls.index, len(labels), cfg.n_carriers)
        chosen = [_carrier(object_name(labels[i]), i, objects) for i in near]
        for extra in spread:
            if len(chosen) >= cfg.n_carriers:
                break
            if extra.class_index != cls.index and extra.class_index not in near:
                chosen.append(extra)
        out[cls.index] = chosen
    return out


def _carrier(text: str, index: int | None, objects: set[str]) -> Carrier:
    return Carrier(text, index, text if text in objects else None)


@dataclass
class Setup:
    """What measuring on a run needs, built once by :func:`set_up`."""

    lab: Lab
    gen_kwargs: dict
    domain: object  # probe.domains.Domain or None
    scorer: object  # concept scorer (what token shift reads), or None
    check: OracleCheck | ConceptModelCheck | None  # the intervention check, or None (interventions unchecked)
    object_attribute: str | None
    objects: set[str]  # the object values the check knows
    contexts: StatedContexts | None
    cues: list[Cue] = field(default_factory=list)  # the cues as the check reads them (probe.analysis.checks.concept_cues)
    notes: list[str] = field(default_factory=list)  # why the interventions are unchecked, when they are

    def object_of(self, cls: ClassRun) -> str | None:
        """The class's object as the check names it, or None when the check does not know it."""
        name = object_name(cls.name)
        return name if name in self.objects else None

    @property
    def checked_by(self) -> str:
        """Who checked the interventions: "world oracles", "concepts: MODEL", or "unchecked"."""
        return self.check.name if self.check is not None else UNCHECKED


def set_up(run: RunDir, classifier, generator, cfg: AnalysisConfig, cues: list[Cue], domain, *, scorer=None,
           scored: bool = True, labels: list[str] | None = None) -> Setup:
    """Intervention check, concept scorer, stated contexts and Lab for measuring on ``run``.

    The check (probe/analysis/checks.py) is, in order: ``scorer`` when given (an object with ``predict``, checked
    as a domain's oracles); the concept model ``cfg.concepts`` names (a hub id or folder; also inside a domain);
    with ``cfg.concepts == "auto"`` the domain's oracles, else the default concept model of the generator's family
    (:func:`probe.concepts.default_concepts`). ``"none"``, or a concept model that cannot be loaded (offline, no
    weights), leaves the interventions unchecked: the analysis goes on, its cue findings are unverified, and
    ``Setup.notes`` says in one line how to check them. ``scored`` False (no test will use a check) loads nothing.
    """
    gen_kwargs = generation_settings(cfg, run.read_run_config())
    notes: list[str] = []
    attributed = [c for c in cues if c.attribute is not None]  # before a concept model gives categories attributes
    check, object_attribute = None, None
    if scorer is not None or (scored and cfg.concepts == "auto" and domain is not None and domain.scorer is not None):
        scorer = scorer if scorer is not None else domain.scorer()
        object_attribute = domain.object_attribute if domain is not None else "shape"
        check = OracleCheck(scorer, name=f"{domain.name} oracles" if domain is not None else type(scorer).__name__)
    elif scored and cfg.concepts != "none":
        model, why = _concept_model(cfg.concepts, generator)
        if model is None:
            notes.append(why)
        else:
            cues = concept_cues(cues)
            object_attribute = CONCEPT_OBJECT
            names = [object_name(n) for n in (labels or [])] + [object_name(c) for c in (cfg.carriers or ())]
            check = ConceptModelCheck(model, names, cues, object_attribute=object_attribute)
            scorer = check
    elif scored:
        notes.append("interventions unchecked (--concepts none): the cue findings are unverified; pass --concepts "
                     "with a CLIP or SigLIP model to check them")
    objects = set(check.vocab.get(object_attribute, [])) if check is not None and check.vocab else set()
    # stated contexts need attributes whose values exclude one another (one background, one colour, one tag): the
    # cues that name their own attribute (a domain's list, a user's file that gives attributes). The curated
    # vocabulary's categories are not exclusive, so their cues are tested in the prompts as they are. Either check
    # verifies the stated values: the oracles read them, a concept model weighs each against its attribute's others
    contexts = StatedContexts.from_cues(attributed, check) if cfg.stated_contexts and check is not None else None
    lab = Lab(generator, [classifier], gen_kwargs=gen_kwargs, batch_size=cfg.batch_size, check=check, run_root=run.root,
              contexts=contexts)
    return Setup(lab, gen_kwargs, domain, scorer, check, object_attribute, objects, contexts, list(cues), notes)


_CONCEPT_MODELS: dict[tuple, object] = {}  # this process's loaded concept models (a Ray worker analyses many classes)


def _concept_model(spec: str, generator):
    """(the concept model ``spec`` names, or the default of the generator's family for "auto"; None and the
    one-line reason when it cannot be loaded).

    Loaded once per process and kept (the last two): a Ray worker or a shard measures class after class with the
    same model, as it keeps its classifier and generator. A local folder is keyed by its config's modification time
    too, so a folder rewritten in place is read again. A model that could not be loaded is not kept.
    """
    from probe.concepts import ConceptError, default_concepts, load_concepts

    if spec == "auto":
        spec = default_concepts(generator_family(generator))
    device = str(getattr(generator, "device", "cpu"))
    # on a GPU the concept model runs in the generator's precision (--dtype: half by default)
    dtype = str(getattr(generator, "dtype", "")).replace("torch.", "") if device.startswith("cuda") else None
    dtype = dtype if dtype in ("float16", "bfloat16", "float32") else None
    config = Path(spec) / "config.json"
    key = (spec, device, dtype, config.stat().st_mtime_ns if config.is_file() else None)
    if key in _CONCEPT_MODELS:
        return _CONCEPT_MODELS[key], ""
    try:
        model = load_concepts(spec, device=device, dtype=dtype)
    except ConceptError as e:
        return None, f"{UNCHECKED_NOTE}{e}"
    while len(_CONCEPT_MODELS) >= 2:
        _CONCEPT_MODELS.pop(next(iter(_CONCEPT_MODELS)))
    _CONCEPT_MODELS[key] = model
    return model, ""


def generator_family(generator) -> str:
    """"sdxl", "sd2" (a 1024-wide text tower: OpenCLIP ViT-H) or "sd1", for the default concept model."""
    if "XL" in type(getattr(generator, "pipe", None)).__name__:
        return "sdxl"
    width = getattr(getattr(getattr(generator, "text_encoder", None), "config", None), "hidden_size", None)
    return "sd2" if width == 1024 else "sd1"


def confirmed_enough(cfg: AnalysisConfig, sample: Sample, two_sided: bool, failure: float = 0.0) -> bool:
    """Whether a test's confirmation may stop: the budget is spent, futility, interventions that fail too often,
    or enough valid pairs with an interval no wider than ``2 * cfg.target_halfwidth`` that lies clear of the effect
    bar (an interval that holds the bar goes on to ``max_pairs``: near the bar a pass is decided by more pairs).

    ``failure``: the generator's own failure rate on the class (:func:`probe.analysis.policy.failure_rate`). The
    budget counts valid pairs, so a generator that loses pairs may attempt more
    (:func:`probe.analysis.policy.attempt_budget`, at most 3 x ``max_pairs``), at the rate this test itself loses
    them when that is higher than the class's (a cue that triggers failures of its own: a generator that swaps the
    object "on water" loses more of the water test's pairs than of the class's other tests). Only failures beyond
    the class's own rate make a test inconclusive (:meth:`Test.inconclusive`, on the final share); on such a
    generator confirmation gives up early for failing interventions only when the exact 95% interval of the
    excluded share lies above that limit (11 of 16 lost where the limit is 2/3 is not yet evidence of it). On a
    generator that draws what it is asked (``failure`` 0: the shapes world), a test that loses pairs loses them to
    its own cue, and more than half lost after a round stops it.
    """
    limit = excluded_limit(failure)
    budget = attempt_budget(cfg.max_pairs, max(failure, sample.excluded_share) if failure > 0 else 0.0)
    if sample.attempted >= budget or sample.n >= cfg.max_pairs:
        # The budget is spent (valid pairs, or attempts at the failure rate). A test that lost a few pairs to failed
        # interventions and so has fewer valid pairs than may decide gets one more round to replace them: otherwise,
        # with max_pairs == min_pairs as in the demo, one lost pair would sink a real finding.
        short = sample.n < min(cfg.thresholds.min_pairs, cfg.max_pairs)
        return not (short and sample.attempted < budget + cfg.confirm_round and sample.excluded_share <= limit)
    size = abs(sample.mean) if two_sided else sample.mean
    if sample.n >= cfg.confirm_round and not size >= cfg.thresholds.min_effect / 2:
        return True  # futility: far below the bar after a round; stopping early can only make a pass less likely
    if sample.attempted >= cfg.confirm_round and (
            binomial_interval(sample.excluded, sample.attempted)[0] if failure > 0 else sample.excluded_share) > limit:
        return True  # the interventions keep failing: more pairs will not make it conclusive
    if sample.n >= cfg.thresholds.min_pairs:
        effect = sample.effect()
        if not narrow_enough(cfg, effect):
            return False
        # The pass rule compares the estimate with the bar: an interval that still holds the bar has not decided that
        # comparison, so such a test spends its budget (max_pairs) before it stops. Measured on five validity sets:
        # every false passing finding had a true effect of 0.09-0.14 and an estimate of 0.15-0.26 on 16-23 pairs. Measured
        # after, on six sets at `probe audit`'s defaults: one more planted cue found, precision unchanged (the false ones
        # stay over the bar on 32 pairs: docs/validity.md, "`probe audit`'s own defaults, measured").
        low, high = (-effect.ci_high, -effect.ci_low) if two_sided and effect.mean < 0 else (effect.ci_low, effect.ci_high)
        return not low < cfg.thresholds.min_effect <= high
    return False


def confirm_with_name(test: Test) -> bool:
    """Step 5's fallback: a necessity confirmation given up because the token's fresh images kept losing the object or
    the asked value (:meth:`Test.inconclusive`) starts again with the class's name in place of the token, on the next
    rounds' fresh seeds, with a budget of its own; the token's confirmation pairs are set aside
    (``extra["token_confirm"]``) and never decide. Its screen chose it from the token's images, as
    probe/analysis/screening.py :func:`name_instead` does for a screen that lost them. Measured on fresh8-biased-0's
    discovered yellow circles (true +0.36): the token's screen kept 4 of 4 pairs (+0.16), its confirmation 3 of 8,
    and the test ended inconclusive. Returns whether the test was switched (it then needs more rounds)."""
    if test.confirm is None or not test.confirm.attempted or not test.inconclusive(test.confirm):
        return False
    if not test.draw_with_name(test.confirm, "token_confirm"):
        return False
    test.confirm = None
    return True


def narrow_enough(cfg: AnalysisConfig, effect) -> bool:
    """An interval no wider than ``2 * cfg.target_halfwidth`` (and bounded)."""
    return math.isfinite(effect.ci_low) and (effect.ci_high - effect.ci_low) / 2 <= cfg.target_halfwidth


def confirm_round(cfg: AnalysisConfig, lab: Lab, test: Test, carriers: list[Carrier], generator, object_attribute: str,
                  object_value: str | None, seeds_from: int) -> Sample:
    """One round of fresh pairs (about ``cfg.confirm_round``) for ``test``, on seeds from ``seeds_from``."""
    if test.kind == "sufficiency":
        usable = [c for c in carriers if c.class_index != test.cls.index] or carriers
        n_seeds = max(1, math.ceil(cfg.confirm_round / len(usable)))
        return measure_sufficiency(lab, [test.cue], [test.cls.index], usable, list(range(seeds_from, seeds_from + n_seeds)),
                                   template=cfg.carrier_template,
                                   object_attribute=object_attribute)[(test.cue.name, test.cls.index)]
    load_token(generator, test.cls)
    if test.kind == "necessity":
        prompts = test.necessity_prompts(cfg.necessity_templates)
        n_seeds = max(1, math.ceil(cfg.confirm_round / len(prompts)))
        return measure_necessity(lab, test.cls.index, test.cue, prompts, list(range(seeds_from, seeds_from + n_seeds)),
                                 object_value=object_value, object_attribute=object_attribute, rotate=True)
    return _token_shift_pairs(lab, test, list(range(seeds_from, seeds_from + cfg.confirm_round)),
                              object_attribute, object_value)


def _token_shift_pairs(lab: Lab, test: Test, seeds: list[int], object_attribute, object_value) -> Sample:
    pairs = test.cls.baseline_prompts()
    if not pairs:
        return Sample("token-shift", test.cls.index, test.cue.name, before=np.zeros(0, bool), after=np.zeros(0, bool))
    # both arms of a pair at the same sampling steps: a class drawn at more steps (screening.more_steps) has only its
    # token prompts moved, and the plain arm was drawn at the run's steps beside them
    steps = [lab.settings(pairs[i % len(pairs)][1]).get("steps") for i in range(len(seeds))]
    arms = [(Arm.of(pairs[i % len(pairs)][0], s, steps=steps[i]), Arm.of(pairs[i % len(pairs)][1], s))
            for i, s in enumerate(seeds)]
    base = lab.observe([a for a, _ in arms])
    token = lab.observe([b for _, b in arms])
    samples = shift_samples(test.cls.index, [test.cue], [o.concepts or {} for o in base], [o.concepts or {} for o in token],
                            object_attribute=object_attribute, object_value=object_value,
                            keys=[f"s{s}:p{i % len(pairs)}" for i, s in enumerate(seeds)])
    # the planning pass has read nothing yet: an empty sample stands in
    return samples.get(test.cue.name) or Sample("token-shift", test.cls.index, test.cue.name,
                                                before=np.zeros(0, bool), after=np.zeros(0, bool))
