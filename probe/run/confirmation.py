"""confirmation.json: each finding of a run checked on the user's own labelled images (``probe confirm``).

The typed records :func:`probe.confirm.confirm_run` writes through ``RunDir.write_confirmation`` and every reader
(the report, ``open_run(...).findings``, ``probe check --confirmed-only``, the per-class summaries) reads back through
``RunDir.read_confirmation``. Torch-free. A run directory is data: every field is checked where it is read (damage is
a one-line ``RunError`` naming the file and the field), and example image paths are relative to the run and resolved
inside it by the reader.

==========================  =====================================================================================
record                      what it holds
==========================  =====================================================================================
:class:`Example`            one real image shown for a slice: its thumbnail in the run, the user's name for it
:class:`Slice`              images of one slice (class and cue presence): how many, how many hit, mean P(class)
:class:`Comparison`         the slice with the cue against the slice with its counters: the gap, its Newcombe
                            interval, Fisher's exact p, the gap in mean P(class) with Welch's t interval
:class:`FindingConfirmation` one finding: the own-class and other-class comparisons, which one decides, the verdict
:class:`ClassConfirmation`  one class: its images, accuracy, and its cues by verdict (for the plain-words summary)
:class:`Confirmation`       the file: the data, who labelled the cues, the settings, the findings and the classes
==========================  =====================================================================================
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.errors import RunError
from probe.run import format as fmt
from probe.run.records import FINDING_KINDS, PAIR_KINDS, _Bad, _bool, _dict, _error, _int, _list, _num, _str

__all__ = ["untestable_on_data", "CONFIRMATION_VERSION", "VERDICTS", "VERDICT_TEXT", "VERDICT_SHORT", "Example", "Slice", "Comparison", "FindingConfirmation",
           "ClassConfirmation", "Confirmation"]

CONFIRMATION_VERSION = 1
#: the verdicts, as stored; VERDICT_TEXT says them in words
VERDICTS = ("confirmed", "weaker", "not seen", "contradicted")
VERDICT_TEXT = {"confirmed": "confirmed on your data", "weaker": "seen in your data, weaker than the audit's bar",
                "not seen": "not seen in your data", "contradicted": "contradicted by your data"}
#: the verdicts in a few words, where "on your data" is already said (a finding's card, the class summary)
VERDICT_SHORT = {"confirmed": "confirmed", "weaker": "seen, weaker than the audit's bar", "not seen": "not seen",
                 "contradicted": "contradicted"}
#: confirmation.json's numeric settings and their ranges (each may be absent): checked on reading, since the strength
#: of a confirmation is read back against ``bar``
SETTINGS_RANGES = {"alpha": (0.0, 1.0), "negligible": (0.0, 1.0), "power": (0.0, 1.0), "bar": (0.0, 1.0)}
SIDES = ("own", "others")  # which comparison decides: the class's own images, or other classes' images
_FIX = "re-run `probe confirm RUN --val-data DATA` to rewrite it, or delete it"


def _opt_num(name: str, value: Any) -> float | None:
    return _num(name, value)


@dataclass(frozen=True)
class Example:
    """One real image of a slice: ``path`` is its thumbnail, relative to the run; ``name`` the user's name for the
    image (its path in the data, as given: untrusted text); ``predicted`` the classifier's label; ``prob`` P(class)."""

    path: str
    name: str
    label: str
    predicted: str
    prob: float

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "Example":
        d = _dict(where, d)
        return cls(_str(f"{where}.path", d.get("path")), _str(f"{where}.name", d.get("name")),
                   _str(f"{where}.label", d.get("label")), _str(f"{where}.predicted", d.get("predicted")),
                   _num(f"{where}.prob", d.get("prob"), low=0, high=1, null=False))

    def to_dict(self) -> dict:
        return {"path": self.path, "name": self.name, "label": self.label, "predicted": self.predicted,
                "prob": round(self.prob, 6)}


