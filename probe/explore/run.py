"""A run directory as an object: tables as DataFrames, classes with galleries, findings with their images.

Reads only the run's files (through the report's reader), so a run copied from a GPU machine opens on a
laptop without any model. Every object displays itself in Jupyter and escapes what it shows.
"""

from __future__ import annotations

import difflib
import numbers
from pathlib import Path

from probe.errors import RunError
from probe.display import escape, figure_html, table, thumbnails
from probe.report.data import ClassData, RunData, load_run
from probe.run import RunDir
from probe.run import format as fmt

FINDING_COLUMNS = ("class_index", "class_name", "cue", "kind", "status", "passes", "effect", "ci_low", "ci_high",
                   "n_images", "unit", "p", "q", "excluded", "attempted", "checked_by", "clears_bar", "sentence",
                   "evidence")
SUMMARY_COLUMNS = ("class_index", "class_name", "status", "baseline_accuracy", "token_accuracy",
                   "baseline_target_prob", "token_target_prob", "eval_baseline_accuracy", "eval_token_accuracy",
                   "token_moved", "steps", "best_step", "stopped", "seconds", "passing_findings", "top_cue")
GALLERY_KINDS = ("baseline", "token")
_LISTED = 20  # an unknown class name lists every class up to this many, else the closest names


def open_run(path: str | Path) -> "Run":
    """Open a run directory written by ``probe audit`` (no models are loaded)."""
    return Run(path)


