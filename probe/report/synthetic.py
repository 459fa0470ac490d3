"""Synthetic run directories in the documented format (docs/run-format.md).

Used by the report's tests, the browser test and ``benchmarks/report_scale.py``
so the report can be exercised without models. Everything is seeded, small and
written in the exact layout ``probe audit`` produces.
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from probe.report.slug import slugify
from probe.rundir import FORMAT_VERSION

__all__ = ["make_synthetic_run", "ATTRIBUTION_METHODS"]

ATTRIBUTION_METHODS = ("integrated_gradients", "grad_cam", "occlusion")
_COLORS = [(220, 60, 60), (60, 140, 220), (60, 180, 90), (230, 190, 40), (150, 80, 200)]
_BACKGROUNDS = [(235, 235, 225), (90, 160, 80), (210, 190, 140), (120, 170, 220)]
_CUES = ["grass background", "sand background", "red color", "corner tag", "large size", "water"]


def _png(draw_fn, size: int) -> bytes:
    img = Image.new("RGB", (size, size))
    draw_fn(img, ImageDraw.Draw(img))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _image_pool(size: int, n: int, rng: random.Random) -> list[bytes]:
    pool = []
    for i in range(n):
        bg, fg = rng.choice(_BACKGROUNDS), rng.choice(_COLORS)
        r = rng.randint(size // 6, size // 3)
        cx, cy = rng.randint(r, size - r), rng.randint(r, size - r)

        def draw(img, d, bg=bg, fg=fg, r=r, cx=cx, cy=cy, i=i):
            d.rectangle([0, 0, size, size], fill=bg)
            box = [cx - r, cy - r, cx + r, cy + r]
            (d.ellipse if i % 2 else d.rectangle)(box, fill=fg)

        pool.append(_png(draw, size))
    return pool


def _heat_pool(size: int, n: int, rng: random.Random) -> list[bytes]:
    pool = []
    for _ in range(n):
        img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        d = ImageDraw.Draw(img)
        for _ in range(3):
            r = rng.randint(size // 8, size // 3)
            cx, cy = rng.randint(0, size), rng.randint(0, size)
            d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(255, rng.randint(0, 160), 0, 150))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        pool.append(buf.getvalue())
    return pool


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False), encoding="utf-8")


def make_synthetic_run(
    run_dir: str | Path,
    n_classes: int = 4,
    *,
    labels: Sequence[str] | None = None,
    images_per_kind: int = 4,
    image_size: int = 64,
    failed: Sequence[int] = (),
    incomplete: Sequence[int] = (),
    findings: bool = True,
    attributions: bool = True,
    history_steps: int = 12,
    seed: int = 0,
) -> Path:
    """Write a run directory with ``n_classes`` classes and return its path.

    ``labels`` overrides the class names (untrusted text is welcome: that is
    what the tests feed it). Class indices in ``failed`` get ``status: failed``
    with an error; those in ``incomplete`` get a class folder without
    ``metrics.json`` (an interrupted attempt). ``findings=False`` leaves out
    ``findings.json``/``findings.parquet`` (analysis not run).
    """
    rng = random.Random(seed)
    run_dir = Path(run_dir)
    (run_dir / "classes").mkdir(parents=True, exist_ok=True)
    names = list(labels) if labels is not None else [f"class {i}" for i in range(n_classes)]
    if len(names) < n_classes:
        raise ValueError(f"labels has {len(names)} names but n_classes={n_classes}; pass enough labels")
    images = _image_pool(image_size, 24, rng)
    heats = _heat_pool(image_size, 12, rng) if attributions else []
    templates = ["a photo of a {}", "a close-up photo of a {}"]
    eval_seeds = [1000 + s for s in range(images_per_kind)]

    _write_json(run_dir / "labels.json", names)
    token_cfg = {"templates": templates, "init_word": "a", "lr": 0.005, "batch_size": 4, "max_steps": history_steps,
                 "accuracy_threshold": 0.7, "patience": 5, "grad_steps": 1, "seed": 0, "eval_images": images_per_kind,
                 "eval_seed": 1000, "topk": 3}
    _write_json(  # the layout probe.runs.audit writes: AuditConfig (with TokenConfig nested) + descriptions
        run_dir / "config.json",
        {
            "format_version": FORMAT_VERSION,
            "audit": {"model": "synthetic://biased", "out": str(run_dir), "classes": "all", "generator": "tiny-sd",
                      "device": "auto", "dtype": None, "analyze": True, "report": True, "token": token_cfg},
            "classifier": {"name": "SyntheticNet", "format": "module", "num_classes": n_classes,
                           "data_config": {"input_size": [3, image_size, image_size], "mean": [0.5] * 3}},
            "eval_classifier": None,
            "generator": {"source": "synthetic://tiny-sd", "pipeline": "StableDiffusionPipeline",
                          "scheduler": "DDIMScheduler", "image_size": image_size, "device": "cpu", "dtype": "float32",
                          "default_steps": 8, "guidance_scale": 4.0},
            "classes": list(range(n_classes)),
            "versions": {"probe": "0.1.0", "python": "3.11", "torch": "2.14.1", "diffusers": "0.42.0"},
            "started": "2026-11-25T19:00:00+00:00",
        },
    )

    rows, all_findings = [], []
    for ci in range(n_classes):
        name = names[ci]
        slug = slugify(name)
        cdir = run_dir / "classes" / f"{ci}-{slug}"
        (cdir / "images").mkdir(parents=True, exist_ok=True)
        if ci in incomplete:
            (cdir / "history.csv").write_text("step,loss,accuracy,mean_target_prob,seconds\n", encoding="utf-8")
            continue
        is_failed = ci in failed
        steps = 0 if is_failed else rng.randint(3, history_steps)
        hist = io.StringIO()
        w = csv.writer(hist)
        w.writerow(["step", "loss", "accuracy", "mean_target_prob", "seconds"])
        acc, t = rng.uniform(0.0, 0.4), 0.0
        for s in range(steps):
            acc = min(1.0, acc + rng.uniform(0.0, 0.15))
            t += rng.uniform(0.2, 0.5)
            w.writerow([s, round(2.5 * (1 - acc) + rng.uniform(0, 0.2), 4), round(acc, 4), round(acc * 0.8, 4), round(t, 3)])
        (cdir / "history.csv").write_text(hist.getvalue(), encoding="utf-8")

        img_records = []
        if not is_failed:
            for kind in ("baseline", "token"):
                for k, s in enumerate(eval_seeds):
                    p = k % len(templates)
                    rel = f"images/{kind}_p{p}_s{s}.png"
                    stem = f"{kind}_p{p}_s{s}"
                    (cdir / rel).write_bytes(images[rng.randrange(len(images))])
                    for m in ATTRIBUTION_METHODS if attributions else ():
                        (cdir / "attributions" / m).mkdir(parents=True, exist_ok=True)
                        (cdir / "attributions" / m / f"{stem}.png").write_bytes(heats[rng.randrange(len(heats))])
                    tp = rng.uniform(0.05, 0.5) if kind == "baseline" else rng.uniform(0.4, 0.99)
                    others = [j for j in range(min(n_classes, 6)) if j != ci][:2]
                    rest = 1.0 - tp
                    topk = [{"index": ci, "label": name, "prob": round(tp, 4)}]
                    topk += [{"index": j, "label": names[j], "prob": round(rest / (2 + n), 4)} for n, j in enumerate(others)]
                    topk.sort(key=lambda e: -e["prob"])
                    token = f"<probe-{ci}>"
                    prompt = templates[p].format(f"{token} {name}" if kind == "token" else name)
                    img_records.append({"path": rel, "kind": kind, "prompt": prompt, "prompt_index": p, "seed": s,
                                        "target_prob": round(tp, 4), "correct": topk[0]["index"] == ci, "topk": topk})
        def summary(kind):
            recs = [r for r in img_records if r["kind"] == kind]
            if not recs:
                return {"accuracy": None, "mean_target_prob": None, "n": 0}
            return {"accuracy": round(sum(r["correct"] for r in recs) / len(recs), 4),
                    "mean_target_prob": round(sum(r["target_prob"] for r in recs) / len(recs), 4), "n": len(recs)}

        metrics = {
            "status": "failed" if is_failed else "done",
            "error": f"TokenError: loss became NaN at step 3 for class {name!r}; lower --lr" if is_failed else None,
            "class_index": ci, "class_name": name, "slug": slug, "token_string": f"<probe-{ci}>", "init_word": "a",
            "prompts": {"templates": templates,
                        "token": [t.format(f"<probe-{ci}> {name}") for t in templates],
                        "baseline": [t.format(name) for t in templates]},
            "steps": steps, "best_step": max(0, steps - 1),
            "stopped": None if is_failed else rng.choice(["threshold", "patience", "max_steps"]),
            "seconds": round(t + rng.uniform(0.5, 2.0), 3),
            "train_seeds": [0, 1, 2, 3], "eval_seeds": eval_seeds,
            "baseline": summary("baseline"), "token": summary("token"),
            "eval_model": None, "images": img_records,
        }
        if is_failed:  # as probe.runs.failure_metrics writes it
            metrics.update({"traceback": ["Traceback (most recent call last):\n", "  File \"tokens.py\", line 1\n",
                                          f"probe.errors.TokenError: loss became NaN ({name})\n"],
                            "baseline": None, "token": None, "steps": None, "best_step": None})
        _write_json(cdir / "metrics.json", metrics)
        if not is_failed:
            (cdir / "token.safetensors").write_bytes(b"")  # the report never reads it
        b = metrics["baseline"] or {"accuracy": None, "mean_target_prob": None}
        tk = metrics["token"] or {"accuracy": None, "mean_target_prob": None}
        rows.append([ci, name, slug, metrics["status"], b["accuracy"], tk["accuracy"], b["mean_target_prob"],
                     tk["mean_target_prob"], b["accuracy"], tk["accuracy"], steps, metrics["best_step"], metrics["seconds"]])

        if findings and not is_failed:
            for j in range(rng.randint(0, 2)):
                cue = rng.choice(_CUES)
                effect = round(rng.uniform(-0.1, 0.7), 3)
                half = round(rng.uniform(0.03, 0.2), 3)
                lo, hi = round(effect - half, 3), round(effect + half, 3)
                passes = lo > 0.05
                kind = rng.choice(["sufficiency", "necessity", "token-shift", "off-object"])
                ev = [f"classes/{ci}-{slug}/{r['path']}" for r in img_records if r["kind"] == "token"][:4]
                all_findings.append({
                    "class_index": ci, "class_name": name, "cue": cue, "kind": kind, "effect": effect,
                    "ci_low": lo, "ci_high": hi, "n_images": 2 * images_per_kind, "evidence": ev,
                    "passes": passes, "strength": "strong" if passes and effect > 0.3 else "weak",
                    "sentence": f"'{name}' is predicted from {cue}: {effect:+.2f} probability "
                                f"(95% CI {lo:.2f}\u2013{hi:.2f}), {2 * images_per_kind} images",
                })

    with open(run_dir / "summary.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["class_index", "class_name", "slug", "status", "baseline_accuracy", "token_accuracy",
                    "baseline_target_prob", "token_target_prob", "eval_baseline_accuracy", "eval_token_accuracy",
                    "steps", "best_step", "seconds"])
        w.writerows(rows)
    if findings:
        all_findings.sort(key=lambda f: (not f["passes"], -f["effect"]))  # written ranked, like the analysis
        _write_json(run_dir / "findings.json", all_findings)
        _write_json(run_dir / "analysis.json", {
            "concept_scorer": "shapes-world oracles",
            "cues": {"source": "world", "count": len(_CUES), "list": [{"name": c} for c in _CUES]},
            "attributions": {"methods_run": list(ATTRIBUTION_METHODS) if attributions else [], "skipped": {},
                             "layer": "stages.3" if attributions else None},
            "timings_s": {"attributions": 1.5, "sufficiency": 3.25, "total": 6.0},
            "notes": [f"class {n_classes - 1}: necessity skipped (synthetic note)"],
            "classes": {str(i): {"class_name": names[i],
                                 "nearest_words": [{"word": w, "id": 100 + k, "cosine": round(0.6 - 0.1 * k, 3)}
                                                   for k, w in enumerate(["grass", "green", "lawn"])],
                                 "token_shift": {"grass background": [0.2, 0.7], "red color": [0.4, 0.45]},
                                 "off_object": {"share_outside": 0.41, "ci_low": 0.33, "ci_high": 0.5,
                                                "area_outside": 0.7}}
                        for i in range(n_classes) if i not in failed and i not in incomplete},
            "n_findings": len(all_findings), "n_passing": sum(f["passes"] for f in all_findings),
        })
        try:
            import pandas as pd

            pd.DataFrame(all_findings).to_parquet(run_dir / "findings.parquet")
        except Exception:  # pyarrow missing: the JSON is the source of truth
            pass
    return run_dir
