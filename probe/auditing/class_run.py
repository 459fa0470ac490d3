"""One class of an audit, whoever runs it: load the models, learn the token, evaluate it, write the class folder.

``run_class`` is what the local loop (probe/auditing/loop.py) and every Ray worker (probe/auditing/backends/ray.py)
call for a class, so a class is the same wherever it ran. A class is finished exactly when its metrics.json exists (written
last, atomically); a failure inside the class is recorded there and the caller goes on.
"""

from __future__ import annotations

import os
import shutil
import time
import traceback
from pathlib import Path

from probe.auditing.config import AuditConfig
from probe.errors import ProbeError, RunError
from probe.files import save_png
from probe.run import TOKEN, RunDir
from probe.tokens import ClassToken, Evaluation, TokenConfig, evaluate_class_token, optimize_class_token

__all__ = ["run_class", "analyse_class", "load_models", "save_class_artifacts", "token_change", "failure_metrics",
           "eval_target"]


def save_class_artifacts(run: RunDir, directory: Path, class_token: ClassToken, evaluation: Evaluation,
                         config: TokenConfig, *, slug: str, eval_name: str | None, generator=None,
                         worker: dict | None = None) -> dict:
    """Write token, history, images, then metrics.json last (its presence marks the class finished). The token file
    is in the generator's layout when it has one (SDXL: clip_l / clip_g)."""
    class_token.save(directory / TOKEN, generator)
    run.write_history(directory, class_token.history)
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
        "objective": config.objective, "token_change": token_change(class_token, evaluation),
        "seconds": round(class_token.seconds, 3), "train_seeds": config.train_seeds, "eval_seeds": evaluation.seeds,
        "baseline": public(evaluation.baseline), "token": public(evaluation.token),
        "eval_model": None if evaluation.eval_token is None else {
            "name": eval_name, "baseline": public(evaluation.eval_baseline), "token": public(evaluation.eval_token)},
        "images": images,
    }
    if worker is not None:  # which worker ran it (a distributed run): provenance, not part of the result
        metrics["worker"] = worker
    run.write_metrics(directory, metrics)
    return metrics


def token_change(class_token: ClassToken, evaluation: Evaluation) -> dict:
    """Did the token move from its initial word, and did that change what the images show?

    ``image_change`` is the mean absolute pixel difference between token and baseline images on the same seeds.
    A token that did not move is reported as unchanged ("the classifier already accepts the baseline images"),
    and no token-shift finding is derived from it.
    """
    change = dict(class_token.movement)
    token, baseline = evaluation.images.get("token"), evaluation.images.get("baseline")
    if token is not None and baseline is not None and token.shape == baseline.shape:
        change["image_change"] = round(float((token.float() - baseline.float()).abs().mean()), 6)
    return change


def failure_metrics(index: int, name: str | None, slug: str, error: BaseException, seconds: float) -> dict:
    message = str(error).splitlines()[0] if str(error) else type(error).__name__
    if not isinstance(error, ProbeError):
        message = f"{type(error).__name__}: {message}"
    return {"status": "failed", "error": message, "traceback": traceback.format_exception(error),
            "class_index": index, "class_name": name, "slug": slug, "steps": None, "best_step": None,
            "seconds": round(seconds, 3), "baseline": None, "token": None, "eval_model": None, "images": []}


def load_models(config: AuditConfig, *, classifiers: tuple | None = None):
    """The classifier (and optional held-out classifier) and the generator named by ``config``; ``classifiers``
    (classifier, held-out classifier) already loaded by :func:`load_classifiers` are kept."""
    classifier, eval_classifier = classifiers if classifiers is not None else load_classifiers(config)
    return classifier, eval_classifier, load_generator_of(config)


def load_classifiers(config: AuditConfig):
    """The classifier and the optional held-out classifier named by ``config`` (no generator: the audit's plan
    counts the classes with them before the generator loads)."""
    from probe.classifiers import load_classifier
    from probe.devices import resolve_device

    device = resolve_device(config.device)  # fail on a missing GPU before loading anything
    classifier = load_classifier(config.model, arch=config.arch, labels=config.labels, trust_pickle=config.trust_pickle,
                                 input_size=config.input_size, mean=config.mean, std=config.std,
                                 crop_pct=config.crop_pct, interpolation=config.interpolation, device=str(device),
                                 multi_label=config.multi_label)
    eval_classifier = None
    if config.eval_model:
        eval_classifier = load_classifier(config.eval_model, arch=config.eval_arch, labels=config.labels,
                                          trust_pickle=config.trust_pickle, device=str(device))
    return classifier, eval_classifier


def load_generator_of(config: AuditConfig):
    """The generator named by ``config``, on its device and dtype."""
    from probe.devices import resolve_device
    from probe.generators import load_generator

    return load_generator(config.generator, device=resolve_device(config.device), dtype=config.dtype)


