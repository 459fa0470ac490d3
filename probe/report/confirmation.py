"""The report's view of confirmation.json (``probe confirm``): per class, each finding's real-data numbers and a few
real images from each slice (thumbnails the confirmation copied into the run, copied again into the report's assets,
their names escaped by the templates' autoescape). Reads only the run's files; a damaged file is one warning."""

from __future__ import annotations

from typing import Any

from probe.run import RunDir
from probe.run import format as fmt

__all__ = ["class_confirmation", "overview"]

SLICES = (("cue", "own", "with the cue"), ("counter", "own", "with its counters"), ("cue", "others", "other classes with the cue"))


def class_confirmation(run_dir, assets, class_index: int, warnings: list[str], cache: dict) -> dict[str, Any] | None:
    """The view for one class page, or None when `probe confirm` has not run (or tested nothing of the class)."""
    if "record" not in cache:
        cache["record"] = RunDir(run_dir).read_confirmation(
            on_error=lambda line: warnings.append(f"confirmation.json left out: {line}"))
    record = cache["record"]
    if record is None:
        return None
    mine = [f for f in record.findings if f.class_index == class_index]
    summary = record.by_class(class_index)
    if not mine and summary is None:
        return None
    rows = []
    for f in sorted(mine, key=lambda f: (not f.passes, ("confirmed", "weaker", "contradicted", "not seen").index(f.verdict), f.cue)):
        d = f.decisive
        slices = []
        for which, side, label in SLICES:
            part = getattr(f.own if side == "own" else f.others, which)
            thumbs = []
            for e in part.examples:
                path = assets.inside_run(e.path)
                thumb = assets.image(path, 96) if path is not None else None
                if thumb is not None:
                    thumbs.append({"thumb": thumb, "name": e.name, "label": e.label, "predicted": e.predicted,
                                   "prob": fmt.number(e.prob)})
            slices.append({"label": label, "n": part.n, "rate": fmt.number(part.rate), "thumbs": thumbs})
        rows.append({"cue": f.cue, "kind": f.kind, "status": f.status, "verdict": f.verdict,
                     "verdict_text": f.verdict_text, "strength": record.strength(f), "generated": f"{fmt.effect(f.effect)} [{fmt.interval(f.ci_low, f.ci_high)}]",
                     "measure": d.measure, "gap": f"{fmt.effect(d.gap)} [{fmt.interval(d.low, d.high)}]",
                     "prob_gap": fmt.effect(f.own.prob_gap), "p": fmt.pq(d.p), "q": fmt.pq(f.q), "reason": f.reason,
                     "own": f.own.text(), "others": f.others.text(), "slices": slices})
    return {"headline": record.headline(), "sentence": summary.sentence if summary is not None else "",
            "rows": rows, "checked_by": record.checked_by}


def overview(record, findings: list[dict] | None) -> dict[str, Any] | None:
    """The overview's "on your data" card: how many of the passing cue findings your data confirmed (strong among
    them), and the cues of findings it confirmed that the audit did not pass (a dependence the generator under-drew is
    as real a shortcut). None without a confirmation."""
    if record is None:
        return None
    passing = [f for f in findings or [] if f.get("passes")]
    tested = [r for f in passing if (r := record.finding(f.get("class_index"), f.get("kind"), f.get("cue"))) is not None]
    confirmed = [r for r in tested if r.verdict == "confirmed"]
    # cues (class, cue) no passing finding names, tests of the cue itself (necessity, sufficiency) before token shifts
    claimed = {(f.get("class_index"), f.get("cue")) for f in passing}
    extra = sorted((r for r in record.findings if r.verdict == "confirmed" and not r.passes
                    and (r.class_index, r.cue) not in claimed), key=lambda r: (r.kind == "token-shift", r.class_index))
    named = list(dict.fromkeys(f"{r.class_name}: {r.cue}" for r in extra))
    return {"images": record.data.get("used"), "tested": len(tested), "confirmed": len(confirmed),
            "strong": sum(record.strength(r) == "strong" for r in confirmed), "extra": len(named),
            "extra_named": ", ".join(named[:3]) + (", …" if len(named) > 3 else "")}
