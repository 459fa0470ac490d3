"""``compare(run_a, run_b)``: two audits on the same generator and seeds, class by class and cue by cue.

Two classifiers audited with the same generator and the same seeds (before and after retraining on
decorrelated data, say) see the very same sufficiency images: each pair of images is named by its seed
and carrier in both runs' ``analysis.json`` (``"pairs"``, docs/analysis.md). The change of an effect is
therefore measured on those shared pairs, one difference per pair, and tested like any effect of the
audit.

1. **Comparable?** Both runs must share the generator, the token and evaluation seeds, the analysis
   seeds and the class labels; otherwise a ``NotComparableError`` names the first field that differs.
   Runs analysed before probe kept per-pair data are refused with the command that adds it. Only
   classes both runs finished are compared; the others are listed in ``skipped``.
2. **Per class**: baseline and token accuracy and mean target probability of A and B, and B − A.
3. **Per (class, cue, kind)** tested in either run: each run's effect (from the pairs that decided it:
   confirmation pairs when it was confirmed, else screening pairs), its status, and the change on the
   *shared confirmation pairs*: the mean of (B − A) per pair, its sign-flip interval and p-value
   (``probe.analysis.stats.paired_effect``). Screening pairs choose what an audit confirms and never
   decide, here as in the audit: a row with only shared screening pairs shows their mean change and no
   p-value; a row with no shared pair says so.
4. **Multiplicity**: q-values over the tested rows (``fdr``, Benjamini–Yekutieli by default).
5. **Verdict** per row; a change is *significant* when q ≤ ``fdr_q`` and |change| ≥ ``min_effect``
   (default: run A's effect threshold). The direction that counts is the claim's: up for sufficiency and
   necessity; for two-sided kinds (token shift), the sign of the passing run's effect (else of the larger
   effect).

   - ``gone in B``: passes in A, does not pass in B, and the change is significant against the claim.
   - ``new in B``: passes in B, does not pass in A, and the change is significant toward the claim.
   - ``grew`` / ``shrank``: any other significant change toward / against the claim.
   - ``unchanged``: tested on shared confirmation pairs, no significant change (a finding may still pass
     in one run only: its change is too small or too uncertain to say it went away).
   - ``untested``: no shared confirmation pairs (one run never confirmed the test; re-analyse it with
     ``probe audit ... --confirm-like OTHER_RUN`` to confirm the other run's tests on the same seeds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from probe.errors import ProbeError
from probe.run import AnalysisSummary, ClassRecord, PairRecord, RunConfig, RunDir
from probe.run import format as fmt
from probe.run.records import PAIR_KINDS

__all__ = ["compare", "Comparison", "CompareError", "NotComparableError", "NoPairDataError", "VERDICTS"]

VERDICTS = ("gone in B", "new in B", "grew", "shrank", "unchanged", "untested")
CUE_KINDS = PAIR_KINDS  # the run's vocabulary (probe.run.records): kinds with per-pair data
# what must agree for the pairs to be the same pairs (config.json / analysis.json field names)
GENERATOR_FIELDS = ("source", "pipeline", "scheduler", "image_size", "dtype", "default_steps", "guidance_scale")
TOKEN_FIELDS = ("seed", "eval_seed", "eval_images", "templates", "steps", "guidance_scale", "scheduler")
CLASS_METRICS = (("baseline", "accuracy"), ("token", "accuracy"), ("baseline", "mean_target_prob"),
                 ("token", "mean_target_prob"))
CHANGE_BOUNDS = (-2.0, 2.0)  # a difference of two differences of probabilities (or of paired 0/1 outcomes)
TOKEN = "the class's token"  # what a necessity test drew its pairs with, unless the class's name (_drawn)
UNSAID = "counters it cannot tell"  # a necessity test whose counters a run cannot say is paired with none (_measured)


class CompareError(ProbeError):
    """Two runs cannot be compared (missing files, bad arguments, output folder)."""


class NotComparableError(CompareError):
    """The runs differ in a field that changes which images were drawn; the message names it."""


class NoPairDataError(CompareError):
    """A run was analysed before probe kept the per-pair data that a paired comparison needs."""


@dataclass
class Comparison:
    """Run A against run B: ``classes`` (one row per class both finished) and ``cues`` (one row per
    (class, cue, kind) tested in either run), best told first: gone, new, grew, shrank, unchanged, untested."""

    run_a: Path
    run_b: Path
    classes: pd.DataFrame
    cues: pd.DataFrame
    skipped: list[str] = field(default_factory=list)
    fdr_q: float = 0.05
    fdr_method: str = "by"
    min_effect: float = 0.15
    notes: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        found = self.cues["verdict"].value_counts().to_dict() if len(self.cues) else {}
        return {v: int(found.get(v, 0)) for v in VERDICTS}

    @property
    def changed(self) -> pd.DataFrame:
        """The rows whose verdict is a significant change (gone, new, grew, shrank)."""
        return self.cues[self.cues["verdict"].isin(VERDICTS[:4])] if len(self.cues) else self.cues

    def summary(self) -> str:
        counts = ", ".join(f"{n} {v}" for v, n in self.counts.items() if n)
        tested = int(self.cues["p"].notna().sum()) if len(self.cues) else 0
        return (f"{len(self.classes)} class(es) compared, {len(self.cues)} cue tests, {tested} tested on shared "
                f"confirmation pairs: {counts or 'nothing to compare'}")

    def __repr__(self) -> str:
        from probe.display import terminal_safe  # names and skip reasons are untrusted: no escape codes in a REPL

        lines = [f"Comparison(A={self.run_a.name!r}, B={self.run_b.name!r}): {self.summary()}"]
        for _, r in self.changed.head(20).iterrows():
            lines.append(f"  {r['verdict']}: {terminal_safe(r['class_name'])} · {terminal_safe(r['cue'])} · {r['kind']}: "
                         f"A {fmt.effect(r['effect_a'])} "
                         f"({r['status_a']}) -> B {fmt.effect(r['effect_b'])} ({r['status_b']}), change "
                         f"{fmt.effect(r['change'])} [{fmt.interval(r['ci_low'], r['ci_high'], sep=', ')}] on {r['n_shared']} pairs, "
                         f"q {fmt.pq(r['q'])}")
        lines += [f"  skipped: {terminal_safe(s)}" for s in self.skipped]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        cols = ("verdict", "class", "cue", "kind", "A", "B", "change", "95% CI", "shared pairs", "q")
        rows = []
        for _, r in self.cues.head(200).iterrows():
            cells = (r["verdict"], f"{r['class_index']} {r['class_name']}", r["cue"], r["kind"],
                     f"{fmt.effect(r['effect_a'])} {r['status_a']}", f"{fmt.effect(r['effect_b'])} {r['status_b']}",
                     fmt.effect(r["change"]), fmt.interval(r["ci_low"], r["ci_high"]) if r["p"] is not None else "–", f"{r['n_shared']} ({r['basis']})",
                     fmt.pq(r["q"]))
            rows.append("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>")
        head = "".join(f"<th>{c}</th>" for c in cols)
        skipped = "".join(f"<li>{escape(s)}</li>" for s in self.skipped)
        return (f"<p><b>{escape(self.run_a.name)}</b> (A) vs <b>{escape(self.run_b.name)}</b> (B): "
                f"{escape(self.summary())}</p><table><tr>{head}</tr>{''.join(rows)}</table>"
                + (f"<p>skipped:</p><ul>{skipped}</ul>" if skipped else ""))

    def table(self, limit: int = 20):
        """The verdicts as a rich table for the terminal: the rows tested on shared pairs (the significant changes
        first), else the first rows; names escaped (class and cue names are untrusted text). ✓ marks a passing
        finding."""
        from rich import box
        from rich.markup import escape
        from rich.table import Table

        from probe.display import terminal_safe

        def rich_escape(text) -> str:  # untrusted: no markup, no control characters reach the terminal
            return escape(terminal_safe(text))

        tested = self.cues[self.cues["p"].notna()] if len(self.cues) else self.cues
        shown = (tested if len(tested) else self.cues).head(limit)
        # Columns separated by spaces, not rules, and the verdict and kind never cut: in an 80-column log (CI, a pipe)
        # the ruled table cut them to "verdi…" and "necess…"; the free text (class, cue) wraps instead.
        table = Table(title=f"probe compare: A {rich_escape(self.run_a.name)} -> B {rich_escape(self.run_b.name)}",
                      box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False)
        for column in ("verdict", "class", "cue", "kind", "A", "B", "change", "pairs", "q"):
            fixed = column not in ("class", "cue")
            table.add_column(column, justify="right" if column in ("A", "B", "change", "pairs", "q") else "left",
                             no_wrap=fixed, overflow="ellipsis" if fixed else "fold")
        for _, r in shown.iterrows():
            table.add_row(r["verdict"], rich_escape(str(r["class_name"])), rich_escape(str(r["cue"])), r["kind"],
                          fmt.effect(r["effect_a"]) + (" ✓" if r["status_a"] == "passes" else ""),
                          fmt.effect(r["effect_b"]) + (" ✓" if r["status_b"] == "passes" else ""),
                          fmt.effect(r["change"]), str(r["n_shared"]), fmt.pq(r["q"]))
        if len(self.cues) > len(shown):
            table.caption = f"{len(self.cues) - len(shown)} more rows (untested or beyond {limit}) on the page"
        return table

    def render(self, out_dir: str | Path | None = None) -> Path:
        """Write the comparison page (the report's style) and return its path: ``out_dir/index.html``,
        by default ``RUN_B/compare-<name of A>/index.html``. Evidence thumbnails link to both runs' images."""
        from probe.report.compare_page import render_comparison

        return render_comparison(self, out_dir)


def compare(run_a, run_b, *, fdr_q: float = 0.05, min_effect: float | None = None,
            fdr_method: str = "by") -> Comparison:
    """Compare two audits made with the same generator and seeds (see the module docstring for the steps
    and the verdicts). ``min_effect``: the smallest change that counts (default: run A's effect threshold)."""
    if not 0.0 < fdr_q < 1.0:
        raise CompareError(f"--fdr-q {fdr_q} must lie in (0, 1); 0.05 keeps the expected share of false changes at 5%")
    if min_effect is not None and not 0.0 <= min_effect <= 2.0:
        raise CompareError(f"--min-effect {min_effect} must lie in [0, 2] (a change of probabilities); e.g. 0.15")
    if fdr_method not in ("bh", "by"):
        raise CompareError(f"fdr_method={fdr_method!r} must be 'by' (Benjamini–Yekutieli) or 'bh' (Benjamini–Hochberg)")
    # 1. comparable? -------------------------------------------------------------------------------
    a, b = _open(run_a, "A"), _open(run_b, "B")
    _check_comparable(a, b)
    thresholds = (a.analysis.config or {}).get("thresholds") or {}
    stated = fmt.as_float(thresholds.get("min_effect"))  # null in a hand-edited analysis.json: the default bar
    min_effect = (0.15 if stated is None else stated) if min_effect is None else float(min_effect)
    two_sided = tuple(thresholds.get("two_sided_kinds") or ("token-shift",))
    shared, skipped = _shared_classes(a, b)
    # 2. per class ---------------------------------------------------------------------------------
    classes = _class_table(a, b, shared)
    # 3. per (class, cue, kind): effects and the paired test of the change ------------------------------
    rows = [_cue_row(a, b, key) for key in _test_keys(a, b, shared)]
    # 4. false-discovery-rate control over the tested changes -------------------------------------------
    from probe.analysis.stats import fdr

    qv, _ = fdr([r["p"] for r in rows], q=fdr_q, method=fdr_method) if rows else (np.zeros(0), None)
    for r, q in zip(rows, qv):
        r["q"] = float(q)
    # 5. verdicts ------------------------------------------------------------------------------------
    for r in rows:
        r["verdict"] = _verdict(r, fdr_q, min_effect, two_sided)
    order = {v: i for i, v in enumerate(VERDICTS)}
    rows.sort(key=lambda r: (order[r["verdict"]], -abs(r["change"]) if _finite(r["change"]) else 0.0,
                             r["class_index"], r["cue"], r["kind"]))
    cues = pd.DataFrame(rows, columns=_CUE_COLUMNS)
    notes = [f"A's and B's generators ran on {a.device!r} and {b.device!r}: images of the same seed may differ "
             "slightly"] if a.device != b.device else []
    return Comparison(a.run.root, b.run.root, classes, cues, skipped, fdr_q, fdr_method, min_effect, notes)


# --------------------------------------------------------------------------------------------- step 1
@dataclass
class _Run:
    run: RunDir
    label: str  # "A" or "B"
    config: RunConfig
    labels: list[str]
    analysis: AnalysisSummary
    classes: dict[int, ClassRecord]  # finished classes (done or failed)
    pairs: dict[tuple, PairRecord]  # (kind, class index, cue) -> the test's pairs in analysis.json
    findings: dict[tuple, dict]  # (kind, class index, cue) -> the finding

    @property
    def name(self) -> str:
        return self.run.root.name

    @property
    def device(self) -> str | None:
        return (self.config.generator or {}).get("device")

    @property
    def checked_by(self) -> str:
        """Who checked this run's generated images (world oracles, a concept model), or "unchecked"."""
        return self.analysis.checked_by


def _open(path, label: str) -> _Run:
    """Run ``label``'s files, each checked where RunDir reads it (a damaged one is a RunError naming the file and
    the field, so nothing below meets a value of the wrong type)."""
    run = RunDir(path)
    config = run.require_config(CompareError, f"run {label} ")
    analysis = run.read_analysis_summary()
    if analysis is None:
        raise CompareError(f"run {label} {str(path)!r} has no analysis.json; run `probe audit` on it again with the "
                           "same settings (it resumes and analyses)")
    if analysis.pairs is None:
        raise NoPairDataError(f"run {label} {str(path)!r} was analysed before probe kept per-pair data, so nothing can "
                              "be paired; run the same `probe audit` command on it again (finished classes are kept, "
                              "the analysis is redone)")
    pairs = {e.key: e for e in analysis.pairs if e.kind in CUE_KINDS}
    findings = {(f["kind"], int(f["class_index"]), str(f["cue"])): f for f in (run.read_findings() or [])
                if f.get("kind") in CUE_KINDS and isinstance(f.get("class_index"), int)}
    classes = {m.class_index: m for _, m in run.finished_records(strict=True)}  # damaged metrics: one line, exit 2
    return _Run(run, label, config, run.read_labels() or [], analysis, classes, pairs, findings)


def _check_comparable(a: _Run, b: _Run) -> None:
    """The first field that differs, named; the same run twice is fine."""
    def differ(name: str, va, vb):
        raise NotComparableError(f"runs A {str(a.run.root)!r} and B {str(b.run.root)!r} are not comparable: {name} "
                                 f"differs (A {_short(va)}, B {_short(vb)}); audit both with the same generator, seeds "
                                 "and classifier labels")

    gen_a, gen_b = a.config.generator or {}, b.config.generator or {}
    for key in GENERATOR_FIELDS:
        if gen_a.get(key) != gen_b.get(key):
            differ(f"generator.{key}", gen_a.get(key), gen_b.get(key))
    tok_a, tok_b = a.config.token_settings(), b.config.token_settings()
    for key in TOKEN_FIELDS:
        if tok_a.get(key) != tok_b.get(key):
            differ(f"token.{key}", tok_a.get(key), tok_b.get(key))
    from probe.analysis.config import PAIRING_FIELDS

    an_a, an_b = a.analysis.config or {}, b.analysis.config or {}
    for key in PAIRING_FIELDS:
        if an_a.get(key) != an_b.get(key):
            differ(f"analysis.{key}", an_a.get(key), an_b.get(key))
    if a.labels != b.labels:
        first = next((i for i, (x, y) in enumerate(zip(a.labels, b.labels)) if x != y), min(len(a.labels), len(b.labels)))
        differ(f"labels (class {first})", a.labels[first] if first < len(a.labels) else f"{len(a.labels)} labels",
               b.labels[first] if first < len(b.labels) else f"{len(b.labels)} labels")


def _shared_classes(a: _Run, b: _Run) -> tuple[list[int], list[str]]:
    def done(r: _Run, i: int) -> bool:
        return i in r.classes and r.classes[i].done

    shared, skipped = [], []
    for i in sorted(set(a.classes) | set(b.classes)):
        name = (a.classes.get(i) or b.classes.get(i)).class_name or str(i)
        if done(a, i) and done(b, i):
            shared.append(i)
            continue
        state = {r.label: ("done" if done(r, i) else r.classes[i].status if i in r.classes else "not run")
                 for r in (a, b)}
        skipped.append(f"class {i} ({name}): A {state['A']}, B {state['B']}")
    return shared, skipped


# --------------------------------------------------------------------------------------------- step 2
def _class_table(a: _Run, b: _Run, shared: list[int]) -> pd.DataFrame:
    rows = []
    for i in shared:
        ma, mb = a.classes[i], b.classes[i]
        row = {"class_index": i, "class_name": str(ma.class_name or i)}
        for kind, key in CLASS_METRICS:
            name = f"{kind}_{'accuracy' if key == 'accuracy' else 'target_prob'}"
            va, vb = _metric(ma, kind, key), _metric(mb, kind, key)
            row.update({f"{name}_a": va, f"{name}_b": vb,
                        f"{name}_delta": vb - va if va is not None and vb is not None else None})
        for r, side in ((a, "a"), (b, "b")):
            row[f"passing_{side}"] = sum(bool(f.get("passes")) for (k, c, _), f in r.findings.items() if c == i)
        rows.append(row)
    columns = ["class_index", "class_name"] + [f"{kind}_{'accuracy' if key == 'accuracy' else 'target_prob'}_{s}"
                                               for kind, key in CLASS_METRICS for s in ("a", "b", "delta")]
    return pd.DataFrame(rows, columns=columns + ["passing_a", "passing_b"])


def _metric(record: ClassRecord, kind: str, key: str) -> float | None:
    value = getattr(getattr(record, kind), key, None)  # baseline / token Scores, or None
    return None if value is None else float(value)


# --------------------------------------------------------------------------------------------- step 3
_CUE_COLUMNS = ["class_index", "class_name", "cue", "kind", "verdict", "status_a", "status_b", "checked_a", "checked_b",
                "effect_a", "effect_b", "n_a", "n_b", "change", "ci_low", "ci_high", "n_shared", "basis", "p", "q", "evidence_a", "evidence_b"]


def _test_keys(a: _Run, b: _Run, shared: list[int]) -> list[tuple]:
    keys = set(a.pairs) | set(b.pairs) | set(a.findings) | set(b.findings)
    return sorted((k for k in keys if k[1] in shared), key=lambda k: (k[1], k[2], CUE_KINDS.index(k[0])))


def _stage(entry: PairRecord | None, stage: str) -> dict[str, float]:
    """{pair key: value} of one stage ("screen", "confirm") of a test's pairs (empty when absent)."""
    block = getattr(entry, stage) if entry is not None else None
    return {} if block is None else {k: v for k, v in zip(block.keys, block.values) if v is not None}


def _side(r: _Run, key: tuple) -> tuple[str, float, int]:
    """(status, effect, pairs) of one run's test: the effect on the pairs that decided it."""
    entry, finding = r.pairs.get(key), r.findings.get(key)
    values = _stage(entry, "confirm") or _stage(entry, "screen")
    if finding is not None:
        status = "passes" if finding.get("passes") else str(finding.get("status") or "weak")
        effect = finding.get("effect")
        n = int(finding.get("n_images") or 0)
        if effect is None and values:
            effect = float(np.mean(list(values.values())))
        return status, float("nan") if effect is None else float(effect), n
    if entry is None:
        return "not tested", float("nan"), 0
    return "not reported", float(np.mean(list(values.values()))) if values else float("nan"), len(values)


def _checked_by(r: _Run, key: tuple) -> str:
    """Who checked the images of one run's test: its finding's ``checked_by``, else the run's analysis."""
    finding = r.findings.get(key)
    if finding is not None and finding.get("checked_by"):
        return str(finding["checked_by"])
    return r.checked_by


def _cue_row(a: _Run, b: _Run, key: tuple) -> dict:
    from probe.analysis.stats import paired_effect

    kind, index, cue = key
    status_a, effect_a, n_a = _side(a, key)
    status_b, effect_b, n_b = _side(b, key)
    row = {"class_index": index, "class_name": _class_name(a, b, index), "cue": cue, "kind": kind,
           "status_a": status_a, "status_b": status_b,
           "checked_a": _checked_by(a, key), "checked_b": _checked_by(b, key), "effect_a": effect_a, "effect_b": effect_b, "n_a": n_a,
           "n_b": n_b, "change": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n_shared": 0,
           "p": float("nan"), "q": float("nan"),
           "evidence_a": _evidence(a, key), "evidence_b": _evidence(b, key)}
    drawn_a, drawn_b = _drawn(a, key), _drawn(b, key)
    if drawn_a != drawn_b:  # the same seeds, other images: a token's against a class name's are no pairs
        row["basis"] = f"not paired: A drew {drawn_a}, B {drawn_b}"
        return row
    measured_a, measured_b = _measured(a, key), _measured(b, key)
    if measured_a != measured_b or UNSAID in measured_a:  # the same keys, other images: another cue prompt, other
        # counters, other steps; or counters one run cannot say
        row["basis"] = f"not paired: A measured {measured_a}, B {measured_b}"
        return row
    confirm_a, confirm_b = _stage(a.pairs.get(key), "confirm"), _stage(b.pairs.get(key), "confirm")
    both = [k for k in confirm_a if k in confirm_b]
    if both:  # like with like: the fresh pairs that decide
        effect = paired_effect([confirm_b[k] - confirm_a[k] for k in both], bounds=CHANGE_BOUNDS)
        row.update(change=effect.mean, ci_low=effect.ci_low, ci_high=effect.ci_high, n_shared=len(both), p=effect.p,
                   basis="confirmation")
        return row
    screen_a, screen_b = _stage(a.pairs.get(key), "screen"), _stage(b.pairs.get(key), "screen")
    both = [k for k in screen_a if k in screen_b]
    if both:  # indicative only: screening pairs choose what to confirm and never decide
        row.update(change=float(np.mean([screen_b[k] - screen_a[k] for k in both])), n_shared=len(both),
                   basis="screening only")
    else:
        row["basis"] = "none"
    return row


def _measured(r: _Run, key: tuple) -> str:
    """What one run's test of a cue drew its images with: the cue's prompt, the counters a necessity test kept (the
    counter rule drops different ones for different classifiers, and the pair keys s{seed}:p{prompt} then name other
    counter images), and the sampling steps of a necessity test drawn with the class's token (a class's extra steps,
    analysis.json ``classes[i].sampling_steps``, apply only to prompts that hold its token: probe.analysis.lab
    ``Lab.settings``; a sufficiency test's carriers and a test drawn with the class's name are drawn at the run's
    steps). Pairs are like with like only when both runs drew the same.

    The counters are the listed templates less the dropped ones (``AnalysisSummary.kept_counter_templates``), values
    recorded or not: a discovered cue, or a cue list without ``counter_values``, names its counters' values nowhere."""
    kind, index, cue = key
    listed = r.analysis.listed_cue(index, cue)
    parts = [f"the prompt {listed.get('template')!r}"] if listed.get("template") else []
    if kind == "necessity":
        name = r.labels[index] if index < len(r.labels) else str(index)  # an older analysis's key for the class
        counters = r.analysis.kept_counter_templates(index, name, cue, r.labels)
        if counters is None:
            twins = [str(i) for i, n in enumerate(r.labels) if n == name]
            parts.append(f"{UNSAID} ({name!r} names classes {', '.join(twins)}, and its analysis.json keys the dropped "
                         "counters by class name: re-analyse the run)")
        elif counters:
            parts.append(f"counters {', '.join(repr(str(t)) for t in counters)}")
    if kind in ("necessity", "token-shift"):  # both draw their pairs with the class's token (plan._token_shift_pairs)
        info = (r.analysis.classes or {}).get(str(index)) if isinstance(r.analysis.classes, dict) else None
        steps = info.get("sampling_steps") if isinstance(info, dict) else None
        if steps is not None and _drawn(r, key) == TOKEN:
            parts.append(f"{steps} sampling steps")
    return "; ".join(parts) or "what the run does not record"


def _drawn(r: _Run, key: tuple) -> str:
    """What one run's necessity test drew its pairs with: the class's token, or its name (a test whose token's images
    lost the class: ``details.drawn_with_name``, probe/analysis/plan.py ``Test.draw_with_name``)."""
    finding = r.findings.get(key) or {}
    name = (finding.get("details") or {}).get("drawn_with_name") if isinstance(finding, dict) else None
    return f"the class's name {str(name)!r}" if name else TOKEN


def _class_name(a: _Run, b: _Run, index: int) -> str:
    record = a.classes.get(index) or b.classes.get(index)
    return str((record.class_name if record is not None else None) or (a.labels[index] if index < len(a.labels) else index))


def _evidence(r: _Run, key: tuple) -> list[str]:
    """The finding's evidence images as absolute paths inside the run (nothing that leaves it)."""
    finding = r.findings.get(key) or {}
    out = []
    for stored in finding.get("evidence") or []:
        path = r.run.resolve(stored)
        if path is not None:
            out.append(str(path))
    return out


# --------------------------------------------------------------------------------------------- step 5
def _verdict(r: dict, fdr_q: float, min_effect: float, two_sided: tuple[str, ...]) -> str:
    if not _finite(r["p"]):
        return "untested"
    change = r["change"]
    significant = _finite(r["q"]) and r["q"] <= fdr_q and abs(change) >= min_effect
    if not significant:
        return "unchanged"
    passes_a, passes_b = r["status_a"] == "passes", r["status_b"] == "passes"
    direction = 1.0
    if r["kind"] in two_sided:
        ea, eb = (r[k] if _finite(r[k]) else 0.0 for k in ("effect_a", "effect_b"))
        reference = ea if passes_a else eb if passes_b else (ea if abs(ea) >= abs(eb) else eb)
        direction = 1.0 if reference >= 0 else -1.0
    toward = direction * change > 0
    if passes_a and not passes_b and not toward:
        return "gone in B"
    if passes_b and not passes_a and toward:
        return "new in B"
    return "grew" if toward else "shrank"


# --------------------------------------------------------------------------------------------- helpers
def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