class Run:
    """A finished or partial run: ``summary`` and ``findings`` DataFrames, ``classes[name]``, ``report()``."""

    def __init__(self, path: str | Path):
        self._data: RunData = load_run(path)
        self.path = self._data.run_dir

    # -- tables -----------------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        return dict(self._data.config or {})

    @property
    def labels(self) -> list[str]:
        return list(self._data.labels)

    @property
    def classes(self) -> "Classes":
        return Classes([ClassView(self, c) for c in self._data.classes])

    @property
    def summary(self):
        """One row per attempted class (pandas DataFrame)."""
        import pandas as pd

        return pd.DataFrame([c.row() for c in self.classes], columns=list(SUMMARY_COLUMNS))

    @property
    def findings(self):
        """Every finding, best first (pandas DataFrame; ``passes`` marks those that pass the audit's rule).

        Columns: class_index, class_name, cue, kind, status, passes, effect, ci_low, ci_high, n_images (pairs,
        or images for off-object shares: see ``unit``), p, q, excluded, attempted, checked_by (who checked the
        generated images: "world oracles", "concepts: MODEL", "unchecked"; an unchecked cue finding that met the
        bars has status "unverified" and does not pass), clears_bar (the whole 95% interval lies beyond the pass bar in
        the claimed direction: a passing finding's summary then calls it *strong*, else *moderate*; measured on eighteen
        untuned sets of shapes-world classifiers, 83 of 86 strong passing findings were true, 73 of 99 moderate ones), sentence,
        evidence (paths relative to the run directory);
        after `probe confirm`, the real-data columns (``CONFIRMATION_COLUMNS``: real_verdict "confirmed", "weaker"
        (a real gap that falls short of the audit's bar), "not seen" or "contradicted"; real_strength "strong" or
        "moderate" for a confirmed one, as clears_bar for the real gap in mean P(class); the deciding real_gap with
        real_low..real_high, real_p, real_q, slice sizes).
        Empty when the analysis did not run.
        """
        import pandas as pd

        from probe.run.summary import clears_bar

        analysis = self._data.analysis
        rows = [{k: (list(f.get(k) or []) if k == "evidence" else clears_bar(f, analysis) if k == "clears_bar" else
                     f.get(k)) for k in FINDING_COLUMNS} for f in (self._data.findings or [])]
        frame = pd.DataFrame(rows, columns=list(FINDING_COLUMNS))
        return _with_confirmation(frame, self.confirmation)

    @property
    def confirmation(self):
        """What `probe confirm` found on your own images (``probe.run.confirmation.Confirmation``: the agreement
        table, per-class verdicts), or None when it has not run. A damaged confirmation.json is a warning."""
        warnings = self._data.warnings
        return RunDir(self.path).read_confirmation(on_error=lambda line: line in warnings or warnings.append(line))

    @property
    def passing(self):
        frame = self.findings
        return frame[frame["passes"].astype(bool)].reset_index(drop=True)

    @property
    def analysed(self) -> bool:
        return self._data.findings is not None

    @property
    def warnings(self) -> list[str]:
        return list(self._data.warnings)

    @property
    def rule(self) -> str | None:
        """What "passes" means in this run, in words (from analysis.json)."""
        return (self._data.analysis or {}).get("rule")

    # -- the report ---------------------------------------------------------------------------------
    @property
    def report_path(self) -> Path:
        return self.path / "report" / "index.html"

    def report(self, out: str | Path | None = None, **options) -> Path:
        """Render (or re-render) the HTML report; returns the path of its index.html."""
        from probe.report import render_report

        return Path(render_report(self.path, out=out, **options))

    def reload(self) -> "Run":
        self._data = load_run(self.path)
        return self

    def test_cue(self, class_, cue: str, **options):
        """Testing a cue draws images: it needs the classifier and generator, which ``open_run`` never loads (a run
        directory is data, so nothing it names is loaded for you). This says how to attach them."""
        audit = self.config.get("audit") or {}
        named = ", ".join(f"{k} {audit[k]!r}" for k in ("model", "generator") if audit.get(k))
        raise RunError(f"test_cue needs the classifier and the generator, and open_run loads no models: "
                       f"run = probe.AuditedRun.attach({str(self.path)!r}, classifier, generator) with loaded objects "
                       f"or paths{f' (the audit used {named})' if named else ''}, then run.test_cue(...)")

    # -- display ------------------------------------------------------------------------------------
    def _strengths(self) -> tuple[int, str]:
        """The number of passing findings and "2 strong, 1 moderate" (claims and leads apart, as the report's card;
        empty when none passes)."""
        from probe.run.summary import strength_counts

        n = sum(bool(f.get("passes")) for f in self._data.findings or [])
        strong, moderate = strength_counts(self._data.findings, self._data.analysis)
        return n, f"{strong} strong, {moderate} moderate" if n else ""

    def __repr__(self) -> str:
        done = sum(c.status == "done" for c in self._data.classes)
        n, apart = self._strengths() if self.analysed else (None, "")
        passing = "not analysed" if n is None else f"{n} ({apart})" if apart else str(n)
        return f"Run({str(self.path)!r}: {done} of {len(self._data.classes)} classes done, passing findings: {passing})"

    def _repr_html_(self) -> str:
        settings = RunDir.audit_settings(self._data.config)
        generator = (self._data.config or {}).get("generator")
        described = generator.get("alias") or generator.get("source") if isinstance(generator, dict) else None
        head = (f"<h3>probe run <code>{escape(self.path)}</code></h3>"
                f"<p>classifier <code>{escape(settings.get('model') or '?')}</code> · generator "
                f"<code>{escape(described or settings.get('generator') or 'default')}</code> · "
                f"{len(self._data.classes)} classes</p>")
        summary = table(self.summary[["class_index", "class_name", "status", "baseline_accuracy", "token_accuracy",
                                      "token_moved", "passing_findings", "top_cue"]])
        if not self.analysed:
            found = "<p>No findings: the analysis has not run for this run.</p>"
        else:
            passing = [f for f in self._data.findings if f.get("passes")][:8]
            items = "".join(_finding_item(self.path, f) for f in passing) or "<li>none passes the audit's rule</li>"
            n, apart = self._strengths()
            found = (f"<h4>Top findings ({len(passing)} shown of {n} passing{': ' + apart if apart else ''})</h4>"
                     f"<p style='font-size:smaller'>{escape(self.rule or '')}</p><ol>{items}</ol>")
        link = (f"<p>Report: <a href='{escape(self.report_path.as_posix())}' target='_blank'>"
                f"{escape(self.report_path)}</a></p>" if self.report_path.is_file() else
                "<p>No report yet: call <code>run.report()</code> or <code>probe report RUN_DIR</code>.</p>")
        warn = "".join(f"<p style='color:#a50'>warning: {escape(w)}</p>" for w in self.warnings)
        return head + warn + summary + found + link


