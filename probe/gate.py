"""The gate: fail a build when a run's confirmed findings are too large (``probe check``).

``check_run(run_dir, max_effect=0.3)`` reads a finished run's findings (``findings.json``, through
``probe.analysis.read_findings``) and returns a :class:`CheckResult`: the *offenders* (findings that pass
and whose effect is larger than the limit) and one case per audited class, which writes itself as JUnit
XML so a CI system shows every class as a test case.

What offends, and why:

* Only **passing** findings count: they are confirmed on fresh pairs with the false discovery rate
  controlled across the audit. Weak, screened and inconclusive findings never fail a build.
* **Unverified** findings (they met the bars, but nothing checked that the generated images showed the
  object and the cue: no world oracles, no concept model) are left out unless ``include_unverified``
  (``--include-unverified``); then they count as passing. A class whose confirmed tests are all unchecked is
  undecided without that flag: an unchecked run alone never passes the gate.
* The comparison is on **|effect|**: a passing necessity finding of -0.4 (swapping the cue *raises* the
  class's probability by 0.4) or a token that removes a concept is as large a dependence on the cue as
  +0.4; the gate bounds how much the classifier leans on a cue, whichever way. By default the point estimate
  is compared (the pass rule has already required q ≤ the analysis's ``fdr_q`` for "no effect" and an estimate
  at or beyond its bar); ``by="upper"``
  (``--by upper``) compares the end of its 95% interval farthest from zero instead, so a finding whose
  interval reaches beyond the limit offends (an unbounded interval always does).
* **Off-object** findings measure a share of the attribution (0..1 of the classifier's evidence outside
  the object), not a change in probability, so ``max_effect`` does not apply to them. They are left out
  unless ``kinds`` names ``off-object``; then every passing one offends (passing already means its share
  outside the object exceeds that area's share by at least the bar, with q ≤ ``fdr_q``: policy.describe_rule).

The gate fails closed. A run without findings (analysis switched off or failed) is a ``GateError``, never a
pass; a damaged run file (a NaN or Infinity effect, ``"class_index": "2"``, ``"passes": "false"``, a finding of
a class the run never audited) is a ``RunError`` naming the file and the field (exit 2, from
``probe.run.RunDir``'s checked readers). A class that finished but holds no confirmed test of the selected
kinds (only screening-only or inconclusive ones, or none) is *undecided*, as is a class that failed or did not
finish; a run in which no class could be decided (every class failed, or nothing was confirmed) exits
``GATE_UNDECIDED`` (4), never 0: there was nothing that could have failed the gate.
"""

from __future__ import annotations

import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from probe.errors import ProbeError, settings_from_dict
from probe.run import format as fmt
from probe.run.records import FINDING_KINDS, PAIR_KINDS, SHARE_KINDS
from probe.run.confirmation import untestable_on_data

GATE_FAILED = 3  # exit code of `probe check` (and `probe audit --max-effect`) when a finding exceeds the limit
GATE_UNDECIDED = 4  # ... when nothing in the run could pass or fail: no class finished, or no confirmed test
BY = ("estimate", "upper")  # what is compared with the limit: the point estimate, or the interval's far end
KINDS = FINDING_KINDS
DEFAULT_KINDS = PAIR_KINDS  # kinds whose effect is a change in probability
# SHARE_KINDS: effect is a share, not a change: every passing one offends when selected


class GateError(ProbeError):
    """The gate cannot decide: no findings, an unknown kind, a bad limit or an unusable --junit path."""


def parse_kinds(kinds: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """``"necessity,sufficiency"`` (or a list) as a checked tuple; None or empty keeps the default."""
    if kinds is None:
        return None
    items = [k.strip() for k in (kinds.split(",") if isinstance(kinds, str) else kinds) if str(k).strip()]
    if not items:
        return None
    unknown = [k for k in items if k not in KINDS]
    if unknown:
        raise GateError(f"--kinds {unknown[0]!r} is not a finding kind; use a comma-separated list of {', '.join(KINDS)}")
    return tuple(dict.fromkeys(items))


def check_max_effect(max_effect: float) -> float:
    try:
        value = float(max_effect)
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and value >= 0):
        raise GateError(f"--max-effect {max_effect!r} must be a number >= 0 (a change in probability, e.g. 0.3)")
    return value