@dataclass(frozen=True)
class Slice:
    """Images of one slice: ``n`` of them, ``hits`` classified as the finding's class, ``mean_prob`` their mean
    P(class) (None when empty), and a few ``examples``."""

    n: int
    hits: int
    mean_prob: float | None = None
    examples: tuple[Example, ...] = ()

    def __post_init__(self):
        if not 0 <= self.hits <= self.n:
            raise RunError(f"a slice of {self.n} images cannot have {self.hits} hits; {_FIX}")

    @property
    def rate(self) -> float | None:
        return self.hits / self.n if self.n else None

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "Slice":
        d = _dict(where, d)
        n = _int(f"{where}.n", d.get("n"))
        hits = _int(f"{where}.hits", d.get("hits"), maximum=n)
        examples = tuple(Example.from_dict(e, f"{where}.examples[{i}]") for i, e in
                         enumerate(_list(f"{where}.examples", d.get("examples", []))))
        return cls(n, hits, _num(f"{where}.mean_prob", d.get("mean_prob"), low=0, high=1), examples)

    def to_dict(self) -> dict:
        return {"n": self.n, "hits": self.hits, "mean_prob": None if self.mean_prob is None else round(self.mean_prob, 6),
                "examples": [e.to_dict() for e in self.examples]}


@dataclass(frozen=True)
class Comparison:
    """The slice showing the cue against the slice showing its counters (or, without counters, any other value).

    ``gap`` = rate(cue) - rate(counter) with Newcombe's interval ``low``..``high`` (coverage 1 - the confirmation's
    ``alpha``, 95% by default) and Fisher's exact two-sided ``p``; ``prob_gap`` the same for mean P(class) with
    Welch's t interval (None when a slice has under 2 images).
    ``measure``: "accuracy" (own images: classified as their class) or "called the class" (other classes' images)."""

    measure: str
    cue: Slice
    counter: Slice
    gap: float | None = None
    low: float | None = None
    high: float | None = None
    p: float | None = None
    prob_gap: float | None = None
    prob_low: float | None = None
    prob_high: float | None = None

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "Comparison":
        d = _dict(where, d)
        nums = {k: _num(f"{where}.{k}", d.get(k), low=-1, high=1) for k in
                ("gap", "low", "high", "prob_gap", "prob_low", "prob_high")}
        return cls(_str(f"{where}.measure", d.get("measure")), Slice.from_dict(d.get("cue"), f"{where}.cue"),
                   Slice.from_dict(d.get("counter"), f"{where}.counter"),
                   p=_num(f"{where}.p", d.get("p"), low=0, high=1), **nums)

    def to_dict(self) -> dict:
        r = lambda v: None if v is None else round(float(v), 6)  # noqa: E731
        return {"measure": self.measure, "cue": self.cue.to_dict(), "counter": self.counter.to_dict(),
                "gap": r(self.gap), "low": r(self.low), "high": r(self.high),
                "p": None if self.p is None else float(f"{self.p:.6g}"), "prob_gap": r(self.prob_gap),
                "prob_low": r(self.prob_low), "prob_high": r(self.prob_high)}

    def text(self) -> str:
        """"0.98 (n=480) vs 0.45 (n=11): +0.53 [0.25, 0.70], p<0.001"."""
        def rate(s: Slice) -> str:
            return f"{fmt.number(s.rate)} (n={s.n})"

        return (f"{self.measure} with the cue {rate(self.cue)} vs without {rate(self.counter)}: {fmt.effect(self.gap)} "
                f"[{fmt.interval(self.low, self.high)}], p={fmt.pq(self.p)}")


