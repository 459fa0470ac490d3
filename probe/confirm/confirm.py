"""``confirm_run(run_dir, val_data, ...)``: does each finding of a run hold on the user's own labelled images?

A finding says, from generated images, that the classifier leans on a cue for a class ("P(star) drops by 0.31 when
the grass is replaced"). Its real-data analogue is a slice comparison: the class's own images that show the cue
against those that show its counters (the values the intervention swapped in), and the other classes' images with
the cue against those with its counters. Cue presence on a real image is read by the run's kind of check: the
shapes world's oracles (``probe.domains``) for a world run, else the concept model the caller names (``--concepts``;
a concept model is never taken from the run directory). Every image is read once and classified once, in batches,
through the classifier's own preprocessing (its data config: resize, crop, normalisation).

Verdicts (``probe.run.confirmation``): *confirmed on your data* (a significant gap of the finding's sign whose mean
P(class) gap reaches the analysis' pass bar, as the audit's own estimate must), *seen in your data, weaker than the
audit's bar* (significant, but its mean P(class) gap falls short of that bar), *not seen in your data* (slices too small or the gap undecided: a power
calculation says about how many images per slice would decide), *contradicted* (the data rule out a gap of
``negligible`` or more in the finding's direction). The result is written to the run as
confirmation.json (and the example thumbnails under confirmation/), never outside it.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from probe.confirm import stats
from probe.valdata import Unreadable, ValData, read_val_data
from probe.auditing.config import AuditConfig
from probe.errors import ProbeError
from probe.files import linked_folder
from probe.run import CONFIRMATION_DIR, RunDir
from probe.run.confirmation import (ClassConfirmation, Comparison, Confirmation, Example, FindingConfirmation, Slice,
                                    untestable_on_data)
from probe.run.records import PAIR_KINDS
from probe.run.summary import pass_bar

__all__ = ["ConfirmConfig", "ConfirmError", "confirm_run", "ClassifierSource"]

OWN_KINDS = ("necessity", "token-shift")  # decided on the class's own images; sufficiency on the other classes'


class ConfirmError(ProbeError):
    """A run cannot be confirmed: no findings, no way to read cue presence, or a classifier that does not fit."""


@dataclass(frozen=True)
class ConfirmConfig:
    """How findings are decided on real data.

    ``alpha``: the test's level (two-sided Fisher exact) and 1 - the intervals' coverage; ``negligible``: a gap the
    data must rule out, in the finding's direction, to contradict it; ``min_slice``: fewer images than this in a
    slice decide nothing (1: any slice may, as the exact test allows; no verdict rests on one image either way);
    ``examples``: real images kept per slice for the report; ``batch_size``: images per classifier and check call;
    ``power``: of the "how many images would decide" calculation.
    """

    alpha: float = 0.05
    negligible: float = 0.05
    min_slice: int = 1
    examples: int = 4
    batch_size: int = 64
    power: float = 0.8

    def __post_init__(self):
        if not 0 < self.alpha < 0.5:
            raise ConfirmError(f"alpha={self.alpha} must be in (0, 0.5), e.g. 0.05")
        if not 0 < self.negligible < 1:
            raise ConfirmError(f"negligible={self.negligible} must be in (0, 1), e.g. 0.05")
        if self.min_slice < 1:
            raise ConfirmError(f"--min-slice {self.min_slice}: a slice needs at least 1 image to decide anything; "
                               "pass 1 (the default) or more")
        if self.examples < 0 or self.batch_size < 1:
            raise ConfirmError(f"examples={self.examples}, batch_size={self.batch_size}: need examples >= 0 and "
                               "batch_size >= 1")
        if not 0.5 <= self.power < 1:
            raise ConfirmError(f"power={self.power} must be in [0.5, 1), e.g. 0.8")

    def to_dict(self) -> dict:
        return {"alpha": self.alpha, "negligible": self.negligible, "min_slice": self.min_slice, "power": self.power}


@dataclass(frozen=True)
class ClassifierSource:
    """The classifier named on the command line (``--model``, ``--arch``, ``--trust-pickle``, ``--device``); a model
    None means the run's own (config.json's, loaded only when that cannot run code: never a factory, never a
    pickle without ``trust_pickle``, which comes from here only)."""

    model: str | None = None
    arch: str | None = None
    trust_pickle: bool = False
    device: str = "auto"


@dataclass
class _Image:
    item: Any
    label: int
    predicted: int
    prob_label: float
    probs: Any  # the classifier's probabilities over the classes (numpy)
    reading: dict  # {attribute: value read}
    multi_label: bool = False  # the classifier scores each class with its own sigmoid

    def calls(self, target: int) -> bool:
        """Whether the classifier calls this image ``target`` (probe.classifiers.classifier.called, on its one row)."""
        from probe.classifiers.classifier import called

        return bool(called(self, self.probs[None], target)[0])


# ------------------------------------------------------------------------------------------ the verb
def confirm_run(run_dir: str | Path, val_data: Any, *, classifier=None, source: ClassifierSource | None = None,
                concepts: str | None = "auto", check=None, config: ConfirmConfig | None = None,
                progress: Callable[[str], None] | None = None) -> Confirmation:
    """Check every cue finding of ``run_dir`` on ``val_data`` (see :func:`probe.valdata.read_val_data`) and write
    confirmation.json into the run. ``classifier``: a loaded one (the notebook, ``probe audit``), else loaded from
    ``source``. ``concepts``: "auto" (the oracles of the run's domain, when the run was checked by them) or a CLIP /
    SigLIP hub id or folder; ``check``: a ready check object (``read(images01) -> [{attribute: value}]``)."""
    config = config or ConfirmConfig()
    say = progress or (lambda _line: None)
    started = time.perf_counter()

    # 1. the run: its labels, its cue findings, what its analysis knew of the cues (read only, checked by RunDir)
    run = RunDir(run_dir)
    run.require_config(ConfirmError)
    labels = run.read_labels() or []
    findings = run.require_findings(ConfirmError, "finish the audit's analysis first, then confirm it")
    if not labels:
        raise ConfirmError(f"{str(run_dir)!r} has no labels.json; re-run `probe audit` into it")
    analysis = run.read_analysis_summary()
    testable, not_tested = _testable(findings)
    examples = run.path(CONFIRMATION_DIR)  # the thumbnails' folder: a link there would take them out of the run
    linked = linked_folder(examples) if os.path.lexists(examples) else None
    if linked is not None or run.inside(examples) is None:
        linked = linked or examples
        raise ConfirmError(f"{str(linked)!r} is a link to {os.path.realpath(linked)!r}; confirmation thumbnails are "
                           "written only into real folders inside the run: remove the link")

    # 2. the data, checked against the run's labels before any model loads
    data = val_data if isinstance(val_data, ValData) else read_val_data(val_data, labels)

    # 3. who reads cue presence: the caller's check, the run's domain oracles, or the named concept model
    check, checked_by = (check, getattr(check, "name", type(check).__name__)) if check is not None else \
        _load_check(analysis, concepts, labels, testable)

    # 4. the classifier, through its own preprocessing; it must have the run's classes
    if classifier is None:
        classifier = _load_classifier(run, source or ClassifierSource(), labels)
    if int(getattr(classifier, "num_classes", len(labels))) != len(labels):
        raise ConfirmError(f"the classifier has {classifier.num_classes} classes but the run {len(labels)}; pass the "
                           "run's classifier with --model")

    # 5. every image once: decode (skip and count what does not decode), classify, read the cues
    say(f"confirm: reading {len(data)} images")
    images, skipped = _read_all(data, classifier, check, config.batch_size, say=say)
    if not images:
        raise ConfirmError(f"none of the {len(data)} images of {data.root!r} decoded ({len(skipped)} skipped, e.g. "
                           f"{skipped[0][0]!r}: {skipped[0][1]}); check the files")

    # 6. per finding: the slices, the comparisons, the verdict, a few example images
    run_examples = run.path(CONFIRMATION_DIR)
    if run_examples.is_dir():
        shutil.rmtree(run_examples)  # last confirmation's thumbnails: the new record names its own
    results = []
    for k, finding in enumerate(testable):
        results.append(_confirm_finding(k, finding, images, labels, data, config, run, not_tested,
                                        _neutral_counters(finding, analysis, testable)))
    bar = pass_bar(analysis.to_dict() if analysis is not None else None)
    results = _decide([r for r in results if r is not None], config, labels, bar)

    # 7. per class, and the record
    classes = _per_class(images, labels, results)
    record = Confirmation(
        data={**data.describe(), "used": len(images), "skipped": len(skipped),
              "skipped_names": [f"{name}: {why}" for name, why in skipped[:10]],
              "seconds": round(time.perf_counter() - started, 2)},
        checked_by=checked_by, classifier=str(getattr(classifier, "name", type(classifier).__name__)),
        settings={**config.to_dict(), "bar": bar}, findings=tuple(results), classes=tuple(classes), not_tested=tuple(not_tested),
        created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    run.write_confirmation(record)
    return run.read_confirmation()  # what the run holds (numbers as stored); the caller prints its headline once


def confirm_audit(result, val_data: Any, *, classifier=None, source: ClassifierSource | None = None,
                  concepts: str | None = "auto", progress: Callable[[str], None] | None = None) -> Confirmation | None:
    """The confirmation that ends an audit given validation data (``probe audit --val-data``, ``Audit.run(val_data=)``):
    ``confirm_run`` on ``result``'s run, then its report rendered again with the real-data numbers. None when the
    audit left nothing analysed to confirm (interrupted, a class failed, the analysis failed: the audit says why)."""
    from probe.report import render_report

    if result.interrupted or result.failed or result.problems or not RunDir(result.run_dir).has_findings():
        return None
    record = confirm_run(result.run_dir, val_data, classifier=classifier, source=source, concepts=concepts,
                         progress=progress)
    if result.report is not None:
        result.report = render_report(result.run_dir)
    return record


# ------------------------------------------------------------------------------------------ steps
def _testable(findings) -> tuple[list, list[str]]:
    """Cue findings with an attribute and value (what a check can read on a real image), and why the rest are not."""
    out, not_tested = [], []
    for f in findings:
        why = untestable_on_data(f.kind, f.details)
        if why is None:
            out.append(f)
        else:
            not_tested.append(f"{f.class_name} {f.kind}{'' if f.kind not in PAIR_KINDS else f' {f.cue!r}'}: {why}")
    return out, not_tested


def _load_check(analysis, concepts: str | None, labels: list[str], findings) -> tuple[Any, str]:
    """The run's domain oracles ("auto"), else the concept model ``concepts`` names over the run's cues; a finding's
    cue the list lacks (a damaged list) is still read: its own attribute, value and counters."""
    from probe.analysis.checks import check_for_run
    from probe.analysis.cues import Cue

    own = []
    for f in findings:
        d = f.details
        if d.get("attribute") is not None and d.get("value") is not None:
            counters = [str(v) for v in d.get("counter_values") or []]
            own.append(Cue(name=str(f.cue), template="{} " + f"with {d['value']}", attribute=str(d["attribute"]),
                           value=str(d["value"]), counters=tuple("{} " + f"with {v}" for v in counters),
                           counter_values=tuple(counters)))
    return check_for_run(analysis, concepts or "auto", labels, own, error=ConfirmError,
                         none_means="reads no cue on your images", unchecked="nothing reads its cues on your images")


def _load_classifier(run: RunDir, source: ClassifierSource, labels: list[str]):
    """The classifier as the audit loaded it: the command line's --model, else the run's own when that runs no code;
    the run's inert data-config settings (input size, mean, std, crop, interpolation) and labels."""
    from probe.classifiers import load_classifier
    from probe.generate import _inert_model_spec

    saved = run.read_run_config()
    settings = AuditConfig.saved(saved) if saved is not None else None  # the audit's AuditConfig, typed
    model = source.model or _inert_model_spec(saved.source("model") if saved is not None else None)
    if not model:
        raise ConfirmError("the run's config.json names no classifier; pass it with --model")
    # the audit's data-config settings hold for its own classifier, however --model spells it now
    same = source.model is None or (saved is not None and saved.names_same("model", source.model))
    pick = lambda key: getattr(settings, key) if same else None  # noqa: E731
    try:
        return load_classifier(model, arch=source.arch or pick("arch"), labels=labels, trust_pickle=source.trust_pickle,
                               input_size=pick("input_size"), mean=pick("mean"), std=pick("std"),
                               crop_pct=pick("crop_pct"), interpolation=pick("interpolation"), device=source.device,
                               multi_label=bool(settings is not None and settings.multi_label))
    except ProbeError as error:
        if source.model is None:
            raise ConfirmError(f"the run's classifier {model!r} could not be loaded ({error}); pass it with --model") from error
        raise


#: decoded pixels held at once before they are classified (about 200 MB as float32): a folder of 12-megapixel photos
#: is read a few images at a time, a folder of thumbnails ``batch_size`` at a time
PIXELS_IN_FLIGHT = 64 * 512 * 512


def _read_all(data: ValData, classifier, check, batch_size: int, pixels: int | None = None,
              say: Callable[[str], None] | None = None, every_s: float = 15.0) -> tuple[list[_Image], list[tuple[str, str]]]:
    """Decode, classify (one forward per batch and image size) and read every image once. The images waiting for
    their batch hold at most ``batch_size`` images and ``pixels`` pixels (default :data:`PIXELS_IN_FLIGHT`; one image
    larger than that goes alone), so memory does not grow with the photos' size. ``say`` hears how far it got every
    ``every_s`` seconds (a validation set of 50,000 photos read by a concept model takes a while)."""
    import torch

    from probe.classifiers.classifier import probabilities

    last = time.perf_counter()

    def report() -> None:
        nonlocal last
        if say is not None and time.perf_counter() - last >= every_s:
            last = time.perf_counter()
            say(f"confirm: {len(images) + len(skipped):,} of {len(data):,} images read"
                + (f" ({len(skipped)} skipped)" if skipped else ""))

    pixels = PIXELS_IN_FLIGHT if pixels is None else pixels
    images: list[_Image] = []
    skipped: list[tuple[str, str]] = []
    device = getattr(classifier, "device", torch.device("cpu"))
    multi_label = bool(getattr(classifier, "multi_label", False))
    groups: dict[tuple, list] = {}

    def flush() -> None:
        for members in groups.values():
            batch = torch.stack([t for _, t in members])
            with torch.no_grad():
                probs = probabilities(classifier, classifier(batch.to(device))).cpu().numpy()
            readings = check.read(batch)
            for (item, _), p, reading in zip(members, probs, readings):
                images.append(_Image(item, item.class_index, int(p.argmax()), float(p[item.class_index]), p,
                                     {a: str(v) for a, v in dict(reading).items()}, multi_label))
        groups.clear()
        report()

    held, count = 0, 0
    for item in data.items:
        try:
            tensor = data.load(item)
        except Unreadable as why:
            skipped.append((item.name, str(why)))
            continue
        size = int(tensor.shape[-1]) * int(tensor.shape[-2])
        if count and (count >= batch_size or held + size > pixels):
            flush()
            held, count = 0, 0
        groups.setdefault(tuple(tensor.shape), []).append((item, tensor))
        held, count = held + size, count + 1
    flush()
    return images, skipped


def _slice(members: list[_Image], target: int, own: bool, kept: int, run: RunDir, data: ValData, folder: str,
           tag: str, labels: list[str]) -> Slice:
    """One slice: its hits (own: classified as their class; others: called ``target``), mean P(target), examples."""
    if not members:
        return Slice(0, 0)
    hits = [im.calls(target) for im in members]
    probs = [float(im.probs[target]) for im in members]
    # the informative ones first: own images the classifier missed, other classes' images it called the class
    order = sorted(range(len(members)), key=lambda i: (hits[i] if own else not hits[i], i))
    examples = []
    for i in order[:kept]:
        im = members[i]
        path = _thumbnail(run, data, im, folder, f"{tag}-{len(examples)}.png")
        if path is not None:
            examples.append(Example(path, im.item.name, labels[im.label], labels[im.predicted], probs[i]))
    return Slice(len(members), sum(hits), sum(probs) / len(probs), tuple(examples))


def _thumbnail(run: RunDir, data: ValData, image: _Image, folder: str, name: str) -> str | None:
    """A downscaled copy of the user's image inside the run (confirmation/<folder>/<name>), as a run-relative path."""
    from probe.files import save_png

    try:
        tensor = data.load(image.item)
    except Unreadable:
        return None
    import torch.nn.functional as F

    h, w = tensor.shape[-2:]
    scale = 128 / max(h, w)
    if scale < 1:
        tensor = F.interpolate(tensor[None], size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="bilinear",
                               antialias=True, align_corners=False)[0].clamp(0, 1)
    target = run.path(CONFIRMATION_DIR, folder, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_png(target, tensor)
    return run.rel(target)


def _compare(measure: str, cue: Slice, counter: Slice, cue_members, counter_members, target: int,
             confidence: float) -> Comparison:
    """The two slices compared: the gap in the measure with its Newcombe interval and Fisher's exact p, and the gap in
    mean P(class) with Welch's interval; both intervals at ``confidence`` (1 - ``ConfirmConfig.alpha``)."""
    if not cue.n or not counter.n:
        return Comparison(measure, cue, counter)
    gap, low, high = stats.newcombe(cue.hits, cue.n, counter.hits, counter.n, confidence)
    p = stats.fisher_exact(cue.hits, cue.n, counter.hits, counter.n)
    pg, pl, ph = stats.mean_difference([float(m.probs[target]) for m in cue_members],
                                       [float(m.probs[target]) for m in counter_members], confidence)
    finite = lambda v: None if v is None or not math.isfinite(v) else max(-1.0, min(1.0, v))  # noqa: E731
    return Comparison(measure, cue, counter, gap, low, high, p, finite(pg), finite(pl), finite(ph))


def _bare(members: list[_Image], target: int) -> Slice:
    probs = [float(im.probs[target]) for im in members]
    return Slice(len(members), sum(im.calls(target) for im in members), sum(probs) / len(probs) if probs else None)


def _without_one(measure: str, cue_members: list[_Image], counter_members: list[_Image], target: int,
                 direction: int, confidence: float) -> Comparison | None:
    """The comparison again without the smaller slice's most favourable image: the one whose outcome (then its
    P(class)) argues most for the finding's direction. A verdict that does not survive it rests on one image; None
    when the smaller slice has a single image (nothing is left to decide)."""
    cue_smaller = len(cue_members) < len(counter_members)
    members = cue_members if cue_smaller else counter_members
    if len(members) < 2 or not cue_members or not counter_members:
        return None
    sign = direction if cue_smaller else -direction  # +1: the finding says this slice's rate is the higher one
    drop = max(range(len(members)), key=lambda i: (sign * members[i].calls(target),
                                                    sign * float(members[i].probs[target])))
    rest = members[:drop] + members[drop + 1:]
    cue_left, counter_left = (rest, counter_members) if cue_smaller else (cue_members, rest)
    return _compare(measure, _bare(cue_left, target), _bare(counter_left, target), cue_left, counter_left, target,
                    confidence)


def _neutral_counters(f, analysis, findings) -> tuple[str, ...]:
    """The values ``f``'s cue is compared with on real images: its own counters (a necessity test's, after the
    counter rule); for a finding without any (a token shift, a sufficiency test), the counters a necessity test of its
    cue keeps for the class (``AnalysisSummary.kept_counters``) less the values of the class's passing findings on
    the same attribute, so the class's other cues stay out of the comparison. Without that, the demo's hearts with a
    bar were compared with the dotted hearts its classifier prefers, and "the heart avoids the bar" (a token shift of
    -0.17 that the generated necessity test puts at 0.00) read as confirmed on 6 images. Empty (every other value)
    where nothing neutral is left."""
    d = f.details
    own = tuple(str(v) for v in d.get("counter_values") or ())
    if own or analysis is None:
        return own
    attribute, value = str(d["attribute"]), str(d["value"])
    favourite = {str(g.details.get("value")) for g in findings
                 if g.class_index == f.class_index and g.passes and isinstance(g.details, dict)
                 and g.details.get("attribute") == attribute}
    return tuple(v for _, v in analysis.kept_counters(f.class_index, f.class_name, str(f.cue))
                 if v != value and v not in favourite)


def _confirm_finding(k: int, f, images: list[_Image], labels: list[str], data: ValData, config: ConfirmConfig,
                     run: RunDir, not_tested: list[str], counters: tuple[str, ...] = ()
                     ) -> tuple[FindingConfirmation, Comparison | None] | None:
    """The finding's slices and comparisons (its verdict comes later, with the others' tests), and the deciding
    comparison without its smaller slice's most favourable image (:func:`_without_one`); ``counters``: what the cue
    is compared with (:func:`_neutral_counters`; empty: every other value)."""
    from probe.files import slugify

    d = f.details
    attribute, value = str(d["attribute"]), str(d["value"])
    read = [im for im in images if attribute in im.reading]
    if not read:
        not_tested.append(f"{f.class_name} {f.kind} {f.cue!r}: the check reads no {attribute!r} on your images")
        return None
    target = f.class_index

    def shows_counter(im) -> bool:
        return im.reading[attribute] in counters if counters else im.reading[attribute] != value

    folder = f"{k}-{slugify(f.class_name)}-{slugify(f.kind)}-{slugify(f.cue)}"
    groups = {
        "own-cue": [im for im in read if im.label == target and im.reading[attribute] == value],
        "own-counter": [im for im in read if im.label == target and shows_counter(im)],
        "others-cue": [im for im in read if im.label != target and im.reading[attribute] == value],
        "others-counter": [im for im in read if im.label != target and shows_counter(im)],
    }
    kept = {"own-cue": config.examples, "own-counter": config.examples, "others-cue": config.examples,
            "others-counter": 0}
    slices = {tag: _slice(members, target, tag.startswith("own"), kept[tag], run, data, folder, tag, labels)
              for tag, members in groups.items()}
    confidence = 1.0 - config.alpha
    own = _compare("accuracy", slices["own-cue"], slices["own-counter"], groups["own-cue"], groups["own-counter"], target,
                   confidence)
    others = _compare("called the class", slices["others-cue"], slices["others-counter"], groups["others-cue"],
                      groups["others-counter"], target, confidence)
    decides = "own" if f.kind in OWN_KINDS else "others"
    decisive = own if decides == "own" else others
    effect = f.effect if math.isfinite(f.effect) else None
    direction = -1 if effect is not None and effect < 0 else 1
    without_one = _without_one(decisive.measure, groups[f"{decides}-cue"], groups[f"{decides}-counter"], target,
                               direction, confidence)
    # and without the image that argues most against it: a contradiction must not rest on one image either
    against_one = _without_one(decisive.measure, groups[f"{decides}-cue"], groups[f"{decides}-counter"], target,
                               -direction, confidence)
    finite = lambda v: v if v is not None and math.isfinite(v) else None  # noqa: E731
    return FindingConfirmation(
        class_index=target, class_name=f.class_name, kind=f.kind, cue=f.cue, attribute=attribute, value=value,
        counter_values=counters, status=f.status, passes=bool(f.passes), effect=finite(f.effect),
        ci_low=finite(f.ci_low), ci_high=finite(f.ci_high), own=own, others=others, decides=decides,
        direction=direction, verdict="not seen", reason=""), (without_one, against_one)  # decided in _decide


def _decide(tested: list[tuple[FindingConfirmation, Comparison | None]], config: ConfirmConfig, labels: list[str],
            bar: float) -> list[FindingConfirmation]:
    """The verdicts: each deciding p adjusted (Benjamini-Hochberg) within its family (the passing findings, the rest),
    among the tests whose slices are large enough to decide; ``bar``: the analysis' pass bar, which a real gap in mean
    P(class) must reach to confirm a finding."""
    from probe.analysis.stats import fdr

    results = [r for r, _ in tested]
    qs: dict[int, float] = {}
    for family in (True, False):
        members = [i for i, r in enumerate(results) if r.passes is family and r.decisive.p is not None
                   and min(r.decisive.cue.n, r.decisive.counter.n) >= config.min_slice]
        if members:
            q, _ = fdr([results[i].decisive.p for i in members], q=config.alpha, method="bh")
            qs.update({i: float(v) for i, v in zip(members, q)})
    out = []
    for i, (r, (without_one, against_one)) in enumerate(tested):
        verdict, reason, needed = _verdict(r, qs.get(i), config, labels[r.class_index], bar, without_one, against_one)
        out.append(replace(r, verdict=verdict, reason=reason, images_to_decide=needed, q=qs.get(i)))
    return out


GRADES = ("not seen", "weaker", "confirmed")  # what a gap of the finding's sign can earn, lowest first


def _grade(c: Comparison, direction: int, q: float | None, alpha: float, bar: float) -> str:
    """"confirmed", "weaker" or "not seen" for one comparison: significant (its interval clear of 0 on the finding's
    side and ``q`` < alpha), then its mean P(class) gap at or beyond ``bar``."""
    if c.low is None or c.high is None or q is None:
        return "not seen"
    toward_low = c.low if direction > 0 else -c.high  # the interval's end nearest no effect, in the finding's direction
    if not (toward_low > 0 and q < alpha):
        return "not seen"
    strength = None if c.prob_gap is None else direction * c.prob_gap
    return "weaker" if strength is not None and strength < bar else "confirmed"


def _verdict(f: FindingConfirmation, q: float | None, config: ConfirmConfig, name: str, bar: float,
             without_one: Comparison | None = None, against_one: Comparison | None = None) -> tuple[str, str, int | None]:
    """(verdict, the reason in one line, images per slice that would decide or None).

    The audit's own rule on the real data: a finding passes when its effect is significant and its point estimate
    reaches ``bar``; a real gap confirms it when it is significant and its mean P(class) gap, in the finding's
    direction, reaches ``bar`` too. A significant gap below ``bar`` is "weaker" (the data show the cue matters, less
    than a finding must), not "confirmed": small real preferences, which every classifier has, are not confirmations.
    Fisher's test and the intervals are exact at any slice size, so a small slice decides when its images do (4 of 4
    triangles without sand missed against 496 of 496 with it); but no verdict rests on one image: the gap must earn
    the same verdict, at the test's level, with the smaller slice's most favourable image left out
    (``without_one``)."""
    from probe.run import format as fmt

    c, direction, attribute, value, counters = f.decisive, f.direction, f.attribute, f.value, f.counter_values

    whose = f"{name!r} images" if c.measure == "accuracy" else f"other classes' images called {name!r}"
    without = "/".join(counters) if counters else f"another {attribute}"
    numbers = (f"{whose}: {fmt.number(c.cue.rate)} with {value} (n={c.cue.n}) vs {fmt.number(c.counter.rate)} with "
               f"{without} (n={c.counter.n})")
    size = max(abs(f.effect) if f.effect is not None else 0.0, 2 * config.negligible)
    # the hypothesis: the cue slice's rate differs from the counter slice's by the generated effect, in its direction;
    # the larger slice's rate anchors it
    if c.counter.n and c.counter.n >= c.cue.n:
        p_cue = min(0.99, max(0.01, c.counter.rate + direction * size))
    else:
        p_cue = c.cue.rate if c.cue.n else 0.5
    needed = stats.images_to_decide(p_cue, direction * size, alpha=config.alpha, power=config.power)
    smaller = min(c.cue.n, c.counter.n)
    if smaller < config.min_slice:
        needed = max(needed, config.min_slice, smaller + 1)  # never fewer than the rule needs, nor than it has
        floor = f" (at least {config.min_slice} per slice)" if config.min_slice > 1 else ""
        return ("not seen", f"{numbers}: too few images to decide{floor}; about {needed} per slice would decide a gap "
                f"of {size:.2f}{_goes_with(f)}", needed)
    gap_text = f"gap {fmt.effect(c.gap)} [{fmt.interval(c.low, c.high)}], Fisher p={fmt.pq(c.p)}, q={fmt.pq(q)}"
    grade = _grade(c, direction, q, config.alpha, bar)
    if grade != "not seen":
        held = "not seen" if without_one is None else _grade(without_one, direction, without_one.p, config.alpha, bar)
        if GRADES.index(held) < GRADES.index(grade):
            needed = max(needed, smaller + 1)
            one = (f"without its most favourable image: gap {fmt.effect(without_one.gap)}, p={fmt.pq(without_one.p)}, "
                   f"mean P({name}) gap {fmt.effect(without_one.prob_gap)}" if without_one is not None
                   else "its smaller slice is one image")
            if held == "not seen":
                return ("not seen", f"{numbers}: {gap_text}, but one image decides it ({one}); about {needed} images "
                        f"per slice would decide a gap of {size:.2f}{_goes_with(f)}", needed)
            return ("weaker", f"{numbers}: {gap_text}; mean P({name}) gap {fmt.effect(c.prob_gap)} "
                    f"[{fmt.interval(c.prob_low, c.prob_high)}] reaches the audit's bar of {bar:g} only with one image "
                    f"({one})", None)
    if grade == "weaker":
        return ("weaker", f"{numbers}: {gap_text}; mean P({name}) gap {fmt.effect(c.prob_gap)} "
                f"[{fmt.interval(c.prob_low, c.prob_high)}] is below the audit's bar of {bar:g}", None)
    if grade == "confirmed":
        return "confirmed", f"{numbers}: {gap_text}", None
    toward_high = c.high if direction > 0 else -c.low
    if toward_high < config.negligible:
        # the same rule as above, the other way: a contradiction that its smaller slice's least favourable image
        # alone makes (a slice of one missed image against 496 hits) is not one
        held = None if against_one is None or against_one.low is None or against_one.high is None else \
            (against_one.high if direction > 0 else -against_one.low)
        if held is None or held >= config.negligible:
            needed = max(needed, smaller + 1)
            one = "its smaller slice is one image" if against_one is None else \
                f"without its least favourable image: gap {fmt.effect(against_one.gap)}, p={fmt.pq(against_one.p)}"
            return ("not seen", f"{numbers}: {gap_text}, but one image decides it ({one}); about {needed} images per "
                    f"slice would decide a gap of {size:.2f}{_goes_with(f)}", needed)
        return ("contradicted", f"{numbers}: {gap_text} rules out a gap of {config.negligible:.2f} or more in the "
                f"finding's direction", None)
    # the slices already hold what the power calculation asks for a gap of the generated size: the data show a
    # smaller one, and only more images than they hold can decide it
    needed = max(needed, smaller + 1)
    return ("not seen", f"{numbers}: {gap_text} is undecided; more than the {smaller} images its smaller slice holds "
            f"(about {needed} per slice) would decide a gap of {size:.2f}{_goes_with(f)}", needed)


def _goes_with(f: FindingConfirmation) -> str:
    """The data's own bias (:meth:`FindingConfirmation.data_bias`) as a clause of a "not seen" reason, else ""."""
    bias = f.data_bias()
    return "" if bias is None else f"; your data carry the bias: {bias} (a training set drawn like them teaches it)"


def _per_class(images: list[_Image], labels: list[str], results: list[FindingConfirmation]) -> list[ClassConfirmation]:
    out = []
    for index in sorted({im.label for im in images} | {r.class_index for r in results}):
        own = [im for im in images if im.label == index]
        mine = [r for r in results if r.class_index == index]

        def named(verdict: str) -> tuple[str, ...]:
            return tuple(f"{r.cue} ({r.kind})" for r in mine if r.verdict == verdict)

        out.append(ClassConfirmation(index, labels[index], len(own),
                                     sum(im.calls(index) for im in own) / len(own) if own else None,
                                     named("confirmed"), named("not seen"), named("contradicted"), named("weaker")))
    return out