def check_by(by: str | None) -> str:
    value = "estimate" if by is None else str(by).strip().lower()
    if value not in BY:
        raise GateError(f"--by {by!r} is unknown; use estimate (the point estimate) or upper (the 95% interval's end "
                        "farthest from zero)")
    return value


def check_junit_path(path: str | Path | None, out: str | Path | None = None) -> Path | None:
    """The --junit target, checked before any work: its folder must exist, it must not be a folder, and it must lie
    outside any probe run. ``out``: the run folder an audit is about to write (``probe audit --out``), which may be
    empty or new, not yet a run: a --junit inside it passed here, and the gate's own write refused it after the whole
    audit, the verdict lost."""
    if path is None:
        return None
    target = Path(path).expanduser()
    if out is not None:
        real, root = Path(os.path.realpath(target)), Path(os.path.realpath(Path(out).expanduser()))
        if real == root or root in real.parents:
            raise GateError(f"--junit {str(path)!r} lies inside the probe run {str(out)!r} (--out), whose files it "
                            "could overwrite; write it beside the run, e.g. --junit gate.xml")
    if target.is_dir():
        raise GateError(f"--junit {str(path)!r} is a folder; name a file, e.g. --junit results.xml")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise GateError(f"--junit {str(path)!r}: its folder {str(parent)!r} does not exist; create it or name another path")
    from probe.run.directory import enclosing_run

    run = enclosing_run(parent)
    if run is not None:  # `--junit RUN/findings.json` wrote XML over the run's findings
        raise GateError(f"--junit {str(path)!r} lies inside the probe run {str(run)!r}, whose files it could overwrite; "
                        "write it beside the run, e.g. --junit gate.xml")
    return target


@dataclass(frozen=True)
class GateConfig:
    """The gate's settings, from ``probe check`` or ``probe audit --max-effect`` to :func:`check_run`."""

    max_effect: float
    kinds: tuple[str, ...] | None = None
    junit: str | None = None
    by: str = "estimate"  # "upper": compare the 95% interval's end farthest from zero (--by upper)
    include_unverified: bool = False  # --include-unverified: unverified findings count as passing

    def __post_init__(self):
        object.__setattr__(self, "max_effect", check_max_effect(self.max_effect))
        object.__setattr__(self, "kinds", parse_kinds(self.kinds))
        object.__setattr__(self, "by", check_by(self.by))
        if self.junit is not None and not str(self.junit).strip():
            raise GateError("--junit is empty; name a file, e.g. --junit results.xml")

    @classmethod
    def from_dict(cls, data: dict) -> "GateConfig":
        return cls(**settings_from_dict(cls, data, "gate settings", GateError))


@dataclass(frozen=True)
class ClassCase:
    """One audited class as a test case: passed, failed (with its offenders), undecided (finished, but no confirmed
    test of the selected kinds) or skipped (failed or unfinished: no token)."""

    class_index: int
    class_name: str
    status: str  # "passed", "failed", "undecided" or "skipped"
    offenders: tuple = ()
    checked: int = 0  # passing findings of the selected kinds looked at
    reason: str = ""  # why a case was skipped

    @property
    def name(self) -> str:
        return f"{self.class_index} {self.class_name}"