@dataclass(frozen=True)
class FindingConfirmation:
    """One finding checked on the user's data.

    ``own``: the class's own images, accuracy with the cue vs with its counters; ``others``: the other classes'
    images, how often they are called the class with the cue vs with its counters. ``decides`` names the comparison
    that gives the verdict (necessity and token-shift: own; sufficiency: others); ``direction`` is the sign of the
    generated effect (+1: the cue helps the class). ``verdict``: "confirmed" (the real gap has the finding's sign,
    its interval excludes 0, Fisher's p < alpha, and its gap in mean P(class) reaches the audit's pass bar, as the
    audit's own point estimate must), "weaker" (a significant gap whose mean P(class) gap falls short of the bar:
    the data show the cue matters, less than a finding must), "contradicted" (the interval rules out a gap of the settings'
    ``negligible`` size in the finding's direction), "not seen" (too few images, or undecided: ``images_to_decide``
    per slice would decide, by a power calculation on the generated effect). ``q``: the deciding p adjusted for the
    findings tested alongside (Benjamini-Hochberg within the passing findings, and within the rest), which a
    confirmation must also bring below alpha. ``reason``: the verdict in one line."""

    class_index: int
    class_name: str
    kind: str
    cue: str
    attribute: str
    value: str
    counter_values: tuple[str, ...]
    status: str
    passes: bool
    effect: float | None
    ci_low: float | None
    ci_high: float | None
    own: Comparison
    others: Comparison
    decides: str
    direction: int
    verdict: str
    reason: str
    images_to_decide: int | None = None
    q: float | None = None  # the deciding test's p adjusted (Benjamini-Hochberg) within its family (passing or not)

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise RunError(f"verdict {self.verdict!r} is not one of {', '.join(VERDICTS)}; {_FIX}")
        if self.decides not in SIDES:
            raise RunError(f"decides {self.decides!r} is not one of {', '.join(SIDES)}; {_FIX}")
        object.__setattr__(self, "counter_values", tuple(self.counter_values))

    @property
    def key(self) -> tuple[int, str, str]:
        """(class_index, kind, cue): the finding it confirms (a finding is one test of one cue for one class)."""
        return (self.class_index, self.kind, self.cue)

    @property
    def decisive(self) -> Comparison:
        return self.own if self.decides == "own" else self.others

    @property
    def confirmed(self) -> bool:
        return self.verdict == "confirmed"

    @property
    def verdict_text(self) -> str:
        return VERDICT_TEXT[self.verdict]

    def data_bias(self) -> str | None:
        """When the class's own images nearly all show the cue (or nearly none do) and the other classes' images do
        not, the data themselves carry the bias, and the images a decision needs are the ones they lack: said in a
        clause ("496 of the 500 'triangle' images with sand or snow/wood show sand, against 0% of the other
        classes'"), else None: the shares count the images that show the cue or one of its counters. Derived from
        the slice sizes, never stored."""
        own, others = self.own, self.others
        n_own, n_others = own.cue.n + own.counter.n, others.cue.n + others.counter.n
        if not n_own or not n_others:
            return None
        share, elsewhere = own.cue.n / n_own, others.cue.n / n_others
        if not ((share >= 0.9 and elsewhere <= share / 2) or (share <= 0.1 and elsewhere >= 2 * share + 0.05)):
            return None
        counters = "/".join(self.counter_values) if self.counter_values else f"another {self.attribute}"
        return (f"{own.cue.n} of the {n_own} {self.class_name!r} images with {self.value} or {counters} show "
                f"{self.value}, against {elsewhere:.0%} of the other classes'")

    def strength(self, bar: float | None) -> str | None:
        """For a confirmed finding, as the audit says of a passing one: "strong" when the whole 95% interval of the
        real gap in mean P(class) lies at or beyond ``bar`` in the finding's direction, "moderate" when only its
        estimate does (a near-bar real gap, which sampling can put on either side). None when not confirmed or
        without a bar or an interval."""
        d = self.decisive
        if self.verdict != "confirmed" or bar is None or d.prob_low is None or d.prob_high is None:
            return None
        near = d.prob_low if self.direction > 0 else -d.prob_high
        return "strong" if near >= bar else "moderate"

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "FindingConfirmation":
        d = _dict(where, d)
        kind = _str(f"{where}.kind", d.get("kind"))
        if kind not in FINDING_KINDS:
            raise _Bad(f"{where}.kind", f"is {kind!r}, not one of {', '.join(FINDING_KINDS)}")
        verdict = _str(f"{where}.verdict", d.get("verdict"))
        if verdict not in VERDICTS:
            raise _Bad(f"{where}.verdict", f"is {verdict!r}, not one of {', '.join(VERDICTS)}")
        decides = _str(f"{where}.decides", d.get("decides"))
        if decides not in SIDES:
            raise _Bad(f"{where}.decides", f"is {decides!r}, not one of {', '.join(SIDES)}")
        direction = _int(f"{where}.direction", d.get("direction"), minimum=-1, maximum=1)
        counters = tuple(_str(f"{where}.counter_values[{i}]", v) for i, v in
                         enumerate(_list(f"{where}.counter_values", d.get("counter_values", []))))
        needed = d.get("images_to_decide")
        return cls(
            class_index=_int(f"{where}.class_index", d.get("class_index")),
            class_name=_str(f"{where}.class_name", d.get("class_name")), kind=kind,
            cue=_str(f"{where}.cue", d.get("cue")), attribute=_str(f"{where}.attribute", d.get("attribute")),
            value=_str(f"{where}.value", d.get("value")), counter_values=counters,
            status=_str(f"{where}.status", d.get("status")), passes=_bool(f"{where}.passes", d.get("passes")),
            effect=_num(f"{where}.effect", d.get("effect")), ci_low=_num(f"{where}.ci_low", d.get("ci_low")),
            ci_high=_num(f"{where}.ci_high", d.get("ci_high")),
            own=Comparison.from_dict(d.get("own"), f"{where}.own"),
            others=Comparison.from_dict(d.get("others"), f"{where}.others"), decides=decides,
            direction=direction, verdict=verdict, reason=_str(f"{where}.reason", d.get("reason")),
            images_to_decide=None if needed is None else _int(f"{where}.images_to_decide", needed),
            q=_num(f"{where}.q", d.get("q"), low=0, high=1))

    def to_dict(self) -> dict:
        r = lambda v: None if v is None else round(float(v), 6)  # noqa: E731
        return {"class_index": self.class_index, "class_name": self.class_name, "kind": self.kind, "cue": self.cue,
                "attribute": self.attribute, "value": self.value, "counter_values": list(self.counter_values),
                "status": self.status, "passes": self.passes, "effect": r(self.effect), "ci_low": r(self.ci_low),
                "ci_high": r(self.ci_high), "own": self.own.to_dict(), "others": self.others.to_dict(),
                "decides": self.decides, "direction": self.direction, "verdict": self.verdict, "reason": self.reason,
                "images_to_decide": self.images_to_decide, "q": None if self.q is None else float(f"{self.q:.6g}")}

    def __repr__(self) -> str:
        return (f"FindingConfirmation[{self.verdict}] {self.kind} class {self.class_index} {self.class_name!r} cue "
                f"{self.cue!r}: {self.reason}")


