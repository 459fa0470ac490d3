"""The gate: fail a build when a run's confirmed findings are too large (``probe check``).

``check_run(run_dir, max_effect=0.3)`` reads a finished run's findings (``findings.json``, through
``probe.analysis.read_findings``) and returns a :class:`CheckResult`: the *offenders* (findings that pass
and whose effect is larger than the limit) and one case per audited class, which writes itself as JUnit
XML so a CI system shows every class as a test case.

What offends, and why:

* Only **passing** findings count: they are confirmed on fresh pairs with the false discovery rate
  controlled across the audit. Weak, screened and inconclusive findings never fail a build.
* The comparison is on **|effect|**: a passing necessity finding of -0.4 (swapping the cue *raises* the
  class's probability by 0.4) or a token that removes a concept is as large a dependence on the cue as
  +0.4; the gate bounds how much the classifier leans on a cue, whichever way. The point estimate is
  compared (the pass rule has already required its interval and q to exclude no effect).
* **Off-object** findings measure a share of the attribution (0..1 of the classifier's evidence outside
  the object), not a change in probability, so ``max_effect`` does not apply to them. They are left out
  unless ``kinds`` names ``off-object``; then every passing one offends (passing already means the lower
  end of its interval reaches the analysis's ``off_object_min_share``).

A run without findings (analysis switched off or failed) is a ``GateError``, never a pass.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from probe.errors import ProbeError

GATE_FAILED = 3  # exit code of `probe check` (and `probe audit --max-effect`) when a finding exceeds the limit
KINDS = ("sufficiency", "necessity", "token-shift", "off-object")
DEFAULT_KINDS = ("sufficiency", "necessity", "token-shift")  # kinds whose effect is a change in probability
SHARE_KINDS = ("off-object",)  # effect is a share, not a change: every passing one offends when selected


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


def check_junit_path(path: str | Path | None) -> Path | None:
    """The --junit target, checked before any work: its folder must exist and it must not be a folder."""
    if path is None:
        return None
    target = Path(path).expanduser()
    if target.is_dir():
        raise GateError(f"--junit {str(path)!r} is a folder; name a file, e.g. --junit results.xml")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise GateError(f"--junit {str(path)!r}: its folder {str(parent)!r} does not exist; create it or name another path")
    return target


@dataclass(frozen=True)
class GateConfig:
    """The gate's settings, from ``probe check`` or ``probe audit --max-effect`` to :func:`check_run`."""

    max_effect: float
    kinds: tuple[str, ...] | None = None
    junit: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "max_effect", check_max_effect(self.max_effect))
        object.__setattr__(self, "kinds", parse_kinds(self.kinds))
        if self.junit is not None and not str(self.junit).strip():
            raise GateError("--junit is empty; name a file, e.g. --junit results.xml")

    @classmethod
    def from_dict(cls, data: dict) -> "GateConfig":
        return cls(**{k: v for k, v in data.items() if k in ("max_effect", "kinds", "junit")})


