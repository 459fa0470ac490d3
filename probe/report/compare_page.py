"""``render_comparison(comparison, out_dir)``: a ``probe.compare`` result as one HTML page in the report's style.

1. Choose the folder: the one the caller names, else ``RUN_B/compare-<name of A>``; never the run's own
   folders (its root, classes/, analysis/).
2. Build the view: the verdict counts, the changed rows with both runs' evidence thumbnails (relative
   links to the images inside each run, nothing copied), the per-class table, every cue row.
3. Write ``index.html`` and the report's CSS and JavaScript (``assets/``) with jinja autoescape: class
   names, cue names and statuses are untrusted text.
"""

from __future__ import annotations

import math
import os
from datetime import datetime, timezone
from pathlib import Path

from probe.files import linked_folder, slugify, write_text

__all__ = ["render_comparison", "default_out"]

PAGE_SIZE = 100
THUMBS = 3  # evidence images per run and row


def relative_link(target: str | Path, page_dir: Path) -> str:
    """``target`` as a link from a page in ``page_dir`` ('/'-separated, relative), starting with "./" or "../" so
    that a folder named like a scheme ("javascript:x") is never read as one."""
    link = Path(os.path.relpath(target, page_dir)).as_posix()
    return link if link.startswith("../") else f"./{link}"


def generated_at() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def default_out(comparison) -> Path:
    return Path(comparison.run_b) / f"compare-{slugify(Path(comparison.run_a).name)}"


def check_out(run_a, run_b, out: str | Path) -> None:
    """The comparison page's folder, refused when it is a run (A, B or any other) or lies in a run's classes/,
    analysis/ or report/ (``--out B/report`` would replace B's own report page). Called by ``probe compare`` before
    the runs are read, and again when the page is written."""
    from probe.run import enclosing_run
    from probe.report.render import ReportError

    out = Path(out)
    resolved = out.resolve()
    third = enclosing_run(resolved)  # a run other than A and B (--out RUN_C/report) is no place for it either
    for run in {Path(run_a).resolve(), Path(run_b).resolve(), *([third] if third else [])}:
        if resolved == run or any(resolved.is_relative_to(run / part) for part in ("classes", "analysis", "report")):
            raise ReportError(f"--out {str(out)!r} would mix the comparison into a run's own files (its folder, "
                              "classes/, analysis/ or report/, whose index.html it would replace); pass a separate "
                              f"folder (default {str(Path(run_b) / ('compare-' + slugify(Path(run_a).name)))!r})")
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {str(out)!r} exists and is not a folder; pass a new or existing folder")


def render_comparison(comparison, out_dir: str | Path | None = None) -> Path:
    from probe.report.render import environment, probe_version, template_dir

    verdicts = tuple(comparison.counts)  # the verdicts in their order (the comparison owns them)

    # 1. the folder
    out = Path(out_dir) if out_dir is not None else default_out(comparison)
    resolved = out.resolve()
    check_out(comparison.run_a, comparison.run_b, out)
    if out_dir is None:  # the default folder lies in run B, whose folders are data: none may be a link
        from probe.report.render import ReportError

        linked = linked_folder(out)
        if linked is not None:
            raise ReportError(f"{str(linked)!r} is a link to {os.path.realpath(linked)!r}; the comparison writes only "
                              "into real folders inside run B: remove the link, or pass --out for another folder")
    # 2. the view
    page = resolved
    rows = [_row_view(r, page) for r in comparison.cues.to_dict(orient="records")]
    view = {
        "a": Path(comparison.run_a).name, "b": Path(comparison.run_b).name,
        "a_path": str(comparison.run_a), "b_path": str(comparison.run_b),
        "a_report": _report_link(comparison.run_a, page), "b_report": _report_link(comparison.run_b, page),
        "counts": comparison.counts, "verdicts": verdicts, "n_tested": sum(r["p"] is not None for r in rows),
        "changed": [r for r in rows if r["verdict"] in verdicts[:4]],
        "class_rows": [_class_view(c) for c in comparison.classes.to_dict(orient="records")],
        "cue_rows": [_cue_cells(r) for r in rows],
        "facets": _facets(rows, verdicts),
        "skipped": comparison.skipped, "notes": comparison.notes,
        "fdr_q": comparison.fdr_q, "min_effect": comparison.min_effect,
        "fdr_name": {"by": "Benjamini–Yekutieli", "bh": "Benjamini–Hochberg"}[comparison.fdr_method],
    }
    # 3. write
    tdir = template_dir()
    env = environment(tdir)
    html = env.get_template("compare.html").render(
        rel="", single=False, version=probe_version(), generated=generated_at(), run_name=f"{view['a']} → {view['b']}",
        index_href="index.html", findings_href="index.html#cues", page_size=PAGE_SIZE, v=view)
    write_text(out / "assets" / "report.css", (tdir / "static" / "report.css").read_text(encoding="utf-8"))
    write_text(out / "assets" / "report.js", (tdir / "static" / "report.js").read_text(encoding="utf-8"))
    return write_text(out / "index.html", html)