CONFIRMATION_COLUMNS = ("real_verdict", "real_strength", "real_measure", "real_gap", "real_low", "real_high", "real_p",
                        "real_q", "real_n_cue", "real_n_counter")


def _with_confirmation(frame, confirmation):
    """The findings with `probe confirm`'s columns (verdict on your data, the deciding gap, its interval, p, q and
    slice sizes); None in findings it did not test, and in every row when it has not run."""
    by_key = {f.key: f for f in confirmation.findings} if confirmation is not None else {}
    values = {c: [] for c in CONFIRMATION_COLUMNS}
    for _, row in frame.iterrows():
        f = by_key.get((row["class_index"], row["kind"], row["cue"]))
        d = f.decisive if f is not None else None
        for column, value in zip(CONFIRMATION_COLUMNS, (f.verdict, confirmation.strength(f), d.measure, d.gap, d.low,
                                                        d.high, d.p, f.q, d.cue.n, d.counter.n)
                                 if f is not None else (None,) * len(CONFIRMATION_COLUMNS)):
            values[column].append(value)
    for column in CONFIRMATION_COLUMNS:
        frame[column] = values[column]
    return frame


def _finding_item(root: Path, f: dict) -> str:
    from probe.run import RunDir

    run = RunDir(root)  # evidence paths are run data: only those that resolve inside the run are shown
    shown = [p for p in (run.resolve(e) for e in (f.get("evidence") or [])[:3]) if p is not None]
    return (f"<li><b>{escape(f.get('class_name'))}</b> · {escape(f.get('kind'))} · {escape(f.get('sentence'))} "
            f"<span style='color:#666'>(q={fmt.pq(f.get('q'))})</span>"
            f"{thumbnails(shown, size=64)}</li>")




class Classes:
    """The run's classes, by name or index: ``run.classes["star"]``, ``run.classes[3]``; iterates in index order."""

    def __init__(self, views: list["ClassView"]):
        self._views = views

    def __getitem__(self, key: int | str) -> "ClassView":
        if not isinstance(key, (str, bool)) and isinstance(key, numbers.Integral):
            key = int(key)  # numpy's integers too: a class index read from run.summary or run.findings
        hits = [v for v in self._views
                if (isinstance(key, int) and v.index == key) or (isinstance(key, str) and v.name == key)]
        if len(hits) == 1:
            return hits[0]
        if hits:  # ImageNet has two classes named 'crane' (134, 517) and two 'maillot' (638, 639): never guess
            raise KeyError(f"{key!r} names {len(hits)} classes of this run ({', '.join(str(v.index) for v in hits)}); "
                           f"pick one by its index, e.g. run.classes[{hits[0].index}]")
        if len(self._views) <= _LISTED:
            names = ", ".join(f"{v.index} {v.name!r}" for v in self._views)
            raise KeyError(f"no class {key!r} in this run; it has: {names}")
        close = difflib.get_close_matches(str(key), [v.name for v in self._views], n=3)
        hint = f"; close names: {', '.join(repr(c) for c in close)}" if close else ""
        raise KeyError(f"no class {key!r} in this run (it has {len(self._views)} classes; run.summary lists them){hint}")

    def __iter__(self):
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __contains__(self, key) -> bool:
        return any(v.index == key or v.name == key for v in self._views)

    def __repr__(self) -> str:
        return "Classes(" + ", ".join(f"{v.index}: {v.name!r}" for v in self._views) + ")"


