"""The typed records of a run directory (docs/run-format.md): what ``RunDir`` writes and reads back.

Each record is a frozen dataclass, torch-free, with ``from_dict`` (through the one check of its kind in
``probe.run.records``: damage is a ``RunError`` naming the file and the field) and ``to_dict`` (the JSON the
run holds). ``RunDir`` writes only these (a dict given to a writer is made into its record first, so the
writer checks what it writes as the reader will) and reads them back equal.

======================  ===================================================================================
record                  file
======================  ===================================================================================
:class:`RunConfig`      config.json: the saved ``AuditConfig`` as saved (``audit``; typed by ``AuditConfig.saved``),
                        the models' descriptions, and :class:`EffectiveSettings`, what the audit ran with
:class:`ClassRecord`    classes/<i>-<slug>/metrics.json: one finished class (:class:`Scores` per prompt kind)
:class:`AnalysisSummary` analysis.json: what the analysis ran and skipped, its notes, and every cue test's
                        pairs (:class:`PairRecord`, one :class:`Stage` each for screening and confirmation)
:class:`Finding`        one row of findings.json / findings.parquet
======================  ===================================================================================

A record's optional field is None when the file does not hold it or holds null; ``nulls`` names those it held as
null, so a record is written back as it was read (a reader may tell "null" from "absent": an analysis that
predates a field says nothing either way). Fields a newer probe adds are kept in ``extra``, also written back.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from probe.errors import AnalysisError  # the error a Finding built in memory has always raised
from probe.files import file_sha256
from probe.run.format import template_phrase
from probe.run.records import (EFFECTIVE_FIELDS, FINDING_KINDS, NOT_RECORDED, STATUSES, UNCHECKED, STRENGTHS, check_analysis, check_config,
                               check_finding, check_metrics)

DROPPED_BY_INDEX = "class index"  # analysis.json ``dropped_counters_keyed_by``: its per-class keys are str(class index)

__all__ = ["AnalysisSummary", "ClassRecord", "EffectiveSettings", "EvalScores", "Finding", "PairRecord", "RunConfig",
           "Scores", "Stage"]


def _names(cls) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.name not in ("extra", "nulls"))


def _present(record, names) -> dict:
    """The fields in ``names`` that hold a value or were given as null (``record.nulls``), in order."""
    return {k: getattr(record, k) for k in names if getattr(record, k) is not None or k in record.nulls}


def _nulls(data: dict, names) -> frozenset:
    """The known fields ``data`` holds as null."""
    return frozenset(k for k in names if k in data and data[k] is None)


def _tuple(value) -> tuple | None:
    return None if value is None else tuple(value)


def _list(value) -> list | None:
    return None if value is None else list(value)


# ------------------------------------------------------------------------------------------ config.json
_LOADABLE_DTYPES = ("float32", "float16", "bfloat16")  # a generator's dtype as described, and a --dtype value


@dataclass(frozen=True)
class EffectiveSettings:
    """What the audit ran with where it decided itself: later commands (the analysis, ``probe generate``,
    ``test_cue``) sample and decode with these, so that their images are drawn as the audit's were.

    ``max_batch``: images per gradient chunk (the user's ``--max-batch`` or the one chosen from free GPU
    memory; None: the whole batch in one chunk). ``steps`` and ``guidance_scale``: the user's, or the
    generator's defaults. ``scheduler``: the ``--scheduler`` name, None for the generator's own, which is
    ``scheduler_class``. ``dtype`` and ``device``: where the generator ran ("float16", "cuda:0").
    """

    max_batch: int | None = None
    steps: int | None = None
    guidance_scale: float | None = None
    scheduler: str | None = None
    scheduler_class: str | None = None
    dtype: str | None = None
    device: str | None = None

    @classmethod
    def derive(cls, token: dict | None, generator: dict | None = None,
               gradient_chunks: dict | None = None) -> "EffectiveSettings":
        """The effective settings from the saved token settings, the generator's description and the chunk choice
        (config.json's ``audit.token``, ``generator`` and ``gradient_chunks``): the audit's own derivation, and
        how a run written before config.json held them (format 1 without ``effective``) is read."""
        token, generator, chunks = token or {}, generator or {}, gradient_chunks or {}

        def whole(value) -> int | None:
            return value if type(value) is int and value >= 1 else None

        def number(value) -> float | None:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
            return float(value) if ok else None

        def text(value) -> str | None:
            return value if isinstance(value, str) and value else None

        max_batch = whole(token.get("max_batch"))
        if max_batch is None and chunks.get("source") == "auto":
            max_batch = whole(chunks.get("max_batch"))  # chosen from free GPU memory
        steps = whole(token.get("steps")) or whole(generator.get("default_steps"))
        guidance = number(token.get("guidance_scale"))
        scheduler = text(token.get("scheduler"))
        return cls(max_batch=max_batch, steps=steps,
                   guidance_scale=guidance if guidance is not None else number(generator.get("guidance_scale")),
                   scheduler=scheduler, scheduler_class=None if scheduler else text(generator.get("scheduler")),
                   dtype=text(generator.get("dtype")), device=text(generator.get("device")))

    @classmethod
    def from_dict(cls, data: dict) -> "EffectiveSettings":
        """From config.json's checked ``effective`` object (:func:`probe.run.records.check_config`)."""
        values = {k: data.get(k) for k in EFFECTIVE_FIELDS}
        if values["guidance_scale"] is not None:
            values["guidance_scale"] = float(values["guidance_scale"])
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)

    def device_type(self) -> str | None:
        """"cuda" for "cuda:0": what decides whether the audit's dtype fits a later command's device."""
        return self.device.split(":", 1)[0] if self.device else None


