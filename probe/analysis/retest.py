"""Tests after the audit: re-measure a finding, or test a hypothesis the audit did not list.

Both use the audit's own procedure on a finished run directory: the run's sampling settings, its class
tokens, its cue list and counter rule, the domain's intervention checks, and the statistics of the
audit (paired sign-flip test, interval, the same thresholds). Fresh seeds keep them apart from the
audit's screening and confirmation images.

``measure_cue`` (what ``result.test_cue`` in a notebook calls):

1. Open the run: finished classes, labels, the analysis settings and cue list it was analysed with.
2. Resolve the hypothesis: a cue of the run's list by name ("grass") or by phrase ("on grass"), or a
   free phrase ("near a red ball") tested against the prompt without it; optional counters.
3. Generate the pairs on fresh seeds, check every intervened image, classify (``Lab``).
4. Decide with the audit's rule: effect at least the threshold in the claimed direction, p at most the
   FDR level (one pre-stated test: q = p; ``adjust`` sets q over a session's tests), enough pairs.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

from probe.analysis.class_evidence import ClassRun, load_token
from probe.analysis.config import AnalysisConfig
from probe.analysis.cues import Cue, template_phrase
from probe.analysis.errors import AnalysisError
from probe.analysis.finding import Finding, sentence
from probe.analysis.lab import Lab
from probe.analysis.screening import token_text
from probe.analysis.necessity import measure_necessity, neutral_counters
from probe.analysis.plan import Test, choose_carriers, confirm_round, finished_classes, set_up
from probe.analysis.policy import UNCHECKED, checked, excluded_limit, verdict
from probe.analysis.sample import Sample
from probe.analysis.stats import Effect, apply_fdr
from probe.analysis.sufficiency import measure_sufficiency
from probe.classifiers.labels import object_name
from probe.domains import domain_for
from probe.files import slugify
from probe.run import AnalysisSummary, RunDir
from probe.run import format as fmt

HYPOTHESIS_KINDS = ("necessity", "sufficiency")
ADHOC_SEED = 800_000  # first seed of ad-hoc tests: apart from screening (7000+), confirmation (107000+), remeasure (900000)


@dataclass
class RunContext:
    """A finished run opened for more measurements with its own settings, checks and models."""

    run: RunDir
    cfg: AnalysisConfig
    classes: dict[int, ClassRun]
    labels: list[str]
    cues: dict[str, Cue]
    dropped: dict[int, list[str]]  # class index -> counter phrases ("on grass") the audit's counter rule dropped
    lab: Lab
    generator: object
    object_attribute: str | None
    objects: set[str]
    checked_by: str = UNCHECKED  # who checks this context's images (probe.analysis.plan.Setup.checked_by)
    # class index -> the generator's own failure rate the audit measured on it (analysis.json classes.N
    # .generator_failure): a re-test is inconclusive by the audit's rule, policy.excluded_limit of that rate
    failure: dict[int, float] = field(default_factory=dict)

    @classmethod
    def open(cls, run_dir, classifier, generator, *, concepts: str = "auto") -> "RunContext":
        """The run's settings and cues, with the audit's models; ``concepts`` (the caller's, never the run's: loading
        a model is not something a run directory may decide) names the concept model that checks the images."""
        run = RunDir(run_dir)
        if not run.root.is_dir():
            raise AnalysisError(f"run directory {str(run_dir)!r} does not exist; pass the folder `probe audit` wrote.")
        saved = run.read_run_config(on_error=lambda _message: None)  # a damaged config.json is the audit's to report
        audited_multi = bool(saved is not None and ((saved.audit or {}).get("multi_label")
                                                    or (saved.classifier or {}).get("multi_label")))
        if audited_multi != bool(getattr(classifier, "multi_label", False)):
            raise AnalysisError(
                f"the run was audited with a {'multi-label' if audited_multi else 'softmax'} classifier and this one "
                f"is {'multi-label' if not audited_multi else 'softmax'}; load it as the audit did "
                f"(probe.load_classifier(..., multi_label={audited_multi}))")
        analysis = run.read_analysis_summary() or AnalysisSummary()
        cfg = AnalysisConfig.from_dict(analysis.config or {}).replace(concepts=concepts)
        classes = {c.index: c for c in finished_classes(run)}
        if not classes:
            raise AnalysisError(f"run directory {str(run_dir)!r} has no finished class; run or resume `probe audit` first.")
        cue_list = [Cue(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in c.items()})
                    for c in (analysis.cues or {}).get("list", [])]
        domain = domain_for(generator)
        if not cue_list and domain is not None and domain.cues is not None:
            cue_list = domain.cues()
        labels = run.read_labels() or [str(x) for x in (getattr(classifier, "labels", None) or [])]
        setup = set_up(run, classifier, generator, cfg, cue_list, domain, labels=labels)  # the audit's checks and settings
        named = run.read_labels() or []  # an older analysis keyed the dropped counters by these names (else str(i))
        dropped = {i: sorted(analysis.dropped_for(i, named[i] if i < len(named) else str(i), named) or ())
                   for i in classes}  # by class index (a name two classes share says none)
        for index, steps in analysis.sampling_steps().items():  # a class the audit drew at more steps is drawn so here
            text = token_text(classes[index]) if index in classes else None
            if text:
                setup.lab.more_steps[text] = steps
        failure = {int(k): rate for k, info in (analysis.classes or {}).items()
                   if str(k).isdigit() and isinstance(info, dict)
                   for rate in [fmt.as_float(info.get("generator_failure"))] if rate is not None}
        return cls(run, cfg, classes, labels, {c.name: c for c in setup.cues}, dropped, setup.lab, generator,
                   setup.object_attribute, setup.objects, setup.checked_by, failure)

    def resolve_class(self, which: int | str) -> ClassRun:
        if isinstance(which, int) or (isinstance(which, str) and which.isdigit()):
            found = self.classes.get(int(which))
        else:
            found = next((c for c in self.classes.values() if c.name == which), None) or \
                next((c for c in self.classes.values() if c.name.lower() == str(which).lower()), None)
        if found is None:
            names = ", ".join(f"{c.index} {c.name}" for c in self.classes.values())
            raise AnalysisError(f"class {which!r} is not a finished class of this run; use one of: {names}")
        return found

    def object_value(self, cls: ClassRun) -> str | None:
        name = object_name(cls.name)
        return name if name in self.objects else None

    def kept_counters(self, cls: ClassRun, cue: Cue) -> Cue:
        """``cue`` less the counters the audit's counter rule dropped for ``cls`` (all of them kept if none would be
        left, :func:`probe.analysis.necessity.neutral_counters`): a necessity test measured as the audit measured it."""
        phrases = set(self.dropped.get(cls.index, []))
        suspects = {t for t in cue.counters if template_phrase(t) in phrases} - {cue.template}
        return neutral_counters(cue, suspects)[0]

    def carriers(self):
        return choose_carriers(self.cfg, self.labels, self.objects)


def resolve_cue(cues: dict[str, Cue], text: str, counters: list[str] | tuple[str, ...] | None = None) -> Cue:
    """A cue of the run's list by name or phrase, else an ad-hoc cue for the free phrase ``text``.

    An ad-hoc cue without ``counters`` is tested against the prompt without the phrase (counter "{}").
    Counters are phrases ("on sand") or templates ("{} on sand").
    """
    text = " ".join(str(text).split())
    if not text:
        raise AnalysisError("the cue is empty; name one of the run's cues (e.g. 'grass') or a phrase (e.g. 'on grass')")
    as_template = text if "{}" in text else "{} " + text
    known = cues.get(text) or next((c for c in cues.values() if c.name.lower() == text.lower()), None) or \
        next((c for c in cues.values() if c.template == as_template), None)
    templates = None if counters is None else tuple(c if "{}" in c else "{} " + " ".join(c.split()) for c in counters)
    if known is not None:
        if templates is None:
            return known
        by_template = {c.template: c for c in cues.values()}
        values = tuple(by_template[t].value if t in by_template else None for t in templates)
        same = known.attribute is not None and all(v is not None and by_template[t].attribute == known.attribute
                                                   for t, v in zip(templates, values))
        return replace(known, counters=templates, counter_values=values if same else ())
    return Cue(name=text, template=as_template, counters=templates if templates is not None else ("{}",),
               category="hypothesis", description=text)


@dataclass(frozen=True)
class CueTest:
    """The result of one ad-hoc cue test: the finding it supports (or not), with its statistics and images."""

    finding: Finding
    hypothesis: str
    counters: tuple[str, ...]
    run_root: Path = field(repr=False)

    @property
    def passes(self) -> bool:
        return self.finding.passes

    @property
    def effect(self) -> float:
        return self.finding.effect

    @property
    def p(self) -> float:
        return self.finding.p

    @property
    def verdict(self) -> str:
        f = self.finding
        if f.status == "inconclusive":
            return "inconclusive: most interventions failed their check"
        if f.status == "unverified":  # met every bar, but nothing checked that the images show what was asked
            return "unverified: nothing checked the images (attach with concepts=a CLIP or SigLIP model)"
        if f.passes:
            return "supported"
        if f.n_images < 1:
            return "no valid pairs"
        return "not supported"

    def to_dict(self) -> dict:
        return {"hypothesis": self.hypothesis, "verdict": self.verdict, "counters": list(self.counters),
                **self.finding.to_dict()}

    def __repr__(self) -> str:
        f = self.finding
        return (f"CueTest({self.hypothesis!r}: {self.verdict}; effect {f.effect:+.3f} "
                f"[{f.ci_low:+.3f}, {f.ci_high:+.3f}], n={f.n_images} pairs, p={f.p:.3g}, q={f.q:.3g}, "
                f"checked by {f.checked_by})")

    def _repr_html_(self) -> str:
        from probe.display import thumbnails

        f = self.finding
        e = html.escape
        rows = [("verdict", self.verdict), ("checked by", f.checked_by), ("effect", f"{f.effect:+.3f}"),
                ("95% CI", f"{f.ci_low:+.3f} to {f.ci_high:+.3f}"), ("pairs", f"{f.n_images} of {f.attempted} attempted"),
                ("p", f"{f.p:.3g}"), ("q", f"{f.q:.3g}"), ("counters", ", ".join(c.replace('{}', '…') for c in self.counters))]
        table = "".join(f"<tr><th style='text-align:left'>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
        images = thumbnails([self.run_root / p for p in f.evidence], size=96)
        return (f"<div><p><b>{e(f.kind)} test of {e(self.hypothesis)} for {e(f.class_name)}</b>: {e(f.sentence)}</p>"
                f"<table>{table}</table>{images}</div>")


def measure_cue(context: RunContext, which: int | str, cue: str, *, kind: str = "necessity",
                counters: list[str] | None = None, n_pairs: int = 32, seed: int = ADHOC_SEED) -> CueTest:
    """Test one hypothesis ("does class ``which`` depend on ``cue``?") with the audit's procedure."""
    if kind not in HYPOTHESIS_KINDS:
        raise AnalysisError(f"kind {kind!r} is not a cue test; use one of {list(HYPOTHESIS_KINDS)}")
    if not isinstance(n_pairs, int) or n_pairs < 2:
        raise AnalysisError(f"n_pairs={n_pairs!r} must be an integer >= 2 (the audit decides on at least "
                            f"{context.cfg.thresholds.min_pairs} pairs)")
    # 1-2. the class and the hypothesis, with the audit's counter rule for a cue of its list
    cls = context.resolve_class(which)
    test_cue = resolve_cue(context.cues, cue, counters)
    if kind == "necessity" and counters is None and test_cue.name in context.cues:
        test_cue = context.kept_counters(cls, test_cue)
    if kind == "necessity" and not test_cue.counters:
        raise AnalysisError(f"cue {test_cue.name!r} has no counters to swap it for; pass counters=['on sand', ...]")
    # 3. fresh pairs, checked and classified
    lab, cfg = context.lab, context.cfg
    evidence = context.run.root / "analysis" / "hypotheses" / f"{cls.index}-{slugify(cls.name)}" / \
        f"{kind}-{slugify(test_cue.name)}"
    object_attribute = context.object_attribute or "object"
    if kind == "necessity":
        load_token(context.generator, cls)
        prompts = cls.token_prompts(cfg.necessity_templates)
        if not prompts:
            raise AnalysisError(f"class {cls.name!r} has no token prompts in metrics.json; re-run `probe audit`")
        seeds = list(range(seed, seed + math.ceil(n_pairs / len(prompts))))
        sample = lab.batched(lambda: measure_necessity(
            lab, cls.index, test_cue, prompts, seeds, object_value=context.object_value(cls),
            object_attribute=object_attribute, evidence_dir=evidence, n_evidence=cfg.n_evidence))
    else:
        usable = [c for c in context.carriers() if c.class_index != cls.index] or context.carriers()
        seeds = list(range(seed, seed + math.ceil(n_pairs / len(usable))))
        sample = lab.batched(lambda: measure_sufficiency(
            lab, [test_cue], [cls.index], usable, seeds, template=cfg.carrier_template,
            object_attribute=object_attribute, evidence_dir=evidence, n_evidence=cfg.n_evidence))[(test_cue.name, cls.index)]
    # 4. the audit's statistics and rule; one pre-stated test, so q = p
    return CueTest(_decide(cfg, kind, cls, test_cue, sample, context.checked_by, context.failure.get(cls.index, 0.0)),
                   hypothesis=cue,
                   counters=test_cue.counters, run_root=context.run.root)


