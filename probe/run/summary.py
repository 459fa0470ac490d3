"""A class in plain words: 3-6 sentences from its records, by a template (no language model).

``summarise_class(...)`` reads only what a run directory holds for one class: its metrics.json (accuracy of the
generated images with the plain prompt and with the token, whether the token moved), its analysis.json entry (nearest
words), its findings, the thresholds the analysis recorded, and confirmation.json when `probe confirm` has run. It
says, in order:

1. what the class looks like to the classifier: accuracy and mean P(class) of the plain prompt's images against the
   token's, whether the token moved from its initial word, and its nearest words;
2. the findings that pass, each with its effect, 95% interval, sample size and a strength word: *strong* when the whole
   interval clears the analysis' bar (``config.thresholds.min_effect`` in analysis.json, for every kind: an off-object
   finding's effect is the excess of attribution outside the object over the area outside it, judged by the same
   rule), *moderate* when the estimate clears it but the interval reaches below; or that none passes;
3. in one clause, the findings that do not pass (weak, inconclusive, screening only, unverified: nothing checked
   their images);
4. whether the user's own images confirm the passing ones (confirmation.json: confirmed, not seen with the images
   that would decide, contradicted), or that they were not checked;
5. what to try: balance the data (`probe generate RUN --balance 'class:cue'`), confirm on your own images
   (`probe confirm RUN --val-data DIR`), or look harder when nothing passed.

Every number is a field of a record; where a record is missing the sentence says so rather than guessing. Text from
the run (class names, cue names, nearest words) is untrusted: :class:`ClassSummary` keeps it as plain text, and its
HTML (``_repr_html_``, the report's template) escapes it. Torch-free.
"""

from __future__ import annotations

import html
import math
import shlex
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from probe.run import format as fmt
from probe.run.confirmation import VERDICT_SHORT

__all__ = ["ClassSummary", "Code", "summarise_class", "DEFAULT_MIN_EFFECT",
           "balance_spec", "balance_direction", "deciding_finding", "pass_bar"]

# the analysis' defaults (probe.analysis.policy.Thresholds; a test keeps them equal), used only when analysis.json
# does not record its thresholds (runs written before it did)
DEFAULT_MIN_EFFECT = 0.15
CUE_KINDS = ("necessity", "sufficiency", "token-shift")
_NOT_PASSING = (("weak", "weak"), ("inconclusive", "inconclusive"), ("screened", "screening only"),
                ("unverified", "unverified (nothing checked their generated images)"))
_LISTED = 3  # names shown per group before "…"


class Code(str):
    """A command inside a sentence: shown as code (in backticks as text, in <code> as HTML)."""


Sentence = tuple  # of str and Code segments


class ClassSummary(str):
    """A class's summary: the text (a ``str``: the sentences joined, commands in backticks) that also keeps its
    sentences as segments (``sentences``: tuples of ``str`` and :class:`Code`) and displays itself in Jupyter."""

    sentences: tuple[Sentence, ...]
    class_name: str

    def __new__(cls, class_name: str, sentences: Iterable[Sentence]):
        sentences = tuple(tuple(s) for s in sentences)
        text = " ".join("".join(f"`{seg}`" if isinstance(seg, Code) else str(seg) for seg in s) for s in sentences)
        self = super().__new__(cls, text)
        self.sentences, self.class_name = sentences, class_name
        return self

    def segments(self) -> list[list[tuple[str, bool]]]:
        """Per sentence, its (text, is_code) pieces: what the report's template renders (and autoescapes)."""
        return [[(str(seg), isinstance(seg, Code)) for seg in s] for s in self.sentences]

    def _repr_html_(self) -> str:
        body = "".join("<p>" + "".join(f"<code>{html.escape(t)}</code>" if code else html.escape(t) for t, code in s)
                       + "</p>" for s in self.segments())
        return f"<div class='probe-summary'><b>{html.escape(self.class_name)}</b>{body}</div>"

    def __repr__(self) -> str:
        return str(self)