@dataclass(frozen=True)
class RunConfig:
    """config.json: the run's settings as the audit saved them and what it decided itself.

    ``audit`` is the saved ``AuditConfig`` as config.json holds it (``AuditConfig.to_dict()``), read leniently;
    ``probe.auditing.config.AuditConfig.saved(run_config)`` reads it back typed (torch-free) for later commands
    (the audit's package depends on the run's, not the reverse), so that a run whose settings do
    not read back (partial, damaged, from an older probe) still opens and its report shows what the file holds.
    ``effective`` is what the audit ran with (:class:`EffectiveSettings`), read back by every later command.
    ``format_version`` is ``RunDir``'s: it writes the current one and refuses another on read.
    ``workdir`` is the working directory the audit started in: relative paths in ``audit`` are read from there by
    later commands run elsewhere (:meth:`source`); :meth:`names_same` tells whether a path typed now names the saved one.
    """

    audit: dict = field(default_factory=dict)
    effective: EffectiveSettings = field(default_factory=EffectiveSettings)
    classifier: dict | None = None
    eval_classifier: dict | None = None
    generator: dict | None = None
    gradient_chunks: dict | None = None
    classes: tuple[int, ...] | None = None
    versions: dict | None = None
    started: str | None = None
    workdir: str | None = None
    extra: dict = field(default_factory=dict)
    nulls: frozenset = field(default=frozenset(), repr=False)

    @classmethod
    def of_audit(cls, audit: dict, *, generator: dict | None = None, gradient_chunks: dict | None = None,
                 **descriptions) -> "RunConfig":
        """What an audit saves: its settings, the models' descriptions, and the effective settings derived from them
        (:meth:`EffectiveSettings.derive`, the same derivation that reads a run saved before they were)."""
        effective = EffectiveSettings.derive(audit.get("token"), generator, gradient_chunks)
        given = {"generator": generator, "gradient_chunks": gradient_chunks, **descriptions}
        return cls(audit=audit, effective=effective, nulls=_nulls(given, _names(cls)),
                   **{k: (tuple(v) if k == "classes" and v is not None else v) for k, v in given.items()})

    @classmethod
    def from_dict(cls, data: Any, path: Path | str = "config.json") -> "RunConfig":
        """config.json's object checked (``check_config``); ``effective`` derived when the run predates it."""
        data = check_config(data, path)
        known = set(_names(cls)) | {"format_version"}
        audit = data.get("audit") if isinstance(data.get("audit"), dict) else {}
        effective = data.get("effective")
        return cls(
            audit=audit,
            effective=(EffectiveSettings.from_dict(effective) if effective is not None else
                       EffectiveSettings.derive(audit.get("token"), data.get("generator"), data.get("gradient_chunks"))),
            classifier=data.get("classifier"), eval_classifier=data.get("eval_classifier"),
            generator=data.get("generator"), gradient_chunks=data.get("gradient_chunks"),
            classes=_tuple(data.get("classes")), versions=data.get("versions"), started=data.get("started"),
            workdir=data.get("workdir"), extra={k: v for k, v in data.items() if k not in known}, nulls=_nulls(data, _names(cls)))

    def to_dict(self) -> dict:
        out = {"audit": self.audit, **_present(self, ("classifier", "eval_classifier", "generator", "gradient_chunks")),
               "effective": self.effective.to_dict(), **_present(self, ("classes", "versions", "started", "workdir"))}
        if self.classes is not None:
            out["classes"] = list(self.classes)
        return {**out, **self.extra}

    def source(self, kind: str) -> str | None:
        """The audit's ``model`` or ``generator`` as a later command loads it: as saved, except a relative path that
        does not exist from this working directory but does from the one the audit started in (``workdir``), which
        is given from there (absolute): ``probe generate runs/r`` from another folder finds ``--model m.pt``. Where
        both exist and only the audit's folder holds the classifier's recorded bytes (SHA-256), that one is given."""
        value = self.audit.get(kind)
        if not isinstance(value, str) or not value or not isinstance(self.workdir, str):
            return value if isinstance(value, str) else None
        path = Path(value).expanduser()
        there = Path(self.workdir) / path
        if path.is_absolute() or not there.exists():
            return value
        if not path.exists():
            return str(there)
        # both exist: a file of the same name here may be another model; the one with the recorded bytes is the run's
        recorded = (self.classifier or {}).get("sha256") if kind == "model" else None
        if isinstance(recorded, str) and path.is_file() and not os.path.samefile(path, there) \
                and file_sha256(path) != recorded and file_sha256(there) == recorded:
            return str(there)
        return value

    def names_same(self, kind: str, given: str | None) -> bool:
        """Whether ``given`` (a ``--model`` or ``--generator`` typed now) names what the audit saved as ``kind``: the
        same text; the default generator, named or not; the same file or folder (``./m.pt``, an absolute path, or a
        path from the audit's own working directory); or, for the classifier, a file whose SHA-256 is the one the
        audit recorded (the run and its model moved to another machine)."""
        saved = self.audit.get(kind)
        if saved == given:
            return True
        if kind == "generator" and (saved is None or given is None):
            from probe.generators.registry import DEFAULT_GENERATOR

            return (saved or DEFAULT_GENERATOR) == (given or DEFAULT_GENERATOR)
        if not isinstance(saved, str) or not isinstance(given, str):
            return False
        here, there = Path(given).expanduser(), Path(self.source(kind) or saved).expanduser()
        try:
            if here.exists() and there.exists() and os.path.samefile(here, there):
                return True
        except OSError:
            pass
        recorded = (self.classifier or {}).get("sha256") if kind == "model" else None
        return isinstance(recorded, str) and here.is_file() and file_sha256(here) == recorded

    @property
    def token(self) -> dict:
        """The saved TokenConfig as its dict (``audit.token``), as the user set it."""
        token = self.audit.get("token")
        return dict(token) if isinstance(token, dict) else {}

    def token_settings(self) -> dict:
        """The saved TokenConfig with what the audit decided where the user left a setting unset (the chunk size,
        the generator's steps and guidance): the settings later commands sample with."""
        token = self.token
        for key in ("max_batch", "steps", "guidance_scale"):
            value = getattr(self.effective, key)
            if token.get(key) is None and value is not None:
                token[key] = value
        return token

    def dtype_for(self, device: str | None) -> str | None:
        """The dtype the audit's generator ran in when ``device`` is of the same type (a later command on that device
        loads it alike), else None (the device's default: half precision does not fit a CPU)."""
        kind = str(device).split(":", 1)[0] if device else None
        same = kind and kind == self.effective.device_type() and self.effective.dtype in _LOADABLE_DTYPES
        return self.effective.dtype if same else None


