"""``probe demo``: audit a bundled shapes-world classifier with the bundled generator, on the CPU.

The world's classifiers were trained with planted cues (bundled_bias), so the demo can say not only
what the audit found but whether that is what was planted.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

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


def headline(result: AuditResult, classifier: str, seconds: float) -> str:
    """A few lines: accuracy before/after, and each planted cue with what the audit found for its class."""
    from probe.world import bundled_bias

    done = [r for r in result.rows if r["status"] == "done"]
    lines = [f"shapes-world demo ({classifier} classifier): {len(done)}/{len(result.rows)} classes in {seconds:.0f} s"]
    if done:
        base = sum(float(r["baseline_accuracy"]) for r in done) / len(done)
        tok = sum(float(r["token_accuracy"]) for r in done) / len(done)
        lines.append(f"mean accuracy of generated images: baseline prompt {base:.2f}, with the class token {tok:.2f}")
    findings_path = result.run_dir / "findings.json"
    findings = json.loads(findings_path.read_text()) if findings_path.is_file() else []
    if isinstance(findings, dict):
        findings = findings.get("findings", [])
    top: dict[str, dict] = {}
    for f in findings:
        if f.get("passes") and f.get("class_name") not in top:
            top[f["class_name"]] = f
    planted = bundled_bias(classifier) or {}
    for name, cues in planted.items():
        want = ", ".join(f"{k}={v}" for k, v in cues.items())
        found = top.get(name)
        lines.append(f"  planted {name}: {want}; top finding: " + (found["sentence"] if found else "none"))
    for name, f in top.items():
        if name not in planted:
            lines.append(f"  finding without a planted cue: {f['sentence']}")
    return "\n".join(lines)
