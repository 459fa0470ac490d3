"""``render_report(run_dir)``: a run directory's saved artifacts -> an offline HTML report.

Layout written under ``out`` (default ``RUN_DIR/report``)::

    index.html            ranked findings, sortable/paged class table, run metadata
    findings.html         every finding (sortable, paged, filterable)
    classes/<i>-<slug>.html   one page per class
    assets/report.css, assets/report.js, assets/img/..   thumbnails and curves

With ``single_file=True`` all of it is one HTML file with every image embedded
as a data URI and class pages as in-page sections (``#c<i>``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from probe.analysis.evaluation import gain_text, token_gain
from probe.errors import ProbeError
from probe.files import linked_folder
from probe.report.confirmation import class_confirmation, overview as real_overview
from probe.report.assets import AssetStore, atomic_write_text
from probe.report.curves import LOSS_TITLES, CurvePlotter
from probe.report.data import KINDS, STATUS_LABELS, STATUSES, ClassData, RunData, load_run
from probe.run import CONFIG, HISTORY, METRICS, RunDir
from probe.run import format as fmt
from probe.run.records import UNCHECKED_NOTE
from probe.run.summary import clears_bar, strength_counts, summarise_class
from probe.run.types import DROPPED_BY_INDEX

__all__ = ["render_report", "ReportError", "template_dir"]

log = logging.getLogger("probe.report")
_PAGE_NAME = re.compile(r"^\d+-[a-z0-9_-]+\.html$")

CLASS_PAGE_SIZE = 50
FINDINGS_ON_INDEX = 20
EVIDENCE_PER_FINDING = 6


class ReportError(ProbeError):
    """The report cannot be written (bad output path, missing templates)."""


# -- templates ---------------------------------------------------------------------------------
def template_dir() -> Path:
    """The installed wheel's ``probe/_report_templates``, else the repo's ``reports/templates``."""
    try:
        packaged = resources.files("probe") / "_report_templates"
        if packaged.is_dir():
            return Path(str(packaged))
    except (ModuleNotFoundError, TypeError):
        pass
    repo = Path(__file__).resolve().parents[2] / "reports" / "templates"
    if repo.is_dir():
        return repo
    raise ReportError(
        f"report templates not found in the package (probe/_report_templates) or at {repo}; "
        "reinstall probe-audit or run from the repository checkout"
    )


def _url(ctx_rel: str, src: str | None) -> str:
    if not src:
        return ""
    if src.startswith(("data:", "#")):
        return src
    return ctx_rel + src


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _printable(value: Any) -> Any:
    """Control characters (NUL and the like) from untrusted labels never reach the page; autoescape does the rest."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return _CONTROL.sub("\ufffd", value)
    return value


def environment(tdir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(tdir)),
        autoescape=True,  # every class name, label, prompt and cue is untrusted text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=_printable,
    )

    @jinja2.pass_context
    def url(ctx, src):
        return _url(ctx.get("rel", ""), src)

    env.filters["url"] = url
    env.filters["pct"] = lambda v, d=0: "–" if v is None else f"{100 * v:.{d}f}%"
    env.filters["num"] = fmt.number
    env.filters["signed"] = fmt.effect
    env.filters["pq"] = fmt.pq
    env.filters["ci"] = fmt.interval
    return env


def fmt_n(f: dict[str, Any]) -> str:
    """"16 pairs" or "8 images" (the finding's unit), with the excluded pairs when there were any."""
    n = f.get("n_images")
    text = "–" if n is None else f"{n} {f.get('unit') or 'images'}"
    if f.get("excluded"):
        text += f" ({f['excluded']} excluded)"
    return text


STATUS_HELP = {
    "passes": "confirmed on fresh pairs: effect, q-value and pair count all meet the bars",
    "weak": "a real-looking effect that missed a bar; never promoted",
    "inconclusive": "most interventions failed their check, so the effect cannot be trusted either way",
    "screened": "seen in the screening pass only and never confirmed on fresh pairs",
    "unverified": "met the bars, but nothing checked that the generated images showed the object and the cue",
}
STOP_METRICS = {"accuracy": "batch accuracy", "target_prob": "mean target probability"}


def _base_rate(f: dict[str, Any]) -> dict[str, int] | None:
    """The finding's generator-bias control ({"shown": k, "of": n} baseline images), when it is well formed."""
    rate = (f.get("details") or {}).get("base_rate") if isinstance(f.get("details"), dict) else None
    if not isinstance(rate, dict):
        return None
    shown, of = rate.get("shown"), rate.get("of")
    if not (isinstance(shown, int) and isinstance(of, int) and 0 <= shown <= of and of > 0):
        return None
    return {"shown": shown, "of": of}