def _decide(cfg: AnalysisConfig, kind: str, cls: ClassRun, cue: Cue, sample: Sample, checked_by: str,
            failure: float = 0.0) -> Finding:
    """The audit's rule on one re-test: inconclusive when more of its pairs failed their check than the audit allows
    at the class's own failure rate (probe.analysis.plan.Test.inconclusive; every pair lost is inconclusive too), else
    judged on its effect with q = p."""
    effect = sample.effect()
    inconclusive = sample.excluded_share > excluded_limit(failure)
    evidence = tuple(e for e in sample.evidence if e)  # the Lab stores them relative to the run
    details = {"category": cue.category, "description": cue.description, "hypothesis": True,
               "counter_templates": list(cue.counters), **sample.extra}
    finding = Finding(class_index=cls.index, class_name=cls.name, cue=cue.name, kind=kind,
                      effect=float(effect.mean) if sample.n else float("nan"), ci_low=float(effect.ci_low),
                      ci_high=float(effect.ci_high), n_images=int(sample.n), evidence=evidence, passes=False,
                      strength="weak", sentence="", details=details, p=float(effect.p), q=float("nan"),
                      status="inconclusive" if inconclusive else "weak", excluded=sample.excluded,
                      attempted=sample.attempted, checked_by=checked_by)
    return judge(cfg, finding, q=float(effect.p))


