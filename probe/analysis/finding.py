"""The Finding record: one quantified claim about a class, its statistics, its evidence, and its words."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from probe.analysis.errors import AnalysisError
from probe.run import RunDir
from probe.run.records import FINDING_KINDS, STATUSES  # one vocabulary: the run's records are checked against it
from probe.run.records import rank_findings as rank
from probe.run import format as fmt

OFF_OBJECT_CUE = "off-object"


@dataclass(frozen=True)
class Finding:
    """One quantified statement about a class, with its evidence.

    ``effect`` with its interval ``ci_low``..``ci_high`` is measured on ``n_images`` pairs (``unit``: "pairs",
    or "images" for off-object shares). ``p`` is the test's p-value and ``q`` its false-discovery-rate
    adjusted value across the audit. ``status``: "passes" (confirmed on fresh pairs: effect, q and pair
    count all meet the bars), "weak" (a real-looking effect that missed a bar), "inconclusive" (most
    interventions failed their check), "screened" (seen in the screening pass only, never confirmed).
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

    def __post_init__(self) -> None:
        if self.kind not in FINDING_KINDS:
            raise AnalysisError(f"finding kind {self.kind!r} is unknown; use one of {list(FINDING_KINDS)}.")
        if self.strength not in ("strong", "weak"):
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
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        for k in ("effect", "ci_low", "ci_high", "p", "q"):
            d[k] = float("nan") if d.get(k) is None else float(d[k])
        d["evidence"] = tuple(d.get("evidence") or ())
        d["details"] = d.get("details") or {}
        return cls(**d)

    def __repr__(self) -> str:
        return f"Finding[{self.status}] {self.kind} class {self.class_index} cue {self.cue!r}: {self.sentence}"


class Findings(list):
    """The findings of a run, best first: a list of :class:`Finding` that displays itself."""

    @property
    def passing(self) -> "Findings":
        return Findings(f for f in self if f.passes)

    def for_class(self, class_index: int) -> "Findings":
        return Findings(f for f in self if f.class_index == class_index)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([f.to_dict() for f in self])

    def __repr__(self) -> str:
        head = f"Findings({len(self)} findings, {len(self.passing)} passing)"
        lines = [f"  {f!r}" for f in self[:10]]
        more = [f"  ... {len(self) - 10} more"] if len(self) > 10 else []
        return "\n".join([head, *lines, *more])

    def _repr_html_(self) -> str:
        from html import escape

        cols = ("class", "kind", "cue", "effect", "95% CI", "n", "p", "q", "status", "finding")
        head = "".join(f"<th>{c}</th>" for c in cols)
        rows = []
        for f in self[:200]:
            cells = (
                f"{f.class_index} {f.class_name}", f.kind, f.cue, f"{f.effect:+.2f}", f"{f.ci_low:.2f}–{f.ci_high:.2f}",
                f"{f.n_images} {f.unit}", fmt.pq(f.p), fmt.pq(f.q), f.status, f.sentence,
            )
            rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
        more = f"<p>{len(self) - 200} more not shown</p>" if len(self) > 200 else ""
        return f"<p>{len(self)} findings, {len(self.passing)} passing</p><table><tr>{head}</tr>{''.join(rows)}</table>{more}"


def rank_findings(findings: list[Finding]) -> Findings:
    """Best first, by the run's one ranking (``probe.run.records.rank_findings``)."""
    return Findings(rank(findings, get=getattr))


def write_findings(run_dir, findings: list[Finding]) -> None:
    """Write ``findings.json`` and ``findings.parquet`` (details as a JSON string column)."""
    RunDir(run_dir).write_findings([f.to_dict() for f in findings], list(Finding.__dataclass_fields__))


def read_findings(run_dir) -> Findings:
    """Load the findings back as Finding objects (each record checked by ``RunDir.read_findings``: a damaged one
    is a RunError naming the file, the record and the field)."""
    data = RunDir(run_dir).read_findings()
    if data is None:
        raise AnalysisError(f"{run_dir}/findings.json does not exist; run analyze_run (or `probe audit`) first.")
    return Findings(Finding.from_dict(d) for d in data)


# ----------------------------------------------------------------------------------------- sentences
def _interval(ci_low: float, ci_high: float) -> str:
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return "95% CI unbounded"
    return f"95% CI {ci_low:.2f}–{ci_high:.2f}"


def sentence(kind: str, name: str, description: str, effect: float, ci: tuple[float, float], n: int, *,
             status: str, extra: dict) -> str:
    """The finding in words; weak, inconclusive and screened findings say so first."""
    stats = f"{_interval(*ci)}, {n} {'images' if kind == 'off-object' else 'pairs'}"
    if kind == "sufficiency":
        s = f"'{name}' is predicted from {description}: {effect:+.2f} probability when added to other objects ({stats})"
    elif kind == "necessity":
        counters = extra.get("counters") or []
        shown = ", ".join(f"'{c}'" for c in counters[:2]) + (" …" if len(counters) > 2 else "")
        verb = "lowers" if effect >= 0 else "raises"
        s = (f"'{name}' depends on {description}: swapping it for {shown or 'a counter-context'} "
             f"{verb} its probability by {abs(effect):.2f} (effect {effect:+.2f}, {stats})")
    elif kind == "token-shift":
        verb = "adds" if effect >= 0 else "removes"
        s = (f"The token for '{name}' {verb} {description}: {extra.get('freq_baseline', 0):.0%} → "
             f"{extra.get('freq_token', 0):.0%} of images ({effect:+.2f}, {stats})")
    else:
        s = (f"{effect:.0%} of the attribution for '{name}' lies outside the object ({_interval(*ci)}), "
             f"an area of {extra.get('area_outside', 0):.0%} of the image; {n} images")
    prefix = {"passes": "", "weak": "Weak evidence: ", "inconclusive": "Inconclusive: ",
              "screened": "Screening only (not confirmed): "}[status]
    return prefix + s