def _proposed(f: dict[str, Any]) -> dict[str, Any] | None:
    """Why a discovered cue was proposed ({"group", "reason", "shift", "z"}), when the record is well formed; None for
    a listed cue (probe/analysis/discovery.py)."""
    why = (f.get("details") or {}).get("proposed") if isinstance(f.get("details"), dict) else None
    if not isinstance(why, dict):
        return None
    shift, z = fmt.as_float(why.get("shift")), fmt.as_float(why.get("z"))
    r, t = fmt.as_float(why.get("r")), fmt.as_float(why.get("t"))
    group, reason = why.get("group"), why.get("reason")
    if not isinstance(group, str) or not isinstance(reason, str) or shift is None:
        return None
    return {"group": group, "reason": reason, "shift": shift, "z": z, "r": r, "t": t}


# -- view models -------------------------------------------------------------------------------
def _fmt_value(v: Any, limit: int = 12) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        items = [_fmt_value(x, limit) for x in v[:limit]]
        more = f", … ({len(v)} items)" if len(v) > limit else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(v, dict):
        return json.dumps(v, ensure_ascii=False, default=str)[:300]
    if v is None:
        return "–"
    return str(v)


def _flatten(d: dict, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, _fmt_value(v)))
    return out


def _metadata(run: RunData) -> dict[str, Any]:
    """Run metadata sections from config.json, whatever its exact nesting."""
    cfg = dict(run.config or {})
    audit = cfg.get("audit")
    if isinstance(audit, dict) and isinstance(audit.get("token"), dict) and "token" not in cfg:
        # TokenConfig nested in AuditConfig: its own card reads better than 20 "token.*" rows
        cfg["audit"] = {k: v for k, v in audit.items() if k != "token"}
        cfg["token"] = audit["token"]
    sections: list[tuple[str, list[tuple[str, str]]]] = []
    scalars = [(k, _fmt_value(v)) for k, v in cfg.items() if not isinstance(v, dict)]
    order = ["classifier", "generator", "audit", "token", "versions"]
    dict_keys = [k for k in order if isinstance(cfg.get(k), dict)]
    dict_keys += [k for k, v in cfg.items() if isinstance(v, dict) and k not in dict_keys]
    if scalars:
        sections.append(("run", scalars))
    for k in dict_keys:
        sections.append((k, _flatten(cfg[k])))
    seeds = [(k, v) for _, items in sections for k, v in items if "seed" in k.lower()]
    done = [c for c in run.classes if c.status == "done"]
    secs = [s for c in run.classes if (s := fmt.as_float(c.metrics.get("seconds"))) is not None]
    steps = [s for c in done if (s := fmt.as_float(c.metrics.get("steps"))) is not None]
    timings = [
        ("classes attempted", str(len(run.classes))),
        ("total optimisation time", _duration(sum(secs)) if secs else "–"),
        ("mean time per class", f"{sum(secs) / len(secs):.1f} s" if secs else "–"),
        ("mean steps per finished class", f"{sum(steps) / len(steps):.1f}" if steps else "–"),
    ]
    for k in ("started", "start_time", "finished", "end_time", "created"):
        if k in cfg:
            timings.append((k, _fmt_value(cfg[k])))
    return {"sections": sections, "seeds": seeds, "timings": timings}


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.2f} h"


def _threshold(cfg: dict | None) -> float | None:
    """The early-stop threshold of the run's TokenConfig."""
    return fmt.as_float(RunDir.token_settings(cfg).get("accuracy_threshold"))


def _stop_metric(cfg: dict | None) -> str:
    """What the early-stop threshold applied to: "accuracy" (the paper, and runs that predate the choice) or "target_prob"."""
    return "target_prob" if RunDir.token_settings(cfg).get("stop_metric") == "target_prob" else "accuracy"


def _objective(c: ClassData, cfg: dict | None) -> str | None:
    """The class's optimisation objective (metrics.json, else the run's TokenConfig); None when unknown.

    Runs written before the objective was recorded could only use cross-entropy (the paper's loss).
    """
    obj = c.metrics.get("objective") or RunDir.token_settings(cfg).get("objective") or "cross_entropy"
    return obj if isinstance(obj, str) and obj in LOSS_TITLES else None