# ------------------------------------------------------------------------------------------ metrics.json
@dataclass(frozen=True)
class Scores:
    """One prompt kind's scores on the evaluation images: accuracy, mean probability of the class, images."""

    accuracy: float | None = None
    mean_target_prob: float | None = None
    n: int | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> "Scores | None":
        if data is None:
            return None
        number = lambda v: None if v is None else float(v)  # noqa: E731
        return cls(number(data.get("accuracy")), number(data.get("mean_target_prob")), data.get("n"))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EvalScores:
    """The held-out classifier's scores (``eval_model``)."""

    name: str | None = None
    baseline: Scores | None = None
    token: Scores | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> "EvalScores | None":
        if data is None:
            return None
        return cls(data.get("name"), Scores.from_dict(data.get("baseline")), Scores.from_dict(data.get("token")))

    def to_dict(self) -> dict:
        return {"name": self.name, "baseline": _dict_or_none(self.baseline), "token": _dict_or_none(self.token)}


def _dict_or_none(record) -> dict | None:
    return None if record is None else record.to_dict()


@dataclass(frozen=True)
class ClassRecord:
    """One finished class (metrics.json): ``status`` "done" or "failed" (then ``error``, ``traceback``), its token,
    prompts and training, the :class:`Scores` of baseline and token prompts, and one record per evaluation image
    (``images``: plain records whose ``path`` is relative to the class folder)."""

    status: str
    class_index: int
    class_name: str | None = None
    error: str | None = None
    slug: str | None = None
    token_string: str | None = None
    init_word: str | None = None
    prompts: dict | None = None
    steps: int | None = None
    best_step: int | None = None
    stopped: str | None = None
    objective: str | None = None
    token_change: dict | None = None
    seconds: float | None = None
    train_seeds: tuple[int, ...] | None = None
    eval_seeds: tuple[int, ...] | None = None
    baseline: Scores | None = None
    token: Scores | None = None
    eval_model: EvalScores | None = None
    images: tuple[dict, ...] = ()
    worker: dict | None = None
    traceback: tuple[str, ...] | None = None
    extra: dict = field(default_factory=dict)
    nulls: frozenset = field(default=frozenset(), repr=False)

    @property
    def done(self) -> bool:
        return self.status == "done"

    @classmethod
    def from_dict(cls, data: Any, path: Path | str = "metrics.json", folder_index: int | None = None) -> "ClassRecord":
        """A metrics.json object checked (``check_metrics``; ``folder_index``: the class its folder names)."""
        data = check_metrics(data, path, folder_index)
        names = _names(cls)
        plain = {k: data.get(k) for k in names if k in data}
        plain.update(
            seconds=None if data.get("seconds") is None else float(data["seconds"]),
            train_seeds=_tuple(data.get("train_seeds")), eval_seeds=_tuple(data.get("eval_seeds")),
            traceback=_tuple(data.get("traceback")), images=tuple(data.get("images") or ()),
            baseline=Scores.from_dict(data.get("baseline")), token=Scores.from_dict(data.get("token")),
            eval_model=EvalScores.from_dict(data.get("eval_model")))
        return cls(**plain, extra={k: v for k, v in data.items() if k not in names}, nulls=_nulls(data, names))

    def to_dict(self) -> dict:
        out = {}
        for name, value in _present(self, _names(type(self))).items():
            if name in ("baseline", "token", "eval_model"):
                value = _dict_or_none(value)
            elif name in ("train_seeds", "eval_seeds", "traceback", "images"):
                value = _list(value)
            out[name] = value
        return {**out, **self.extra}