@dataclass(frozen=True)
class ClassConfirmation:
    """One class on the user's data: ``n_images`` labelled with it, ``accuracy`` on them (None without images), and
    its tested cues by verdict (``confirmed``, ``weaker``, ``not_seen``, ``contradicted``: cue names). What the per-class
    summary says about "does your data confirm it"."""

    class_index: int
    class_name: str
    n_images: int
    accuracy: float | None
    confirmed: tuple[str, ...] = ()
    not_seen: tuple[str, ...] = ()
    contradicted: tuple[str, ...] = ()
    weaker: tuple[str, ...] = ()  # last: files written before the verdict existed have no such key

    @property
    def sentence(self) -> str:
        acc = "" if self.accuracy is None else f" ({fmt.number(self.accuracy)} accuracy)"
        parts = [f"{self.n_images} of your images are labelled {self.class_name!r}{acc}"]
        for names, words in ((self.confirmed, "confirmed"), (self.weaker, "weaker than the audit's bar"),
                             (self.contradicted, "contradicted"), (self.not_seen, "not seen")):
            if names:
                parts.append(f"{words}: {', '.join(names)}")
        return "; ".join(parts) + "."

    @classmethod
    def from_dict(cls, d: Any, where: str) -> "ClassConfirmation":
        d = _dict(where, d)

        def names(key: str) -> tuple[str, ...]:
            return tuple(_str(f"{where}.{key}[{i}]", v) for i, v in enumerate(_list(f"{where}.{key}", d.get(key, []))))

        return cls(_int(f"{where}.class_index", d.get("class_index")), _str(f"{where}.class_name", d.get("class_name")),
                   _int(f"{where}.n_images", d.get("n_images")),
                   _num(f"{where}.accuracy", d.get("accuracy"), low=0, high=1),
                   names("confirmed"), names("not_seen"), names("contradicted"), names("weaker"))

    def to_dict(self) -> dict:
        return {"class_index": self.class_index, "class_name": self.class_name, "n_images": self.n_images,
                "accuracy": None if self.accuracy is None else round(self.accuracy, 6),
                "confirmed": list(self.confirmed), "not_seen": list(self.not_seen),
                "contradicted": list(self.contradicted), "weaker": list(self.weaker)}


