"""``decide_run``: steps 6 and 7 of the analysis, once, in the driver, from every class's measured record.

Steps 3-5 ran per unit of classes wherever the models were (this process for a local audit, one class at a time on
a Ray worker or a ``--shard``: :func:`probe.analysis.engine.measure_run`) and left one
:class:`probe.run.class_analysis.ClassAnalysis` per class in classes/<i>-<slug>/analysis/tests.json. Here, with no
model loaded:

1. Read the records of the run's finished classes; a class without a record measured with these analysis
   settings is missing, and nothing is decided without it (an ``AnalysisError`` naming the classes).
2. Rebuild every test and off-object test from its record (probe/analysis/per_class.py), in the order one
   process builds them.
3. Step 6: the false-discovery-rate step over the confirmed tests of *every* class at once
   (:func:`decide_q`, below), then each test's finding by the pass rule.
4. Step 7: who checked the images, the base rates and the proposals (measured with the class), rank; write
   findings.json, findings.parquet and analysis.json. Each unit's notes, images and timings are counted once.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from types import SimpleNamespace
from typing import TYPE_CHECKING

import numpy as np

from probe.analysis.class_evidence import ClassRun, mean_iou
from probe.analysis.config import AnalysisConfig
from probe.analysis.cues import template_phrase
from probe.analysis.errors import AnalysisError
from probe.analysis.finding import Finding, Findings, rank_findings, sentence, write_findings
from probe.analysis.plan import finished_classes
from probe.analysis.policy import checked, describe_rule, verdict
from probe.analysis.sample import Sample
from probe.analysis.stats import fdr_family_q
from probe.run import RunDir
from probe.run import format as fmt
from probe.run.types import DROPPED_BY_INDEX

if TYPE_CHECKING:
    from probe.analysis.lab import Lab
    from probe.analysis.plan import Test

__all__ = ["decide_q", "decide_run", "missing_records"]


def missing_records(run_dir, config: AnalysisConfig) -> list[int]:
    """The finished classes (status done, ``config.classes``) without a record measured with ``config``'s settings."""
    from probe.analysis.per_class import settings_of

    run, wanted = RunDir(run_dir), settings_of(config)
    out = []
    for cls in finished_classes(run, config.classes):
        record = run.read_class_analysis(cls.dir)
        if record is None or record.settings != wanted:
            out.append(cls.index)
    return out