def _num(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _thumbs(paths, page: Path) -> list[dict]:

    return [{"src": relative_link(p, page), "w": 56, "h": 56} for p in list(paths or [])[:THUMBS] if Path(p).is_file()]


def _report_link(run, page: Path) -> str | None:

    index = Path(run).resolve() / "report" / "index.html"
    return relative_link(index, page) if index.is_file() else None


def _row_view(r: dict, page: Path) -> dict:
    view = {k: (_num(v) if isinstance(v, float) else v) for k, v in r.items() if k not in ("evidence_a", "evidence_b")}
    view["thumbs_a"], view["thumbs_b"] = _thumbs(r.get("evidence_a"), page), _thumbs(r.get("evidence_b"), page)
    view["css"] = "v-" + str(r["verdict"]).replace(" ", "-")
    return view


def _class_view(c: dict) -> dict:
    return {k: (_num(v) if isinstance(v, float) else v) for k, v in c.items()}


def _cue_cells(r: dict) -> list:
    """One row of the cue table: [text, sort value, href, css class, filter key] per cell."""
    from probe.run import format as fmt

    change = r["change"]
    return [
        [r["verdict"], r["verdict"], None, f"cmp-verdict {r['css']}", r["verdict"]],
        [f"{r['class_index']} {r['class_name']}", r["class_index"], None, None, str(r["class_index"])],
        [r["cue"], r["cue"], None, None, r["cue"]],
        [r["kind"], r["kind"], None, None, r["kind"]],
        [f"{fmt.effect(r['effect_a'])} · {r['status_a']}", r["effect_a"]],
        [f"{fmt.effect(r['effect_b'])} · {r['status_b']}", r["effect_b"]],
        [fmt.effect(change), change, None, "pos" if (change or 0) > 0 else ("neg" if (change or 0) < 0 else "")],
        [fmt.interval(r["ci_low"], r["ci_high"]) if r["p"] is not None else "–", r["ci_low"]],
        [f"{r['n_shared']} · {r['basis']}", r["n_shared"]],
        [fmt.pq(r["p"]), r["p"]],
        [fmt.pq(r["q"]), r["q"]],
    ]


def _facets(rows: list[dict], verdicts) -> list[dict]:
    present = {r["verdict"] for r in rows}
    kinds = sorted({r["kind"] for r in rows})
    classes = sorted({(r["class_index"], r["class_name"]) for r in rows})
    return [
        {"col": 0, "name": "verdict", "all": "all verdicts", "options": [(v, v) for v in verdicts if v in present]},
        {"col": 1, "name": "class", "all": "all classes", "options": [(str(i), f"#{i} {n}") for i, n in classes]},
        {"col": 3, "name": "kind", "all": "all kinds", "options": [(k, k) for k in kinds]},
    ]