@dataclass(frozen=True)
class ClassCase:
    """One audited class as a test case: passed, failed (with its offenders) or skipped (no token)."""

    class_index: int
    class_name: str
    status: str  # "passed", "failed" or "skipped"
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

    @property
    def offenders(self) -> list:
        return [f for case in self.cases for f in case.offenders]

    @property
    def passed(self) -> bool:
        return not self.offenders

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else GATE_FAILED

    def lines(self) -> list[str]:
        """One line per offending finding (whitespace of untrusted names collapsed, so a line stays one line)."""
        return [_one_line(f"class {f.class_index} {f.class_name!r}: {f.kind} {f.cue!r} {_stats(f)}: {f.sentence}")
                for f in self.offenders]

    def verdict(self) -> str:
        failed = [c for c in self.cases if c.status == "failed"]
        limit = self.limit_text()
        if failed:
            return (f"gate failed: {len(self.offenders)} passing finding(s) above {limit} in {len(failed)} of "
                    f"{len(self.cases)} class(es)")
        checked = sum(c.checked for c in self.cases)
        return f"gate passed: no passing finding above {limit} ({len(self.cases)} class(es), {checked} passing finding(s) checked)"

    def limit_text(self) -> str:
        return f"|effect| {self.max_effect:.2f} ({', '.join(self.kinds)})"

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
                cells = (case.name, case.status, f.kind, f.cue, f"{f.effect:+.2f}", f"{f.ci_low:.2f}–{f.ci_high:.2f}",
                         _q(f.q), f.sentence)
                rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
        return f"<p>{escape(self.verdict())}</p><table><tr>{head}</tr>{''.join(rows)}</table>"

    def junit_xml(self) -> bytes:
        """JUnit XML: one testsuite, one testcase per audited class, a failure per class with offenders."""
        failures = sum(c.status == "failed" for c in self.cases)
        skipped = sum(c.status == "skipped" for c in self.cases)
        suites = ET.Element("testsuites", tests=str(len(self.cases)), failures=str(failures))
        suite = ET.SubElement(suites, "testsuite", name=_xml(f"probe check {self.run_dir.name}"),
                              tests=str(len(self.cases)), failures=str(failures), errors="0", skipped=str(skipped))
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="max_effect", value=f"{self.max_effect:g}")
        ET.SubElement(props, "property", name="kinds", value=",".join(self.kinds))
        for case in self.cases:
            element = ET.SubElement(suite, "testcase", classname="probe.check", name=_xml(case.name))
            if case.status == "failed":
                failure = ET.SubElement(element, "failure", type="probe.gate", message=_xml(
                    f"{len(case.offenders)} passing finding(s) above {self.limit_text()}"))
                failure.text = _xml("\n".join(f"{f.kind} {f.cue!r}: {_stats(f)}: {f.sentence}" for f in case.offenders))
            elif case.status == "skipped":
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
              classes: str | Sequence[int | str] | None = None) -> CheckResult:
    """The gate on one run directory: which passing findings exceed ``max_effect``? (see the module docstring)."""
    from probe.analysis import read_findings
    from probe.rundir import RunDir

    # 1. the settings: a limit, the kinds it applies to
    limit = check_max_effect(max_effect)
    selected_kinds = parse_kinds(kinds) or DEFAULT_KINDS
    # 2. the run: a probe run whose analysis ran (no findings is an error, never a pass)
    run = RunDir(run_dir)
    config = run.read_config()
    if config is None:
        raise GateError(f"{str(run_dir)!r} is not a probe run directory (no config.json); pass the --out folder of `probe audit`")
    if run.read_findings() is None:
        raise GateError(f"{str(run_dir)!r} has no findings.json (the analysis was switched off or failed); run "
                        "`probe audit` with the analysis on into it first, then check it")
    findings = read_findings(run.root)
    # 3. the audited classes: those the run selected or finished, optionally narrowed by ``classes``
    labels = run.read_labels() or []
    finished = {m["class_index"]: m for _, m in run.finished_classes()}
    audited = sorted({int(i) for i in config.get("classes") or [] if isinstance(i, int)} | set(finished))
    if classes is not None:
        audited = _narrow(classes, audited, labels)
    # 4. one case per class: its passing findings of the selected kinds over the limit offend
    cases = []
    for index in audited:
        metrics = finished.get(index)
        name = str((metrics or {}).get("class_name") or (labels[index] if index < len(labels) else index))
        if metrics is None or metrics.get("status") != "done":
            reason = "class not finished" if metrics is None else f"class failed: {metrics.get('error') or 'see metrics.json'}"
            cases.append(ClassCase(index, name, "skipped", reason=_one_line(reason)))
            continue
        own = [f for f in findings if f.class_index == index and f.passes and f.kind in selected_kinds]
        offenders = tuple(f for f in own if _offends(f, limit))
        cases.append(ClassCase(index, name, "failed" if offenders else "passed", offenders, checked=len(own)))
    return CheckResult(run_dir=run.root, max_effect=limit, kinds=selected_kinds, cases=cases)


def run_gate(run_dir: str | Path, gate: GateConfig) -> CheckResult:
    """:func:`check_run` with a :class:`GateConfig`, writing its JUnit file when one is named."""
    result = check_run(run_dir, max_effect=gate.max_effect, kinds=gate.kinds)
    if gate.junit:
        result.write_junit(gate.junit)
    return result


def _offends(finding, limit: float) -> bool:
    if finding.kind in SHARE_KINDS:
        return True  # a share of attribution, not a change: passing is the verdict (module docstring)
    return math.isfinite(finding.effect) and abs(finding.effect) > limit


def _narrow(classes, audited: list[int], labels: list[str]) -> list[int]:
    from probe.classifiers.select import select_classes

    chosen = select_classes(classes, labels or [str(i) for i in range(max(audited, default=-1) + 1)])
    missing = [i for i in chosen if i not in audited]
    if missing:
        name = labels[missing[0]] if missing[0] < len(labels) else missing[0]
        raise GateError(f"--classes: class {missing[0]} ({name!r}) was not audited in this run; check one of its audited classes")
    return chosen


def _stats(f) -> str:
    ci = (f"95% CI {f.ci_low:+.2f}..{f.ci_high:+.2f}" if math.isfinite(f.ci_low) and math.isfinite(f.ci_high)
          else "95% CI unbounded")
    return f"effect {f.effect:+.2f} ({ci}, q {_q(f.q)}, {f.n_images} {f.unit})"


def _q(value: float) -> str:
    return "–" if not math.isfinite(value) else (f"{value:.2g}" if value >= 1e-3 else "<0.001")


def _one_line(text: str) -> str:
    """Whitespace collapsed and control characters (NUL, terminal escape codes) shown as ``\\xNN``: one inert line."""
    shown = "".join(c if c.isprintable() or c.isspace() else (f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}")
                    for c in str(text))
    return " ".join(shown.split())


_XML_INVALID = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """Characters XML 1.0 cannot hold (NUL, escape codes, lone surrogates) as visible ``\\xNN``; ElementTree escapes the rest."""
    return _XML_INVALID.sub(lambda m: f"\\x{ord(m.group()):02x}", str(text))
