"""``analyze_run``: a run directory -> ranked findings that a reviewer can act on.

1. Read the run: finished classes, labels, the sampling settings the tokens were learned with.
2. Ask the registry what the generator's world knows (probe.domains): cues, a concept scorer, masks; and
   set up the intervention check (the domain's oracles, or a concept model: CLIP or SigLIP, ``--concepts``),
   which checks every intervened image (object kept, cue shown as asked); without one the interventions are
   unchecked, no cue finding passes, and the report says how to check them.
3. Per class: attributions, nearest words to the token, attention-mask IoU against true masks (a domain
   with masks), attribution off the object.
3b. Discover, per class, cues nobody listed (probe/analysis/discovery.py): phrases of a ~1,000-phrase vocabulary
   whose concept score rose from the class's baseline to its token images; they are tested like listed cues.
4. Screen every (class, cue): sufficiency (one shared pass), necessity (counters that are themselves cues
   dropped), token shift (only for tokens that moved).
5. Confirm the candidates on fresh pairs until each has enough valid pairs and a tight interval (or its
   budget is spent). Only confirmation pairs decide; screening data is never reused for the decision.
   With ``confirm_like`` (another run on the same seeds), the tests that run confirmed are confirmed too,
   on as many pairs, so that ``probe compare`` can pair them.
6. Decide (probe/analysis/decide.py, after every class is measured): p-values of the confirmed tests, false-discovery-rate control over the confirmed tests
   (``AnalysisConfig.fdr``: one Benjamini–Yekutieli family for the audit up to 20 classes, per-class families
   with Benjamini–Bogomolov selection above), then effect, q and pair count against the thresholds; a test whose
   interventions mostly failed is inconclusive, never a finding.
7. Record who checked the generated images (world oracles, a concept model, or nobody: then a finding that
   would pass is *unverified*), rank, and write findings.json, findings.parquet and analysis.json (with every
   test's pairs, named by seed).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from probe.analysis._util import load_png
from probe.analysis.checks import ConceptModelCheck
from probe.analysis.class_evidence import Attributions, ClassRun, OffObjectTest, class_evidence, load_token
from probe.analysis.config import PAIRING_FIELDS, AnalysisConfig
from probe.analysis.cues import Carrier, Cue, default_cues, load_cues
from probe.analysis.discovery import propose_cues
from probe.analysis.errors import AnalysisError
from probe.analysis.finding import Findings
from probe.analysis.lab import Lab
from probe.analysis.necessity import every_counter_suspect, measure_necessity, neutral_counters
from probe.analysis.plan import (Test, class_carriers, confirm_round, confirm_with_name, confirmed_enough,
                                 finished_classes, set_up)
from probe.analysis.sample import Sample
from probe.analysis.screening import (MORE_STEPS_FAILURE, class_steps, extend_screens, failure_of, mark_failure,
                                      more_steps)
from probe.analysis.sufficiency import measure_sufficiency
from probe.analysis.token_shift import cue_concept, read_concepts, shift_samples
from probe.classifiers.labels import object_name
from probe.domains import domain_for
from probe.run import RunDir
from probe.run import format as fmt


def analyze_run(run_dir, classifier, generator, config: AnalysisConfig | None = None, *,
                cues: list[Cue] | None = None, scorer=None, progress=None) -> Findings:
    """Analyse a finished (or partly finished) run directory; returns the findings, best first.

    ``cues`` overrides ``config.cues``; ``scorer`` (``predict(images01) -> {attribute: [value, ...]}``) overrides
    the domain's concept scorer. ``progress`` (a callable taking one line) is told what runs next.

    Steps 1-5 for every class as one unit (:func:`measure_run`: one batched generation across classes, each class's
    record written to classes/<i>-<slug>/analysis/tests.json), then steps 6-7 once, from those records
    (:func:`probe.analysis.decide.decide_run`), as a driver does after Ray workers or shards measured the classes.
    """
    from probe.analysis.decide import decide_run

    cfg = config or AnalysisConfig()
    if not isinstance(cfg, AnalysisConfig):
        raise AnalysisError(f"config must be a probe.analysis.AnalysisConfig, got {type(cfg).__name__}")
    records = measure_run(run_dir, classifier, generator, cfg, cues=cues, scorer=scorer, progress=progress)
    return decide_run(run_dir, cfg, records=records, labels=RunDir(run_dir).read_labels() or
                      [str(x) for x in (getattr(classifier, "labels", None) or [])])


def measure_run(run_dir, classifier, generator, config: AnalysisConfig | None = None, *, only=None,
                budget_classes: int | None = None, cues: list[Cue] | None = None, scorer=None,
                progress=None, worker: dict | None = None) -> list:
    """Steps 1-5 (and the base rates of step 7) for the finished classes (those in ``only`` when given) as one
    unit: their images generated in shared batches; returns each class's
    :class:`probe.run.class_analysis.ClassAnalysis`, written to its folder. Nothing is decided here.

    A Ray worker or a ``--shard`` calls it per class (``only=[index]``); ``budget_classes`` (the number of classes
    the audit's ``max_images`` is for) gives this unit its equal share of an image budget.
    """
    from probe.analysis.per_class import class_records

    cfg = config or AnalysisConfig()
    if not isinstance(cfg, AnalysisConfig):
        raise AnalysisError(f"config must be a probe.analysis.AnalysisConfig, got {type(cfg).__name__}")
    audit_cfg = cfg
    say = progress if callable(progress) else (lambda _line: None)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    notes: list[str] = []

    # 1. the run -----------------------------------------------------------------------------------
    run = RunDir(run_dir)
    if not run.root.is_dir():
        raise AnalysisError(f"run directory {str(run_dir)!r} does not exist; pass the folder `probe audit` wrote.")
    classes = finished_classes(run, cfg.classes)
    if only is not None:
        classes = [c for c in classes if c.index in set(only)]
    if not classes:
        raise AnalysisError(f"run directory {str(run_dir)!r} has no finished class (no classes/*/metrics.json with "
                            "status 'done'); run or resume `probe audit` first.")
    labels = run.read_labels() or [str(x) for x in (getattr(classifier, "labels", None) or [])]
    if cfg.max_images is not None and budget_classes and len(classes) < budget_classes:
        # a unit of a distributed analysis: its equal share of the audit's image budget
        cfg = cfg.replace(max_images=max(1, cfg.max_images * len(classes) // budget_classes))

    # 2. what the generator's world knows ---------------------------------------------------------
    domain = domain_for(generator)
    if cues is not None:
        cues, cue_source = list(cues), "given list"
    elif cfg.cues in ("world", "auto") and domain is not None and domain.cues is not None:
        cues, cue_source = domain.cues(), f"{domain.name} domain"
    elif cfg.cues in ("auto", "default", "world"):
        cues, cue_source = default_cues(), "curated default"
    else:
        cues, cue_source = load_cues(cfg.cues), f"file {cfg.cues}"
    setup = set_up(run, classifier, generator, cfg, cues, domain, scorer=scorer,
                   scored=cfg.token_shift or cfg.sufficiency or cfg.necessity, labels=labels)
    lab, scorer, contexts, gen_kwargs, cues = setup.lab, setup.scorer, setup.contexts, setup.gen_kwargs, setup.cues
    lab.journal = run.journal(journal_key(cfg, lab, classes), lab.widths())  # an interrupted analysis resumes
    if lab.journal is not None and len(lab.journal):
        say(f"analysis: resuming: {len(lab.journal)} images an interrupted analysis observed are read back")
    object_attribute, objects, object_of = setup.object_attribute, setup.objects, setup.object_of
    notes += setup.notes
    if setup.check is None:
        notes.append("interventions unchecked: every generated image counts as showing what its prompt asks for, so "
                     "no cue finding can pass (they are shown as unverified)")

    # 3. per class: attributions, nearest words, attention IoU, off-object ------------------------
    per_class: dict[str, dict] = {}
    off_object: list[OffObjectTest] = []  # screened on each class's token gallery
    attr = Attributions(cfg, classifier)
    steps = ", ".join([*(["attributions"] if cfg.attributions else []), "nearest words",
                       *(["off-object"] if cfg.off_object else [])])
    for n, cls in enumerate(classes):
        say(f"analysis: class {cls.index} ({n + 1}/{len(classes)}): {steps}")
        info = per_class.setdefault(str(cls.index), {"class_name": cls.name, "dir": cls.rel, "token_moved": cls.moved})
        cached = _attention_maps_saved(cls)
        screened = class_evidence(cfg, cls, info, attr, generator, domain, gen_kwargs, notes, timings,
                                  outside=bool(cfg.discover) and isinstance(setup.check, ConceptModelCheck))
        # the token gallery regenerated with its cross-attention captured (one map saved per image), counted by the lab
        lab.count(_attention_maps_saved(cls) - cached, "off_object_screen")
        if screened is not None:
            off_object.append(screened)

    # 3b. discovery: each class's cues nobody listed, proposed from what its token added --------------
    t0 = time.perf_counter()
    discovered = propose_cues(cfg, setup.check, classes, cues, known=domain.cues() if domain is not None and domain.cues else (),
                              per_class_info=per_class, subject_of=lambda c: object_name(c.name), notes=notes,
                              lab=lab, run_root=run.root)
    if discovered and hasattr(setup.check, "extend"):
        setup.check.extend([p.cue for found in discovered.values() for p in found])
    _add_time(timings, "discovery", t0)

    # 4-5. the cue tests: screening, then confirmation of the candidates on fresh pairs ------------------
    carriers = class_carriers(cfg, labels, objects, classes)
    cue_tests = run_cue_tests(cfg, lab, classes, cues, labels, carriers, generator=generator,
                              object_attribute=object_attribute, object_of=object_of, evidence_root=run.root,
                              scorer=scorer, say=say, notes=notes, timings=timings)
    tests, candidates, added, suspects, like = (cue_tests.tests, cue_tests.candidates, cue_tests.added,
                                                cue_tests.suspects, cue_tests.like)
    n_listed = len(tests)  # the tests after these are the discovered cues' (phase "discovered" in the records)
    for cls in [c for c in classes if c.index in discovered]:  # the proposals: tested like listed cues, one class each
        say(f"analysis: testing {len(discovered[cls.index])} discovered cues for class {cls.index}")
        more = run_cue_tests(cfg, lab, [cls], [p.cue for p in discovered[cls.index]], labels,
                             {cls.index: carriers[cls.index]}, generator=generator, object_attribute=object_attribute,
                             object_of=object_of, evidence_root=run.root / "analysis" / "discovered" / str(cls.index),
                             scorer=scorer, say=say, notes=notes, timings=timings,
                             known_suspects={cls.index: set(suspects.get(cls.index, ()))})
        tests, candidates, added = tests + more.tests, candidates + more.candidates, added + more.added
        for index, dropped in more.suspects.items():
            suspects.setdefault(index, set()).update(dropped)
    t0 = time.perf_counter()
    off_candidates = [t for t in off_object if t.candidate(cfg)] if cfg.confirm else []
    off_unconfirmed = []  # left screening-only by the image budget (cfg.max_images)
    if off_candidates:
        say(f"analysis: confirming off-object attribution for {len(off_candidates)} classes on fresh token images")
        t1 = time.perf_counter()
        for test in sorted(off_candidates, key=lambda t: -t.screen.effect.mean) if cfg.max_images else off_candidates:
            if cfg.max_images is not None and lab.budget_spent + cfg.thresholds.min_pairs > cfg.max_images:
                off_unconfirmed.append(test)
                continue
            test.confirm_now(cfg, attr, generator, gen_kwargs, notes)
            if test.confirm is not None:
                lab.count(cfg.thresholds.min_pairs, "off_object_confirm")
            info = per_class[str(test.cls.index)]
            if test.confirm is not None:
                e = test.confirm.effect
                info["off_object"] = {"share_outside": test.confirm.share_outside,
                                      "area_outside": test.confirm.area_outside, "excess": e.mean,
                                      "ci_low": e.ci_low, "ci_high": e.ci_high, "p": e.p, "n": e.n, "stage": "confirm",
                                      "values": list(test.confirm.values), "screen": info.get("off_object")}
        _add_time(timings, "off_object_confirm", t1)
    _add_time(timings, "confirm", t0)

    for cls in classes:  # the classes drawn at more steps (screening.more_steps): a re-test draws them so too
        if class_steps(lab, cls):
            per_class[str(cls.index)]["sampling_steps"] = class_steps(lab, cls)
        failure = failure_of(tests, cls.index)  # the share of its screens' pairs the check rejected (the summary's advice)
        if failure:
            per_class[str(cls.index)]["generator_failure"] = round(float(failure), 3)
    # the generator's own habit (step 7's base rates) needs the concept scorer: measured here, with the class
    t0 = time.perf_counter()
    rates = {cls.index: _base_rates(cls, cues + [p.cue for p in discovered.get(cls.index, [])], scorer)
             for cls in classes} if scorer is not None else {}
    for info_key, class_rates in rates.items():
        per_class[str(info_key)]["base_rates"] = class_rates
    _add_time(timings, "base_rates", t0)
    timings["total"] = time.perf_counter() - started
    if lab.images_restored:
        notes.append(f"resumed: {lab.images_restored} of the {lab.images_generated} images were read back from the "
                     "journal of an interrupted analysis, not generated again")
    # each class's record: what steps 6-7 decide from (probe/analysis/decide.py), wherever they run
    unit_facts = {
        "notes": notes, "images_generated": lab.images_generated, "images_by_stage": dict(lab.by_stage),
        "budget_spent": round(lab.budget_spent, 3),
        "max_images": cfg.max_images, "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "attributions": attr.summary(), "n_labels": len(labels), "worker": worker,
        "setup": {"cue_source": cue_source, "cues": [c.to_dict() for c in cues],
                  "carrier_source": cfg.carrier_source_for(len(labels) or len(classes)),
                  "domain": domain.name if domain is not None else None,
                  "concept_scorer": (getattr(scorer, "name", None) or type(scorer).__name__) if scorer is not None else None,
                  "interventions_checked_by": lab.checks, "checked_by": setup.checked_by,
                  "stated_contexts": contexts.describe() if contexts is not None else None, "generation": gen_kwargs,
                  "tests_confirmed_there": len(like) if audit_cfg.confirm_like else None},
    }
    records = class_records(audit_cfg, classes, unit_facts, per_class=per_class, tests=tests, n_listed=n_listed,
                            candidates=candidates, added=added, suspects=suspects, off_object=off_object,
                            off_candidates=off_candidates, off_unconfirmed=off_unconfirmed, discovered=discovered,
                            carriers=carriers)
    for cls, record in zip(classes, records):
        run.write_class_analysis(cls.dir, record)
    if lab.journal is not None:
        lab.journal.clear()  # the records hold what it was kept for
    return records


def journal_key(cfg: AnalysisConfig, lab: Lab, classes: list[ClassRun]) -> str:
    """A digest of everything one analysis unit's observations depend on (probe/run/journal.py): its settings, the
    sampling settings, the generator, the classifiers (and their files' size and time), the check, the unit's
    classes and the bytes of their token files, of the cue list and of the vocabulary. Another value of any of them is
    another journal."""
    import hashlib
    import json

    import probe
    from probe.run import TOKEN

    def identity(model) -> list:
        source = getattr(model, "source", None)
        stat = None
        if isinstance(source, (str, Path)) and Path(source).is_file():
            info = Path(source).stat()
            stat = [info.st_size, info.st_mtime_ns]
        return [type(model).__name__, str(getattr(model, "name", "")), str(source), stat,
                str(getattr(model, "device", "")), str(getattr(model, "dtype", ""))]

    tokens = {}
    for cls in classes:
        file = Path(cls.dir) / TOKEN
        tokens[str(cls.index)] = hashlib.sha256(file.read_bytes()).hexdigest() if file.is_file() else None
    # the cue list and the vocabulary are named by path in the settings: their bytes too (an edit between an interrupt
    # and a resume changes the phrases a journalled concept-score row is indexed by)
    files = {name: hashlib.sha256(Path(value).read_bytes()).hexdigest()
             for name, value in (("cues", cfg.cues), ("vocabulary", cfg.vocabulary))
             if isinstance(value, str) and Path(value).is_file()}
    parts = {"probe": probe.__version__, "analysis": cfg.to_dict(), "generation": lab.gen_kwargs,
             "generator": identity(lab.generator), "classifiers": [identity(c) for c in lab.classifiers],
             "check": lab.checks, "classes": sorted(int(c.index) for c in classes), "tokens": tokens, "files": files}
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()
    return f"{'-'.join(str(c.index) for c in classes[:3])}{'-more' if len(classes) > 3 else ''}-{digest[:20]}"


# ------------------------------------------------------------------------------- steps 4-6 helpers
@dataclass
class CueTests:
    """Steps 4-5 for the cue tests: every screened test, the candidates (``added``: those only ``confirm_like``
    asked for), the counters dropped per class ({class index: templates}) and the other run's confirmed tests."""

    tests: list[Test]
    candidates: list[Test]
    added: list[Test]
    suspects: dict[int, set[str]]
    like: dict


def _add_time(timings: dict, key: str, since: float) -> None:
    """Add the seconds since ``since`` to ``timings[key]``: a step that runs again (the discovered cues' tests, class
    by class) adds to its time instead of replacing it."""
    timings[key] = timings.get(key, 0.0) + time.perf_counter() - since


def run_cue_tests(cfg: AnalysisConfig, lab: Lab, classes: list[ClassRun], cues: list[Cue], labels: list[str],
                  carriers: dict[int, list[Carrier]], *, generator, object_attribute, object_of, evidence_root: Path,
                  scorer=None, say=None, notes: list[str] | None = None, timings: dict | None = None,
                  known_suspects: dict[int, set[str]] | None = None) -> CueTests:
    """Steps 4 and 5 for the cue tests: screen every (class, cue), then confirm the candidates on fresh pairs.

    Every image it needs comes from ``lab.observe``: the seam the whole-engine simulation
    (benchmarks/engine_null.py) drives with synthetic observations, so that it runs this very code.
    ``carriers``: each class's sufficiency carriers (:func:`probe.analysis.plan.class_carriers`); unless they are
    confusers (``cfg.carrier_source_for``), every class has the same list and one shared pass serves every class.

    4a. sufficiency: one shared pass (spread carriers) or one pass per class on its confusers; then the counter
        rule, against every class (spread) or the class's confusers only;
    4b. necessity; then adaptive screening (probe/analysis/screening.py): more pairs for the ambiguous sufficiency
        and necessity screens;
    4c. token shift on the run's own evaluation images (needs ``scorer``);
    5.  the candidates, confirmed round by round on fresh seeds.

    ``known_suspects``: counters an earlier pass found to be cues for a class (the listed cues' counter rule, when
    this pass tests the cues discovery proposed), kept out of this pass's necessity tests too.
    """
    say = say if callable(say) else (lambda _line: None)
    notes = [] if notes is None else notes
    timings = {} if timings is None else timings
    like_run = _like_run(cfg, labels) if cfg.confirm_like else None  # read once, checked before any image
    # 4a. sufficiency
    t0 = time.perf_counter()
    lab.stage = "screen_sufficiency"
    tests: list[Test] = []
    screen_seeds = list(range(cfg.seed, cfg.seed + cfg.screen_seeds))
    suspects: dict[int, set[str]] = {}
    shared = cfg.carrier_source_for(len(labels) or len(classes)) != "confusers"
    if cfg.sufficiency and shared:
        one = next(iter(carriers.values()), [])
        say(f"analysis: screening sufficiency, {len(cues)} cues x {len(one)} carriers x {len(screen_seeds)} seeds")
        # every class's probability from one pass: the audited classes' tests, and the counter rule below
        all_classes = list(range(len(labels))) if labels else [c.index for c in classes]
        samples = lab.batched(lambda: measure_sufficiency(
            lab, cues, all_classes, one, screen_seeds, template=cfg.carrier_template,
            object_attribute=object_attribute or "object", evidence_dir=evidence_root / "analysis" / "cues",
            n_evidence=cfg.n_evidence))
        for cls in classes:
            for cue in cues:
                tests.append(Test("sufficiency", cls, cue, samples[(cue.name, cls.index)]))
        suspects = _suspect_counters(cfg, cues, samples, classes, all_classes)
    elif cfg.sufficiency:
        say(f"analysis: screening sufficiency on each class's confusers, {len(cues)} cues x {len(classes)} classes "
            f"x {cfg.n_carriers} carriers x {len(screen_seeds)} seeds")

        def per_class():  # the class and its confusers, read from the class's own carrier images
            return [measure_sufficiency(
                lab, cues, [cls.index] + [k.class_index for k in carriers[cls.index] if k.class_index is not None],
                carriers[cls.index], screen_seeds, template=cfg.carrier_template,
                object_attribute=object_attribute or "object", evidence_dir=cls.dir / "analysis" / "cues",
                n_evidence=cfg.n_evidence) for cls in classes]

        for cls, samples in zip(classes, lab.batched(per_class)):
            tests += [Test("sufficiency", cls, cue, samples[(cue.name, cls.index)]) for cue in cues]
            confusers = [k.class_index for k in carriers[cls.index] if k.class_index is not None]
            suspects.update(_suspect_counters(cfg, cues, samples, [cls], [cls.index] + confusers))
    for index, phrases in (known_suspects or {}).items():  # the listed pass's counter rule holds here as well
        suspects.setdefault(index, set()).update(phrases)
    if like_run is not None:  # the same tests as the other run: its counters, so that `probe compare` pairs like with like
        suspects = _suspects_like(like_run, cues, classes, labels, own=suspects)
    _add_time(timings, "screen_sufficiency", t0)
    # 4b. necessity
    t0 = time.perf_counter()
    lab.stage = "screen_necessity"
    if cfg.necessity:
        necessity_seeds = list(range(cfg.seed, cfg.seed + cfg.necessity_screen_seeds))
        say(f"analysis: screening necessity, {len(cues)} cues x {len(classes)} classes x {len(necessity_seeds)} seeds")
        found, skipped = lab.batched(lambda: _screen_necessity(cfg, lab, classes, cues, suspects, necessity_seeds, generator,
                                                               object_attribute, object_of))
        tests += found
        notes += skipped
    _add_time(timings, "screen_necessity", t0)
    t0 = time.perf_counter()
    mark_failure(tests)
    # confirm_like: the other run's classes drawn at more steps are drawn so here (its tests are the same tests:
    # a clean run drew the biased run's hearts at 5 steps where it drew them at 10, and compare paired them)
    moved = _steps_like(like_run, lab, classes) if like_run is not None else more_steps(lab, tests, generator)
    if moved and cfg.confirm_like:
        notes.append(f"more sampling steps: {fmt.listing(f'{name!r} at {n}' for name, n in moved.items())} from the "
                     f"screens' top-ups on, as the run it confirms like drew them")
    elif moved:
        notes.append(f"more sampling steps: {fmt.listing(f'{name!r} at {n}' for name, n in moved.items())} from the "
                     f"screens' top-ups on (each lost at least {MORE_STEPS_FAILURE:.0%} of its screening pairs to the "
                     f"check at {lab.gen_kwargs.get('steps')} steps)")
    for test in tests:
        if test.kind == "necessity" and class_steps(lab, test.cls):
            test.extra["sampling_steps"] = class_steps(lab, test.cls)
    topped, rounds = extend_screens(cfg, lab, tests, carriers, generator, object_attribute, object_of, say)
    if topped:
        notes.append(f"screen top-up: {topped} necessity screens short of valid pairs on a class whose generator fails "
                     "anyway got fresh seeds")
    if rounds:
        notes.append(f"adaptive screening: {rounds} ambiguous screens got more pairs")
    named = [f"{t.cls.name}/{t.cue.name}" for t in tests if t.extra.get("drawn_with_name")]
    if named:
        notes.append(f"necessity drawn with the class's name instead of its token: {fmt.listing(named)} (the token's "
                     "images lost the object or the asked value in too many screening pairs)")
    _add_time(timings, "screen_extend", t0)
    # 4c. token shift
    t0 = time.perf_counter()
    if cfg.token_shift and scorer is not None:
        for cls in classes:
            if cls.moved is False:
                notes.append(f"class {cls.index}: token unchanged (the classifier already accepts the baseline images); "
                             "no token-shift finding is derived from it")
                continue
            samples = _screen_token_shift(cls, cues, scorer, object_attribute, object_of(cls))
            failure = {"generator_failure": f for f in [failure_of(tests, cls.index)] if f}
            tests += [Test("token-shift", cls, cue, samples[cue.name], extra=dict(failure))
                      for cue in cues if cue.name in samples]
    elif cfg.token_shift:
        notes.append("token-shift skipped: no concept model (pass --concepts with a CLIP or SigLIP model)")
    _add_time(timings, "screen_token_shift", t0)
    # 5. confirmation on fresh pairs
    t0 = time.perf_counter()
    sufficiency_screens = {(t.cls.index, t.cue.name): t.screen for t in tests if t.kind == "sufficiency"}
    like = _confirmed_in(like_run) if like_run is not None else {}  # {test key: pairs the other run attempted}
    candidates = [t for t in tests if _candidate(cfg, t, sufficiency_screens)]
    chosen = {id(t) for t in candidates}
    added = [t for t in tests if t.key in like and id(t) not in chosen]  # pre-stated by the other run, not selected here
    candidates = _corroborable(candidates, tests, added) + added
    if cfg.confirm and candidates:
        say(f"analysis: confirming {len(candidates)} candidate findings on fresh pairs")
        _confirm_all(cfg, lab, candidates, carriers, generator, object_attribute or "object", object_of, like)
        renamed = [f"{t.cls.name}/{t.cue.name}" for t in candidates if t.extra.get("token_confirm")]
        if renamed:
            notes.append(f"necessity confirmed with the class's name instead of its token: {fmt.listing(renamed)} (the "
                         "token's fresh images lost the object or the asked value in too many confirmation pairs; "
                         "only the name's pairs decide)")
    _add_time(timings, "confirm", t0)
    return CueTests(tests, candidates, added, suspects, like)


def _screen_token_shift(cls: ClassRun, cues: list[Cue], scorer, object_attribute, object_value) -> dict[str, Sample]:
    """Token-shift screening on the run's own evaluation images (paired by prompt index and seed)."""
    records = [r for r in cls.metrics.get("images", []) if (cls.dir / r["path"]).is_file()]
    base = {(r.get("prompt_index"), r.get("seed")): r for r in records if r.get("kind") == "baseline"}
    tok = {(r.get("prompt_index"), r.get("seed")): r for r in records if r.get("kind") == "token"}
    keys = sorted(set(base) & set(tok), key=str)
    if not keys:
        return {}
    before = read_concepts(scorer, torch.stack([load_png(cls.dir / base[k]["path"]) for k in keys]))
    after = read_concepts(scorer, torch.stack([load_png(cls.dir / tok[k]["path"]) for k in keys]))
    evidence = [f"{cls.rel}/{tok[k]['path']}" for k in keys[:4]]
    return shift_samples(cls.index, cues, before, after, object_attribute=object_attribute, object_value=object_value,
                         evidence=evidence, keys=[f"s{seed}:p{prompt}" for prompt, seed in keys])


def _base_rates(cls: ClassRun, cues: list[Cue], scorer) -> dict[str, dict]:
    """The generator-bias control (as OpenBias measures it): for each cue, how many of the class's *baseline*
    images (its plain prompt, no token) show it, as the run's check reads them: {cue name: {"shown": k, "of": n}}.
    A cue the generator draws for the class anyway is a habit of the generator, not something the token added."""
    records = [r for r in cls.metrics.get("images", []) if r.get("kind") == "baseline" and (cls.dir / r["path"]).is_file()]
    if not records:
        return {}
    reads = read_concepts(scorer, torch.stack([load_png(cls.dir / r["path"]) for r in records]))
    out = {}
    for cue in cues:
        attribute, value = cue_concept(cue)
        if reads and attribute in reads[0]:
            out[cue.name] = {"shown": sum(r.get(attribute) == value for r in reads), "of": len(reads)}
    return out


def _suspect_counters(cfg: AnalysisConfig, cues: list[Cue], samples: dict, classes: list[ClassRun],
                      all_classes: list[int]) -> dict[int, set[str]]:
    """The counter rule, per class: a value is no neutral counter when it is itself a cue for the class
    (either direction), or raises another class, each by at least the effect threshold.

    Effects are centred on the median of the cue's attribute (or category): a carrier without a stated
    background shows any background, the planted one included, so adding any *other* background lowers
    the class a little; what singles a value out is its distance from its typical sibling, not from that
    mixture (the median, so that one strong cue does not make all its siblings look disliked).
    """
    groups: dict[str, list[Cue]] = {}
    for cue in cues:
        groups.setdefault(cue.attribute or cue.category, []).append(cue)
    centred: dict[tuple[str, int], float] = {}
    for members in groups.values():
        for c in all_classes:
            means = {cue.name: samples[(cue.name, c)].mean for cue in members if samples[(cue.name, c)].n}
            if len(means) < 2:
                continue
            centre = float(np.median(list(means.values())))
            for name, m in means.items():
                centred[(name, c)] = m - centre
    suspects: dict[int, set[str]] = {}
    limit = cfg.thresholds.min_effect
    for cls in classes:
        for cue in cues:
            own = centred.get((cue.name, cls.index), 0.0)
            others = [centred.get((cue.name, c), 0.0) for c in all_classes if c != cls.index]
            if abs(own) >= limit or (others and max(others) >= limit):
                suspects.setdefault(cls.index, set()).add(cue.template)
    return suspects


def _screen_necessity(cfg, lab, classes, cues, suspects, seeds, generator, object_attribute,
                      object_of) -> tuple[list[Test], list[str]]:
    tests, notes = [], []
    no_counters: dict[str, list[str]] = {}  # cue -> classes; one note per cue, not per class (1000 classes)
    all_suspect: list[str] = []
    for cls in classes:
        prompts = cls.token_prompts(cfg.necessity_templates)
        if not cls.metrics.get("prompts") or not prompts:
            notes.append(f"class {cls.index}: necessity skipped (metrics.json has no prompts.templates/prompts.token)")
            continue
        load_token(generator, cls)
        for cue in cues:
            suspect = suspects.get(cls.index, set()) - {cue.template}
            neutral, dropped = neutral_counters(cue, suspect)
            if not neutral.counters:
                no_counters.setdefault(cue.name, []).append(f"class {cls.index}")
                continue
            extra = {"dropped_counters": dropped}
            if every_counter_suspect(cue, suspect):
                all_suspect.append(f"class {cls.index} {cue.name!r}")
                extra["every_counter_suspect"] = True
            sample = measure_necessity(lab, cls.index, neutral, prompts, seeds, object_value=object_of(cls),
                                       object_attribute=object_attribute or "object",
                                       evidence_dir=cls.dir / "analysis" / "necessity", n_evidence=cfg.n_evidence)
            tests.append(Test("necessity", cls, neutral, sample, extra=extra))
    notes += [f"necessity of {name!r} skipped (the cue has no counters): {fmt.listing(where)}"
              for name, where in no_counters.items()]
    if all_suspect:
        notes.append(f"necessity measured against all its counters (each is itself a cue for some class: no neutral "
                     f"one is left): {fmt.listing(all_suspect)}")
    return tests, notes


def _confirm_all(cfg: AnalysisConfig, lab: Lab, candidates: list[Test], carriers: dict[int, list[Carrier]], generator,
                 object_attribute: str, object_of, like: dict | None = None) -> None:
    """Confirmation rounds over all candidates at once (one batched generation per round); ``carriers``: each
    class's sufficiency carriers.

    ``like`` ({test key: pairs attempted}, from ``confirm_like``): such a test goes on, futility aside, until it
    has attempted as many pairs as the other run did (its rounds use the same seeds), so the two can be paired.
    """
    like = like or {}
    kinds = ("sufficiency", "necessity", "token-shift")
    active, round_no = list(candidates), 0
    if cfg.max_images is not None:  # an image budget: the most decisive screens are confirmed first
        active.sort(key=_decisiveness, reverse=True)
    lab.stage = "confirm"
    while active:
        # fresh seeds, shared by the candidates of one kind: their common arms (carriers without a cue, one
        # class's token images) are generated once; Benjamini-Yekutieli allows the dependence
        def one(t: Test, r: int = round_no) -> Sample:
            return confirm_round(cfg, lab, t, carriers[t.cls.index], generator, object_attribute, object_of(t.cls),
                                 seeds_from=cfg.seed + 100_000 * (1 + kinds.index(t.kind)) + 1000 * r)

        if cfg.max_images is not None:
            active = _within_budget(cfg, lab, active, one)
            if not active:
                break
        samples = lab.batched(lambda: [one(t) for t in active])
        still = []
        for test, sample in zip(active, samples):
            test.confirm = sample if test.confirm is None else test.confirm + sample
            behind = sample.attempted > 0 and test.confirm.attempted < min(like.get(test.key, 0),
                                                                           cfg.max_pairs + cfg.confirm_round)
            if behind or not confirmed_enough(cfg, test.confirm, test.kind in cfg.thresholds.two_sided_kinds,
                                              test.failure):
                still.append(test)
            elif test.key not in like and confirm_with_name(test):
                still.append(test)  # the token lost the class: fresh rounds with its name (not for a test confirmed
                # like another run's: it goes on as that run's pairs went; `probe compare` pairs no token's images
                # with a name's)
        active, round_no = still, round_no + 1


def _decisiveness(test: Test) -> float:
    """How decisive a test's screen was: |mean| / standard error of its paired values (the budget's order)."""
    values = test.screen.values()
    if values.size == 0:
        return 0.0
    mean = abs(float(values.mean()))
    se = float(values.std(ddof=1)) / math.sqrt(values.size) if values.size > 1 else math.inf
    return mean / se if se > 0 else (math.inf if mean > 0 else 0.0)


def _within_budget(cfg: AnalysisConfig, lab: Lab, active: list[Test], one) -> list[Test]:
    """The longest prefix of ``active`` (most decisive first) whose next round fits in what is left of
    ``cfg.max_images``; each test after it is marked in ``extra["budget"]``: never confirmed, or stopped after
    the pairs it has. Shared arms are counted once, as the lab generates them, and an image drawn at more sampling
    steps counts as many images of the run's steps as it costs (``Lab.cost``)."""
    left = cfg.max_images - lab.budget_spent
    new: set = set()
    spent = 0.0  # lab.cost(new), kept as it grows
    for i, test in enumerate(active):
        more = set(lab.pending(lambda: one(test))) - new
        if spent + lab.cost(more) > left:
            for cut in active[i:]:
                cut.extra["budget"] = ("not confirmed: the image budget ended confirmation" if cut.confirm is None else
                                       f"confirmation stopped by the image budget after {cut.confirm.attempted} pairs")
            return active[:i]
        new |= more
        spent += lab.cost(more)
    return active


def _attention_maps_saved(cls: ClassRun) -> int:
    folder = cls.dir / "cross_attention"
    return sum(1 for _ in folder.glob("*.npy")) if folder.is_dir() else 0


def _like_run(cfg: AnalysisConfig, labels: list[str] | None):
    """``confirm_like``: the other run's analysis summary, read once and checked: it must hold per-pair data, share
    this analysis's pairing settings (its seeds must be these, or the extra pairs could never be paired) and audit
    the same classes. Its confirmed tests, counters and per-class steps are then this run's.

    ``labels`` None: the classes are not known yet (``probe audit``'s preflight, before the classifier loads, runs
    this same check for the rest; the analysis runs it again with the labels)."""
    other = RunDir(cfg.confirm_like)
    analysis = other.read_analysis_summary() if other.root.is_dir() else None
    if analysis is None or analysis.pairs is None:
        raise AnalysisError(f"confirm_like={cfg.confirm_like!r} has no per-pair data in analysis.json (not a run, or "
                            "analysed before probe kept pairs); re-run `probe audit` on it first")
    theirs = analysis.config or {}
    for name in PAIRING_FIELDS:
        mine = cfg.to_dict()[name]
        if (list(mine) if isinstance(mine, tuple) else mine) != theirs.get(name, mine):
            raise AnalysisError(f"confirm_like={cfg.confirm_like!r} was analysed with {name}={theirs.get(name)!r}, "
                                f"this analysis uses {mine!r}; use the same analysis settings or drop confirm_like")
    if labels is not None and (other.read_labels() or labels) != labels:
        raise AnalysisError(f"confirm_like={cfg.confirm_like!r} has other class labels; it must audit the same classes")
    return analysis


def _confirmed_in(analysis) -> dict[tuple, int]:
    """The tests the ``confirm_like`` run confirmed, {(kind, class index, cue): pairs it attempted}."""
    return {e.key: int(e.confirm.attempted or 0) for e in analysis.pairs if e.confirm is not None}


def _steps_like(analysis, lab: Lab, classes: list[ClassRun]) -> dict[str, int]:
    """``confirm_like``: each class's token prompts at the sampling steps the other run drew them with after its
    screens (analysis.json ``classes[i].sampling_steps``, recorded by :func:`probe.analysis.screening.more_steps`),
    in place of this run's own choice. Returns {class name: steps} of the classes moved."""
    from probe.analysis.screening import token_text

    theirs = analysis.classes if isinstance(analysis.classes, dict) else {}
    moved = {}
    for cls in classes:
        text = token_text(cls)
        info = theirs.get(str(cls.index))
        steps = info.get("sampling_steps") if isinstance(info, dict) else None
        if not text:
            continue
        if isinstance(steps, int) and not isinstance(steps, bool) and steps > 0:
            lab.more_steps[text] = steps
            moved[cls.name] = steps
        else:
            lab.more_steps.pop(text, None)
    return moved


def _suspects_like(analysis, cues: list[Cue], classes: list[ClassRun], labels: list[str],
                   own: dict[int, set[str]] | None = None) -> dict[int, set[str]]:
    """``confirm_like``: the counters the other run's counter rule dropped, per class, as this run's: a necessity test
    is then drawn against the same counter images at the same pair keys (each run's own rule, on its own classifier,
    drops different counters, and `probe compare` paired images of other counters). Read by class index
    (``AnalysisSummary.dropped_for``); a class whose counters the other run cannot say (an older analysis.json keyed
    them by class name, which two classes share) keeps this run's own (``own``): compare pairs none of its necessity
    tests either way."""
    from probe.run.format import template_phrase

    out: dict[int, set[str]] = {}
    for cls in classes:
        name = labels[cls.index] if cls.index < len(labels) else str(cls.index)  # an older analysis's key for it
        dropped = analysis.dropped_for(cls.index, name, labels)
        if dropped is None:
            out[cls.index] = set((own or {}).get(cls.index, ()))
            continue
        out[cls.index] = {t for cue in cues for t in cue.counters if template_phrase(t) in dropped}
    return out


def _corroborable(candidates: list[Test], tests: list[Test], added: list[Test]) -> list[Test]:
    """``candidates`` less the token shifts that could not pass: a token shift passes only when its cue's *confirmed*
    sufficiency pairs corroborate it (``probe.analysis.decide._corroborate``), so one whose cue has a sufficiency
    test that is not being confirmed would spend its images for a weak verdict (10 of the 13 token shifts confirmed in
    26 audits at ``probe audit``'s defaults, 232 pairs). A cue with no sufficiency test keeps its token shift."""
    screened = {(t.cls.index, t.cue.name) for t in tests if t.kind == "sufficiency"}
    confirmed = {(t.cls.index, t.cue.name) for t in [*candidates, *added] if t.kind == "sufficiency"}
    return [t for t in candidates if t.kind != "token-shift" or (t.cls.index, t.cue.name) not in screened - confirmed]


def _candidate(cfg: AnalysisConfig, test: Test, sufficiency_screens: dict | None = None) -> bool:
    """Worth confirming: the screened effect reaches the threshold in the claimed direction, or, after every round
    of adaptive screening, still reaches the weak bar.

    A token shift also needs at least two more pairs changed one way than the other (one flipped image of
    six is no signal), and a classifier that responds to the cue the same way in the sufficiency screen:
    without that it could not pass (see ``probe.analysis.decide._corroborate``), so confirming it would only spend images
    (nor when that sufficiency test is not confirmed: :func:`_corroborable`).
    """
    s = test.screen
    if s.n == 0 or test.inconclusive(s):
        return False
    size = abs(s.mean) if test.kind in cfg.thresholds.two_sided_kinds else s.mean
    exhausted = cfg.screen_extend and test.extra.get("screen_rounds") == len(cfg.screen_extend)
    if exhausted and size >= cfg.thresholds.weak_effect:
        return True  # adaptive screening spent every round and the screen is still above the weak bar: let fresh pairs decide
    if not size >= cfg.thresholds.min_effect:
        return False
    if test.kind == "token-shift":
        if abs(int(s.after.sum()) - int(s.before.sum())) < 2:
            return False
        response = (sufficiency_screens or {}).get((test.cls.index, test.cue.name))
        if response is not None and response.n and not (np.sign(response.mean) == np.sign(s.mean)
                                                        and abs(response.mean) >= cfg.thresholds.weak_effect):
            return False
    return True