class ClassView:
    """One class of a run: metrics, learning curve, galleries (with attribution overlays) and findings."""

    def __init__(self, run: Run, data: ClassData):
        self._run, self._data = run, data
        self.index, self.name, self.status = data.index, data.name, data.status

    @property
    def metrics(self) -> dict:
        return dict(self._data.metrics)

    @property
    def history(self):
        import pandas as pd

        return pd.DataFrame(self._data.history)

    @property
    def findings(self):
        frame = self._run.findings
        return frame[frame["class_index"] == self.index].reset_index(drop=True)

    @property
    def summary(self):
        """The class in plain words (``probe.run.summary.ClassSummary``: a str that displays itself): how the
        classifier sees it, the findings that pass and how strongly, whether your data confirms them, what to try."""
        from probe.run.summary import summarise_class

        d, run = self._data, self._run
        return summarise_class(index=d.index, name=d.name, status=d.status, metrics=d.metrics,
                               findings=d.findings if run.analysed else None, info=run._data.class_analysis(d.index),
                               analysis=run._data.analysis, confirmation=run.confirmation, run_ref=str(run.path),
                               name_shared=(run._data.labels or [c.name for c in run._data.classes]).count(d.name) > 1)

    @property
    def topk(self):
        """The classifier's top predictions on every evaluation image (one row per image and rank)."""
        import pandas as pd

        rows = [{"kind": r.get("kind"), "seed": r.get("seed"), "rank": k + 1, "label": t.get("label"), "prob": t.get("prob")}
                for r in self._data.metrics.get("images", []) for k, t in enumerate(r.get("topk") or [])]
        return pd.DataFrame(rows, columns=["kind", "seed", "rank", "label", "prob"])

    def row(self) -> dict:
        d = self._data
        change = d.token_change
        passing = [f for f in d.findings if f.get("passes")]
        return {"class_index": d.index, "class_name": d.name, "status": d.status,
                "baseline_accuracy": d.stat("baseline", "accuracy"), "token_accuracy": d.stat("token", "accuracy"),
                "baseline_target_prob": d.stat("baseline", "mean_target_prob"),
                "token_target_prob": d.stat("token", "mean_target_prob"),
                "eval_baseline_accuracy": _eval(d, "baseline"), "eval_token_accuracy": _eval(d, "token"),
                "token_moved": change.get("moved"), "steps": d.metrics.get("steps"),
                "best_step": d.metrics.get("best_step"), "stopped": d.metrics.get("stopped"),
                "seconds": d.metrics.get("seconds"), "passing_findings": len(passing), "top_cue": d.top_cue}

    def images(self, kind: str = "token") -> list[Path]:
        """Paths of the evaluation images of ``kind`` ("baseline" or "token") that exist."""
        if kind not in GALLERY_KINDS:
            raise RunError(f"image kind {kind!r} is unknown; use one of {list(GALLERY_KINDS)}")
        if self._data.dir is None:
            return []
        out = []
        for record in self._data.metrics.get("images", []):
            stored = record.get("path")
            path = RunDir(self._run.path).resolve(stored, base=self._data.dir) if isinstance(stored, str) else None
            if record.get("kind") == kind and path is not None and path.is_file():
                out.append(path)
        return out

    def overlays(self) -> list[str]:
        """The attribution methods whose overlays the analysis saved for this class."""
        folder = None if self._data.dir is None else self._data.dir / "attributions"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder is not None and folder.is_dir() else []

    def gallery(self, kind: str = "both", overlay: str | None = None, n: int = 8) -> "Gallery":
        """Baseline and token images side by side (``kind`` "both"), or one kind; with ``overlay`` (an
        attribution method such as "integrated_gradients") the overlays saved by the analysis instead."""
        kinds = GALLERY_KINDS if kind == "both" else (kind,)
        rows = []
        for k in kinds:
            paths = self.images(k)[:n]
            if overlay is not None:
                available = self.overlays()
                if overlay not in available:
                    raise RunError(f"class {self.name!r} has no {overlay!r} overlays (saved: {available or 'none'}); "
                                   "the analysis saves them for the methods it ran (see analysis.json)")
                folder = self._data.dir / "attributions" / overlay
                paths = [folder / p.name for p in paths if (folder / p.name).is_file()]
            rows.append((k if overlay is None else f"{k} · {overlay}", paths))
        return Gallery(f"{self.name}: " + (overlay or "evaluation images"), rows)

    def curves(self):
        """The learning curve (loss, and the stop metric) as a matplotlib figure."""
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        frame = self.history
        fig, left = plt.subplots(figsize=(4.5, 2.6))
        if not frame.empty:
            left.plot(frame["step"], frame["loss"], color="#c33", label="loss")
            right = left.twinx()
            for column, colour in (("accuracy", "#36c"), ("mean_target_prob", "#393")):
                if column in frame:
                    right.plot(frame["step"], frame[column], color=colour, label=column.replace("_", " "))
            right.set_ylim(0, 1.02)
            right.legend(loc="lower right", fontsize=7)
        left.set_xlabel("step")
        left.set_ylabel("loss")
        left.set_title(f"{self.name}: token optimisation", fontsize=9)
        fig.tight_layout()
        return fig

    def __repr__(self) -> str:
        row = self.row()
        return (f"ClassView({self.index} {self.name!r}: {self.status}, token accuracy {fmt.number(row['token_accuracy'])}, "
                f"{row['passing_findings']} passing finding{'' if row['passing_findings'] == 1 else 's'})")

    def _repr_html_(self) -> str:
        row = self.row()
        facts = (f"<p>status {escape(self.status)} · baseline accuracy {fmt.number(row['baseline_accuracy'])} → token "
                 f"{fmt.number(row['token_accuracy'])} · token moved: {escape(row['token_moved'])} · steps {escape(row['steps'])}"
                 f"</p>")
        curve = figure_html(self.curves()) if self._data.history else ""
        top = self.topk
        top_html = ""
        if not top.empty:
            first = top[top["rank"] == 1].groupby(["kind", "label"]).size().reset_index(name="images")
            top_html = "<h4>Top-1 predictions on the evaluation images</h4>" + table(first)
        findings = self.findings
        found = table(findings[["cue", "kind", "status", "effect", "ci_low", "ci_high", "n_images", "q", "sentence"]]) \
            if not findings.empty else "<p>No findings for this class.</p>"
        return (f"<h3>{escape(self.index)} · {escape(self.name)}</h3>{facts}{self.gallery()._repr_html_()}"
                f"{curve}{top_html}<h4>Findings</h4>{found}")