@dataclass(frozen=True)
class _Bars:
    min_effect: float
    recorded: bool


def _bars(analysis: dict | None) -> _Bars:
    config = (analysis or {}).get("config")
    thresholds = config.get("thresholds") if isinstance(config, dict) else None
    thresholds = thresholds if isinstance(thresholds, dict) else {}
    effect = fmt.as_float(thresholds.get("min_effect"))
    return _Bars(effect if effect is not None else DEFAULT_MIN_EFFECT, effect is not None)


def pass_bar(analysis: dict | None) -> float:
    """The analysis' pass bar for cue findings (``config.thresholds.min_effect`` of analysis.json; the default when the
    run did not record it)."""
    return _bars(analysis).min_effect


def _field(finding, key: str):
    return finding.get(key) if isinstance(finding, dict) else getattr(finding, key, None)


def deciding_finding(findings: Iterable):
    """Of one class's findings on one cue (dicts or ``Finding`` records), the one a balance step follows: a passing
    finding first, then a necessity test, then the others in file order; None for none. ``probe.balance`` and the
    summary's balance step both decide by it, so the command and the sentence that offers it agree."""
    ranked = sorted(findings, key=lambda f: (not _field(f, "passes"), _field(f, "kind") != "necessity"))
    return ranked[0] if ranked else None


def balance_direction(finding, confirmation=None) -> int:
    """1 when the class leans on the finding's cue, -1 when it avoids it: a negative effect whose sign something
    decided (fresh pairs: the finding passes, or its whole interval lies below 0; or the user's data:
    ``confirmation`` holds it confirmed or weaker); the balance data then go the other way round (the class with the
    cue, its confusers without). A negative sign nothing decided (screening only, its interval across 0: a screened
    token shift of -0.33, interval -0.70 to +0.12, reversed a whole dataset) is noise as often as not: 1, the
    spec's plain reading. "weak" decides nothing: ``Thresholds.judge_q`` gives it to any confirmed effect of 0.05 or
    more that missed a bar, q included, so a weak finding's sign is decided only by its interval or the user's
    data."""
    effect = None if finding is None else _field(finding, "effect")
    if not (isinstance(effect, (int, float)) and math.isfinite(effect) and effect < 0):
        return 1
    high = _field(finding, "ci_high")
    if _field(finding, "status") == "passes" or (
            isinstance(high, (int, float)) and not isinstance(high, bool) and math.isfinite(high) and high < 0):
        return -1
    seen = None if confirmation is None else confirmation.finding(
        _field(finding, "class_index"), _field(finding, "kind"), _field(finding, "cue"))
    return -1 if seen is not None and seen.verdict in ("confirmed", "weaker") else 1


def balance_spec(class_name: str, class_index: int, cue: str, *, by_name: bool = True) -> str:
    """The ``--balance`` value for a class and a cue, shell-quoted: the class by name when the name is plain (no
    colon, not a number) and ``by_name`` (no other class of the run has it), else by index."""
    plain = by_name and ":" not in class_name and class_name.strip() == class_name and class_name \
        and not class_name.isdigit()
    return shlex.quote(f"{class_name if plain else class_index}:{cue}")