@dataclass
class CheckResult:
    """The gate's verdict on one run: ``passed``, the offending findings, one case per audited class."""

    run_dir: Path
    max_effect: float
    kinds: tuple[str, ...]
    cases: list[ClassCase] = field(default_factory=list)
    by: str = "estimate"
    include_unverified: bool = False
    unverified: int = 0  # unverified findings of the selected kinds in the audited classes

    @property
    def offenders(self) -> list:
        return [f for case in self.cases for f in case.offenders]

    @property
    def decided(self) -> bool:
        """Could anything in the run have failed the gate? (a class with a confirmed test of the selected kinds)"""
        return any(c.status in ("passed", "failed") for c in self.cases)

    @property
    def passed(self) -> bool:
        return not self.offenders and self.decided

    @property
    def exit_code(self) -> int:
        return GATE_FAILED if self.offenders else 0 if self.decided else GATE_UNDECIDED

    def lines(self) -> list[str]:
        """One line per offending finding (whitespace of untrusted names collapsed, so a line stays one line)."""
        return [_one_line(f"class {f.class_index} {f.class_name!r}: {f.kind} {f.cue!r} {_stats(f, self.max_effect)}: {f.sentence}")
                for f in self.offenders]

    def verdict(self) -> str:
        failed = [c for c in self.cases if c.status == "failed"]
        limit = self.limit_text()
        if failed:
            return (f"gate failed: {len(self.offenders)} passing finding(s) above {limit} in {len(failed)} of "
                    f"{len(self.cases)} class(es)")
        checked = sum(c.checked for c in self.cases)
        undecided = [c for c in self.cases if c.status in ("undecided", "skipped")]
        if not self.decided:
            why = ("no audited class" if not self.cases else "no class finished" if all(c.status == "skipped" for c in
                   self.cases) else "no confirmed test of the selected kinds (only screening-only or inconclusive "
                   "ones, or none)")
            if self.unverified and not self.include_unverified:
                why = (f"{self.unverified} unverified finding(s) and no checked confirmed test: nothing checked the "
                       "generated images; re-analyse with a concept model (`probe report RUN --model M --generator G "
                       "--concepts MODEL`) or gate on them anyway with --include-unverified")
                return f"gate undecided: nothing in the run could pass or fail {limit}: {why}"
            return (f"gate undecided: nothing in the run could pass or fail {limit}: {why} ({len(self.cases)} "
                    f"class(es)); re-run the audit (more classes, --max-pairs, other --kinds) before gating on it")
        shown = ", ".join(_one_line(c.name) for c in undecided[:3]) + (" ..." if len(undecided) > 3 else "")
        rest = f"; {len(undecided)} class(es) undecided or skipped: {shown}" if undecided else ""
        left = (f"; {self.unverified} unverified finding(s) left out (--include-unverified counts them)"
                if self.unverified and not self.include_unverified else "")
        return (f"gate passed: no passing finding above {limit} ({len(self.cases)} class(es), {checked} passing "
                f"finding(s) checked{rest}{left})")

    def limit_text(self) -> str:
        where = " (the 95% interval's far end)" if self.by == "upper" else ""
        limit = f"{self.max_effect:.2f}"  # two decimals, or every digit the user gave (0.333 is not "0.33")
        return f"|effect|{where} {limit if float(limit) == self.max_effect else f'{self.max_effect:g}'} ({', '.join(self.kinds)})"

    def __repr__(self) -> str:
        return "\n".join([f"CheckResult({str(self.run_dir)!r}: {self.verdict()})", *(f"  {line}" for line in self.lines())])

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<th>{c}</th>" for c in ("class", "result", "kind", "cue", "effect", "95% CI", "q", "finding"))
        rows = []
        for case in self.cases:
            if not case.offenders:
                rows.append(f"<tr><td>{escape(case.name)}</td><td>{escape(case.status)}</td>"
                            f"<td colspan='6'>{escape(case.reason)}</td></tr>")
            for f in case.offenders:
                cells = (case.name, case.status, f.kind, f.cue, fmt.effect(f.effect, bars=(self.max_effect,)), fmt.interval(f.ci_low, f.ci_high, sep="–"),
                         fmt.pq(f.q), f.sentence)
                rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
        return f"<p>{escape(self.verdict())}</p><table><tr>{head}</tr>{''.join(rows)}</table>"

    def junit_xml(self) -> bytes:
        """JUnit XML: one testsuite, one testcase per audited class, a failure per class with offenders."""
        failures = sum(c.status == "failed" for c in self.cases)
        skipped = sum(c.status in ("skipped", "undecided") for c in self.cases)
        suites = ET.Element("testsuites", tests=str(len(self.cases)), failures=str(failures))
        suite = ET.SubElement(suites, "testsuite", name=_xml(f"probe check {self.run_dir.name}"),
                              tests=str(len(self.cases)), failures=str(failures), errors="0", skipped=str(skipped))
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="max_effect", value=f"{self.max_effect:g}")
        ET.SubElement(props, "property", name="kinds", value=",".join(self.kinds))
        ET.SubElement(props, "property", name="by", value=self.by)
        for case in self.cases:
            element = ET.SubElement(suite, "testcase", classname="probe.check", name=_xml(case.name))
            if case.status == "failed":
                failure = ET.SubElement(element, "failure", type="probe.gate", message=_xml(
                    f"{len(case.offenders)} passing finding(s) above {self.limit_text()}"))
                failure.text = _xml("\n".join(f"{f.kind} {f.cue!r}: {_stats(f, self.max_effect)}: {f.sentence}" for f in case.offenders))
            elif case.status in ("skipped", "undecided"):
                ET.SubElement(element, "skipped", message=_xml(case.reason))
            else:
                ET.SubElement(element, "system-out").text = _xml(f"{case.checked} passing finding(s) checked, none above "
                                                                 f"{self.limit_text()}")
        ET.indent(suites)
        return ET.tostring(suites, encoding="utf-8", xml_declaration=True) + b"\n"

    def write_junit(self, path: str | Path) -> Path:
        """Write :meth:`junit_xml` atomically to the user's ``path`` (its folder must exist)."""
        from probe.files import write_bytes

        target = check_junit_path(path)
        return write_bytes(target, self.junit_xml())