@dataclass(frozen=True)
class Confirmation:
    """confirmation.json. ``data``: where the images came from (``source``: folder, csv, list or dataset; ``root``:
    the folder or file as given), ``listed`` images, ``used`` (decoded and classified), ``skipped`` (did not decode)
    with the first few ``skipped_names``; ``checked_by``: who labelled cue presence ("world oracles",
    "concepts: MODEL"); ``classifier``: its name; ``settings``: alpha, negligible, min_slice; ``not_tested``: findings
    left out, each with why (off-object findings, cues the check cannot read)."""

    data: dict
    checked_by: str
    classifier: str
    settings: dict
    findings: tuple[FindingConfirmation, ...] = ()
    classes: tuple[ClassConfirmation, ...] = ()
    not_tested: tuple[str, ...] = ()
    created: str | None = None
    version: int = CONFIRMATION_VERSION

    @classmethod
    def from_dict(cls, data: Any, path: Path | str = "confirmation.json") -> "Confirmation":
        """The file's object checked: a RunError naming the file and the field otherwise."""
        try:
            d = _dict("(top level)", data)
            version = _int("version", d.get("version"))
            if version != CONFIRMATION_VERSION:
                raise _Bad("version", f"is {version}; this probe reads version {CONFIRMATION_VERSION}")
            info = _dict("data", d.get("data"))
            for key in ("listed", "used", "skipped"):
                _int(f"data.{key}", info.get(key))
            settings = _dict("settings", d.get("settings"))
            for key, (low, high) in SETTINGS_RANGES.items():  # what the verdicts and strengths were decided with
                _num(f"settings.{key}", settings.get(key), low=low, high=high)
            if settings.get("min_slice") is not None:
                _int("settings.min_slice", settings["min_slice"], minimum=1)
            findings = tuple(FindingConfirmation.from_dict(f, f"findings[{i}]")
                             for i, f in enumerate(_list("findings", d.get("findings", []))))
            classes = tuple(ClassConfirmation.from_dict(c, f"classes[{i}]")
                            for i, c in enumerate(_list("classes", d.get("classes", []))))
            not_tested = tuple(_str(f"not_tested[{i}]", v) for i, v in enumerate(_list("not_tested", d.get("not_tested", []))))
            return cls(info, _str("checked_by", d.get("checked_by")), _str("classifier", d.get("classifier")), settings,
                       findings, classes, not_tested, _str("created", d.get("created"), null=True), version)
        except _Bad as bad:
            raise _error(path, "", bad, _FIX) from None
        except RunError as error:
            raise RunError(f"{str(path)!r}: {error}") from None

    def to_dict(self) -> dict:
        return {"version": self.version, "created": self.created, "data": self.data, "checked_by": self.checked_by,
                "classifier": self.classifier, "settings": self.settings,
                "findings": [f.to_dict() for f in self.findings], "classes": [c.to_dict() for c in self.classes],
                "not_tested": list(self.not_tested)}

    # ------------------------------------------------------------------ views
    def finding(self, class_index: int, kind: str, cue: str) -> FindingConfirmation | None:
        return next((f for f in self.findings if f.key == (class_index, kind, cue)), None)

    def by_class(self, class_index: int) -> ClassConfirmation | None:
        return next((c for c in self.classes if c.class_index == class_index), None)

    @property
    def counts(self) -> dict[str, int]:
        return {v: sum(f.verdict == v for f in self.findings) for v in VERDICTS}

    @property
    def bar(self) -> float | None:
        """The audit's pass bar the real gaps were held to (settings; None in a file without it)."""
        value = self.settings.get("bar")  # checked on reading (SETTINGS_RANGES)
        return None if value is None else float(value)

    def strength(self, f: FindingConfirmation) -> str | None:
        """``f.strength`` at this confirmation's bar: "strong", "moderate" (confirmed findings) or None."""
        return f.strength(self.bar)

    def verdict_words(self, f: FindingConfirmation, short: bool = False) -> str:
        """The verdict in words (``short``: :data:`VERDICT_SHORT`'s), with a confirmation's strength: "confirmed on
        your data (moderate)", "confirmed (strong)"."""
        words, strength = (VERDICT_SHORT if short else VERDICT_TEXT)[f.verdict], self.strength(f)
        return f"{words} ({strength})" if strength else words

    def agreement(self):
        """The agreement table (pandas DataFrame): per finding, the generated effect and its interval against the
        real-data gap that decides and its interval, the slice sizes, p, q and the verdict."""
        import pandas as pd

        rows = [{"class_index": f.class_index, "class_name": f.class_name, "cue": f.cue, "kind": f.kind,
                 "status": f.status, "generated_effect": f.effect, "generated_low": f.ci_low,
                 "generated_high": f.ci_high, "real_measure": f.decisive.measure, "real_gap": f.decisive.gap,
                 "real_low": f.decisive.low, "real_high": f.decisive.high, "real_p": f.decisive.p, "real_q": f.q,
                 "n_cue": f.decisive.cue.n, "n_counter": f.decisive.counter.n, "verdict": f.verdict,
                 "strength": self.strength(f), "images_to_decide": f.images_to_decide} for f in self.findings]
        return pd.DataFrame(rows, columns=["class_index", "class_name", "cue", "kind", "status", "generated_effect",
                                           "generated_low", "generated_high", "real_measure", "real_gap", "real_low",
                                           "real_high", "real_p", "real_q", "n_cue", "n_counter", "verdict", "strength",
                                           "images_to_decide"])

    def headline(self) -> str:
        c = self.counts
        strong = sum(self.strength(f) == "strong" for f in self.findings)
        return (f"{self.data.get('used')} images ({self.data.get('skipped')} skipped), cues read by {self.checked_by}: "
                f"{c['confirmed']} confirmed ({strong} strong), {c['weaker']} weaker, {c['not seen']} not seen, {c['contradicted']} contradicted of "
                f"{len(self.findings)} cue findings")  # off-object findings have no slice of images to check

    def table(self) -> str:
        """The agreement table as text, one line per finding (passing ones first)."""
        lines = [self.headline()]
        for f in sorted(self.findings, key=lambda f: (not f.passes, f.class_index, f.kind, f.cue)):
            d = f.decisive
            lines.append(f"  {f.class_name} {f.kind} {f.cue!r} [{f.status}]: generated {fmt.effect(f.effect)} "
                         f"[{fmt.interval(f.ci_low, f.ci_high)}]; real {d.measure} gap {fmt.effect(d.gap)} "
                         f"[{fmt.interval(d.low, d.high)}] (n={d.cue.n} vs {d.counter.n}, p={fmt.pq(d.p)}): "
                         f"{self.verdict_words(f)}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.table()

    def _repr_html_(self) -> str:
        e = html.escape
        head = "".join(f"<th>{c}</th>" for c in ("class", "kind", "cue", "status", "generated", "real gap", "n cue / counter",
                                                 "p", "verdict"))
        rows = []
        for f in self.findings:
            d = f.decisive
            cells = (f"{f.class_index} {f.class_name}", f.kind, f.cue, f.status,
                     f"{fmt.effect(f.effect)} [{fmt.interval(f.ci_low, f.ci_high)}]",
                     f"{fmt.effect(d.gap)} [{fmt.interval(d.low, d.high)}] ({d.measure})", f"{d.cue.n} / {d.counter.n}",
                     fmt.pq(d.p), self.verdict_words(f))
            rows.append("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in cells) + "</tr>")
        return f"<p>{e(self.headline())}</p><table><tr>{head}</tr>{''.join(rows)}</table>"


def untestable_on_data(kind: str, details: Any) -> str | None:
    """Why `probe confirm` cannot test a finding on real images, or None where it can: only cue tests that name an
    attribute and a value have a slice of images with the cue and one without (`probe confirm` and the gate's
    --confirmed-only read this one rule)."""
    if kind not in PAIR_KINDS:
        return "not a cue test (an attribution share has no real-data slice)"
    details = details if isinstance(details, dict) else {}
    if not details.get("attribute") or not details.get("value"):
        return "the finding names no attribute and value to read"
    return None