def decide_run(run_dir, config: AnalysisConfig, *, records: list | None = None, labels: list[str] | None = None) -> Findings:
    """Steps 6-7 over the run's finished classes, from their records (``records``: those just measured, else read);
    writes findings and analysis.json and returns the findings, best first. Loads no model."""
    from probe.analysis.per_class import off_object_of, settings_of, tests_of

    started = time.perf_counter()
    cfg = config
    run = RunDir(run_dir)
    labels = labels if labels is not None else (run.read_labels() or [])
    # 1. the records of the run's finished classes, each measured with these settings
    classes = finished_classes(run, cfg.classes)
    if not classes:
        raise AnalysisError(f"run directory {str(run_dir)!r} has no finished class; run or resume `probe audit` first.")
    given = {r.class_index: r for r in (records or [])}
    wanted = settings_of(cfg)
    found, missing = {}, []
    for cls in classes:
        record = given.get(cls.index) or run.read_class_analysis(cls.dir, strict=True)
        if record is None or record.settings != wanted:
            missing.append(cls.index)
        else:
            found[cls.index] = record
    if missing:
        shown = ", ".join(str(i) for i in missing[:8]) + (" ..." if len(missing) > 8 else "")
        raise AnalysisError(f"{len(missing)} finished classes of {str(run_dir)!r} have no analysis measured with these "
                            f"settings ({shown}); measure them first (`probe report RUN --model M --generator G`, or "
                            "re-run the audit)")
    # 2. the tests as one process builds them; each unit's facts once
    ordered, off_object, per_class, units = [], [], {}, {}
    for cls in classes:
        record = found[cls.index]
        run_cls = ClassRun(cls.index, record.class_name, cls.dir, cls.metrics)
        ordered += tests_of(record, run_cls)
        off = off_object_of(record, run_cls)
        if off is not None:
            off_object.append((off, record.off_object))
        per_class[str(cls.index)] = dict(record.info)
        units.setdefault(record.unit, record.unit_facts)
    ordered.sort(key=lambda entry: entry[0])
    tests = [t for _, t, _ in ordered]
    # candidates as one process lists them: the chosen listed ones, the listed ones only confirm_like asked for,
    # then per class the discovered ones
    listed = [(t, d) for _, t, d in ordered if d["phase"] == "listed"]
    candidates = ([t for t, d in listed if d["candidate"] and not d["added"]] +
                  [t for t, d in listed if d["added"]] +
                  [t for _, t, d in ordered if d["phase"] == "discovered" and d["candidate"]])
    added = [t for _, t, d in ordered if d["added"]]
    facts = list(units.values())
    notes = fmt.class_notes(n for f in facts for n in f.get("notes", []))  # one per message at 1000 classes
    setup = facts[0].get("setup", {})
    by_stage: dict[str, int] = {}
    for f in facts:
        for stage, n in f.get("images_by_stage", {}).items():
            by_stage[stage] = by_stage.get(stage, 0) + int(n)
    lab = SimpleNamespace(images_generated=sum(int(f.get("images_generated", 0)) for f in facts), by_stage=by_stage,
                          budget_spent=sum(float(f.get("budget_spent", f.get("images_generated", 0))) for f in facts))
    timings: dict[str, float] = {}
    for f in facts:
        for k, v in f.get("timings_s", {}).items():
            timings[k] = timings.get(k, 0.0) + float(v)

    # 3. step 6: the false-discovery-rate step over every class's confirmed tests at once, then the rule
    confirmed = [t for t in candidates if t.confirm is not None and t.confirm.n > 0]
    off_tests = [t for t, _ in off_object]
    off_candidates = [t for t, d in off_object if d.get("candidate")]
    off_unconfirmed = [t for t, d in off_object if d.get("unconfirmed")]
    off_confirmed = [t for t in off_tests if t.confirm is not None and t.confirm.effect.n > 0]
    family = cfg.fdr_family(len(labels) or len(classes))
    decide_q(cfg, family, confirmed, off_confirmed)
    findings = []
    for test in off_tests:
        if test.effect is not None:
            per_class[str(test.cls.index)]["off_object"]["q"] = test.effect.q
        finding = test.finding(cfg)
        if finding is not None:
            findings.append(finding)
    sufficiency = {(t.cls.index, t.cue.name): t for t in tests if t.kind == "sufficiency"}
    for test in tests:
        finding = _finding(cfg, test)
        if finding is not None and finding.kind == "token-shift" and finding.passes:
            finding = _corroborate(cfg, finding, sufficiency.get((test.cls.index, test.cue.name)))
        if finding is not None:
            findings.append(finding)

    # 4. step 7: who checked, the base rates and proposals measured with each class; rank and write
    proposals = {r.class_index: [{k: v for k, v in p.items() if k != "cue_record"} for p in r.discovered]
                 for r in found.values() if r.discovered}
    rates = {i: per_class[str(i)]["base_rates"] for i in found if "base_rates" in per_class[str(i)]}
    findings = rank_findings([_with_proposal(_with_base_rate(checked(f, setup.get("checked_by")), rates), proposals)
                              for f in findings])
    timings["decide"] = time.perf_counter() - started
    timings["total"] = timings.get("total", 0.0) + timings["decide"]
    attributions = _attributions([f.get("attributions", {}) for f in facts])
    like_there = setup.get("tests_confirmed_there")
    analysis = {
        "config": cfg.to_dict(),
        "rule": describe_rule(cfg.thresholds, family=family),
        "fdr_family": family,
        "carriers": {"source": setup.get("carrier_source"),
                     "per_class": {str(i): list(found[i].carriers) for i in found}},
        "cues": {"source": setup.get("cue_source"), "count": len(setup.get("cues", [])), "list": setup.get("cues", []),
                 "discovered": {str(c): found_ for c, found_ in proposals.items()}},
        "domain": setup.get("domain"),
        "concept_scorer": setup.get("concept_scorer"),
        "interventions_checked_by": setup.get("interventions_checked_by"),
        "stated_contexts": setup.get("stated_contexts"),
        "counter_rule": "for each class, a counter-value is dropped from its necessity tests when the value is itself "
                        "a cue for the class (screened sufficiency effect on the class at least the effect threshold in "
                        "size, either direction) or raises another class by at least the threshold; a cue whose every "
                        "counter would be dropped keeps them all (no neutral one is left; the analysis notes say which)",
        # by class index, as "classes" and "carriers.per_class": a name may be two classes' (ImageNet's "crane"s)
        "dropped_counters": {str(i): sorted(template_phrase(t) for t in found[i].suspects)
                             for i in found if found[i].suspects},
        "dropped_counters_keyed_by": DROPPED_BY_INDEX,
        "attributions": attributions,
        "attention_iou": mean_iou(per_class),
        "tests": {"screened": len(tests) + len(off_tests), "candidates": len(candidates) + len(off_candidates),
                  "confirmed": len(confirmed) + len(off_confirmed),
                  "passing": sum(f.passes for f in findings),
                  "unverified": sum(f.status == "unverified" for f in findings)},
        "images_generated": lab.images_generated,
        "images_by_stage": dict(lab.by_stage),
        "budget": _budget_record(cfg, lab, candidates, off_unconfirmed, notes),
        "generation": setup.get("generation"),
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "notes": notes,
        "classes": per_class,
        "n_findings": len(findings),
        "n_passing": sum(f.passes for f in findings),
        "confirm_like": {"run": cfg.confirm_like, "tests_confirmed_there": like_there,
                         "confirmed_here_only_for_it": len(added)} if cfg.confirm_like else None,
        "pairs": [_pairs(t) for t in tests],
        "units": {"count": len(units), "largest": max(len(u) for u in units)},
    }
    write_findings(run.root, findings)
    run.write_analysis(analysis)
    run.clear_journals()  # every unit's records are in: no analysis is left to resume (stale keys included)
    return findings