def judge(cfg: AnalysisConfig, finding: Finding, q: float) -> Finding:
    """``finding`` with q set and judged by the audit's rule (an inconclusive test stays inconclusive)."""
    effect = Effect(finding.effect, finding.ci_low, finding.ci_high, finding.n_images, p=finding.p, q=q)
    status, passes, strength = verdict(cfg.thresholds, finding.kind, effect, finding.status == "inconclusive")
    strength = strength or "weak"
    if finding.n_images:
        words = sentence(finding.kind, finding.class_name, finding.details.get("description", finding.cue),
                         finding.effect, (finding.ci_low, finding.ci_high), finding.n_images, status=status,
                         extra=finding.details)
    else:
        words = f"no valid pairs: every intervention for {finding.cue!r} failed its check"
    return checked(replace(finding, q=float(q), passes=bool(passes), strength=strength, status=status, sentence=words),
                   finding.checked_by)


def adjust(cfg: AnalysisConfig, tests: list[CueTest]) -> list[CueTest]:
    """``tests`` with q adjusted over all of them (a session's hypotheses form one family) and re-judged."""
    if not tests:
        return []
    effects = [Effect(t.finding.effect, t.finding.ci_low, t.finding.ci_high, t.finding.n_images, p=t.finding.p)
               for t in tests]
    return [replace(t, finding=judge(cfg, t.finding, float(e.q)))
            for t, e in zip(tests, apply_fdr(effects, method=cfg.thresholds.fdr_method))]


