"""Synthetic run directories in the documented format (docs/run-format.md).

Used by the report's tests, the browser test and ``benchmarks/report_scale.py``
so the report can be exercised without models. Everything is seeded, small and
written in the exact layout ``probe audit`` produces.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from probe.analysis.finding import sentence_prefix
from probe.analysis.policy import Thresholds, describe_rule
from probe.run import CLASSES, TOKEN, RunDir
from probe.run.records import FINDING_FIELDS, FINDING_KINDS, STATUSES

__all__ = ["make_synthetic_run", "ATTRIBUTION_METHODS"]

ATTRIBUTION_METHODS = ("integrated_gradients", "grad_cam", "occlusion")
_COLORS = [(220, 60, 60), (60, 140, 220), (60, 180, 90), (230, 190, 40), (150, 80, 200)]
_BACKGROUNDS = [(235, 235, 225), (90, 160, 80), (210, 190, 140), (120, 170, 220)]
_CUES = ["grass background", "sand background", "red color", "corner tag", "large size", "water"]
# statuses of the k-th finding (cycled): every run with 6+ findings has each status at least once
_STATUS_CYCLE = ("passes", "inconclusive", "screened", "weak", "passes", "unverified", "weak")
RULE = describe_rule(Thresholds(min_effect=0.1, min_pairs=12, two_sided_kinds=("necessity",)))
COUNTER_RULE = ("a counter-value whose screened sufficiency effect on any class reaches the effect threshold in size "
                "is dropped from necessity tests")


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
    unmoved: Sequence[int] | None = None,
    stop_metric: str = "accuracy",
    objective: str = "cross_entropy",
    checked_by: str | None = "shapes world oracles",
) -> Path:
    """Write a run directory with ``n_classes`` classes and return its path.

    ``labels`` overrides the class names (untrusted text is welcome: that is
    what the tests feed it). Class indices in ``failed`` get ``status: failed``
    with an error; those in ``incomplete`` get a class folder without
    ``metrics.json`` (an interrupted attempt). ``findings=False`` leaves out
    ``findings.json``/``findings.parquet`` (analysis not run).

    Findings carry every field the analysis writes (status, p, q, unit, excluded pairs with their note);
    the k-th finding's status cycles through passes, inconclusive, screened, weak, so a run with four or
    more findings shows each. Classes in ``unmoved`` (default: class 1) record a token that did not move
    from its initial word. ``stop_metric``, ``objective`` and ``checked_by`` (None: interventions not
    checked) go into config.json, metrics.json and analysis.json as a real audit writes them.
    """
    if unmoved is None:
        unmoved = (1,) if n_classes > 1 else ()
    rng = random.Random(seed)
    run = RunDir(run_dir)  # every file goes through the run's one writer, as an audit's do
    run_dir = run.root
    (run_dir / CLASSES).mkdir(parents=True, exist_ok=True)
    names = list(labels) if labels is not None else [f"class {i}" for i in range(n_classes)]
    if len(names) < n_classes:
        raise ValueError(f"labels has {len(names)} names but n_classes={n_classes}; pass enough labels")
    images = _image_pool(image_size, 24, rng)
    heats = _heat_pool(image_size, 12, rng) if attributions else []
    templates = ["a photo of a {}", "a close-up photo of a {}"]
    eval_seeds = [1000 + s for s in range(images_per_kind)]

    run.write_labels(names)
    token_cfg = {"templates": templates, "init_word": "a", "lr": 0.005, "batch_size": 4, "max_steps": history_steps,
                 "accuracy_threshold": 0.95 if stop_metric == "target_prob" else 0.7, "stop_metric": stop_metric,
                 "objective": objective, "patience": 5, "grad_steps": 1, "seed": 0, "eval_images": images_per_kind,
                 "eval_seed": 1000, "topk": 3}
    run.write_config(  # the layout the audit writes: AuditConfig (with TokenConfig nested) + descriptions
        {
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

    done, all_findings = 0, []
    notes = []
    for ci in range(n_classes):
        name = names[ci]
        cdir = run.class_dir(ci, name)
        slug = cdir.name
        (cdir / "images").mkdir(parents=True, exist_ok=True)
        if ci in incomplete:
            run.write_history(cdir, [])
            continue
        is_failed = ci in failed
        steps = 0 if is_failed else rng.randint(3, history_steps)
        history = []
        acc, t = rng.uniform(0.0, 0.4), 0.0
        for step in range(steps):
            acc = min(1.0, acc + rng.uniform(0.0, 0.15))
            t += rng.uniform(0.2, 0.5)
            history.append({"step": step, "loss": round(2.5 * (1 - acc) + rng.uniform(0, 0.2), 4),
                            "accuracy": round(acc, 4), "mean_target_prob": round(acc * 0.8, 4), "seconds": round(t, 3)})
        run.write_history(cdir, history)

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
            "steps": steps, "best_step": max(0, steps - 1), "objective": objective,
            "token_change": _token_change(rng, ci in unmoved),
            "stopped": None if is_failed else rng.choice(["threshold", "patience", "max_steps"]),
            "seconds": round(t + rng.uniform(0.5, 2.0), 3),
            "train_seeds": [0, 1, 2, 3], "eval_seeds": eval_seeds,
            "baseline": summary("baseline"), "token": summary("token"),
            "eval_model": None, "images": img_records,
        }
        if is_failed:  # as probe.auditing.class_run.failure_metrics writes it
            metrics.update({"traceback": ["Traceback (most recent call last):\n", "  File \"tokens.py\", line 1\n",
                                          f"probe.errors.TokenError: loss became NaN ({name})\n"],
                            "baseline": None, "token": None, "steps": None, "best_step": None})
            for k in ("objective", "token_change"):
                metrics.pop(k)
        elif ci in unmoved:
            notes.append(f"class {ci}: token unchanged (the classifier already accepts the baseline images); "
                         "no token-shift finding is derived from it")
        run.write_metrics(cdir, metrics)
        if not is_failed:
            (cdir / TOKEN).write_bytes(b"")  # the report never reads it
        done += 1

        if findings and not is_failed:
            ev = [f"classes/{ci}-{slug}/{r['path']}" for r in img_records if r["kind"] == "token"][:4]
            for _ in range(rng.randint(1, 2)):
                all_findings.append(_finding(rng, len(all_findings), ci, name, ev, images_per_kind, ci in unmoved))

    run.write_summary()
    if findings:
        order = {s: i for i, s in enumerate(STATUSES)}  # written ranked, like the analysis
        all_findings.sort(key=lambda f: (not f["passes"], order[f["status"]], -abs(f["effect"])))
        confirmed = [f for f in all_findings if f["status"] != "screened"]
        run.write_analysis({
            "rule": RULE,
            "concept_scorer": "shapes-world oracles",
            "interventions_checked_by": checked_by,
            "counter_rule": COUNTER_RULE,
            "dropped_counters": ["sand background"],
            "tests": {"screened": len(_CUES) * 2 * done, "candidates": len(confirmed) + 2,
                      "confirmed": len(confirmed), "passing": sum(f["passes"] for f in all_findings)},
            "cues": {"source": "world", "count": len(_CUES), "list": [{"name": c} for c in _CUES]},
            "attributions": {"methods_run": list(ATTRIBUTION_METHODS) if attributions else [], "skipped": {},
                             "layer": "stages.3" if attributions else None},
            "timings_s": {"attributions": 1.5, "sufficiency": 3.25, "total": 6.0},
            "notes": [*notes, f"class {n_classes - 1}: necessity skipped (synthetic note)"],
            "classes": {str(i): {"class_name": names[i], "token_moved": i not in unmoved,
                                 "nearest_words": [{"word": w, "id": 100 + k, "cosine": round(0.6 - 0.1 * k, 3)}
                                                   for k, w in enumerate(["grass", "green", "lawn"])],
                                 "token_shift": {"grass background": [0.2, 0.7], "red color": [0.4, 0.45]},
                                 "off_object": {"share_outside": 0.41, "ci_low": 0.33, "ci_high": 0.5,
                                                "area_outside": 0.7}}
                        for i in range(n_classes) if i not in failed and i not in incomplete},
            "n_findings": len(all_findings), "n_passing": sum(f["passes"] for f in all_findings),
        })
        run.write_findings(all_findings, list(FINDING_FIELDS))
    return run_dir


def _token_change(rng: random.Random, unmoved: bool) -> dict:
    """metrics.json's token_change, as probe.auditing.class_run.token_change writes it."""
    if unmoved:
        return {"distance": 0.0004, "relative": 0.0001, "cosine": 1.0, "moved": False, "image_change": 0.0}
    rel = round(rng.uniform(0.2, 0.9), 4)
    return {"distance": round(rel * 0.4, 4), "relative": rel, "cosine": round(1 - rel * rel / 2, 4), "moved": True,
            "image_change": round(rng.uniform(0.02, 0.12), 4)}