def _with_proposal(finding, proposals: dict[int, list[dict]]):
    """A finding on a discovered cue carries why it was proposed (``details.proposed``)."""
    found = next((p for p in proposals.get(finding.class_index, []) if p.get("cue") == finding.cue), None)
    return finding if found is None else replace(finding, details={**finding.details, "proposed": found})


def _attributions(summaries: list[dict]) -> dict:
    """The units' attribution summaries as one: methods and layer as measured, skips merged, seconds summed."""
    if not summaries:
        return {}
    out = dict(summaries[0])
    skipped, seconds = {}, {}
    for s in summaries:
        skipped.update(s.get("skipped") or {})
        for m, v in (s.get("seconds") or {}).items():
            seconds[m] = round(seconds.get(m, 0.0) + float(v), 3)
        if out.get("layer") is None and s.get("layer") is not None:
            out["layer"] = s["layer"]
    out.update(skipped=skipped, seconds=seconds)
    return out


def decide_q(cfg: AnalysisConfig, family: str, confirmed: list[Test], off_confirmed: list = ()) -> None:
    """Step 6's multiplicity: q-values over the confirmed tests (cue tests and off-object alike), set on each
    test's ``effect``, under ``family`` (:data:`probe.analysis.stats.FDR_FAMILIES`: one family over the audit, or
    one per class with Benjamini–Bogomolov selection). The pass rule (``_finding``) reads them."""
    off_confirmed = list(off_confirmed)
    tested = list(confirmed) + off_confirmed
    effects = [t.confirm.effect() for t in confirmed] + [t.confirm.effect for t in off_confirmed]
    qs = fdr_family_q(effects, [t.cls.index for t in tested], family=family, q=cfg.thresholds.fdr_q,
                      method=cfg.thresholds.fdr_method)
    for test, effect in zip(tested, qs):
        test.effect = effect