# ------------------------------------------------------------------------------------------ analysis.json
@dataclass(frozen=True)
class Stage:
    """One stage (screening or confirmation) of a cue test's pairs: one value per key (a pair named by its seed and
    carrier or prompt), and the pairs attempted and excluded (an intervention that failed its check)."""

    keys: tuple[str, ...] = ()
    values: tuple[float, ...] = ()
    attempted: int | None = None
    excluded: int | None = None

    @classmethod
    def from_dict(cls, data: dict | None) -> "Stage | None":
        if data is None:
            return None
        return cls(tuple(data.get("keys", ())), tuple(float(v) for v in data.get("values", ())), data.get("attempted"),
                   data.get("excluded"))

    def to_dict(self) -> dict:
        counts = {k: getattr(self, k) for k in ("attempted", "excluded") if getattr(self, k) is not None}
        return {"keys": list(self.keys), "values": list(self.values), **counts}


@dataclass(frozen=True)
class PairRecord:
    """One cue test's per-pair data in analysis.json (``pairs``): what ``probe.compare`` pairs across runs."""

    kind: str
    class_index: int
    cue: str
    screen: Stage
    class_name: str | None = None
    confirm: Stage | None = None

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.kind, self.class_index, self.cue)

    @classmethod
    def from_dict(cls, data: dict) -> "PairRecord":  # checked as part of analysis.json (check_analysis)
        return cls(data["kind"], data["class_index"], data["cue"], Stage.from_dict(data["screen"]),
                   data.get("class_name"), Stage.from_dict(data.get("confirm")))

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "class_index": self.class_index, "class_name": self.class_name, "cue": self.cue,
               "screen": self.screen.to_dict()}
        if self.confirm is not None:
            out["confirm"] = self.confirm.to_dict()
        return out