class _Builder:
    def __init__(self, run: RunData, out_dir: Path, single: bool, max_images: int, thumb_px: int):
        self.run = run
        self.single = single
        self.max_images = max_images
        self.assets = AssetStore(run.run_dir, out_dir, embed=single, thumb_px=thumb_px)
        self._plotter: CurvePlotter | None = None
        self.threshold = _threshold(run.config)
        self.stop_metric = _stop_metric(run.config)
        self.by_index = {c.index: c for c in run.classes}
        attr = (run.analysis or {}).get("attributions")
        skipped = attr.get("skipped") if isinstance(attr, dict) else None
        self.skipped_methods = [(str(k), str(v)) for k, v in skipped.items()] if isinstance(skipped, dict) else []

    def class_href(self, c: ClassData) -> str:
        return f"#c{c.index}" if self.single else f"classes/{c.page_name}"

    def page_href(self, page: str) -> str:
        return f"#{page}" if self.single else f"{page}.html"

    # findings ---------------------------------------------------------------------------------
    def finding_view(self, f: dict[str, Any], rank: int, evidence: int = EVIDENCE_PER_FINDING) -> dict[str, Any]:
        thumbs = []
        for e in f["evidence"][:evidence]:
            p = self.assets.inside_run(e)
            if p is None:
                self.assets.warnings.append(f"finding evidence path {e!r} points outside the run directory; skipped")
                continue
            if (t := self.assets.image(p, 128)) is not None:
                thumbs.append(t)
        ci = f.get("class_index")
        cls = self.by_index.get(ci) if ci is not None else None
        sentence = f.get("sentence") or _default_sentence(f)
        return {**f, "rank": rank, "thumbs": thumbs, "n_evidence": len(f["evidence"]), "sentence": sentence,
                "n_text": fmt_n(f), "status_help": STATUS_HELP.get(f.get("status"), ""), "base_rate": _base_rate(f),
                "proposed": _proposed(f), "class_href": self.class_href(cls) if cls else None,
                # a passing finding's strength in the class summary's words: its whole interval clears the bar, or only
                # its estimate does (README: 83 of 86 strong passing findings true on eighteen untuned sets)
                "bar_strength": (None if not f.get("passes") or clears_bar(f, self.run.analysis) is None
                                 else "strong" if clears_bar(f, self.run.analysis) else "moderate"),
                "real": self.real_view(f), "class_label": f.get("class_name") or (cls.name if cls else "—")}

    # classes ----------------------------------------------------------------------------------
    @staticmethod
    def heldout(c: ClassData, kind: str) -> float | None:
        em = c.metrics.get("eval_model")
        block = em.get(kind) if isinstance(em, dict) else None
        return fmt.as_float(block.get("accuracy")) if isinstance(block, dict) else None

    def class_row(self, c: ClassData, with_heldout: bool = False) -> list:
        """One row of the class table as JSON-able cells: [text, sort value, href, css class]."""
        b, t = c.stat("baseline", "accuracy"), c.stat("token", "accuracy")
        d = (t - b) if (b is not None and t is not None) else None
        pct = lambda v: "–" if v is None else f"{100 * v:.0f}%"  # noqa: E731
        steps = fmt.as_float(c.metrics.get("steps"))
        secs = fmt.as_float(c.metrics.get("seconds"))
        tp = c.stat("token", "mean_target_prob")
        held = self.heldout(c, "token")
        moved = c.moved
        cue = c.top_cue
        return [
            [str(c.index), c.index],
            [c.name, c.name.lower(), self.class_href(c)],
            [c.status, c.status, None, f"st st-{c.status if c.status in ('done', 'failed') else 'other'}"],
            [pct(b), b],
            [pct(t), t],
            ["–" if d is None else f"{100 * d:+.0f}", d, None, "pos" if (d or 0) > 0 else ("neg" if (d or 0) < 0 else "")],
            ["–" if tp is None else f"{tp:.2f}", tp],
            *([[pct(held), held]] if with_heldout else []),
            ["–" if moved is None else ("yes" if moved else "no"), None if moved is None else int(moved), None,
             "" if moved is None else ("moved" if moved else "unmoved")],
            ["–" if steps is None else f"{steps:.0f}", steps],
            ["–" if secs is None else f"{secs:.1f}", secs],
            [cue or "–", cue or "", None, "" if cue else "muted"],
        ]

    def loss_title(self, c: ClassData) -> str:
        obj = _objective(c, self.run.config)
        return LOSS_TITLES[obj] if obj else "loss"

    def curve(self, c: ClassData):
        if not c.history or c.dir is None:
            return None
        title = self.loss_title(c)

        def make():
            if self._plotter is None:
                self._plotter = CurvePlotter()
            return self._plotter.plot(c.history, fmt.as_float(c.metrics.get("best_step")), self.threshold,
                                      loss_title=title, stop_metric=self.stop_metric)

        key = f"curve:v{CurvePlotter.STYLE}:{c.index}:{c.dir.name}:{self.threshold}:{self.stop_metric}:{title}"
        sources = [c.dir / HISTORY, c.dir / METRICS, self.run.run_dir / CONFIG]
        return self.assets.figure(key, sources, make)

    def class_view(self, c: ClassData, prev: ClassData | None, nxt: ClassData | None) -> dict[str, Any]:
        m = c.metrics
        methods: list[str] = []
        attr_root = c.dir / "attributions" if c.dir else None
        if attr_root is not None and attr_root.is_dir():
            methods = sorted(p.name for p in attr_root.iterdir() if p.is_dir())
        galleries = {}
        shown_methods: set[int] = set()
        records = m.get("images") if isinstance(m.get("images"), list) else []
        if not records and c.dir is not None and (c.dir / "images").is_dir():
            records = [{"path": f"images/{p.name}", "kind": p.name.split("_", 1)[0]}
                       for p in sorted((c.dir / "images").glob("*.png"))]
        by_kind = {}
        for kind in ("baseline", "token"):
            recs = [r for r in records if isinstance(r, dict) and r.get("kind") == kind]
            recs.sort(key=lambda r: (fmt.as_float(r.get("prompt_index")) or 0, fmt.as_float(r.get("seed")) or 0))
            by_kind[kind] = recs
        if c.dir is not None:  # decode and downscale this page's images in parallel first
            wanted = []
            for recs in by_kind.values():
                for r in recs[: self.max_images]:
                    rel = str(r.get("path", ""))
                    if (src := self.assets.inside_run(rel, base=c.dir)) is not None and src.is_file():
                        wanted.append(src)
                    stem = Path(rel).stem
                    wanted += [p for m in methods if (p := c.dir / "attributions" / m / f"{stem}.png").is_file()]
            self.assets.prefetch(wanted)
        for kind in ("baseline", "token"):
            recs = by_kind[kind]
            cards = []
            for r in recs[: self.max_images]:
                cards.append(self.card(c, r, methods, shown_methods))
            galleries[kind] = {"cards": cards, "total": len(recs)}
        method_views = [{"id": f"m{i}", "name": n} for i, n in enumerate(methods) if i in shown_methods]
        info = self.run.class_analysis(c.index)
        nearest = [w for w in info.get("nearest_words") or [] if isinstance(w, dict)]
        shift = info.get("token_shift") if isinstance(info.get("token_shift"), dict) else {}
        shift_rows = []
        for cue, pair in shift.items():
            if isinstance(pair, (list, tuple)) and len(pair) == 2:
                b0, t0 = fmt.as_float(pair[0]), fmt.as_float(pair[1])
                d = (t0 - b0) if b0 is not None and t0 is not None else None
                shift_rows.append({"cue": str(cue), "base": b0, "token": t0, "delta": d})
        shift_rows.sort(key=lambda r: -(r["delta"] if r["delta"] is not None else -9))
        off = info.get("off_object") if isinstance(info.get("off_object"), dict) else None
        prompts = m.get("prompts") if isinstance(m.get("prompts"), dict) else {}
        return {
            "c": c,
            "anchor": f"c{c.index}",
            "href": self.class_href(c),
            "prev": {"href": self.class_href(prev), "name": prev.name} if prev else None,
            "next": {"href": self.class_href(nxt), "name": nxt.name} if nxt else None,
            "facts": self.class_facts(c),
            "eval_model": m.get("eval_model") if isinstance(m.get("eval_model"), dict) else None,
            "prompts": {k: [str(p) for p in v] for k, v in prompts.items() if isinstance(v, list)},
            "curve": self.curve(c),
            "curve_info": {"loss_title": self.loss_title(c), "threshold": self.threshold,
                           "stop_metric": STOP_METRICS[self.stop_metric]},
            "token_change": self.token_change_view(c),
            "galleries": galleries,
            "methods": method_views,
            "findings": [self.finding_view(f, i + 1) for i, f in enumerate(c.findings)],
            "confirmation": class_confirmation(self.run.run_dir, self.assets, c.index, self.assets.warnings,
                                               self.__dict__.setdefault("_confirmation", {})),
            "summary": self.summary(c),
            "nearest": [{"word": str(w.get("word", "?")), "cosine": fmt.as_float(w.get("cosine"))} for w in nearest[:12]],
            "shift": shift_rows[:15],
            "off_object": {**{k: fmt.as_float(off.get(k)) for k in ("share_outside", "excess", "ci_low", "ci_high",
                                                                     "area_outside", "q")},
                           "n": off.get("n"), "confirmed": off.get("stage") == "confirm"} if off else None,
            "skipped_methods": self.skipped_methods,
            "traceback": "".join(str(t) for t in m["traceback"]) if isinstance(m.get("traceback"), list)
            else (str(m["traceback"]) if m.get("traceback") else None),
        }

    def confirmation(self):
        """confirmation.json's record (None without one, or damaged: one warning), read once per report (the cache
        class_confirmation fills too)."""
        cache = self.__dict__.setdefault("_confirmation", {})
        if "record" not in cache:
            cache["record"] = RunDir(self.run.run_dir).read_confirmation(
                on_error=lambda line: self.assets.warnings.append(f"confirmation.json left out: {line}"))
        return cache["record"]

    def real_view(self, f: dict[str, Any]) -> dict[str, Any] | None:
        """A finding's verdict on the user's data (`probe confirm`), for its card: None when it was not tested."""
        record = self.confirmation()
        mine = record.finding(f.get("class_index"), f.get("kind"), f.get("cue")) if record is not None else None
        if mine is None:
            return None
        return {"verdict": mine.verdict, "text": record.verdict_words(mine, short=True), "reason": mine.reason}

    def summary(self, c: ClassData):
        """The class in plain words (probe.run.summary), from the records the page shows."""
        return summarise_class(index=c.index, name=c.name, status=c.status, metrics=c.metrics,
                               findings=c.findings if self.run.findings is not None else None,
                               info=self.run.class_analysis(c.index), analysis=self.run.analysis,
                               confirmation=self.confirmation(),
                               name_shared=(self.run.labels or [x.name for x in self.run.classes]).count(c.name) > 1)

    @staticmethod
    def token_change_view(c: ClassData) -> dict[str, Any] | None:
        """Did the token move from its initial word (metrics.json ``token_change``)? None when not recorded."""
        tc = c.token_change
        if not tc:
            return None
        return {"moved": c.moved, "distance": fmt.as_float(tc.get("distance")), "relative": fmt.as_float(tc.get("relative")),
                "cosine": fmt.as_float(tc.get("cosine")), "image_change": fmt.as_float(tc.get("image_change")),
                "init_word": str(c.metrics["init_word"]) if c.metrics.get("init_word") is not None else None}

    def class_facts(self, c: ClassData) -> list[tuple[str, str]]:
        m = c.metrics
        facts = []
        for key, label in (("token_string", "token"), ("token", "token"), ("init_word", "initialised from"), ("steps", "steps"),
                           ("best_step", "best step"), ("stopped", "stopped by"), ("seconds", "time (s)"),
                           ("train_seeds", "training seeds"), ("eval_seeds", "evaluation seeds")):
            v = m.get(key)
            if v is None or isinstance(v, dict):
                continue
            facts.append((label, _fmt_value(v, 10)))
        return facts

    def card(self, c: ClassData, r: dict, methods: list[str], shown: set[int]) -> dict[str, Any]:
        rel = str(r.get("path", ""))
        src = self.assets.inside_run(rel, base=c.dir) if c.dir is not None else None
        thumb = self.assets.image(src) if src is not None else None
        if src is None and rel:
            self.assets.warnings.append(f"class {c.index}: image path {rel!r} points outside the run; skipped")
        overlays = []
        stem = Path(rel).stem
        for i, meth in enumerate(methods):
            ap = c.dir / "attributions" / meth / f"{stem}.png"
            if stem and ap.is_file():
                t = self.assets.image(ap)
                if t is not None:
                    overlays.append({"id": f"m{i}", "thumb": t})
                    shown.add(i)
        topk = []
        for e in r.get("topk") or []:
            if isinstance(e, dict):
                p = fmt.as_float(e.get("prob"))
                topk.append({"label": str(e.get("label", e.get("index", "?"))), "prob": p,
                             "target": e.get("index") == c.index})
        return {
            "thumb": thumb, "overlays": overlays, "path": rel, "prompt": str(r.get("prompt") or ""),
            "prompt_index": r.get("prompt_index"), "seed": r.get("seed"),
            "target_prob": fmt.as_float(r.get("target_prob")), "correct": r.get("correct"), "topk": topk[:5],
            "eval_target_prob": fmt.as_float(r.get("eval_target_prob")),
        }


