"""Read a run directory (docs/run-format.md) into plain objects for the templates.

Only saved artifacts are read, never models. A damaged or partial run still
renders: unreadable files become warnings shown on the page, interrupted
classes are listed as incomplete, absent findings mean "analysis not run".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from probe.errors import RunError
from probe.run.records import FINDING_KINDS, STATUSES, rank_findings
from probe.run import CONFIG, FINDINGS, METRICS, RunDir, RunFormatError, class_index_of
from probe.report.slug import slugify

__all__ = ["RunData", "ClassData", "load_run", "rank_findings", "STATUSES", "STATUS_LABELS", "KINDS"]

_KINDS = ("baseline", "token")
KINDS = FINDING_KINDS  # the run's one vocabulary (probe.run.records), in display order
STATUS_LABELS = {"passes": "passes", "weak": "weak", "inconclusive": "inconclusive", "screened": "screening only",
                 "unverified": "unverified"}


@dataclass
class ClassData:
    """One attempted class: its metrics, history and where its files are."""

    index: int
    name: str
    dir: Path | None
    status: str  # "done" | "failed" | "incomplete" | "unreadable"
    error: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    findings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return slugify(self.name)

    @property
    def page_name(self) -> str:
        """File name of this class's page: index keeps it unique, slug keeps it readable."""
        return f"{self.index}-{self.slug}.html"

    def stat(self, kind: str, key: str) -> float | None:
        block = self.metrics.get(kind)
        return _num(block.get(key)) if isinstance(block, dict) else None

    @property
    def token_change(self) -> dict[str, Any]:
        """metrics.json's ``token_change`` (distance, relative, cosine, moved, image_change); {} when absent."""
        tc = self.metrics.get("token_change")
        return tc if isinstance(tc, dict) else {}

    @property
    def moved(self) -> bool | None:
        """Did the token move away from its initial word? None when the run did not record it."""
        return _flag(self.token_change.get("moved"))

    @property
    def top_cue(self) -> str | None:
        passing = [f for f in self.findings if f.get("passes")]
        return str(passing[0].get("cue")) if passing else None

    def __repr__(self) -> str:
        return f"ClassData(index={self.index}, name={self.name!r}, status={self.status!r})"


@dataclass
class RunData:
    """Everything the report shows, loaded from one run directory."""

    run_dir: Path
    config: dict[str, Any] | None
    labels: list[str]
    classes: list[ClassData]
    findings: list[dict[str, Any]] | None  # None: analysis not run
    warnings: list[str] = field(default_factory=list)
    analysis: dict[str, Any] | None = None  # analysis.json: methods run/skipped, notes, per-class extras

    def class_analysis(self, index: int) -> dict[str, Any]:
        per = (self.analysis or {}).get("classes")
        info = per.get(str(index)) if isinstance(per, dict) else None
        return info if isinstance(info, dict) else {}

    def __repr__(self) -> str:
        n_f = "not run" if self.findings is None else len(self.findings)
        return f"RunData({str(self.run_dir)!r}, classes={len(self.classes)}, findings={n_f}, warnings={len(self.warnings)})"


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _flag(v: Any) -> bool | None:
    """A yes/no from JSON (bool) or from summary.csv ("True"/"False"); None when unknown."""
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return v.strip().lower() in ("true", "1", "yes")
    if isinstance(v, (int, float)) and not isinstance(v, bool) and v in (0, 1):
        return bool(v)
    return None


def _lenient(read, warnings: list[str], what: str):
    """``read()``, or None with a warning when the file is damaged (a report of a damaged run still renders)."""
    try:
        return read()
    except RunFormatError:
        raise
    except RunError as e:
        warnings.append(f"{what}: {e}; it is left out of this report")
        return None