def summarise_class(*, index: int, name: str, status: str, metrics: dict | None, findings: Sequence[dict] | None,
                    info: dict | None = None, analysis: dict | None = None, confirmation=None,
                    run_ref: str = "RUN", name_shared: bool = False) -> ClassSummary:
    """The summary of one class (see the module docstring). ``metrics``: its metrics.json; ``findings``: its
    findings as ``RunDir.read_findings`` returns them (None: the analysis did not run); ``info``: its entry of
    analysis.json's ``classes``; ``analysis``: analysis.json (for the thresholds); ``confirmation``: the run's
    ``probe.run.confirmation.Confirmation`` or None; ``run_ref``: how the commands name the run ("RUN", or a path);
    ``name_shared``: another class of the run has this name (the commands then name the class by its index)."""
    metrics = metrics if isinstance(metrics, dict) else {}
    info = info if isinstance(info, dict) else {}
    quoted = f"'{name}'"
    # 1. what the class looks like to the classifier
    if status != "done":
        return ClassSummary(name, [(f"{quoted} has no finished audit ({status}), so there is nothing to summarise; "
                                    "run the same ", Code("probe audit"), " command again to resume it.",)])
    sentences: list[Sentence] = [_looks(quoted, metrics), _token(metrics, info)]
    # 2-3. the findings that pass, and in one clause the rest
    bars = _bars(analysis)
    if findings is None:
        sentences.append(("The analysis did not run, so no cue is claimed for this class.",))
        passing: list[dict] = []
    else:
        passing = [f for f in findings if f.get("passes")]
        sentences.append(_passing(quoted, passing, bars))
        rest = _rest(findings)
        if rest:
            sentences.append(rest)
    # 4. the user's own images
    sentences.append(_confirmation(quoted, index, passing, confirmation))
    # 5. what to try
    sentences.append(_next(name, index, passing, findings, confirmation, run_ref, analysis, info, name_shared))
    return ClassSummary(name, [s for s in sentences if s])


# ------------------------------------------------------------------------------------------ sentences, in order
def _looks(quoted: str, metrics: dict) -> Sentence:
    def block(kind: str) -> tuple[float | None, float | None, Any]:
        b = metrics.get(kind) if isinstance(metrics.get(kind), dict) else {}
        return fmt.as_float(b.get("accuracy")), fmt.as_float(b.get("mean_target_prob")), b.get("n")

    (b_acc, b_p, b_n), (t_acc, t_p, t_n) = block("baseline"), block("token")
    if b_acc is None and t_acc is None:
        return (f"How the classifier sees {quoted}'s generated images is not recorded (metrics.json has no accuracy).",)
    pct = lambda v: "an unrecorded share" if v is None else f"{100 * v:.0f}%"  # noqa: E731
    n = lambda v: f", n={v}" if isinstance(v, int) and not isinstance(v, bool) else ""  # noqa: E731
    return (f"Of the images generated for {quoted}, the classifier calls {pct(b_acc)} {quoted} with the plain prompt "
            f"(mean P(class) {fmt.number(b_p)}{n(b_n)}) and {pct(t_acc)} with the learned token (mean P(class) "
            f"{fmt.number(t_p)}{n(t_n)}).",)


def _token(metrics: dict, info: dict) -> Sentence:
    change = metrics.get("token_change") if isinstance(metrics.get("token_change"), dict) else {}
    moved = change.get("moved")
    init = metrics.get("init_word")
    init_text = f" '{init}'" if isinstance(init, str) and init else ""
    words = [str(w.get("word")) for w in info.get("nearest_words") or [] if isinstance(w, dict) and w.get("word")]
    near = f"; its nearest words are {', '.join(repr(w) for w in words[:_LISTED])}" if words else ""
    cosine = fmt.as_float(change.get("cosine"))
    if moved is True:
        how = f" (cosine {fmt.number(cosine)} to it)" if cosine is not None else ""
        return (f"The token moved away from its initial word{init_text}{how}{near}.",)
    if moved is False:
        return (f"The token stayed at its initial word{init_text}: the classifier already accepts the plain images, "
                f"so the token's images are the plain ones{near}.",)
    return (f"Whether the token moved from its initial word is not recorded{near}.",)


def _effect_text(f: dict) -> str:
    unit = "images" if f.get("unit") == "images" else "pairs"
    n = f.get("n_images")
    size = f", {n} {unit}" if isinstance(n, int) and not isinstance(n, bool) else ""
    return f"{fmt.effect(f.get('effect'))}, 95% CI {fmt.interval(f.get('ci_low'), f.get('ci_high'))}{size}"


def strength_counts(findings, analysis: dict | None = None) -> tuple[int, int]:
    """(strong, moderate) among the passing ``findings`` (dicts), by :func:`clears_bar`; a passing finding whose
    effect is not recorded is neither. What the report's overview card and a run's notebook display both show."""
    strengths = [clears_bar(f, analysis) for f in findings or [] if f.get("passes")]
    return strengths.count(True), strengths.count(False)