def _default_sentence(f: dict[str, Any]) -> str:
    eff, lo, hi = f.get("effect"), f.get("ci_low"), f.get("ci_high")
    s = f"'{f.get('class_name') or '?'}' — {f.get('kind') or 'finding'} of '{f.get('cue') or '?'}'"
    if fmt.as_float(eff) is not None:
        s += f": {fmt.effect(eff)}"
    if lo is not None or hi is not None:
        s += f" (95% CI {fmt.interval(lo, hi, sep='–')})"
    if f.get("n_images"):
        s += f", {f['n_images']} {f.get('unit') or 'images'}"
    return s


# -- entry point -------------------------------------------------------------------------------
def render_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    single_file: bool = False,
    *,
    max_images: int = 24,
    thumb_px: int = 256,
) -> Path:
    """Render the HTML report for ``run_dir`` and return the path of its entry page.

    Reads only saved artifacts (no models, no network). ``out`` is the report
    folder (default ``RUN_DIR/report``); the return value is ``out/index.html``.
    With ``single_file=True`` everything is embedded into one HTML file:
    ``out`` may then name the file (``*.html``), default ``RUN_DIR/report/report.html``.
    ``max_images`` caps the gallery images per kind and class; ``thumb_px`` is
    the longest side of gallery thumbnails (larger images are downscaled copies).
    """
    t0 = time.perf_counter()
    if max_images < 1:
        raise ReportError(f"--max-images {max_images!r} must be >= 1; pass a positive number of images per gallery")
    if thumb_px < 16:
        raise ReportError(f"--thumb-px {thumb_px!r} is too small; pass at least 16 (default 256)")
    run = load_run(run_dir)
    out_path = Path(out) if out is not None else run.run_dir / "report"
    if single_file:
        target = out_path if out_path.suffix.lower() in (".html", ".htm") else out_path / "report.html"
        out_dir = target.parent
    else:
        if out_path.suffix.lower() in (".html", ".htm"):
            raise ReportError(
                f"out={str(out_path)!r} names a file; pass a folder for the multi-page report, or single_file=True"
            )
        out_dir, target = out_path, out_path / "index.html"
    rd = run.run_dir.resolve()
    od = out_dir.resolve()
    if out is None and not od.is_relative_to(rd):
        raise ReportError(f"{str(run.run_dir / 'report')!r} is a link to {str(od)!r}, outside the run; remove the link "
                          "(the report is written only inside the run), or pass --out for another folder")
    if od == rd or od.is_relative_to(rd / "classes") or od.is_relative_to(rd / "analysis"):
        raise ReportError(
            f"out={str(out_path)!r} would mix report pages into the run's own files; "
            "pass a separate folder such as RUN_DIR/report (the default)"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"out={str(out_dir)!r} exists and is not a folder; pass a new or existing folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ReportError(f"cannot create report folder {str(out_dir)!r} ({e}); pass a writable --out") from e
    linked = linked_folder(out_dir) if od.is_relative_to(rd) else None  # inside the run: its folders are data too
    if linked is not None:
        raise ReportError(f"{str(linked)!r} is a link to {os.path.realpath(linked)!r}; the report writes only into real "
                          "folders inside the run: remove the link, or pass --out for another folder")

    tdir = template_dir()
    env = environment(tdir)
    css = (tdir / "static" / "report.css").read_text(encoding="utf-8")
    js = (tdir / "static" / "report.js").read_text(encoding="utf-8")
    b = _Builder(run, out_dir, single_file, max_images, thumb_px)
    try:
        return _render(run, b, env, css, js, out_dir, target, single_file, t0)
    finally:
        b.assets.close()


def _render(run: RunData, b: "_Builder", env: jinja2.Environment, css: str, js: str, out_dir: Path, target: Path,
            single_file: bool, t0: float) -> Path:

    classes = run.classes
    with_heldout = any(b.heldout(c, "token") is not None for c in classes)
    rows = [b.class_row(c, with_heldout) for c in classes]
    findings = run.findings
    passing = [f for f in findings or [] if f["passes"]]
    index_findings = [b.finding_view(f, i + 1, evidence=3) for i, f in enumerate(passing[:FINDINGS_ON_INDEX])]
    counts = {s: sum(f["status"] == s for f in findings or []) for s in STATUSES}
    n_not_passing = len(findings or []) - len(passing)
    n_strong, n_moderate = strength_counts(passing, run.analysis)  # claims and leads, for the overview's card
    finding_rows = [_finding_row(b, i, f) for i, f in enumerate(findings or [])]
    facets = _facets(findings or [])
    done = [c for c in classes if c.status == "done"]

    def mean(vals):
        vals = [v for v in vals if v is not None]
        return sum(vals) / len(vals) if vals else None

    stats = {
        "n": len(classes), "done": len(done),
        "failed": sum(c.status == "failed" for c in classes),
        "other": sum(c.status not in ("done", "failed") for c in classes),
        "n_labels": len(run.labels),
        "base_acc": mean(c.stat("baseline", "accuracy") for c in done),
        "tok_acc": mean(c.stat("token", "accuracy") for c in done),
        "gain": gain_text(token_gain(c.metrics for c in done)),  # the same seeds' images, paired
        "heldout_acc": mean(b.heldout(c, "token") for c in done) if with_heldout else None,
        "heldout_base": mean(b.heldout(c, "baseline") for c in done) if with_heldout else None,
        "n_findings": None if findings is None else len(findings),
        "n_passing": len(passing), "n_not_passing": n_not_passing,
        "n_strong": n_strong, "n_moderate": n_moderate,
        "status_counts": [(s, STATUS_LABELS[s], counts[s]) for s in STATUSES],
        "n_status": counts,
        "real": real_overview(b.confirmation(), findings),  # `probe confirm` on the user's images, when it ran
    }
    meta = _metadata(run)
    analysis_view = _analysis_view(run.analysis, run.labels)
    common = {
        "run_name": run.run_dir.resolve().name, "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "single": single_file, "stats": stats, "index_href": "#top" if single_file else "index.html",
        "findings_href": b.page_href("findings"), "version": probe_version(),
        "css": Markup(css), "js": Markup(js),
    }

    index_ctx = {
        **common, "rel": "", "findings_state": "absent" if findings is None else ("empty" if not findings else "ok"),
        "top_findings": index_findings, "class_rows": rows, "with_heldout": with_heldout, "page_size": CLASS_PAGE_SIZE, "meta": meta,
        "finding_rows": finding_rows, "finding_facets": facets, "analysis": analysis_view,
    }
    class_views = (
        b.class_view(c, classes[i - 1] if i > 0 else None, classes[i + 1] if i + 1 < len(classes) else None)
        for i, c in enumerate(classes)
    )
    if single_file:
        if len(classes) > 200:
            log.warning("single-file report for %d classes embeds every image and will be large; "
                        "the multi-page report opens faster for big runs", len(classes))
        class_views = list(class_views)  # before the warnings: class pages add to them
        html = env.get_template("single.html").render(**index_ctx, class_views=class_views, warnings=_warn(run, b))
        atomic_write_text(target, html)
    else:
        (out_dir / "classes").mkdir(exist_ok=True)
        atomic_write_text(out_dir / "assets" / "report.css", css)
        atomic_write_text(out_dir / "assets" / "report.js", js)
        class_tpl = env.get_template("class.html")
        for v in class_views:
            atomic_write_text(out_dir / "classes" / v["c"].page_name, class_tpl.render(**common, rel="../", v=v))
        atomic_write_text(out_dir / "findings.html", env.get_template("findings.html").render(**index_ctx))
        # index last: its warnings include everything the class pages ran into
        atomic_write_text(target, env.get_template("index.html").render(**index_ctx, warnings=_warn(run, b)))
        pages = {c.page_name for c in classes}
        for old in (out_dir / "classes").iterdir():  # pages of classes no longer in the run
            if old.name not in pages and _PAGE_NAME.match(old.name):
                old.unlink()
        b.assets.prune()
    log.info("report for %s: %d classes rendered to %s in %.1f s (%d asset files written)",
             run.run_dir, len(classes), target, time.perf_counter() - t0, b.assets.n_written)
    return target


def _finding_row(b: _Builder, i: int, f: dict[str, Any]) -> list:
    """One row of the findings table: [text, sort value, href, css class, filter key] per cell."""
    ci = f.get("class_index")
    cls = b.by_index.get(ci)
    status = f["status"]
    return [
        [str(i + 1), i + 1],
        [f.get("class_name") or "—", (f.get("class_name") or "").lower(), b.class_href(cls) if cls else None, None,
         "" if ci is None else str(ci)],
        [(f.get("cue") or "—") + (" (discovered)" if _proposed(f) else ""), f.get("cue") or "", None,
         "discovered" if _proposed(f) else None, f.get("cue") or ""],
        [f.get("kind") or "—", f.get("kind") or "", None, None, f.get("kind") or ""],
        [fmt.effect(f["effect"]), f["effect"], None,
         "pos" if (f["effect"] or 0) > 0 else ("neg" if (f["effect"] or 0) < 0 else "")],
        [fmt.interval(f["ci_low"], f["ci_high"]), f["ci_low"]],
        [fmt_n(f), f["n_images"]],
        [fmt.pq(f.get("p")), f.get("p")],
        [fmt.pq(f.get("q")), f.get("q")],
        [STATUS_LABELS[status], STATUSES.index(status), None, f"verdict v-{status}"],
    ]


def _facets(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The findings page's filters: kind, class and cue, with the values the findings actually have.

    ``col`` is the table column the filter reads (the cell's filter key, element 4).
    """
    kinds = {f["kind"] for f in findings if f.get("kind")}
    kind_opts = [k for k in KINDS if k in kinds] + sorted(kinds - set(KINDS))
    classes: dict[int, str] = {}
    for f in findings:
        if f.get("class_index") is not None:
            classes.setdefault(f["class_index"], f.get("class_name") or "")
    cues = sorted({f["cue"] for f in findings if f.get("cue")}, key=lambda c: (c.lower(), c))
    return [
        {"col": 3, "name": "kind", "all": "all kinds", "options": [(k, k) for k in kind_opts]},
        {"col": 1, "name": "class", "all": "all classes",
         "options": [(str(i), f"#{i} {n}".strip()) for i, n in sorted(classes.items())]},
        {"col": 2, "name": "cue", "all": "all cues", "options": [(c, c) for c in cues]},
    ]


def _analysis_view(a: dict[str, Any] | None, labels: list[str] | None = None) -> dict[str, Any] | None:
    """What the analysis ran and skipped (analysis.json), for the index; ``labels`` name the classes of its per-class
    maps keyed by class index."""
    if not a:
        return None
    attr = a.get("attributions") if isinstance(a.get("attributions"), dict) else {}
    cues = a.get("cues") if isinstance(a.get("cues"), dict) else {}
    timings = a.get("timings_s") if isinstance(a.get("timings_s"), dict) else {}
    notes = a.get("notes") if isinstance(a.get("notes"), list) else []
    skipped = attr.get("skipped") if isinstance(attr.get("skipped"), dict) else {}
    facts = [
        ("attribution methods", ", ".join(str(m) for m in attr.get("methods_run") or []) or "none"),
        ("attribution layer", _fmt_value(attr.get("layer"))),
        ("concept scorer", _fmt_value(a.get("concept_scorer"))),
        ("cue list", f"{_fmt_value(cues.get('source'))} ({_fmt_value(cues.get('count'))} cues)" if cues else "–"),
    ]
    if isinstance(a.get("stated_contexts"), str):
        facts.append(("stated contexts", a["stated_contexts"]))
    facts += [(f"time: {k}", f"{s:.1f} s") for k, v in timings.items() if (s := fmt.as_float(v)) is not None]
    tests = a.get("tests") if isinstance(a.get("tests"), dict) else {}
    if tests:
        facts.append(("tests", " · ".join(f"{_fmt_value(tests.get(k))} {k}" for k in
                                          ("screened", "candidates", "confirmed", "passing") if k in tests)))
    if "interventions_checked_by" in a:  # analyses that predate the checks say nothing either way
        by = a.get("interventions_checked_by")
        checked = {"by": str(by)} if by else {"by": None}
        # a concept model probe tried and could not load: its one-line reason, which names the fix
        failed = [str(n)[len(UNCHECKED_NOTE):] for n in notes if str(n).startswith(UNCHECKED_NOTE)]
        checked["failure"] = failed[0] if failed and not by else None
    else:
        checked = None
    raw = a.get("dropped_counters")
    by_index = a.get("dropped_counters_keyed_by") == DROPPED_BY_INDEX  # else by class name (older analyses)
    if isinstance(raw, dict):  # per class: "2 star: on grass, on water" (older: "star: ...")
        dropped = [f"{_indexed_name(cls, labels) if by_index else cls}: {', '.join(str(v) for v in values)}"
                   for cls, values in raw.items() if values]
    else:
        dropped = raw if isinstance(raw, list) else []
    rule = a.get("rule")
    counter_rule = a.get("counter_rule")
    return {"facts": facts, "skipped": [(str(k), str(v)) for k, v in skipped.items()],
            "notes": [str(n) for n in notes],
            "rule": str(rule) if isinstance(rule, str) and rule.strip() else None,
            "checked": checked,
            "counter_rule": str(counter_rule) if isinstance(counter_rule, str) and counter_rule.strip() else None,
            "dropped_counters": [str(d) for d in dropped[:DROPPED_SHOWN]],  # an ImageNet audit drops some in most classes
            "dropped_more": max(0, len(dropped) - DROPPED_SHOWN)}


DROPPED_SHOWN = 12  # classes whose dropped counters the rule box names; the rest are counted (analysis.json has all)


def _indexed_name(key: str, labels: list[str] | None) -> str:
    """A class index key of analysis.json with the class's name: "134 crane"."""
    i = int(key) if str(key).isdigit() else None
    return f"{key} {labels[i]}" if i is not None and labels and i < len(labels) else str(key)


def _warn(run: RunData, b: _Builder) -> list[str]:
    seen, out = set(), []
    for w in [*run.warnings, *b.assets.warnings]:
        if w not in seen:
            seen.add(w)
            out.append(w)
    return out


def probe_version() -> str:
    try:
        from probe import __version__

        return __version__
    except ImportError:
        return "?"