def remeasure(run_dir, classifier, generator, finding: Finding, *, n_pairs: int = 64, seed: int = 900_000) -> Sample:
    """Measure a finding's effect again on ``n_pairs`` fresh pairs with the audit's own procedure.

    The audit's estimand, estimated anew: the validity benchmark uses it to check that intervals cover it.
    """
    context = RunContext.open(run_dir, classifier, generator)
    if finding.class_index not in context.classes:
        raise AnalysisError(f"class {finding.class_index} is not a finished class of {str(context.run.root)!r}")
    cls = context.classes[finding.class_index]
    if finding.cue not in context.cues:
        raise AnalysisError(f"cue {finding.cue!r} is not in the run's cue list; re-run the analysis")
    cue = context.cues[finding.cue]
    if finding.kind == "necessity" and finding.details.get("counter_templates"):
        kept = set(finding.details["counter_templates"])
        cue = cue.without_counters({t for t in cue.counters if t not in kept})
    test = Test(finding.kind, cls, cue, screen=Sample(finding.kind, cls.index, cue.name),
                extra={k: finding.details[k] for k in ("drawn_with_name",) if finding.details.get(k)})
    lab = context.lab
    return lab.batched(lambda: confirm_round(context.cfg.replace(confirm_round=n_pairs), lab, test, context.carriers(),
                                             context.generator, context.object_attribute or "object",
                                             context.object_value(cls), seeds_from=seed))