@dataclass(frozen=True)
class AnalysisSummary:
    """analysis.json: the analysis settings (``config``), the rule in words, the cues, what ran and what was
    skipped (``attributions``: ``methods_run``, ``skipped``), the test counts, timings, notes, per-class extras
    and every cue test's pairs (None: analysed before probe kept them)."""

    config: dict | None = None
    rule: str | None = None
    cues: dict | None = None
    domain: Any = None
    concept_scorer: Any = None
    interventions_checked_by: Any = None
    stated_contexts: Any = None
    counter_rule: Any = None
    dropped_counters: Any = None
    dropped_counters_keyed_by: Any = None  # "class index" (DROPPED_BY_INDEX); absent: keyed by class name (older)
    attributions: dict | None = None
    attention_iou: Any = None
    tests: dict | None = None
    images_generated: Any = None
    images_by_stage: dict | None = None  # {stage: images}, the stages of probe.auditing.cost's plan
    budget: dict | None = None  # the image budget (AnalysisConfig.max_images) and what it ended, when there was one
    generation: dict | None = None
    timings_s: dict | None = None
    notes: tuple[str, ...] | None = None
    classes: dict | None = None
    n_findings: int | None = None
    n_passing: int | None = None
    confirm_like: dict | None = None
    pairs: tuple[PairRecord, ...] | None = None
    extra: dict = field(default_factory=dict)
    nulls: frozenset = field(default=frozenset(), repr=False)

    @property
    def methods_run(self) -> tuple[str, ...]:
        return tuple((self.attributions or {}).get("methods_run") or ())

    @property
    def checked_by(self) -> str:
        """Who checked the analysis's generated images ("world oracles", "concepts: MODEL"), or "unchecked"."""
        return str(self.interventions_checked_by) if self.interventions_checked_by else UNCHECKED

    def sampling_steps(self) -> dict[int, int]:
        """{class index: sampling steps} of the classes the analysis drew at more steps than the run's
        (``probe.analysis.screening.more_steps``); checked on reading."""
        return {int(k): int(v["sampling_steps"]) for k, v in (self.classes or {}).items()
                if isinstance(v, dict) and "sampling_steps" in v}

    def listed_cue(self, class_index: int, cue: str) -> dict:
        """The cue as the analysis tested it (its cue list, then the class's discovered cues): a dict with
        ``template``, ``counters`` and ``counter_values``; {} when neither holds it."""
        cues = self.cues if isinstance(self.cues, dict) else {}
        discovered = cues.get("discovered") if isinstance(cues.get("discovered"), dict) else {}
        for c in list(cues.get("list") or []) + list(discovered.get(str(class_index)) or []):
            if isinstance(c, dict) and (c.get("name") == cue or c.get("cue") == cue):
                return c
        return {}

    def dropped_for(self, class_index: int, class_name: str | None = None,
                    labels: list[str] | tuple[str, ...] | None = None) -> set[str] | None:
        """The counter phrases ("with a dot in the corner") the counter rule dropped for the class: values that are
        cues of the class themselves, or raise another class. analysis.json keys them by class index
        (``dropped_counters_keyed_by``: "class index"); an analysis written before that keyed them by class name,
        read by ``class_name`` as before, except where ``labels`` give that name to more than one class (ImageNet's
        two "crane"s, 134 and 517, overwrote each other there): None, the analysis cannot say which it dropped."""
        dropped = self.dropped_counters if isinstance(self.dropped_counters, dict) else {}
        if self.dropped_counters_keyed_by == DROPPED_BY_INDEX:
            return {template_phrase(str(p)) for p in dropped.get(str(class_index)) or []}
        if class_name is None or (labels is not None and sum(str(n) == class_name for n in labels) > 1):
            return None
        return {template_phrase(str(p)) for p in dropped.get(class_name) or []}

    def dropped_phrases(self, class_index: int, class_name: str) -> set[str]:
        """:meth:`dropped_for` the class, empty where the analysis cannot say."""
        return self.dropped_for(class_index, class_name) or set()

    def kept_counters(self, class_index: int, class_name: str, cue: str) -> tuple[tuple[str, str], ...]:
        """(counter template, value) of ``cue`` as a necessity test of it on the class keeps them: the listed
        counters less those the counter rule dropped for the class. A finding without counters of its own (a
        token shift, a sufficiency test) is compared with these, not with the class's favourite values (the demo's
        hearts with a bar against hearts with no tag, not against the dotted hearts the classifier prefers).
        Empty when the analysis did not list the cue or dropped every counter."""
        listed = self.listed_cue(class_index, cue)
        dropped = self.dropped_phrases(class_index, class_name)
        return tuple((str(t), str(v)) for t, v in zip(listed.get("counters") or [], listed.get("counter_values") or [])
                     if template_phrase(str(t)) not in dropped)

    def kept_counter_templates(self, class_index: int, class_name: str | None, cue: str,
                               labels: list[str] | tuple[str, ...] | None = None) -> tuple[str, ...] | None:
        """The counter templates a necessity test of ``cue`` on the class was drawn against, values recorded or not
        (a cue list without ``counter_values``, a run without a concept model): the listed counters less those the
        counter rule dropped for the class, all of them where it dropped every one and never the cue's own template
        (``probe.analysis.necessity.neutral_counters``). None where :meth:`dropped_for` cannot say; empty when the
        analysis did not list the cue."""
        listed = self.listed_cue(class_index, cue)
        counters = [str(t) for t in listed.get("counters") or []]
        dropped = self.dropped_for(class_index, class_name, labels)
        if dropped is None:
            return None if counters else ()
        suspects = {t for t in counters if template_phrase(t) in dropped and t != listed.get("template")}
        if counters and all(t in suspects for t in counters):
            return tuple(counters)
        return tuple(t for t in counters if t not in suspects)

    @property
    def methods_skipped(self) -> dict:
        """{attribution method: why it was skipped}."""
        return dict((self.attributions or {}).get("skipped") or {})

    @classmethod
    def from_dict(cls, data: Any, path: Path | str = "analysis.json") -> "AnalysisSummary":
        """analysis.json's object checked (``check_analysis``)."""
        data = check_analysis(data, path)
        names = _names(cls)
        plain = {k: data.get(k) for k in names if k in data}
        plain.update(notes=_tuple(data.get("notes")),
                     pairs=None if data.get("pairs") is None else tuple(PairRecord.from_dict(e) for e in data["pairs"]))
        return cls(**plain, extra={k: v for k, v in data.items() if k not in names}, nulls=_nulls(data, names))

    def to_dict(self) -> dict:
        out = _present(self, _names(type(self)))
        if self.notes is not None:
            out["notes"] = list(self.notes)
        if self.pairs is not None:
            out["pairs"] = [p.to_dict() for p in self.pairs]
        return {**out, **self.extra}