def check_run(run_dir: str | Path, *, max_effect: float, kinds: str | Sequence[str] | None = None,
              classes: str | Sequence[int | str] | None = None, by: str = "estimate",
              include_unverified: bool = False, confirmed_only: bool = False) -> CheckResult:
    """The gate on one run directory: which passing findings exceed ``max_effect``? (see the module docstring).

    ``confirmed_only`` (``--confirmed-only``): only passing findings that ``probe confirm`` found *confirmed on your
    data* (confirmation.json) can offend (not those seen there weaker than the audit's bar); a run without
    confirmation.json is a GateError."""
    from probe.run import FINDINGS, FINDINGS_TABLE, RunDir
    from probe.run.records import CONFIRMED, UNCHECKED

    # 1. the settings: a limit, the kinds it applies to, what is compared
    limit = check_max_effect(max_effect)
    selected_kinds = parse_kinds(kinds) or DEFAULT_KINDS
    by = check_by(by)
    # 2. the run: a probe run whose analysis ran (no findings is an error, never a pass); every file read is
    #    checked by RunDir, so a damaged one is a one-line RunError naming the file and the field
    run = RunDir(run_dir)
    config = run.require_config(GateError)
    findings = run.require_findings(GateError, "run `probe audit` with the analysis on into it first, then check it")
    analysis = run.read_analysis_summary()
    # 3. the audited classes: those the run selected or finished, optionally narrowed by ``classes``
    labels = run.read_labels() or []
    finished = {m.class_index: m for _, m in run.finished_records(strict=True)}
    audited = sorted(set(config.classes or ()) | set(finished))
    source = run.path(FINDINGS) if run.path(FINDINGS).is_file() else run.path(FINDINGS_TABLE)
    for i, f in enumerate(findings):
        if f.class_index not in audited:
            raise GateError(f"{str(source)!r}: finding {i}: field class_index is {f.class_index}, not a class this run "
                            f"audited ({_few(audited)}); re-run the analysis or restore the file")
        record = finished.get(f.class_index)
        if record is not None and not record.done:  # its findings would be skipped with the class: fail closed
            raise GateError(f"{str(source)!r}: finding {i} is of class {f.class_index}, whose metrics.json says it "
                            f"{record.status}; the findings are not this run's: re-run the analysis or restore the files")
    # findings.json against analysis.json's own counts: an emptied or truncated file would otherwise pass
    if analysis is not None:
        for field, have in (("n_findings", len(findings)), ("n_passing", sum(bool(f.passes) for f in findings))):
            want = getattr(analysis, field, None)
            if isinstance(want, int) and not isinstance(want, bool) and want != have:
                raise GateError(f"{str(source)!r} holds {have} {'findings' if field == 'n_findings' else 'passing findings'}"
                                f", analysis.json counts {want} ({field}); the files are not from one analysis: re-run "
                                "the analysis (probe report RUN --model M --generator G) or restore them")
    if classes is not None:
        audited = _narrow(classes, audited, labels)
    # 4. what was decided: a class's confirmed tests of the selected kinds (findings that passed or were weak on
    #    confirmation pairs, and analysis.json's confirmed pair data, which also holds tests too small for a finding)
    #    An unchecked test decides nothing unless unverified findings are included.
    def counts(f) -> bool:
        return f.checked_by != UNCHECKED or include_unverified

    on_data = _verdicts_on_data(run, run_dir) if confirmed_only else None

    def passing_in_audit(f) -> bool:
        return f.passes or (include_unverified and f.status == "unverified")

    def passing(f) -> bool:
        if on_data is not None and on_data.get((f.class_index, f.kind, f.cue)) != "confirmed":
            return False
        return passing_in_audit(f)

    confirmed = {f.class_index for f in findings if f.kind in selected_kinds and f.status in CONFIRMED and counts(f)}
    inconclusive = {(f.kind, f.class_index, f.cue) for f in findings if f.status == "inconclusive"}
    checked_run = analysis is not None and analysis.checked_by != UNCHECKED
    confirmed |= {e.class_index for e in (analysis.pairs if analysis is not None else None) or ()
                  if e.kind in selected_kinds and e.confirm is not None and e.confirm.values and e.key not in inconclusive
                  and (checked_run or include_unverified)}
    # 5. one case per class: its passing findings of the selected kinds over the limit offend
    cases = []
    for index in audited:
        metrics = finished.get(index)
        name = str((metrics.class_name if metrics is not None else None) or (labels[index] if index < len(labels) else index))
        if metrics is None or not metrics.done:
            reason = "class not finished" if metrics is None else f"class failed: {metrics.error or 'see metrics.json'}"
            cases.append(ClassCase(index, name, "skipped", reason=_one_line(reason)))
            continue
        own = [f for f in findings if f.class_index == index and passing(f) and f.kind in selected_kinds]
        offenders = tuple(f for f in own if _offends(f, limit, by))
        if on_data is not None:  # --confirmed-only: a passing finding the data could not judge decides nothing
            unjudged = [f for f in findings if f.class_index == index and f.kind in selected_kinds and passing_in_audit(f)
                        and on_data.get((f.class_index, f.kind, f.cue)) not in ("confirmed", "weaker", "contradicted")]
            untestable = [f for f in unjudged if untestable_on_data(f.kind, f.details) is not None]
            unseen = [f for f in unjudged if f not in untestable]
            if unjudged and not offenders:
                reasons = []
                if unseen:
                    reasons.append(f"{len(unseen)} passing finding(s) not judged on your data "
                                   f"({', '.join(sorted({f.cue for f in unseen}))}: not seen, or not in "
                                   "confirmation.json); add images of those slices and run `probe confirm` again")
                if untestable:
                    reasons.append(f"{len(untestable)} passing finding(s) no real image can test "
                                   f"({', '.join(sorted({f'{f.kind} {f.cue}' for f in untestable}))}: "
                                   f"{untestable_on_data(untestable[0].kind, untestable[0].details)}); gate them "
                                   "without --confirmed-only, or leave their kind out with --kinds")
                cases.append(ClassCase(index, name, "undecided", reason=_one_line("; ".join(reasons))))
                continue
        if not own and index not in confirmed:
            cases.append(ClassCase(index, name, "undecided", reason="no confirmed test of the selected kinds (only "
                                   "screening-only or inconclusive ones, or none): nothing could pass or fail"))
            continue
        cases.append(ClassCase(index, name, "failed" if offenders else "passed", offenders, checked=len(own)))
    unverified = sum(f.status == "unverified" and f.kind in selected_kinds and f.class_index in audited for f in findings)
    return CheckResult(run_dir=run.root, max_effect=limit, kinds=selected_kinds, cases=cases, by=by,
                       include_unverified=include_unverified, unverified=unverified)