def _eval(data: ClassData, kind: str):
    block = (data.metrics.get("eval_model") or {}).get(kind) if isinstance(data.metrics.get("eval_model"), dict) else None
    return block.get("accuracy") if isinstance(block, dict) else None


class Gallery:
    """Rows of images (e.g. baseline and token); displays inline, ``figure()`` gives a matplotlib figure."""

    def __init__(self, title: str, rows: list[tuple[str, list[Path]]]):
        self.title, self.rows = title, rows

    @property
    def paths(self) -> list[Path]:
        return [p for _, paths in self.rows for p in paths]

    def figure(self):
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from PIL import Image

        cols = max((len(p) for _, p in self.rows), default=1) or 1
        fig, axes = plt.subplots(len(self.rows), cols, figsize=(1.4 * cols, 1.6 * len(self.rows)), squeeze=False)
        for r, (label, paths) in enumerate(self.rows):
            for c in range(cols):
                ax = axes[r][c]
                ax.set_axis_off()
                if c < len(paths):
                    with Image.open(paths[c]) as image:
                        ax.imshow(image.convert("RGB"), interpolation="nearest")
            axes[r][0].set_title(label, loc="left", fontsize=8)
        fig.suptitle(self.title, fontsize=9)
        return fig

    def __repr__(self) -> str:
        return f"Gallery({self.title!r}: " + ", ".join(f"{label} {len(p)} images" for label, p in self.rows) + ")"

    def _repr_html_(self) -> str:
        body = "".join(f"<div><b>{escape(label)}</b>{thumbnails(paths, size=96) or ' (no images)'}</div>"
                       for label, paths in self.rows)
        return f"<div><h4>{escape(self.title)}</h4>{body}</div>"