def _with_base_rate(finding: Finding, rates: dict[int, dict]) -> Finding:
    rate = rates.get(finding.class_index, {}).get(finding.cue)
    if rate is None or finding.kind == "off-object":
        return finding
    return replace(finding, details={**finding.details, "base_rate": rate})


def _budget_record(cfg: AnalysisConfig, lab: Lab, candidates: list[Test], off_unconfirmed: list,
                   notes: list[str]) -> dict | None:
    """analysis.json's ``budget`` (None without one), and a note when it ended confirmation: how many candidate
    tests it left screening-only (never passing) or stopped before their target precision."""
    if cfg.max_images is None:
        return None
    unconfirmed = [t for t in candidates if t.confirm is None and "budget" in t.extra]
    cut = [t for t in candidates if t.confirm is not None and "budget" in t.extra]
    ended = bool(unconfirmed or cut or off_unconfirmed)
    confirming = sum(v for k, v in lab.by_stage.items() if k in ("confirm", "off_object_confirm"))
    if ended:
        notes.append(f"the image budget ({cfg.max_images:,} images at the run's sampling steps) ended confirmation: {len(unconfirmed)} candidate "
                     f"cue tests and {len(off_unconfirmed)} off-object tests were left screening-only (never passing), "
                     f"{len(cut)} stopped before their target precision; the most decisive screens were confirmed first")
    return {"max_images": cfg.max_images, "images_generated": lab.images_generated,
            "spent": round(lab.budget_spent, 1),  # images at the run's sampling steps (Lab.budget_spent)
            "screening_images": lab.images_generated - confirming, "confirmation_images": confirming,
            "ended_confirmation": ended, "order": "largest |screened effect| / standard error first",
            "unconfirmed": [list(t.key) for t in unconfirmed] + [["off-object", t.cls.index, "off-object"]
                                                                for t in off_unconfirmed],
            "stopped": [list(t.key) for t in cut]}


def _pairs(test: Test) -> dict:
    """One test's pairs for analysis.json: screening and confirmation apart (only like is paired with like)."""
    entry = {"kind": test.kind, "class_index": test.cls.index, "class_name": test.cls.name, "cue": test.cue.name,
             "screen": test.screen.pairs()}
    if test.confirm is not None:
        entry["confirm"] = test.confirm.pairs()
    return entry


def _finding(cfg: AnalysisConfig, test: Test) -> Finding | None:
    """The finding a test supports: confirmed (passes or weak), inconclusive, screened only, or nothing."""
    t = cfg.thresholds
    screen = test.screen
    details = {"category": test.cue.category, "description": test.cue.description,
               "screen": {"effect": _round(screen.mean), "n": screen.n, "excluded": screen.excluded}}
    if test.cue.attribute is not None:
        details.update(attribute=test.cue.attribute, value=test.cue.value)
    details.update(test.extra)
    if test.kind == "necessity":
        details["counters"] = screen.extra.get("counters", [])
        details["counter_templates"] = list(test.cue.counters)
        details["counter_values"] = list(test.cue.counter_values)
    if test.confirm is not None and test.effect is not None:
        sample, effect = test.confirm, test.effect
        details.update({k: v for k, v in sample.extra.items() if k in ("freq_baseline", "freq_token", "carriers")})
        status, passes, strength = verdict(t, test.kind, effect, test.inconclusive(sample))
        if strength is None:
            return None
        details["excluded_note"] = _excluded_note(test, sample)
        return _build(test, effect.mean, effect.ci_low, effect.ci_high, effect.n, effect.p, effect.q, passes, strength,
                      status, sample, details)
    if screen.n and test.inconclusive(screen):
        effect = screen.effect()
        details["excluded_note"] = _excluded_note(test, screen)
        return _build(test, effect.mean, effect.ci_low, effect.ci_high, effect.n, effect.p, float("nan"), False, "weak",
                      "inconclusive", screen, details)
    size = abs(screen.mean) if test.kind in t.two_sided_kinds else screen.mean
    if screen.n == 0 or not size >= t.weak_effect:
        return None
    effect = screen.effect()
    details.update({k: v for k, v in screen.extra.items() if k in ("freq_baseline", "freq_token", "carriers")})
    return _build(test, effect.mean, effect.ci_low, effect.ci_high, effect.n, effect.p, float("nan"), False, "weak",
                  "screened", screen, details)