def _verdicts_on_data(run, run_dir) -> dict:
    """{(class_index, kind, cue): verdict} of every finding confirmation.json judged on the user's data."""
    confirmation = run.read_confirmation()
    if confirmation is None:
        raise GateError(f"{str(run_dir)!r} has no confirmation.json, so --confirmed-only has nothing to gate on; run "
                        "`probe confirm RUN --val-data DIR` first (or drop --confirmed-only)")
    return {f.key: f.verdict for f in confirmation.findings}


def run_gate(run_dir: str | Path, gate: GateConfig) -> CheckResult:
    """:func:`check_run` with a :class:`GateConfig`, writing its JUnit file when one is named."""
    result = check_run(run_dir, max_effect=gate.max_effect, kinds=gate.kinds, by=gate.by,
                       include_unverified=gate.include_unverified)
    if gate.junit:
        result.write_junit(gate.junit)
    return result


def _offends(finding, limit: float, by: str = "estimate") -> bool:
    if finding.kind in SHARE_KINDS:
        return True  # a share of attribution, not a change: passing is the verdict (module docstring)
    if not math.isfinite(finding.effect):
        return True  # never reached (the reader refuses a passing finding without a finite effect): fail closed
    if by == "upper":  # the interval's end farthest from zero; an unbounded end always offends
        ends = [finding.ci_low, finding.ci_high]
        return any(not math.isfinite(e) or abs(e) > limit for e in ends) or abs(finding.effect) > limit
    return abs(finding.effect) > limit