# ------------------------------------------------------------------------------------------ findings.json
@dataclass(frozen=True)
class Finding:
    """One quantified statement about a class, with its evidence.

    ``effect`` with its interval ``ci_low``..``ci_high`` is measured on ``n_images`` pairs (``unit``: "pairs",
    or "images" for off-object shares). ``p`` is the test's p-value and ``q`` its false-discovery-rate
    adjusted value across the audit. ``status``: "passes" (confirmed on fresh pairs: effect, q and pair
    count all meet the bars), "weak" (a real-looking effect that missed a bar), "inconclusive" (most
    interventions failed their check), "screened" (seen in the screening pass only, never confirmed),
    "unverified" (it would pass, but nothing checked that the generated images showed the object and the cue:
    ``checked_by`` is "unchecked"; it never passes).
    """

    class_index: int
    class_name: str
    cue: str
    kind: str
    effect: float
    ci_low: float
    ci_high: float
    n_images: int
    evidence: tuple[str, ...]
    passes: bool
    strength: str
    sentence: str
    details: dict = field(default_factory=dict, compare=False)
    p: float = float("nan")
    q: float = float("nan")
    status: str = "weak"
    unit: str = "pairs"
    excluded: int = 0  # pairs excluded because an intervention failed its check
    attempted: int = 0
    checked_by: str = NOT_RECORDED  # who checked the generated images: "world oracles", "concepts: MODEL", "unchecked"

    def __post_init__(self) -> None:
        if self.kind not in FINDING_KINDS:
            raise AnalysisError(f"finding kind {self.kind!r} is unknown; use one of {list(FINDING_KINDS)}.")
        if self.strength not in STRENGTHS:
            raise AnalysisError(f"finding strength {self.strength!r} must be 'strong' or 'weak'.")
        if self.status not in STATUSES:
            raise AnalysisError(f"finding status {self.status!r} must be one of {list(STATUSES)}.")
        object.__setattr__(self, "evidence", tuple(self.evidence))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["evidence"] = list(self.evidence)
        for k in ("effect", "ci_low", "ci_high", "p", "q"):
            d[k] = None if not math.isfinite(d[k]) else round(float(d[k]), 6 if k in ("effect", "ci_low", "ci_high") else 8)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Finding":
        """A finding from a plain dict (a notebook, a checked record): unknown keys are ignored, missing optional ones
        take their defaults, a missing number (null) is NaN. Records from a run's files are checked first
        (:meth:`from_record`)."""
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("effect", "ci_low", "ci_high", "p", "q"):
            d[k] = float("nan") if d.get(k) is None else float(d[k])
        d["evidence"] = tuple(d.get("evidence") or ())
        d["details"] = d.get("details") or {}
        return cls(**d)

    @classmethod
    def from_record(cls, row: Any, path: Path | str = "findings.json", index: int = 0) -> "Finding":
        """A row of findings.json/.parquet checked (``check_finding``: RunError naming the file, record and field)."""
        return cls.from_dict(check_finding(row, path, index))

    def __repr__(self) -> str:
        return f"Finding[{self.status}] {self.kind} class {self.class_index} cue {self.cue!r}: {self.sentence}"
