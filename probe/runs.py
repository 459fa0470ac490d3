"""Runs: the run directory, resume, and the per-class audit loop (format: docs/run-format.md).

``audit(config)`` loads the classifier and the generator, then for each selected class learns a
token, evaluates it on fresh seeds and writes the class's artifacts. A class is finished exactly
when its metrics.json exists (written last, atomically), so re-running the same command skips
finished classes and redoes an interrupted one from scratch. A failure inside one class (a NaN
loss, an error in the user's model) is recorded in that class's metrics.json and the run goes on.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import shutil
import time
import traceback
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import torch

from probe.errors import ProbeError, RunError
from probe.files import save_png, slugify, write_json, write_text
from probe.tokens import ClassToken, Evaluation, TokenConfig, evaluate_class_token, optimize_class_token

SUMMARY_COLUMNS = ["class_index", "class_name", "slug", "status", "baseline_accuracy", "token_accuracy",
                   "baseline_target_prob", "token_target_prob", "eval_baseline_accuracy", "eval_token_accuracy",
                   "steps", "best_step", "seconds"]
HISTORY_COLUMNS = ["step", "loss", "accuracy", "mean_target_prob", "grad_norm", "seconds"]
# Settings that change what a finished class contains: resuming with other values would mix runs.
_RESUME_KEYS = ("model", "arch", "generator", "token")


@dataclass(frozen=True)
class AuditConfig:
    """Everything ``probe audit`` needs; saved as config.json in the run directory."""

    model: str
    out: str
    classes: str = "all"
    generator: str | None = None
    arch: str | None = None
    labels: str | None = None
    trust_pickle: bool = False
    input_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    crop_pct: float | None = None
    interpolation: str | None = None
    eval_model: str | None = None
    eval_arch: str | None = None
    device: str = "auto"
    dtype: str | None = None
    retry_failed: bool = False
    analyze: bool = True
    report: bool = True
    token: TokenConfig = field(default_factory=TokenConfig)
    analysis: dict = field(default_factory=dict)  # overrides of probe.analysis.AnalysisConfig fields

    def __post_init__(self):
        if not str(self.model).strip():
            raise RunError("--model is empty; pass a classifier file, folder or package.module:function")
        if not str(self.out).strip():
            raise RunError("--out is empty; pass a folder for the run, e.g. runs/my-audit")
        if not isinstance(self.token, TokenConfig):
            raise RunError("AuditConfig.token must be a TokenConfig")
        if not isinstance(self.analysis, dict):
            raise RunError("AuditConfig.analysis must be a dict of AnalysisConfig settings, e.g. {'cues': 'my_cues.txt'}")

    def to_dict(self) -> dict:
        data = asdict(self)
        data["token"] = self.token.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "AuditConfig":
        known = {f.name for f in fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        data["token"] = TokenConfig.from_dict(data.get("token", {}))
        for key in ("mean", "std"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


@dataclass
class AuditResult:
    """What a run produced: one summary row per class, and where the files are."""

    run_dir: Path
    rows: list[dict]
    interrupted: bool = False
    report: Path | None = None

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "done"]

    def __repr__(self) -> str:
        done = len(self.rows) - len(self.failed)
        return f"AuditResult({str(self.run_dir)!r}: {done} classes done, {len(self.failed)} failed)"

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<th>{escape(c)}</th>" for c in ("class", "status", "baseline acc", "token acc", "steps", "seconds"))
        body = "".join(
            f"<tr><td>{escape(str(r['class_index']))} {escape(str(r['class_name']))}</td><td>{escape(r['status'])}</td>"
            f"<td>{_fmt(r['baseline_accuracy'])}</td><td>{_fmt(r['token_accuracy'])}</td>"
            f"<td>{escape(str(r['steps']))}</td><td>{_fmt(r['seconds'], 1)}</td></tr>" for r in self.rows)
        return f"<p>Run <code>{escape(str(self.run_dir))}</code></p><table><tr>{head}</tr>{body}</table>"


def _fmt(value, digits: int = 2) -> str:
    return "" if value in (None, "") else f"{float(value):.{digits}f}"


# ---------------------------------------------------------------------- run directory
def class_dir(run_dir: Path, index: int, name: str | None) -> Path:
    return Path(run_dir) / "classes" / f"{index}-{slugify(name or str(index))}"


def read_metrics(directory: Path) -> dict | None:
    path = Path(directory) / "metrics.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None  # unreadable: treated as unfinished and redone
    return data if data.get("status") in {"done", "failed"} else None


def environment_versions() -> dict:
    import diffusers
    import transformers

    import probe

    versions = {"probe": probe.__version__, "python": platform.python_version(), "torch": torch.__version__,
                "diffusers": diffusers.__version__, "transformers": transformers.__version__}
    try:
        import timm

        versions["timm"] = timm.__version__
    except ImportError:  # timm is a dependency, but a stripped environment should still run
        pass
    return versions


def prepare_run_dir(config: AuditConfig) -> Path:
    """Create the run folder, or check that an existing one was made by the same settings."""
    run_dir = Path(config.out)
    saved_path = run_dir / "config.json"
    if saved_path.is_file():
        try:
            saved = json.loads(saved_path.read_text(encoding="utf-8"))["audit"]
        except (OSError, json.JSONDecodeError, KeyError) as e:
            raise RunError(f"{saved_path} is unreadable ({e}); delete it or use another --out") from e
        current = json.loads(json.dumps(config.to_dict(), default=str))  # tuples -> lists, as saved
        for key in _RESUME_KEYS:
            if saved.get(key) != current.get(key):
                raise RunError(f"{run_dir} holds a run with a different {_difference(key, saved.get(key), current.get(key))}; "
                               "use another --out, or the same settings to resume")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"--out {str(run_dir)!r} exists and is not a probe run; choose an empty or new folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _difference(key: str, old, new) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        return ", ".join(f"{key}.{k} ({old.get(k)!r}, now {new.get(k)!r})" for k in changed)
    return f"{key} ({old!r}, now {new!r})"


def write_summary(run_dir: Path) -> list[dict]:
    """Rebuild summary.csv from every finished class's metrics.json."""
    rows = []
    for directory in sorted((Path(run_dir) / "classes").glob("*"), key=lambda p: _index_of(p.name)):
        metrics = read_metrics(directory)
        if metrics is not None:
            rows.append(summary_row(metrics))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(Path(run_dir) / "summary.csv", buffer.getvalue())
    return rows