def _clean_finding(f: dict[str, Any]) -> dict[str, Any]:
    """One finding, as ``RunDir.read_findings`` checked it (plain Python values, the defaults of older analyses
    filled in: no status -> "passes" or "weak", no unit -> "images"), with the report's display fields added.
    The coercions below are a second line of defence for dicts handed in directly."""
    out = dict(f)
    for k in ("effect", "ci_low", "ci_high", "p", "q"):
        out[k] = _num(out.get(k))
    for k in ("n_images", "excluded", "attempted"):
        n = _num(out.get(k))
        out[k] = int(n) if n is not None else None
    ci = _num(out.get("class_index"))
    out["class_index"] = int(ci) if ci is not None else None
    ev = out.get("evidence")
    if ev is None or isinstance(ev, (str, bytes)):
        ev = [ev] if isinstance(ev, str) else []
    out["evidence"] = [str(e) for e in list(ev)]
    out["passes"] = bool(out.get("passes", False))
    out["strength"] = "strong" if out.get("strength") == "strong" else "weak"
    for k in ("cue", "kind", "class_name", "sentence"):
        v = out.get(k)
        out[k] = None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
    status = out.get("status")
    if status not in STATUSES:
        status = "passes" if out["passes"] else "weak"
    out["status"] = status
    out["status_label"] = STATUS_LABELS[status]
    out["unit"] = "pairs" if out.get("unit") == "pairs" else "images"
    details = out.get("details")
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            details = None
    out["details"] = details if isinstance(details, dict) else {}
    note = out["details"].get("excluded_note")
    out["excluded_note"] = str(note) if isinstance(note, str) and note.strip() else None
    return out


def load_run(run_dir: str | Path) -> RunData:
    """Load ``run_dir``; raise RunError when it is not a run directory at all, or one of another format."""
    run = RunDir(run_dir)
    run_dir = run.root
    if not run_dir.is_dir():
        raise RunError(f"run directory {str(run_dir)!r} does not exist; pass the folder `probe audit` wrote (runs/NAME)")
    if not (run_dir / CONFIG).exists() and not (run_dir / "classes").is_dir():
        raise RunError(
            f"{str(run_dir)!r} has neither config.json nor classes/; pass the folder `probe audit` wrote (runs/NAME)"
        )
    warnings: list[str] = []
    config = _lenient(run.read_config, warnings, "run config")
    if config is None and not any("config" in w for w in warnings):
        warnings.append("config.json is missing: run metadata cannot be shown")
    labels = _lenient(run.read_labels, warnings, "labels file") or []
    summary = _lenient(run.read_summary, warnings, "summary") or {}

    by_index: dict[int, ClassData] = {}
    for cdir in run.class_dirs():
        idx = class_index_of(cdir.name)
        name = labels[idx] if idx < len(labels) else cdir.name.split("-", 1)[-1]
        mpath = cdir / METRICS
        if not mpath.exists():
            cd = ClassData(idx, name, cdir, "incomplete", error="interrupted: no metrics.json (redone on resume)")
        else:
            metrics = _lenient(lambda: run.read_metrics(cdir, strict=True), warnings, f"class {idx}")
            if not isinstance(metrics, dict):
                cd = ClassData(idx, name, cdir, "unreadable", error="metrics.json is unreadable")
            else:
                name = str(metrics.get("class_name") or name)  # null: a class the audit named by token only
                status = str(metrics.get("status") or "incomplete")
                err = metrics.get("error")
                cd = ClassData(idx, name, cdir, status, error=None if err is None else str(err), metrics=metrics)
        cd.history = _lenient(lambda: run.read_history(cdir), warnings, f"class {idx} history") or []
        if idx in by_index:  # two attempts for one index: keep the finished one
            if by_index[idx].status in ("done", "failed"):
                continue
        by_index[idx] = cd
    for idx, row in summary.items():  # in summary but the folder is gone
        if idx not in by_index:
            name = row.get("class_name") or (labels[idx] if idx < len(labels) else str(idx))
            by_index[idx] = ClassData(idx, str(name), None, str(row.get("status") or "incomplete"),
                                      error="class folder missing; only summary.csv figures are shown",
                                      metrics={"steps": _num(row.get("steps")), "seconds": _num(row.get("seconds")),
                                               "token_change": {"moved": _flag(row.get("token_moved"))},
                                               "baseline": {"accuracy": _num(row.get("baseline_accuracy"))},
                                               "token": {"accuracy": _num(row.get("token_accuracy"))}})

    def damaged_finding(message: str) -> None:  # one record is left out, the others are shown
        warnings.append(f"findings: {message}; that finding is left out of this report")

    raw = _lenient(lambda: run.read_findings(on_error=damaged_finding), warnings, "findings")
    findings = None if raw is None and not (run_dir / FINDINGS).exists() else rank_findings([_clean_finding(f) for f in raw or []])
    analysis = _lenient(run.read_analysis, warnings, "analysis summary")
    classes = [by_index[i] for i in sorted(by_index)]
    if findings:
        for f in findings:
            ci = f.get("class_index")
            if ci is not None and ci in by_index:
                by_index[ci].findings.append(f)
    return RunData(run_dir, config, labels, classes, findings, warnings, analysis)