def _corroborate(cfg: AnalysisConfig, finding: Finding, sufficiency: Test | None) -> Finding:
    """A token shift says what the token added; that the *classifier* relies on it needs the classifier to
    respond to the cue the same way, by the effect bar, on fresh pairs (the cue's confirmed sufficiency test: its
    screen chose what to confirm and never decides, here as everywhere). Without that the finding is kept as weak
    evidence with the reason. Measured on six validity sets: corroborated at the weak bar on screening pairs, 3 of
    4 passing token shifts were false (the token drew fewer dots; the classifier's true response was below 0.15)."""
    if sufficiency is None:
        return finding
    sample = sufficiency.confirm if sufficiency.confirm is not None and sufficiency.confirm.n else None
    response = sample.mean if sample is not None else float("nan")
    bar = cfg.thresholds.min_effect
    if math.isfinite(response) and np.sign(response) == np.sign(finding.effect) and abs(response) >= bar:
        return finding
    reason = (f"the token changed it, but on fresh pairs the classifier's probability moves by {response:+.2f} when "
              f"the cue is added to other objects (the bar is {bar:g})" if math.isfinite(response) else
              "the token changed it, but the classifier's response to the cue was never confirmed on fresh pairs")
    status = "weak"
    return replace(finding, passes=False, strength="weak", status=status,
                   sentence="Weak evidence: " + finding.sentence + f" — {reason}",
                   details={**finding.details, "not_corroborated": reason})


def _excluded_note(test: Test, sample: Sample) -> str | None:
    name = test.extra.get("drawn_with_name")
    stage = "confirmation" if test.extra.get("token_confirm") else "screening"
    token = test.extra.get("token_confirm") or test.extra.get("token_screen") or {}
    named = (f"drawn with the class's name {name!r} instead of its token, whose images lost the object or the asked "
             f"value in {token.get('excluded')} of {int(token.get('n') or 0) + int(token.get('excluded') or 0)} "
             f"{stage} pairs" if name else None)
    if not sample.excluded:
        return named
    what = {"sufficiency": "image pairs lost the object or the cue",
            "necessity": "image pairs lost the object or did not show the asked value",
            "token-shift": "image pairs lost the object"}[test.kind]
    steps = test.extra.get("sampling_steps")
    base = (f" (the generator loses about {test.failure:.0%} of this class's pairs whatever the cue; more pairs were "
            f"drawn to make up for them{f', at {steps} sampling steps' if steps else ''})" if test.failure else "")
    return "; ".join(x for x in (named, f"{sample.excluded} of {sample.attempted} {what} and were excluded{base}") if x)


def _build(test: Test, mean, low, high, n, p, q, passes, strength, status, sample: Sample, details) -> Finding:
    extra = {**details, **sample.extra}
    return Finding(class_index=test.cls.index, class_name=test.cls.name, cue=test.cue.name, kind=test.kind,
                   effect=float(mean), ci_low=float(low), ci_high=float(high), n_images=int(n),
                   evidence=tuple(e for e in sample.evidence if e) or tuple(e for e in test.screen.evidence if e),
                   passes=bool(passes), strength=strength, status=status, p=float(p), q=float(q),
                   excluded=sample.excluded, attempted=sample.attempted,
                   sentence=sentence(test.kind, test.cls.name, test.cue.description, float(mean), (float(low), float(high)),
                                     int(n), status=status, extra=extra),
                   details=details)


def _round(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 4)