def clears_bar(f: dict, analysis: dict | None = None) -> bool | None:
    """Whether a finding's whole 95% interval lies beyond the analysis' pass bar in its claimed direction (the
    summary's *strong*; a passing finding that only its estimate clears is *moderate*). None when the effect is not
    recorded. Measured at `probe audit`'s defaults on eighteen untuned sets of shapes-world classifiers: 83 of 86
    strong passing findings true, 73 of 99 moderate ones (README "Are the findings true?")."""
    return _clears(f, _bars(analysis))


def _clears(f: dict, bars: _Bars) -> bool | None:
    effect = fmt.as_float(f.get("effect"))
    if effect is None:
        return None
    near = fmt.as_float(f.get("ci_low")) if effect >= 0 or f.get("kind") == "off-object" else \
        (None if fmt.as_float(f.get("ci_high")) is None else -fmt.as_float(f.get("ci_high")))
    return near is not None and near >= bars.min_effect


def _strength(f: dict, bars: _Bars) -> str:
    """strong: the whole interval clears the bar in the claimed direction; moderate: only the estimate does."""
    clears = _clears(f, bars)
    if clears is None:
        return "strength not recorded"
    where, bar = "" if bars.recorded else "default ", bars.min_effect
    if clears:
        return f"strong: the whole interval clears the {where}bar of {bar:.2f}"
    return f"moderate: the estimate clears the {where}bar of {bar:.2f}, the interval reaches below it"


def _claim(f: dict, quoted: str) -> str:
    kind, effect = f.get("kind"), fmt.as_float(f.get("effect"))
    details = f.get("details") if isinstance(f.get("details"), dict) else {}
    cue = str(f.get("cue"))
    if kind == "necessity":
        counters = [str(c) for c in details.get("counter_values") or details.get("counters") or []]
        instead = f" with {', '.join(counters[:_LISTED])}{', …' if len(counters) > _LISTED else ''}" if counters else ""
        return f"{cue}: replacing it{instead} lowers P({quoted}) by {fmt.effect(effect or 0, signed=False)}"
    if kind == "sufficiency":
        return f"{cue}: adding it to other objects raises P({quoted}) by {fmt.effect(effect or 0, signed=False)}"
    if kind == "token-shift":
        way = "more" if (effect or 0) >= 0 else "less"
        return f"{cue}: the token's images show it {way} often than the plain prompt's"
    share, area = fmt.as_float(details.get("share_outside")), fmt.as_float(details.get("area_outside"))
    held = f" ({fmt.number(share)} of it outside an object that leaves {fmt.number(area)} of the image)" \
        if share is not None and area is not None else ""
    return f"attribution off the object: it lies outside the object {fmt.number(effect)} more than the area " \
           f"outside does{held}"


def _passing(quoted: str, passing: list[dict], bars: _Bars) -> Sentence:
    if not passing:
        return (f"No finding passes the audit's rule for {quoted}.",)
    parts = [f"{_claim(f, quoted)} ({f.get('kind')}, effect {_effect_text(f)}), {_strength(f, bars)}" for f in passing]
    many = len(passing) > 1
    return (f"{len(passing)} finding{'s pass' if many else ' passes'}: " + "; ".join(parts) + ".",)


def _rest(findings: Sequence[dict]) -> Sentence:
    groups = []
    for status, words in _NOT_PASSING:
        names = list(dict.fromkeys(f"{f.get('cue')} ({f.get('kind')})" for f in findings if f.get("status") == status))
        if names:
            shown = ", ".join(names[:_LISTED]) + (", …" if len(names) > _LISTED else "")
            count = sum(f.get("status") == status for f in findings)
            groups.append(f"{count} {words} ({shown})")
    return (f"Not established: {'; '.join(groups)}.",) if groups else ()


