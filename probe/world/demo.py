"""``probe demo``: audit a bundled shapes-world classifier with the bundled generator, on the CPU.

The world's classifiers were trained with planted cues (bundled_bias), so the demo can say not only
what the audit found but whether that is what was planted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from probe.analysis.config import AnalysisConfig
from probe.run import RunDir
from probe.auditing.loop import AuditConfig, AuditResult, audit
from probe.token_config import TokenConfig


# the analysis within the demo's time: every candidate confirmed on 16 fresh pairs (the least that may decide), and no
# adaptive screening (measured 3 December 2026 on 2 cores: one round of 4 more seeds took the demo's images from 676 to
# 1162 and its time from 158 s to 235 s, and still did not find the heart's dot; docs/validity.md)
DEMO_ANALYSIS = AnalysisConfig(max_pairs=16, n_carriers=3, screen_extend=())
# sampling steps: at 5 DDIM steps (bf16 autocast on a CPU with native bf16) the bundled generator's held-out oracle
# accuracy is shape 1.000, colour 0.978, background 1.000, tag 1.000 (benchmarks/world_fidelity.py --steps 5)
DEMO_STEPS = 5


def demo_config(out: str | Path = "runs/demo", classifier: str = "biased", max_steps: int = 8,
                eval_images: int = 6, classes: str = "all", analyze: bool = True, report: bool = True,
                analysis: AnalysisConfig | None = None, model: str | Path | None = None) -> AuditConfig:
    """The demo's settings, measured on 2 CPU cores (see README).

    DEMO_STEPS sampling steps (5), lr 0.01, cross-entropy with at least 3 updates (``TokenConfig``'s default: fewer when ``max_steps`` is at most 3),
    and a stop on mean target probability
    > 0.95: every class's token moves (Adam's steps do not shrink with the gradient), also where the
    classifier already accepts the baseline images (the paper's accuracy stop would keep the initial word). ``model`` audits another world
    classifier with the same settings (the validity benchmark does).
    """
    from probe.world import bundled_classifier_path, bundled_generator_path

    generator = bundled_generator_path()
    settings = json.loads((generator / "probe_generator.json").read_text()) if (generator / "probe_generator.json").is_file() else {}
    token = TokenConfig(max_steps=max_steps, eval_images=eval_images, lr=float(settings.get("token_lr", 1e-2)),
                        steps=DEMO_STEPS, stop_metric="target_prob", accuracy_threshold=0.95, patience=max_steps)
    return AuditConfig(model=str(model or bundled_classifier_path(classifier)), generator=str(generator), out=str(out),
                       classes=classes, device="cpu", token=token, analyze=analyze, report=report,
                       analysis=analysis or DEMO_ANALYSIS)


def run_demo(out: str | Path = "runs/demo", classifier: str = "biased", max_steps: int = 8, progress: bool = True,
             console=None, **kwargs) -> AuditResult:
    from rich.console import Console

    console = console or Console(stderr=True)
    config = demo_config(out, classifier, max_steps, **kwargs)
    start = time.perf_counter()
    result = audit(config, progress=progress, console=console)
    seconds = time.perf_counter() - start
    if not result.interrupted:
        audited = kwargs.get("model") or classifier
        console.print(headline(result, audited, seconds), highlight=False, markup=False, soft_wrap=True)
    return result


@dataclass(frozen=True)
class PlantedCheck:
    """One planted cue and what the audit ranked first for its class."""

    class_name: str
    attribute: str
    value: str
    top: object | None  # the class's top Finding (off-object findings aside), or None
    recovered: bool


def planted_cue_recovery(findings, labels: list[str], planted: dict) -> list[PlantedCheck]:
    """For each planted cue ({class: {attribute: value}}), is it the passing top finding of its class?"""
    checks = []
    for name, cues in planted.items():
        (attribute, value), = cues.items()
        index = list(labels).index(name)
        ranked = [f for f in findings if f.class_index == index and f.kind != "off-object"]
        top = ranked[0] if ranked else None
        ok = top is not None and top.passes and top.details.get("value") == value
        checks.append(PlantedCheck(name, attribute, value, top, ok))
    return checks


def headline(result: AuditResult, classifier: str | Path, seconds: float) -> str:
    """A few lines: accuracy before/after, and each planted cue with what the audit found for its class.

    ``classifier``: the audited world classifier, a bundled name ("biased", "clean") or a .pt2 written by `probe
    world classifier`; its planted cues and its truth table are its own (its .bias.json), never the bundled one's.
    """
    from probe.analysis import read_findings
    from probe.errors import ProbeError
    from probe.world.assets import CLASSIFIER_NAMES
    from probe.world.valset import classifier_bias

    done = [r for r in result.rows if r["status"] == "done"]
    name = classifier if str(classifier) in CLASSIFIER_NAMES else Path(classifier).name
    lines = [f"shapes-world demo ({name} classifier): {len(done)}/{len(result.rows)} classes in {seconds:.0f} s"]
    if done:
        from probe.analysis.evaluation import gain_text

        base = sum(float(r["baseline_accuracy"]) for r in done) / len(done)
        tok = sum(float(r["token_accuracy"]) for r in done) / len(done)
        gain = gain_text(result.token_gain)
        lines.append(f"mean accuracy of generated images: baseline prompt {base:.2f}, with the class token {tok:.2f}"
                     + (f"; paired on the same seeds {gain}" if gain else ""))
    run = RunDir(result.run_dir)
    if run.read_findings() is None:
        return "\n".join(lines)
    findings = read_findings(run.root)
    labels = run.read_labels() or []
    audited = {r["class_name"] for r in done}
    try:
        bias, _, path = classifier_bias(classifier)
    except ProbeError as e:  # a classifier without its .bias.json: no planted cues to look for; its truth table stands
        lines.append(f"planted cues: unknown ({e})")
        bias, path = {}, classifier
    planted = {k: v for k, v in bias.items() if k in audited}
    for check in planted_cue_recovery(findings, labels, planted):
        found = check.top.sentence if check.top is not None and check.top.passes else "none"
        passing = any(f.passes and f.class_name == check.class_name and f.details.get("value") == check.value
                      for f in findings)
        mark = "found, top" if check.recovered else ("found, not top" if passing else "MISSED")
        lines.append(f"  planted {check.class_name}: {check.attribute}={check.value} [{mark}]; top finding: {found}")
    moved = [r for r in done if str(r.get("token_moved")).lower() == "true"]
    lines.append(f"tokens that moved from their initial word: {len(moved)}/{len(done)}")
    lines.extend(truth_check(findings, path))
    return "\n".join(lines)


def truth_check(findings, classifier: str | Path, n: int = 200) -> list[str]:
    """Every passing finding (cue findings and off-object alike) held against the classifier's true behaviour on
    rendered scenes. ``classifier``: a bundled name or the path of the audited world classifier."""
    from probe.classifiers import load_classifier
    from probe.world import bundled_classifier_path
    from probe.world.assets import CLASSIFIER_NAMES
    from probe.world.truth import true_effects

    passing = [f for f in findings if f.passes]
    if not passing:
        return ["passing findings: none"]
    path = bundled_classifier_path(classifier) if str(classifier) in CLASSIFIER_NAMES else Path(classifier)
    truth = true_effects(load_classifier(str(path)), n=n)
    lines = []
    confirmed = 0
    for f in passing:
        counters = f.details.get("counter_values") if f.kind == "necessity" else None
        ok = truth.confirms(f.class_name, f.cue, f.kind, f.effect, counters=counters)
        confirmed += ok
        if f.kind == "off-object":
            true = f"largest true effect of an off-object attribute {truth.off_object(f.class_name):+.2f}"
        else:
            true_kind = "sufficiency" if f.kind == "token-shift" else f.kind
            true = f"true {true_kind} effect {truth.effect(f.class_name, f.cue, true_kind, counters):+.2f}"
        lines.append(f"  [{'true' if ok else 'NOT CONFIRMED'}: {true}] {f.sentence}")
    return [f"passing findings confirmed by the truth table (probe.world.true_effects): {confirmed}/{len(passing)}",
            *lines]