def _index_of(folder_name: str) -> int:
    head = folder_name.split("-", 1)[0]
    return int(head) if head.isdigit() else 1 << 30


def summary_row(metrics: dict) -> dict:
    def score(kind, key, source=metrics):
        return (source.get(kind) or {}).get(key) if source else None

    eval_model = metrics.get("eval_model") or {}
    return {
        "class_index": metrics["class_index"], "class_name": metrics.get("class_name"), "slug": metrics.get("slug"),
        "status": metrics["status"], "baseline_accuracy": score("baseline", "accuracy"),
        "token_accuracy": score("token", "accuracy"), "baseline_target_prob": score("baseline", "mean_target_prob"),
        "token_target_prob": score("token", "mean_target_prob"),
        "eval_baseline_accuracy": score("baseline", "accuracy", eval_model),
        "eval_token_accuracy": score("token", "accuracy", eval_model),
        "steps": metrics.get("steps"), "best_step": metrics.get("best_step"), "seconds": metrics.get("seconds"),
    }


def write_history(path: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_text(path, buffer.getvalue())


def save_class_artifacts(directory: Path, class_token: ClassToken, evaluation: Evaluation, config: TokenConfig,
                         *, slug: str, eval_name: str | None) -> dict:
    """Write token, history, images, then metrics.json last (its presence marks the class finished)."""
    class_token.save(directory / "token.safetensors")
    write_history(directory / "history.csv", class_token.history)
    images = []
    scores = {"baseline": evaluation.baseline, "token": evaluation.token}
    eval_scores = {"baseline": evaluation.eval_baseline, "token": evaluation.eval_token}
    n_templates = len(config.templates)
    for kind, tensor in evaluation.images.items():
        for i, (image, seed, prompt) in enumerate(zip(tensor, evaluation.seeds, evaluation.prompts[kind])):
            rel = f"images/{kind}_p{i % n_templates}_s{seed}.png"
            save_png(directory / rel, image)
            entry = {"path": rel, "kind": kind, "prompt": prompt, "prompt_index": i % n_templates, "seed": seed,
                     "target_prob": round(scores[kind]["target_probs"][i], 5),
                     "correct": scores[kind]["per_image"][i]["correct"], "topk": scores[kind]["per_image"][i]["topk"]}
            if eval_scores[kind] is not None:
                entry["eval_target_prob"] = round(eval_scores[kind]["target_probs"][i], 5)
            images.append(entry)

    def public(score):
        return None if score is None else {k: score[k] for k in ("accuracy", "mean_target_prob", "n")}

    metrics = {
        "status": "done", "error": None, "class_index": class_token.class_index, "class_name": class_token.class_name,
        "slug": slug, "token_string": class_token.token, "init_word": class_token.init_word,
        "prompts": {"templates": list(config.templates), "token": evaluation.prompts["token"],
                    "baseline": evaluation.prompts["baseline"]},
        "steps": len(class_token.history), "best_step": class_token.best_step, "stopped": class_token.stopped,
        "seconds": round(class_token.seconds, 3), "train_seeds": config.train_seeds, "eval_seeds": evaluation.seeds,
        "baseline": public(evaluation.baseline), "token": public(evaluation.token),
        "eval_model": None if evaluation.eval_token is None else {
            "name": eval_name, "baseline": public(evaluation.eval_baseline), "token": public(evaluation.eval_token)},
        "images": images,
    }
    write_json(directory / "metrics.json", metrics)
    return metrics


def failure_metrics(index: int, name: str | None, slug: str, error: BaseException, seconds: float) -> dict:
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    if not isinstance(error, ProbeError):
        message = f"{type(error).__name__}: {message}"
    return {"status": "failed", "error": message, "traceback": traceback.format_exception(error),
            "class_index": index, "class_name": name, "slug": slug, "steps": None, "best_step": None,
            "seconds": round(seconds, 3), "baseline": None, "token": None, "eval_model": None, "images": []}


# ---------------------------------------------------------------------- the audit loop
def load_models(config: AuditConfig):
    """The classifier (and optional held-out classifier) and the generator named by ``config``."""
    from probe.classifiers import load_classifier
    from probe.devices import resolve_device
    from probe.generators import load_generator

    device = resolve_device(config.device)  # fail on a missing GPU before loading anything
    classifier = load_classifier(config.model, arch=config.arch, labels=config.labels, trust_pickle=config.trust_pickle,
                                 input_size=config.input_size, mean=config.mean, std=config.std,
                                 crop_pct=config.crop_pct, interpolation=config.interpolation, device=str(device))
    eval_classifier = None
    if config.eval_model:
        eval_classifier = load_classifier(config.eval_model, arch=config.eval_arch, labels=config.labels,
                                          trust_pickle=config.trust_pickle, device=str(device))
    generator = load_generator(config.generator, device=device, dtype=config.dtype)
    return classifier, eval_classifier, generator


def _eval_target(classifier, eval_classifier, index: int) -> int | None:
    """The held-out classifier's index for the same class, matched by name when both have labels."""
    if eval_classifier is None:
        return None
    labels, eval_labels = list(classifier.labels), list(eval_classifier.labels)
    if labels[index] in eval_labels:
        return eval_labels.index(labels[index])
    if len(labels) == len(eval_labels):
        return index
    raise RunError(f"held-out classifier has no class named {labels[index]!r} and a different class count "
                   f"({len(eval_labels)} vs {len(labels)}); give it the same labels with --labels")


def audit(config: AuditConfig, *, classifier=None, generator=None, eval_classifier=None, console=None,
          progress: bool = True) -> AuditResult:
    """Run (or resume) an audit. Models may be passed in already loaded (notebooks, tests)."""
    from probe.classifiers import select_classes
    from probe.classifiers import Classifier, load_classifier

    run_dir = prepare_run_dir(config)
    if classifier is not None and not isinstance(classifier, Classifier):
        classifier = load_classifier(classifier, labels=config.labels)
    if classifier is None or generator is None:
        loaded = load_models(config)
        classifier = classifier or loaded[0]
        eval_classifier = eval_classifier or loaded[1]
        generator = generator or loaded[2]
    targets = select_classes(config.classes, classifier)
    labels = list(getattr(classifier, "labels", None) or [str(i) for i in range(classifier.num_classes)])
    write_json(run_dir / "labels.json", labels)
    if not (run_dir / "config.json").is_file():
        write_json(run_dir / "config.json", {
            "audit": config.to_dict(),
            "classifier": _describe(classifier), "eval_classifier": _describe(eval_classifier),
            "generator": generator.describe(), "classes": targets, "versions": environment_versions(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        })

    todo = []
    for index in targets:
        directory = class_dir(run_dir, index, labels[index])
        metrics = read_metrics(directory)
        if metrics is not None and not (config.retry_failed and metrics["status"] == "failed"):
            continue
        todo.append(index)

    from probe.progress import AuditProgress

    interrupted = False
    with AuditProgress(total=len(targets), done=len(targets) - len(todo), max_steps=config.token.max_steps,
                       console=console, enabled=progress) as bar:
        for index in todo:
            name = labels[index]
            directory = class_dir(run_dir, index, name)
            if directory.exists():
                shutil.rmtree(directory)  # an interrupted attempt: start the class cleanly
            directory.mkdir(parents=True)
            bar.start_class(index, name)
            start = time.perf_counter()
            try:
                token = optimize_class_token(generator, classifier, index, config.token, on_step=bar.step)
                evaluation = evaluate_class_token(generator, classifier, token, config.token,
                                                  eval_classifier=eval_classifier,
                                                  eval_target=_eval_target(classifier, eval_classifier, index))
                save_class_artifacts(directory, token, evaluation, config.token, slug=directory.name,
                                     eval_name=config.eval_model)
                bar.finish_class(index, name, ok=True, detail=f"{evaluation.baseline['accuracy']:.2f} -> "
                                                              f"{evaluation.token['accuracy']:.2f}")
            except KeyboardInterrupt:
                interrupted = True
                break
            except Exception as error:  # recorded per class; the run goes on with the next one
                write_json(directory / "metrics.json",
                           failure_metrics(index, name, directory.name, error, time.perf_counter() - start))
                bar.finish_class(index, name, ok=False, detail=str(error).splitlines()[0][:120] if str(error) else "")
            finally:
                write_summary(run_dir)

    rows = write_summary(run_dir)
    result = AuditResult(run_dir=run_dir, rows=rows, interrupted=interrupted)
    if not interrupted:
        result.report = _analyze_and_report(config, run_dir, classifier, generator, console)
    return result


def _describe(classifier) -> dict | None:
    if classifier is None:
        return None
    if hasattr(classifier, "describe"):
        return classifier.describe()
    return {"name": type(classifier).__name__}


def _analyze_and_report(config: AuditConfig, run_dir: Path, classifier, generator, console) -> Path | None:
    """Findings and the HTML report; a failure here never costs the tokens already on disk."""
    from probe.progress import warn

    if config.analyze:
        from probe.analysis import analyze_run

        try:
            analyze_run(run_dir, classifier, generator, config)
        except Exception as error:  # the report still renders without findings
            warn(console, f"analysis failed ({type(error).__name__}: {error}); tokens and images are kept. "
                          f"Re-run `probe audit` with the same --out to retry")
    if config.report:
        from probe.report import render_report

        try:
            return render_report(run_dir)
        except Exception as error:
            warn(console, f"report failed ({type(error).__name__}: {error}); run `probe report {run_dir}` to retry")
    return None