def _confirmation(quoted: str, index: int, passing: list[dict], confirmation) -> Sentence:
    if confirmation is None:
        return ("Not yet checked on your own images.",)
    per_class = confirmation.by_class(index)
    mine = [r for r in confirmation.findings if r.class_index == index]
    if per_class is None and not mine:
        return (f"`probe confirm` tested nothing of {quoted} on your images.",)
    head = ""
    if per_class is not None:
        acc = "" if per_class.accuracy is None else f", accuracy {fmt.number(per_class.accuracy)}"
        head = f" ({per_class.n_images} images labelled {quoted}{acc})"
    keys = {(f.get("kind"), str(f.get("cue"))) for f in passing}
    shown = [r for r in mine if (r.kind, r.cue) in keys] or []
    others = _confirmed_not_passing(index, passing, confirmation)
    parts = []
    for r in shown:
        d = r.decisive
        gap = f"{d.measure} gap {fmt.effect(d.gap)}, 95% CI {fmt.interval(d.low, d.high)}, n={d.cue.n} vs {d.counter.n}"
        if r.verdict == "not seen":
            more = f"; about {r.images_to_decide} images per slice would decide" if r.images_to_decide else ""
            bias = r.data_bias()
            more += f"; your data carry the bias: {bias}" if bias else ""
            parts.append(f"{r.cue} ({r.kind}) not seen ({gap}{more})")
        else:
            words = VERDICT_SHORT[r.verdict]
            strength = confirmation.strength(r)  # a confirmed one: strong or moderate, as a passing finding
            parts.append(f"{r.cue} ({r.kind}) {words} ({strength + '; ' if strength else ''}{gap})")
    if passing and not shown:
        parts.append("none of its passing findings could be tested there")
    if others:
        parts.append("confirmed although the audit did not pass them: " + ", ".join(f"{r.cue} ({r.kind})" for r in others))
    if not parts:
        tested = len(mine)
        parts.append(f"{tested} tested cue{'s' if tested != 1 else ''}, none confirmed")
    # the data's own biases among the class's other tested cues (a passing one's is in its clause above), once per value
    said = {(r.attribute, r.value) for r in shown if r.verdict == "not seen" and r.data_bias()}
    biases = {}
    for r in mine:
        key = (r.attribute, r.value)
        if key not in said and key not in biases:
            bias = r.data_bias()
            if bias:
                biases[key] = bias
    if biases:
        parts.append("your data carry " + ("this bias" if len(biases) == 1 else "these biases") + ", which a classifier "
                     "trained on data drawn like them learns: " + "; ".join(list(biases.values())[:3]))
    return (f"On your data{head}: " + "; ".join(parts) + ".",)


def _look_harder(index: int, findings, analysis: dict | None, info: dict | None = None) -> Sentence:
    """Nothing passes and nothing is unverified: what would decide more, from what the run did. Tests the check
    made inconclusive, or a class whose screens lost most pairs to it (``info["generator_failure"]``), want a check
    that reads the generator's images; discovery is offered only where it did not run (a run that proposed cues is
    told so)."""
    analysis = analysis if isinstance(analysis, dict) else {}
    failure = info.get("generator_failure") if isinstance(info, dict) else None
    failure = float(failure) if isinstance(failure, (int, float)) else 0.0
    inconclusive = [f for f in findings if f.get("status") == "inconclusive"]
    checker = analysis.get("interventions_checked_by") or "the check"
    fix = ["a concept model that reads this generator's images well (", Code("--concepts openai/clip-vit-large-patch14"),
           ") or more pairs (", Code("--max-pairs"), ") can decide them."]
    out: list = ["There is nothing to fix from this audit"]
    if inconclusive and len(inconclusive) * 2 >= len(findings):
        return tuple(out + [f"; {len(inconclusive)} of its {len(findings)} tests were inconclusive because {checker} "
                            "rejected most of their generated pairs (the object or the cue not drawn as asked): ", *fix])
    if failure >= 0.5:
        return tuple(out + [f"; {checker} rejected {failure:.0%} of a typical screen's generated pairs (the object or "
                            "the cue not drawn as asked), so few of its tests could decide: ", *fix])
    config = analysis.get("config") if isinstance(analysis.get("config"), dict) else {}
    cues = analysis.get("cues") if isinstance(analysis.get("cues"), dict) else {}
    proposed = (cues.get("discovered") or {}).get(str(index)) if isinstance(cues.get("discovered"), dict) else None
    out += ["; to look harder, give the analysis more pairs (", Code("--max-pairs"), ")"]
    if proposed:
        out += [f"; discovery proposed {len(proposed)} unlisted cue{'s' if len(proposed) != 1 else ''} for it, "
                "tested with the listed ones (a vocabulary of your domain's phrases: ", Code("--vocabulary FILE"), ")."]
    elif not config.get("discover"):
        out += [" or let it propose unlisted cues (", Code("--discover 3"), ")."]
    else:
        out += ["."]
    return tuple(out)