def _finding(rng: random.Random, k: int, ci: int, name: str, evidence: list[str], images_per_kind: int,
             unmoved: bool) -> dict:
    """The k-th finding of the run, with every field of probe.analysis.finding.Finding.to_dict."""
    kind = FINDING_KINDS[k % len(FINDING_KINDS)]
    if kind == "token-shift" and unmoved:
        kind = "sufficiency"  # an unchanged token yields no token-shift finding
    status = _STATUS_CYCLE[k % len(_STATUS_CYCLE)]
    if kind == "off-object" and status in ("inconclusive", "screened", "unverified"):
        status = "weak"  # off-object shares are measured, not intervened on: passes or weak only
    cue = "off-object" if kind == "off-object" else rng.choice(_CUES)
    unit = "images" if kind == "off-object" else "pairs"
    excluded = 0
    if status in ("passes", "unverified"):  # unverified: met the bars, but nothing checked its images
        effect, half, n = rng.uniform(0.3, 0.7), rng.uniform(0.05, 0.15), 16
        p = rng.choice([0.00004, rng.uniform(0.001, 0.004)])
        q = min(1.0, p * rng.uniform(2, 8))
        excluded = 2 if k == 0 else 0
    elif status == "weak":
        effect, half, n = rng.uniform(0.05, 0.25), rng.uniform(0.1, 0.2), 16
        p = rng.uniform(0.02, 0.2)
        q = min(1.0, p * rng.uniform(2, 6))
    elif status == "inconclusive":
        effect, half, n = rng.uniform(-0.1, 0.4), rng.uniform(0.2, 0.4), 6
        p, q = rng.uniform(0.05, 0.5), None
        excluded = 10
    else:  # screened: the screening pass only, never confirmed (no q)
        effect, half, n = rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.3), 8
        p, q = rng.uniform(0.001, 0.1), None
    if kind == "off-object":
        n = 2 * images_per_kind
    effect, lo, hi = round(effect, 3), round(effect - half, 3), round(effect + half, 3)
    if status == "screened":
        hi = None  # an interval may be unbounded on one side
    attempted = n + excluded
    note = None
    if excluded:
        what = {"sufficiency": "image pairs lost the object or the cue",
                "necessity": "image pairs lost the object or did not show the asked value",
                "token-shift": "image pairs lost the object"}[kind]
        note = f"{excluded} of {attempted} {what} and were excluded"
    details = {"category": "background", "description": cue,
               "screen": {"effect": round(effect * 0.9, 4), "n": 8, "excluded": 0}}
    if note:
        details["excluded_note"] = note
    if kind == "necessity":
        details["counters"] = ["plain background", "white background"]
    area = 0.45
    if kind == "off-object":  # the effect is the excess of attribution outside the object over the area outside it
        details.update(share_outside=round(area + effect, 3), area_outside=area)
    stats = (f"95% CI {lo:.2f}\u2013{hi:.2f}" if hi is not None else "95% CI unbounded") + f", {n} {unit}"
    sentence = sentence_prefix(status) + {
        "sufficiency": f"'{name}' is predicted from {cue}: {effect:+.2f} probability when added to other objects ({stats})",
        "necessity": f"'{name}' depends on {cue}: swapping it for a counter-context lowers its probability by "
                     f"{effect:.2f} ({stats})",
        "token-shift": f"The token for '{name}' adds {cue} ({effect:+.2f}, {stats})",
        "off-object": f"{area + effect:.0%} of the attribution for '{name}' lies outside the object, {effect:+.2f} "
                      f"more than the {area:.0%} of the image outside it (excess {effect:+.2f}, {stats})",
    }[kind]
    passes = status == "passes"
    return {"class_index": ci, "class_name": name, "cue": cue, "kind": kind, "effect": effect,
            "ci_low": lo, "ci_high": hi, "n_images": n, "evidence": evidence, "passes": passes,
            "strength": "strong" if status in ("passes", "unverified") else "weak", "sentence": sentence, "details": details,
            "p": round(p, 8), "q": None if q is None else round(q, 8), "status": status, "unit": unit,
            "excluded": excluded, "attempted": attempted,
            "checked_by": "unchecked" if status == "unverified" else "shapes world oracles"}