def eval_target(classifier, eval_classifier, index: int) -> int | None:
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


def run_class(run: RunDir, config: AuditConfig, token_config: TokenConfig, classifier, generator, eval_classifier,
              index: int, name: str, *, on_step=None, worker: dict | None = None) -> dict:
    """Learn, evaluate and save one class; returns its metrics.json content, a recorded failure's too, or None when
    another process holds the class's claim (it is left to that writer).

    Any backend runs a class through here (the local loop, a Ray worker), so a class is the same whoever ran it.
    An interrupted attempt's folder is removed first (the caller holds the run), so a retried class starts clean
    and nothing of a dead worker's attempt is kept. ``RunError`` (the run directory cannot be written) and
    ``KeyboardInterrupt`` propagate; any other error is recorded in the class's metrics.json.
    """
    with run.claim(index) as held:
        if not held:  # another writer (a shard, a worker of another audit) has this class: never rewrite it
            return None
        directory = run.class_dir(index, name)
        finished = run.read_metrics(directory)
        if finished is not None and not (config.retry_failed and finished["status"] == "failed"):
            return finished  # finished by another writer since the caller looked
        return _run_claimed(run, directory, config, token_config, classifier, generator, eval_classifier, index, name,
                            on_step=on_step, worker=worker)


def record_lost_class(run: RunDir, index: int, name: str, error: BaseException) -> dict | None:
    """Record class ``index`` as failed with ``error`` after the process that ran it died (a Ray worker past its
    retries): under the class's claim, from a clean folder (what the dead attempt left is removed, as a retry's
    ``run_class`` would), so a writer that took the class since (a shard, another audit) is never written over.
    Returns the metrics written, None when another process holds the class, or the finished metrics another writer
    left (nothing is rewritten then)."""
    with run.claim(index) as held:
        if not held:
            return None
        directory = run.class_dir(index, name)
        finished = run.read_metrics(directory)
        if finished is not None and finished.get("status") == "done":
            return finished
        _clean_folder(run, directory)
        metrics = failure_metrics(index, name, directory.name, error, 0.0)
        run.write_metrics(directory, metrics)
        return metrics


def _clean_folder(run: RunDir, directory: Path) -> None:
    """The class's folder, empty: an earlier attempt's files removed; never through a link out of the run."""
    if not run.owns(directory):  # classes/ or the class's folder linked elsewhere
        raise RunError(f"{str(directory)!r} leads to {os.path.realpath(directory)!r}, outside the run; a class is "
                       "(re)written only inside it: remove the link")
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)


def _run_claimed(run, directory, config, token_config, classifier, generator, eval_classifier, index, name, *,
                 on_step, worker) -> dict:
    _clean_folder(run, directory)
    start = time.perf_counter()
    try:
        token = optimize_class_token(generator, classifier, index, token_config, on_step=on_step)
        evaluation = evaluate_class_token(generator, classifier, token, token_config, eval_classifier=eval_classifier,
                                          eval_target=eval_target(classifier, eval_classifier, index))
        return save_class_artifacts(run, directory, token, evaluation, config.token, slug=directory.name,
                                    eval_name=config.eval_model, generator=generator, worker=worker)
    except (KeyboardInterrupt, RunError):
        raise
    except Exception as error:  # recorded per class; the run goes on with the next one
        metrics = failure_metrics(index, name, directory.name, error, time.perf_counter() - start)
        if worker is not None:
            metrics["worker"] = worker
        run.write_metrics(directory, metrics)
        return metrics


def analyse_class(run: RunDir, analysis, classifier, generator, index: int, name: str, *,
                  worker: dict | None = None) -> str:
    """Steps 3-5 of the analysis for one finished class, where its token was learned (the local loop of a
    ``--shard``, a Ray worker): its record (classes/<i>-<slug>/analysis/tests.json) is the result, and the driver
    decides from every class's record once (probe/analysis/decide.py). ``analysis``: the AnalysisConfig.

    Under the class's claim, so one writer measures it. Returns "measured", "current" (a record measured with these
    settings exists: a resumed shard redoes only its unfinished classes), "held" (another process has the class) or
    "not done" (the class has no finished token). The class's share of an image budget is ``max_images`` over the
    audit's class count (config.json's ``classes``). Errors propagate: the caller decides what a failure costs.
    """
    from probe.analysis.engine import measure_run
    from probe.analysis.per_class import settings_of

    with run.claim(index) as held:
        if not held:
            return "held"
        directory = run.class_dir(index, name)
        record = run.read_class(directory)
        if record is None or not record.done:
            return "not done"
        existing = run.read_class_analysis(directory)
        if existing is not None and existing.settings == settings_of(analysis):
            return "current"
        saved = run.read_run_config()
        n_classes = len(saved.classes or ()) if saved is not None else None
        measure_run(run.root, classifier, generator, analysis, only=[index], budget_classes=n_classes or None,
                    worker=worker)
        return "measured"