def _confirmed_not_passing(index: int, passing: list[dict], confirmation) -> list:
    """The class's findings the user's data confirmed that the audit did not pass (confirmation records), for the
    verdict clause and the balance step alike."""
    if confirmation is None:
        return []
    keys = {(f.get("kind"), str(f.get("cue"))) for f in passing}
    return [r for r in confirmation.findings
            if r.class_index == index and r.verdict == "confirmed" and (r.kind, r.cue) not in keys]


def _next(name: str, index: int, passing: list[dict], findings, confirmation, run_ref: str,
          analysis: dict | None = None, info: dict | None = None, name_shared: bool = False) -> Sentence:
    run = shlex.quote(run_ref) if run_ref != "RUN" else run_ref
    cue_findings = [f for f in passing if f.get("kind") in CUE_KINDS]
    if findings is None:
        return ("To get findings, run the analysis: the same ", Code("probe audit"), " command with ",
                Code("--analyze"), ".")
    verdicts = {(r.kind, r.cue): r.verdict for r in confirmation.findings if r.class_index == index} \
        if confirmation is not None else {}
    # what the user's data confirm although the generated test did not pass it is as much a shortcut to weaken
    from_data = [r.cue for r in _confirmed_not_passing(index, passing, confirmation)]
    if not passing and not from_data:
        unverified = [f for f in findings if f.get("status") == "unverified"]
        if unverified:
            return ("Nothing was checked, so nothing passes: re-run the audit with ", Code("--concepts MODEL"),
                    " (a CLIP or SigLIP model) so the generated images are checked.")
        return _look_harder(index, findings, analysis, info)
    out: list = []
    if cue_findings or from_data:
        cues = list(dict.fromkeys([str(f.get("cue")) for f in cue_findings] + from_data))[:_LISTED]
        specs = " ".join(f"--balance {balance_spec(name, index, c, by_name=not name_shared)}" for c in cues)
        out += [f"To weaken the shortcut{'s' if len(cues) > 1 else ''}, balance the training data with ",
                Code(f"probe generate {run} {specs} --per-class 100 --out DIR")]
        # a cue the class avoids is balanced the other way round (probe.balance decides it by the same finding): say so
        against = [c for c in cues if balance_direction(deciding_finding(
            f for f in findings if str(f.get("cue")) == c and f.get("kind") in CUE_KINDS), confirmation) < 0]
        if against:
            one = len(against) == 1
            out += [f" ({' and '.join(against)} {'is a cue' if one else 'are cues'} {name!r} avoids, balanced the other "
                    f"way round: {name!r} with {'it' if one else 'them'}, its confusers without)"]
    # an off-object share has no real-data slice (probe confirm tests cue findings only)
    unconfirmed = [f for f in cue_findings if verdicts.get((f.get("kind"), str(f.get("cue")))) != "confirmed"]
    if unconfirmed:
        out += ["; ", "confirm it on your own images with " if confirmation is None else
                "your data did not confirm it yet: add labelled images and re-run ",
                Code(f"probe confirm {run} --val-data DIR")]
    if not out:  # only off-object findings
        return ("Look at the attribution overlays to see where on the image the classifier looks.",)
    return (*out, ".")