def _few(indices: list[int]) -> str:
    return ", ".join(map(str, indices[:8])) + (" ..." if len(indices) > 8 else "") if indices else "none"


def _narrow(classes, audited: list[int], labels: list[str]) -> list[int]:
    from probe.classifiers.select import select_classes

    chosen = select_classes(classes, labels or [str(i) for i in range(max(audited, default=-1) + 1)])
    missing = [i for i in chosen if i not in audited]
    if missing:
        name = labels[missing[0]] if missing[0] < len(labels) else missing[0]
        raise GateError(f"--classes: class {missing[0]} ({name!r}) was not audited in this run; check one of its audited classes")
    return chosen


def _stats(f, limit: float) -> str:
    """An offender's numbers, its effect never printed as the limit it exceeds (0.3004 is not "0.30" beside "above
    0.30")."""
    return (f"effect {fmt.effect(f.effect, bars=(limit,))} (95% CI {fmt.interval(f.ci_low, f.ci_high)}, q {fmt.pq(f.q)}, "
            f"{f.n_images} {f.unit})")


def _one_line(text: str) -> str:
    """Whitespace collapsed and control characters (NUL, terminal escape codes) shown as ``\\xNN``: one inert line."""
    shown = "".join(c if c.isprintable() or c.isspace() else (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
                    for c in str(text))
    return " ".join(shown.split())


_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """Characters XML 1.0 cannot hold (NUL, escape codes, lone surrogates) as visible ``\\xNN``; ElementTree escapes the rest."""
    return _XML_INVALID.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
