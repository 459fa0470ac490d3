"""``probe demo``: audit a bundled shapes-world classifier with the bundled generator, on the CPU.

The world's classifiers were trained with planted cues (bundled_bias), so the demo can say not only
what the audit found but whether that is what was planted.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from probe.rundir import RunDir
from probe.runs import AuditConfig, AuditResult, audit
from probe.tokens import TokenConfig


def demo_config(out: str | Path = "runs/demo", classifier: str = "biased", max_steps: int = 15,
                eval_images: int = 8, classes: str = "all", analyze: bool = True, report: bool = True,
                analysis: dict | None = None) -> AuditConfig:
    """The demo's settings, measured on 2 CPU cores (see README): 10 sampling steps, lr 0.01, and a stop on
    mean target probability > 0.95, so tokens of classes the classifier already gets right still move
    toward what makes it confident (the paper's accuracy stop would end them at step 0)."""
    from probe.world import bundled_classifier_path, bundled_generator_path

    generator = bundled_generator_path()
    settings = json.loads((generator / "probe_generator.json").read_text()) if (generator / "probe_generator.json").is_file() else {}
    token = TokenConfig(max_steps=max_steps, eval_images=eval_images, lr=float(settings.get("token_lr", 1e-2)), steps=10,
                        stop_metric="target_prob", accuracy_threshold=0.95, patience=max_steps)
    return AuditConfig(model=str(bundled_classifier_path(classifier)), generator=str(generator), out=str(out),
                       classes=classes, device="cpu", token=token, analyze=analyze, report=report,
                       analysis=dict(analysis or {}))


def run_demo(out: str | Path = "runs/demo", classifier: str = "biased", max_steps: int = 15, progress: bool = True,
             console=None, **kwargs) -> AuditResult:
    from rich.console import Console

    console = console or Console(stderr=True)
    config = demo_config(out, classifier, max_steps, **kwargs)
    start = time.perf_counter()
    result = audit(config, progress=progress, console=console)
    seconds = time.perf_counter() - start
    if not result.interrupted:
        console.print(headline(result, classifier, seconds), highlight=False, markup=False)
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


def headline(result: AuditResult, classifier: str, seconds: float) -> str:
    """A few lines: accuracy before/after, and each planted cue with what the audit found for its class."""
    from probe.analysis import read_findings
    from probe.world import bundled_bias

    done = [r for r in result.rows if r["status"] == "done"]
    lines = [f"shapes-world demo ({classifier} classifier): {len(done)}/{len(result.rows)} classes in {seconds:.0f} s"]
    if done:
        base = sum(float(r["baseline_accuracy"]) for r in done) / len(done)
        tok = sum(float(r["token_accuracy"]) for r in done) / len(done)
        lines.append(f"mean accuracy of generated images: baseline prompt {base:.2f}, with the class token {tok:.2f}")
    run = RunDir(result.run_dir)
    if run.read_findings() is None:
        return "\n".join(lines)
    findings = read_findings(run.root)
    labels = run.read_labels() or []
    audited = {r["class_name"] for r in done}
    planted = {k: v for k, v in (bundled_bias(classifier) or {}).items() if k in audited}
    for check in planted_cue_recovery(findings, labels, planted):
        found = check.top.sentence if check.top is not None and check.top.passes else "none"
        mark = "found" if check.recovered else "MISSED"
        lines.append(f"  planted {check.class_name}: {check.attribute}={check.value} [{mark}]; top finding: {found}")
    seen = set(planted)
    for f in findings:
        if f.passes and f.class_name not in seen:
            seen.add(f.class_name)
            lines.append(f"  finding without a planted cue: {f.sentence}")
    return "\n".join(lines)
