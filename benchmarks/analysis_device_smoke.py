"""Smoke-test the analysis on an accelerator: tiny SD components and a small timm CNN on ``--device``,
a one-class audit, then analyze_run with every method and a tiny random CLIP folder checking the interventions
(``--concepts DIR``'s path: on a GPU in the generator's half precision); prints timings and the findings.

    .venv/bin/python benchmarks/analysis_device_smoke.py --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    import timm
    import torch

    from probe.analysis import AnalysisConfig, analyze_run
    from probe.classifiers import load_classifier
    from probe.generators import load_generator
    from probe.auditing.loop import AuditConfig, audit
    from probe.tokens import TokenConfig
    from tiny_sd import build_tiny_sd

    tmp = Path(tempfile.mkdtemp(prefix="probe-smoke-"))
    gen = load_generator(build_tiny_sd(tmp / "sd"), device=args.device)
    torch.manual_seed(0)
    net = timm.create_model("resnet18", pretrained=False, num_classes=3)
    clf = load_classifier(net, labels=["circle", "star", "heart"], input_size=64, mean=(0.5,) * 3, std=(0.25,) * 3,
                          crop_pct=1.0, device=args.device)
    token = TokenConfig(max_steps=2, patience=2, eval_images=3, batch_size=2, steps=4)
    t0 = time.perf_counter()
    run = audit(AuditConfig(model="smoke", out=str(tmp / "run"), token=token, analyze=False, report=False, classes="1"),
                classifier=clf, generator=gen, progress=False).run_dir
    t1 = time.perf_counter()
    cues = tmp / "cues.txt"
    cues.write_text("{} on grass | {} on sand\nred {} | blue {}\n{} at night | {} in daylight\n")
    # the intervention check: a tiny random CLIP folder, as a user's --concepts DIR (on a GPU: the generator's dtype)
    from tiny_concepts import save_tiny_clip

    from probe.analysis.plan import _CONCEPT_MODELS

    clip = save_tiny_clip(tmp / "my-clip")
    findings = analyze_run(run, clf, gen, AnalysisConfig(cues=str(cues), screen_seeds=4, concepts=str(clip)))
    t2 = time.perf_counter()
    a = json.loads((run / "analysis.json").read_text())
    print(f"device {args.device}: audit {t1 - t0:.1f}s, analysis {t2 - t1:.1f}s")
    print("methods run:", a["attributions"]["methods_run"], "skipped:", a["attributions"]["skipped"], "layer:", a["attributions"]["layer"])
    print("timings:", a["timings_s"])
    print("notes:", a["notes"])
    print("checked by:", a.get("interventions_checked_by"), "| generator:", gen.dtype, "| concept models:",
          [repr(m) for m in _CONCEPT_MODELS.values()])
    print(findings)
    overlays = sorted(p.relative_to(run).as_posix() for p in run.rglob("attributions/*/*.png"))
    print(len(overlays), "overlays, e.g.", overlays[:2])


if __name__ == "__main__":
    main()
