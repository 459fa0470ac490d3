"""Findings: the ``Finding`` record (kept with the run's other records, ``probe.run.types``, and named here too),
the list that displays itself, the ranking, the sentences, and reading and writing them through the run."""

from __future__ import annotations


from probe.analysis.errors import AnalysisError
from probe.run import RunDir
from probe.run.records import FINDING_KINDS, STATUSES  # noqa: F401  one vocabulary, named here for old imports
from probe.run.records import rank_findings as rank
from probe.run import format as fmt
from probe.run.types import Finding

OFF_OBJECT_CUE = "off-object"


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
                f"{f.class_index} {f.class_name}", f.kind, f.cue, fmt.effect(f.effect), fmt.interval(f.ci_low, f.ci_high, sep="–"),
                f"{f.n_images} {f.unit}", fmt.pq(f.p), fmt.pq(f.q), f.status, f.sentence,
            )
            rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
        more = f"<p>{len(self) - 200} more not shown</p>" if len(self) > 200 else ""
        return f"<p>{len(self)} findings, {len(self.passing)} passing</p><table><tr>{head}</tr>{''.join(rows)}</table>{more}"


def rank_findings(findings: list[Finding]) -> Findings:
    """Best first, by the run's one ranking (``probe.run.records.rank_findings``)."""
    return Findings(rank(findings, get=getattr))


def write_findings(run_dir, findings: list[Finding]) -> None:
    """Write ``findings.json`` and ``findings.parquet`` (details as a JSON string column) through the run's writer."""
    RunDir(run_dir).write_findings(list(findings))


def read_findings(run_dir) -> Findings:
    """Load the findings back as Finding objects (each record checked by ``RunDir.read_finding_records``: a damaged
    one is a RunError naming the file, the record and the field)."""
    data = RunDir(run_dir).read_finding_records()
    if data is None:
        raise AnalysisError(f"{run_dir}/findings.json does not exist; run analyze_run (or `probe audit`) first.")
    return Findings(data)


# ----------------------------------------------------------------------------------------- sentences
def _interval(ci_low: float, ci_high: float) -> str:
    return f"95% CI {fmt.interval(ci_low, ci_high, sep='–')}"  # as every surface prints it: rounded outward, ∞ ends


def sentence(kind: str, name: str, description: str, effect: float, ci: tuple[float, float], n: int, *,
             status: str, extra: dict) -> str:
    """The finding in words; weak, inconclusive and screened findings say so first."""
    stats = f"{_interval(*ci)}, {n} {'images' if kind == 'off-object' else 'pairs'}"
    if kind == "sufficiency":
        s = (f"'{name}' is predicted from {description}: {fmt.effect(effect)} probability when added to other objects"
             f"{_carriers(extra.get('carriers'))} ({stats})")
    elif kind == "necessity":
        counters = extra.get("counters") or []
        shown = ", ".join(f"'{c}'" for c in counters[:2]) + (" …" if len(counters) > 2 else "")
        verb = "lowers" if effect >= 0 else "raises"
        s = (f"'{name}' depends on {description}: swapping it for {shown or 'a counter-context'} "
             f"{verb} its probability by {fmt.effect(effect, signed=False)} (effect {fmt.effect(effect)}, {stats})")
    elif kind == "token-shift":
        verb = "adds" if effect >= 0 else "removes"
        s = (f"The token for '{name}' {verb} {description}: {extra.get('freq_baseline', 0):.0%} → "
             f"{extra.get('freq_token', 0):.0%} of images ({fmt.effect(effect)}, {stats})")
    else:
        share, area = extra.get("share_outside"), extra.get("area_outside", 0)
        held = f"{share:.0%} of the attribution for '{name}' lies outside the object, " if share is not None else \
            f"The attribution for '{name}' lies outside the object "
        s = (held + f"{fmt.effect(effect)} more than the {area:.0%} of the image outside it "
             f"(excess {fmt.effect(effect)}, {stats})")
    return sentence_prefix(status) + s


def _carriers(carriers) -> str:
    """The objects a sufficiency claim was measured on, as the sentence names them: the claim is about those."""
    if not carriers:
        return ""
    shown = ", ".join(f"'{c}'" for c in carriers[:3])
    return f" ({shown})" if len(carriers) <= 3 else f" ({shown} … {len(carriers)} in all)"


def sentence_prefix(status: str) -> str:
    """What a finding's sentence says first, by status ("" for a passing one)."""
    return {"passes": "", "weak": "Weak evidence: ", "inconclusive": "Inconclusive: ",
            "screened": "Screening only (not confirmed): ",
            "unverified": "Unverified (nothing checked the generated images): "}[status]
