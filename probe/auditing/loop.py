"""The audit loop over the classes: the run directory, resume, then analysis and report (format: docs/run-format.md).

The settings are ``AuditConfig`` (config.py); one class's work is ``run_class`` (class_run.py), run by a backend
from the registry in backends/ (in this process, or by Ray workers).

``audit(config)`` loads the classifier and the generator, then for each selected class learns a
token, evaluates it on fresh seeds and writes the class's artifacts. A class is finished exactly
when its metrics.json exists (written last, atomically), so re-running the same command skips
finished classes and redoes an interrupted one from scratch. A failure inside one class (a NaN
loss, an error in the user's model) is recorded in that class's metrics.json and the run goes on.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

import torch

from probe.auditing.config import AuditConfig
from probe.auditing.budget import UnmeasuredBudget
from probe.auditing.scale import ScaleConfig
from probe.auditing.backends import Models, get_backend
from probe.auditing.class_run import load_classifiers, load_models
from probe.analysis.evaluation import gain_text, token_gain
from probe.errors import ProbeError, RunError, TokenError
from probe.files import dumps_json
from probe.run import ANALYSIS, RunConfig, RunDir, is_internal
from probe.token_config import TokenConfig

# Settings that change what a finished class contains: resuming with other values would mix runs.
_RESUME_KEYS = ("model", "arch", "generator", "token", "multi_label", "input_size", "mean", "std", "crop_pct",
                "interpolation", "eval_model", "eval_arch")  # the preprocessing too: a later class learned under other
# inputs mixes two runs; the held-out classifier too: its accuracy is every class's evaluation
_SOURCES = ("model", "generator")  # resume keys that name a file, folder or hub id (RunConfig.names_same)


@dataclass
class AuditResult:
    """What a run produced: one summary row per class, and where the files are."""

    run_dir: Path
    rows: list[dict]
    interrupted: bool = False
    report: Path | None = None
    problems: list[str] = field(default_factory=list)  # analysis or report failures after the tokens
    gate: object | None = None  # probe.gate.CheckResult when the audit ran with a gate (--max-effect)

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
            f"<tr><td>{escape(str(r['class_index']))} {escape(str(r['class_name'] or ''))}</td><td>{escape(r['status'])}</td>"
            f"<td>{_fmt(r['baseline_accuracy'])}</td><td>{_fmt(r['token_accuracy'])}</td>"
            f"<td>{escape(str(r['steps']))}</td><td>{_fmt(r['seconds'], 1)}</td></tr>" for r in self.rows)
        gain = self.token_gain
        caption = (f"<caption>token acc against baseline acc, paired on the same seeds: {escape(gain_text(gain))}"
                   "</caption>") if gain is not None else ""
        return f"<p>Run <code>{escape(str(self.run_dir))}</code></p><table>{caption}<tr>{head}</tr>{body}</table>"

    @property
    def token_gain(self):
        """The token's accuracy change against the plain prompt over the finished classes, paired on the same seeds
        (a ``probe.analysis.Effect``: Newcombe's interval, the exact McNemar p), or None without evaluation images."""
        return token_gain(m for _, m in RunDir(self.run_dir).finished_classes())


def _fmt(value, digits: int = 2) -> str:
    return "" if value in (None, "") else f"{float(value):.{digits}f}"


# ---------------------------------------------------------------------- run directory
def check_run_dir(config: AuditConfig) -> RunDir:
    """The run directory named by ``config``, checked without writing: a resume must use the same settings."""
    run = RunDir(config.out)
    saved = run.read_run_config()
    if saved is None and run.root.exists() and any(not is_internal(p.name) for p in run.root.iterdir()):
        saved = run.read_run_config()  # another writer may have initialised the run between the two looks
        if saved is None:
            raise RunError(f"--out {config.out!r} exists and is not a probe run; choose an empty or new folder")
    if saved is not None:
        audit_saved = json.loads(dumps_json(AuditConfig.saved(saved).to_dict()))  # the saved AuditConfig, typed and back
        current = json.loads(dumps_json(config.to_dict()))  # tuples -> lists, as saved
        for key in _RESUME_KEYS:
            if key in _SOURCES and saved.names_same(key, current.get(key)):
                continue  # the same model or generator, spelled another way (./m.pt, an absolute path, the default)
            if audit_saved.get(key) != current.get(key):
                raise RunError(f"{str(run.root)!r} holds a run with a different {_difference(key, audit_saved.get(key), current.get(key))}; "
                               "use another --out, or the same settings to resume")
    return run


def prepare_run_dir(config: AuditConfig) -> Path:
    """Create the run folder, or check that an existing one was made by the same settings."""
    run = check_run_dir(config)
    try:
        run.root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunError(f"cannot create the run directory {config.out!r} ({e.strerror or type(e).__name__}); "
                       "choose a writable --out") from e
    return run.root


def _difference(key: str, old, new) -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        return ", ".join(f"{key}.{k} ({old.get(k)!r}, now {new.get(k)!r})" for k in changed)
    return f"{key} ({old!r}, now {new!r})"


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


# ---------------------------------------------------------------------- the audit loop
def preflight(config: AuditConfig, val_data=None):
    """Check every setting that can be checked without a model, before anything is loaded or written.

    Returns the typed analysis settings. Raises a ProbeError naming the option and the fix. ``val_data``: the
    audit's ``--val-data``, which needs the analysis of a whole run.
    """
    from probe.devices import resolve_device

    resolve_device(config.device)  # a missing GPU fails here, before a model is loaded
    from probe.files import check_writable

    check_writable(config.out, "--out")  # a read-only --out fails now, not after the models load
    if config.scale.backend == "ray":
        from probe.auditing.backends.ray import check_ray

        check_ray(config.scale)  # Ray installed, the address's form and reachability, GPUs: before anything loads
    if config.dtype is not None and config.dtype not in _DTYPES:
        raise RunError(f"--dtype {config.dtype!r} is unknown; use one of {', '.join(_DTYPES)}")
    from probe.classifiers.data_config import DataConfig, check_partial

    given = {"input_size": config.input_size, "mean": config.mean, "std": config.std, "crop_pct": config.crop_pct,
             "interpolation": config.interpolation}
    DataConfig().replace(**check_partial(given, "flags"))  # sizes, crop and normalisation make sense
    if config.gate is not None:
        from probe.gate import check_junit_path

        # its folder must exist before hours of work, not after, and lie outside --out (empty or new here, not yet a
        # run: the gate's write refused it only after the audit, and the verdict was lost)
        check_junit_path(config.gate.junit, config.out)
    if config.gate is not None and not config.analyze:
        raise RunError("--max-effect checks the findings, but --no-analyze switches the analysis off; drop one of them")
    if config.gate is not None and config.scale.slice is not None:  # a shard ends before the run is decided
        raise RunError(f"--max-effect/--junit gate a whole run, and --shard {config.scale.shard} audits a part of it; "
                       "drop them here and run `probe check RUN --max-effect X [--junit FILE]` after `probe report "
                       "RUN` has decided the sharded run")
    if val_data is not None:
        from probe.valdata import check_val_source

        if not config.analyze or config.scale.slice is not None:
            why = "--no-analyze switches the analysis off" if not config.analyze else \
                f"--shard {config.scale.shard} audits a part of the run"
            raise RunError(f"--val-data confirms the findings of an analysed run, and {why}; drop --val-data here "
                           "and run `probe confirm RUN --val-data DIR` once `probe report RUN` has analysed it")
        check_val_source(val_data)  # a missing folder fails before any model loads
    if not config.analyze:
        return None
    from probe.analysis.cues import load_cues

    settings = config.analysis
    if settings.cues not in ("auto", "default", "world"):
        load_cues(settings.cues)  # a missing, empty, invalid or duplicated cue list fails now, not after the tokens
    if settings.vocabulary is not None and settings.discover:
        from probe.concepts.vocabulary import load_vocabulary

        load_vocabulary(settings.vocabulary)  # the same for a discovery vocabulary file
    if settings.concepts not in ("auto", "none"):  # a model the user named: it must load, or the cues go unchecked
        from probe.concepts import ConceptError, check_concepts

        try:
            check_concepts(settings.concepts)
        except ConceptError as error:
            raise RunError(f"--concepts: {error}; or pass 'auto' (the generator's default, unverified when it "
                           "cannot load) or 'none'") from None
    if settings.confirm_like and not (Path(settings.confirm_like) / ANALYSIS).is_file():
        raise RunError(f"--confirm-like {settings.confirm_like!r} is not an analysed run (no analysis.json); pass the "
                       "folder of an earlier `probe audit` on the same generator")
    if settings.confirm_like:  # its per-pair data and pairing settings (seeds...): the analysis's own check, now
        _check_confirm_like(settings, None)  # the labels once the classifier has loaded (audit, below)
    return settings


def _check_confirm_like(settings, labels: list[str] | None) -> None:
    """``--confirm-like RUN``: the analysis's own check of the other run (:func:`probe.analysis.engine._like_run`),
    before any token is learned: it ran only inside the analysis, and a run of other seeds or labels was refused
    hours in. ``labels`` None: everything but the classes (the classifier is not loaded yet)."""
    from probe.analysis.engine import _like_run
    from probe.analysis.errors import AnalysisError

    try:
        _like_run(settings, labels)
    except AnalysisError as error:
        raise RunError(f"--confirm-like: {error}") from None


_DTYPES = ("fp32", "fp16", "bf16", "float32", "float16", "bfloat16")


def _check_attribution_layer(config: AuditConfig, classifier, generator) -> None:
    """``--attribution-layer`` names a module of the loaded classifier, checked before any token is learned: a wrong
    name failed the analysis after every token, and the advice "run the same command again" failed the same way."""
    analysis = config.analysis
    # the layer is used by the attributions' Grad-CAM, and with --attributions none by the off-object measure's
    # heat maps (Grad-CAM there, probe.analysis.class_evidence.Attributions): a wrong name failed either after the tokens
    used = ("grad_cam" in analysis.methods) if analysis.attributions else analysis.off_object
    if not config.analyze or analysis.attribution_layer is None or not used:
        return
    from probe.analysis.attributions import choose_layer
    from probe.analysis.errors import AnalysisError

    size = int(getattr(generator, "image_size", 0) or 224)
    try:
        choose_layer(classifier, (size, size), analysis.attribution_layer)
    except AnalysisError as error:
        raise RunError(f"--attribution-layer: {error}; fix it and run the command again") from None


def audit(config: AuditConfig, *, classifier=None, generator=None, eval_classifier=None, console=None,
          progress: bool = True, val_data=None) -> AuditResult:
    """Run (or resume) an audit. Models may be passed in already loaded (notebooks, tests).

    ``val_data``: the labelled images the findings will be confirmed on afterwards (``probe audit --val-data``,
    :func:`probe.confirm.confirm_audit`), checked against the classifier's labels as soon as it is loaded, before
    any token is learned: a folder whose label the classifier lacks fails in seconds, not after the analysis."""
    from probe.classifiers import Classifier, load_classifier, select_classes

    # 1. check the options and the run directory; nothing is loaded or written yet
    run = check_run_dir(config)
    preflight(config, val_data)
    # 2. the plan (probe/auditing/cost.py): the images and device time the audit will spend, one line before the
    #    generator loads (the classifier first only when no labels file tells the class count); --budget becomes the
    #    analysis's image cap
    if classifier is not None and not isinstance(classifier, Classifier):
        classifier = load_classifier(classifier, labels=config.labels, multi_label=config.multi_label)
    if classifier is not None and classifier.multi_label != config.multi_label:
        config = replace(config, multi_label=classifier.multi_label)  # the loaded classifier says; reloads read it
    counted_with = None  # the classifiers loaded to count the classes, kept for the audit
    if classifier is None and count_classes(config, None) is None:
        counted_with = load_classifiers(config)
    measure_budget = False  # a device-time budget no throughput row converts: measured here once the models load
    try:
        plan = plan_of(config, classifier or (counted_with or (None,))[0])
    except UnmeasuredBudget:
        plan = plan_of(replace(config, budget=None), classifier or (counted_with or (None,))[0])
        measure_budget = True
    except ProbeError:
        raise
    except Exception as error:  # the plan informs; a generator it cannot read must not stop the audit (no --budget)
        if config.budget is not None:
            raise RunError(f"--budget {config.budget}: the audit's plan failed ({type(error).__name__}: {error}); "
                           "drop --budget or report this") from error
        plan = None
    if plan is not None and progress:
        _say(console, plan.summary())
    if plan is not None and plan.max_images is not None:
        config = replace(config, analysis=config.analysis.replace(max_images=plan.max_images))
    # 3. load the models (a failure here leaves no run directory behind)
    if classifier is None or generator is None:
        loaded = load_models(config, classifiers=counted_with)
        classifier = classifier or loaded[0]
        eval_classifier = eval_classifier or loaded[1]
        generator = generator or loaded[2]
    if getattr(classifier, "guess_note", None):
        from probe.progress import warn

        warn(console, classifier.guess_note)
    if config.compile:
        generator.compile()  # once per run: every class reuses the compiled shapes
    _check_sampling(config.token, generator)
    _check_attribution_layer(config, classifier, generator)
    targets = select_classes(config.classes, classifier)
    labels = [str(i) if name is None else str(name)
              for i, name in enumerate(list(getattr(classifier, "labels", None) or [None] * classifier.num_classes))]
    if config.analyze and config.analysis.confirm_like:
        _check_confirm_like(config.analysis, labels)  # the other run audited these classes: before any token
    if measure_budget:  # time a few image batches and token steps here, then turn --budget into images with them
        cap = _started_cap(run, config)
        if cap is not None:  # a resume keeps the cap it started with (and so its analysis journal, keyed by it)
            if progress:
                _say(console, f"--budget {config.budget}: {cap:,} analysis images, as measured when this run started")
        else:
            if progress:
                _say(console, f"--budget {config.budget}: no measured throughput for this generator on this device; "
                              "timing a few image batches and token steps here")
            plan = measured_plan(config, classifier, generator)
            if progress:
                _say(console, plan.summary())
            cap = plan.max_images
        config = replace(config, analysis=config.analysis.replace(max_images=cap))
    if val_data is not None:
        from probe.valdata import read_val_data

        read_val_data(val_data, labels)  # its labels are the classifier's (no image decoded): before the tokens
    # 4. hold the run directory for the rest of the audit: a second identical audit is refused (a shard holds its
    #    own lock); classes are claimed one by one (RunDir's lock protocol), so overlapping writers never collide
    prepare_run_dir(config)
    with run.lock(config.scale.lock_name()):
        return _audit_locked(run, config, classifier, generator, eval_classifier, targets, labels, console, progress)


def _started_cap(run: RunDir, config: AuditConfig) -> int | None:
    """The analysis's image cap a run was started with under the same device-time ``--budget`` (config.json), when
    that budget had to be measured: re-measuring on a resume would move the cap, and with it the key of the analysis
    journal, so the analysis would start again instead of resuming."""
    saved = run.read_run_config()
    settings = RunDir.audit_settings(saved) if saved is not None else {}
    analysis = settings.get("analysis") if isinstance(settings.get("analysis"), dict) else {}
    cap = analysis.get("max_images")
    same = settings.get("budget") == config.budget
    return cap if same and isinstance(cap, int) and not isinstance(cap, bool) and cap > 0 else None


def _check_same_precision(run: RunDir, mine) -> None:
    """A resume samples in the precision the run started in: a run begun in float16 on a GPU and resumed on a CPU
    learned its later classes in float32 while config.json said float16 (and `probe report` re-analysed in float16)."""
    saved = run.read_run_config()
    were, now = (saved.effective.dtype if saved is not None else None), mine.effective.dtype
    if were and now and were != now:
        raise RunError(f"{str(run.root)!r} was started with the generator in {were}, and it loaded in {now} here; "
                       f"resume with --dtype {were} (on a device that runs it), or use another --out")


def _shared_cap(run: RunDir, config: AuditConfig, console=None) -> AuditConfig:
    """``config`` with the analysis's image cap of the run's config.json, when both came from the same measured
    ``--budget``: shards started together each measured their own cap, only the first writer's was saved, and the
    others' class records (keyed by the cap) read as stale at `probe report`. Every writer now takes the saved one."""
    if config.budget is None:
        return config
    cap = _started_cap(run, config)
    if cap is None or cap == config.analysis.max_images:
        return config
    if console is not None:
        _say(console, f"--budget {config.budget}: {cap:,} analysis images, as the writer that started this run "
                      f"measured them (this process measured {config.analysis.max_images or 0:,}; one cap per run)")
    return replace(config, analysis=config.analysis.replace(max_images=cap))


def count_classes(config: AuditConfig, classifier) -> tuple[list[str], list[int]] | None:
    """(labels, selected class indices) from the classifier when it is loaded, else read cheaply (``--labels``, the
    labels file beside the model: probe.auditing.cost.class_count); None when only the classifier can tell."""
    if classifier is not None:
        from probe.classifiers import select_classes

        labels = [str(i) if n is None else str(n)
                  for i, n in enumerate(list(getattr(classifier, "labels", None) or [None] * classifier.num_classes))]
        return labels, select_classes(config.classes, classifier)
    from probe.auditing.cost import class_count

    labels, selected = class_count(config)
    return None if selected is None else (labels, selected)


def plan_of(config: AuditConfig, classifier=None, *, device: str | None = None, measured=None):
    """The audit's :class:`probe.auditing.cost.AuditPlan` (with ``--budget`` turned into images); the class count
    from ``classifier`` when given, else from the labels (a RunError when neither tells it); ``measured``: this
    machine's cost at the config's settings (:mod:`probe.auditing.measure`) instead of the throughput table."""
    from probe.auditing.budget import Budget
    from probe.auditing.cost import plan_for_config

    counted = count_classes(config, classifier)
    if counted is None:
        raise RunError(f"the class count of {config.model!r} is known only once the classifier loads; pass --labels "
                       "(a file with one name per class) or let the audit load the classifier")
    labels, selected = counted
    return plan_for_config(config, len(selected), len(labels), device=device, budget=Budget.parse(config.budget),
                           measured=measured)


def measured_plan(config: AuditConfig, classifier, generator):
    """The audit's plan with this machine's cost, timed here on the loaded models at the config's settings
    (:mod:`probe.auditing.measure`): ``--dry-run --measure``, a time ``--budget`` no throughput row converts, and
    ``probe.Audit.plan(measure=True)``."""
    from probe.auditing.cost import device_kind
    from probe.auditing.measure import measure

    labels, selected = count_classes(config, classifier)
    return plan_of(config, classifier, device=device_kind(config.device),
                   measured=measure(config, classifier, generator, selected, labels))


def dry_run(config: AuditConfig, *, console=None, measure: bool = False, val_data=None):
    """``probe audit --dry-run``: the plan, without loading the generator or writing anything. The class count comes
    from the labels when a file tells it, else from the classifier alone, loaded on the CPU. ``measure``: load the
    classifier and the generator as the audit would and time its work here (probe/auditing/measure.py), so the plan
    has a time on any device; still nothing is written."""
    check_run_dir(config)  # reads only: a resume with other settings is refused now too
    preflight(config, val_data)  # the settings a real audit would refuse (--std 0, a bad --budget...) are refused here too
    from probe.auditing.cost import device_kind

    if measure:
        _say(console, f"measuring on this machine: loading {config.model} and {config.generator}")
        classifier, _, generator = load_models(replace(config, eval_model=None))
        _say(console, "measuring: a few image batches and token steps at the audit's settings")
        return measured_plan(config, classifier, generator)
    classifier = None
    if count_classes(config, None) is None:
        _say(console, f"loading the classifier to count its classes (pass --labels to skip this): {config.model}")
        classifier, _ = load_classifiers(replace(config, device="cpu", eval_model=None))
    return plan_of(config, classifier, device=device_kind(config.device))


def _say(console, line: str) -> None:
    from rich.console import Console

    (console or Console(stderr=True)).print(line, highlight=False, markup=False, soft_wrap=True)


def _check_sampling(token: TokenConfig, generator) -> None:
    """Sampling settings that depend on the generator (its default step count)."""
    defaults = getattr(generator, "defaults", None)
    steps = token.steps or getattr(defaults, "steps", None)
    if steps is not None and token.grad_steps > steps:
        raise TokenError(f"--grad-steps {token.grad_steps} exceeds the {steps} sampling steps of this generator; "
                         f"lower --grad-steps or pass --steps {token.grad_steps} or more")


def _audit_locked(run: RunDir, config: AuditConfig, classifier, generator, eval_classifier, targets, labels,
                  console, progress) -> AuditResult:
    from probe.generators.memory import resolve_max_batch

    # Images per gradient chunk, once per run (static shapes, comparable classes): the user's, or chosen from free GPU memory.
    chunks = resolve_max_batch(generator, config.token)
    token_config = replace(config.token, max_batch=chunks.max_batch) if chunks.source == "auto" else config.token
    if chunks.source == "auto":
        from rich.console import Console
        from rich.markup import escape as markup_escape

        (console or Console(stderr=True)).print(markup_escape(chunks.line()), highlight=False)
    # config.json: the settings as given, the models, and what the audit decided itself (RunConfig.effective: chunk
    # size, steps, guidance, scheduler, dtype), which every later command reads back
    saved = RunConfig.of_audit(
        config.to_dict(), generator=generator.describe(), gradient_chunks=chunks.to_dict(),
        classifier=_describe(classifier), eval_classifier=_describe(eval_classifier), classes=targets,
        versions=environment_versions(), started=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        workdir=os.getcwd())
    # once, atomically; another writer may have started the run meanwhile: checked again
    run.initialise(labels, saved, check=lambda: check_run_dir(config))
    _check_same_precision(run, saved)
    config = _shared_cap(run, config, console if progress else None)
    stored = run.read_labels()
    if stored is not None and list(stored) != list(labels):  # another --labels file, or a classifier of other classes
        first = next((i for i, (a, b) in enumerate(zip(stored, labels)) if a != b), min(len(stored), len(labels)))
        was, now = (repr(x[first]) if first < len(x) else "none" for x in (stored, labels))
        raise RunError(f"{str(run.root)!r} holds a run of other classes (labels.json: {len(stored)} classes, now "
                       f"{len(labels)}; class {first} is {was}, now {now}); use another --out, or the same labels to "
                       "resume")

    mine = config.scale.select(targets)  # a shard's slice; every class otherwise
    todo = []
    for index in mine:
        record = run.read_class(run.class_dir(index, labels[index]))
        if record is not None and not (config.retry_failed and record.status == "failed"):
            continue
        todo.append(index)

    from probe.progress import AuditProgress

    interrupted = False
    with AuditProgress(total=len(mine), done=len(mine) - len(todo), max_steps=config.token.max_steps,
                       console=console, enabled=progress, workers=config.scale.workers_label()) as bar:
        backend = get_backend(config.scale.backend)(config, token_config, run, labels,
                                                    Models(classifier, generator, eval_classifier))
        interrupted = backend.run(todo, bar)
        if not interrupted and config.scale.slice is None:
            # a full audit needs every class: wait for those another process (a shard) was writing, then do any
            # it left unfinished (a writer that died releases its claim)
            held = [i for i in todo if run.read_class(run.class_dir(i, labels[i])) is None]
            if held:
                bar.note(f"waiting for {len(held)} class(es) another probe process is writing")
                for index in held:
                    with run.claim(index, wait=True):
                        pass
                left = [i for i in held if run.read_class(run.class_dir(i, labels[i])) is None]
                interrupted = backend.run(left, bar) if left else False

    rows = run.write_summary()
    result = AuditResult(run_dir=Path(config.out), rows=rows, interrupted=interrupted)
    if interrupted:
        return result
    if config.scale.slice is not None:  # one slice of the classes: it measures its classes, the driver decides
        from rich.console import Console

        if config.analyze:
            result.interrupted = _analyse_slice(run, config, classifier, generator, mine, labels, console, progress,
                                                result)
            if result.interrupted:
                return result
        missing = [i for i in targets if run.read_class(run.class_dir(i, labels[i])) is None]
        decide = (f"`probe report {shlex.quote(config.out)}` to decide over every class and render the run"
                  if config.analyze and not result.problems else f"`{analyse_command(config)}` to analyse and render the run")
        (console or Console(stderr=True)).print(
            f"shard {config.scale.shard}: {len(mine)} classes done here" + (" and analysed" if config.analyze else "")
            + "; " + (f"{len(missing)} classes of other shards still to run; when every shard is done, " if missing else
                      "every shard is done: ") + f"run {decide}",
            highlight=False, markup=False)
        return result
    # local: every class measured as one unit, then decided; Ray: the workers measured their classes
    _analyze_and_report(config, run, classifier, generator, console, result,
                        measured_elsewhere=config.scale.backend != "local", progress=progress)
    return result


def _analyse_slice(run: RunDir, config: AuditConfig, classifier, generator, mine: list[int], labels: list[str], console,
                   progress: bool, result: AuditResult) -> bool:
    """A shard's part of the analysis: steps 3-5 for each of its finished classes, one class at a time (a killed shard
    resumes with its unfinished class; the finished ones keep their records). Returns True when interrupted; a class
    whose analysis fails is a problem on the result (the driver measures it again with the models)."""
    from probe.auditing.class_run import analyse_class

    for index in mine:
        if progress:
            _say(console, f"shard {config.scale.shard}: analysing class {index} {labels[index]!r}")
        try:
            analyse_class(run, config.analysis, classifier, generator, index, labels[index])
        except KeyboardInterrupt:
            return True
        except RunError:
            raise
        except Exception as error:
            _problem(console, result, f"analysis of class {index} failed ({type(error).__name__}: "
                     f"{_first_line(error)}); its token is kept; run the same command again to retry it", error)
    return False


def decide_pending(run_dir, *, console=None) -> bool:
    """``probe report RUN`` after the shards: steps 6-7 from every class's record, with no model loaded (the run's
    saved analysis settings are inert). False, deciding nothing, when a finished class has no record measured with
    those settings (then the models are needed: ``probe report RUN --model M --generator G``)."""
    from probe.analysis.decide import decide_run, missing_records

    run = RunDir(run_dir)
    saved = run.read_run_config() or RunConfig()
    config = replace(AuditConfig.saved(saved), out=str(run.root), report=False, gate=None, scale=ScaleConfig())
    if missing_records(run.root, config.analysis):
        return False
    with run.lock():
        decide_run(run.root, config.analysis)
    return True


@dataclass(frozen=True)
class ModelSources:
    """The models a command line names for work on an existing run (``probe report --model ... --generator ...``).

    A run directory is data: the model and generator it was made with, and any setting that lets a file run code
    (``trust_pickle``, a ``package.module:function`` factory), are never taken from its config.json. What may load
    and execute comes from here, i.e. from the person at the keyboard.
    """

    model: str
    generator: str
    arch: str | None = None
    trust_pickle: bool = False
    device: str = "auto"
    dtype: str | None = None
    concepts: str = "auto"  # the intervention check's concept model (hub id or folder; `probe report --concepts`)


def complete_run(run_dir, sources: ModelSources, *, console=None) -> AuditResult | None:
    """``probe report --model M --generator G``: analyse a run whose classes are all finished but not (all)
    analysed, as after the shards of ``--shard I/N``. Returns None when nothing was pending; raises a one-line
    RunError when classes have not run yet.

    The models come from ``sources`` (the command line), never from the run's config.json: a crafted run cannot
    make probe load or unpickle anything. The run supplies only inert settings (sampling, analysis, class names).
    """
    run = RunDir(run_dir)
    if run.pending_analysis() is None:
        return None
    config = config_for_run(run, sources)
    with run.lock():
        classifier, _, generator = load_models(config)
        result = AuditResult(run_dir=run.root, rows=run.write_summary())
        _analyze_and_report(config, run, classifier, generator, console, result, measured_elsewhere=True)
    return result


def config_for_run(run: RunDir, sources: ModelSources) -> AuditConfig:
    """The audit's own settings for more work on ``run`` with the models ``sources`` names (``load_models`` loads
    them): the run supplies only inert ones (sampling, data config, analysis, its class names as the labels: a
    classifier with another class count is refused), the command line or the notebook's call everything that loads
    or may run code."""
    from probe.devices import resolve_device

    saved = run.read_run_config() or RunConfig()
    # the dtype the audit's generator ran in, on a device of the same kind, unless the caller names one
    dtype = sources.dtype or saved.dtype_for(str(resolve_device(sources.device)))
    config = replace(AuditConfig.saved(saved), out=str(run.root), report=False, gate=None, scale=ScaleConfig(), model=sources.model,
                     generator=sources.generator, arch=sources.arch, trust_pickle=sources.trust_pickle,
                     device=sources.device, dtype=dtype, eval_model=None, eval_arch=None,
                     labels=run.read_labels() or None, compile=False)
    # the concept model loads weights: it comes from the command line too, never from the run
    return replace(config, analysis=config.analysis.replace(concepts=sources.concepts))


def analyse_command(config: AuditConfig) -> str:
    """The `probe report` line that analyses a sharded run: the models are named on it, never read from the run."""
    from probe.generators import DEFAULT_GENERATOR

    words = ["probe", "report", config.out, "--model", config.model, "--generator", config.generator or DEFAULT_GENERATOR]
    if config.arch:
        words += ["--arch", config.arch]
    if config.trust_pickle:
        words.append("--trust-pickle")
    concepts = getattr(config.analysis, "concepts", None)
    if concepts and concepts != "auto":  # the shards' concept model: another one would measure every class again
        words += ["--concepts", str(concepts)]
    if config.dtype:
        words += ["--dtype", str(config.dtype)]
    return shlex.join(words)


def _describe(classifier) -> dict | None:
    if classifier is None:
        return None
    if hasattr(classifier, "describe"):
        return classifier.describe()
    return {"name": type(classifier).__name__}


def _analyze_and_report(config: AuditConfig, run: RunDir, classifier, generator, console, result: AuditResult, *,
                        measured_elsewhere: bool = False, progress: bool = True) -> None:
    """Findings and the HTML report; a failure here never costs the tokens already on disk, but it is not silent:
    it is recorded on the result (the CLI exits non-zero) with the command that retries it.

    ``measured_elsewhere`` (Ray workers, shards): the classes' steps 3-5 ran where their tokens were learned; only
    the classes left without a current record are measured here (as one unit), then steps 6-7 decide once."""
    from probe.progress import warn

    # what the analysis does next, one line a step (it can run longer than the tokens; it used to be silent)
    say = (lambda line: _say(console, line)) if progress else None
    if config.analyze:
        from probe.analysis import analyze_run

        try:
            if measured_elsewhere:
                from probe.analysis.decide import decide_run, missing_records
                from probe.analysis.engine import measure_run

                missing = missing_records(run.root, config.analysis)
                if missing:
                    saved = run.read_run_config()
                    measure_run(run.root, classifier, generator, config.analysis, only=missing,
                                budget_classes=len(saved.classes or ()) if saved is not None else None, progress=say)
                decide_run(run.root, config.analysis)
            else:
                analyze_run(run.root, classifier, generator, config.analysis, progress=say)
        except Exception as error:  # the report still renders without findings
            _problem(console, result, f"analysis failed ({type(error).__name__}: {_first_line(error)}); tokens and "
                     "images are kept; run the same command again to retry it", error)
    if config.report:
        from probe.report import render_report

        try:
            result.report = render_report(run.root)
        except Exception as error:
            _problem(console, result, f"report failed ({type(error).__name__}: {_first_line(error)}); "
                     f"run `probe report {shlex.quote(config.out)}` to retry it", error)
    if config.gate is not None and config.analyze and not any(p.startswith("analysis failed") for p in result.problems):
        from probe.gate import run_gate

        try:  # last: the run and the report are kept whatever the verdict; the CLI exits with the gate's code
            result.gate = run_gate(run.root, config.gate)
        except ProbeError as error:
            result.problems.append(f"the gate could not check the findings ({_first_line(error)}); "
                                   f"run `probe check {shlex.quote(config.out)} --max-effect {config.gate.max_effect:g}` to retry it")
            warn(console, result.problems[-1])


def _problem(console, result: "AuditResult", message: str, error: BaseException) -> None:
    """Record a step that failed after the tokens (the run is kept) and warn; an unexpected error (a bug, not a
    ProbeError) says how to see where it happened, and with PROBE_DEBUG=1 its traceback follows the warning."""
    import os
    import sys
    import traceback

    from probe.progress import warn

    debug = bool(os.environ.get("PROBE_DEBUG"))
    if not isinstance(error, ProbeError) and not debug:
        message += " (PROBE_DEBUG=1 shows the traceback)"
    result.problems.append(message)
    warn(console, message)
    if debug:
        sys.stderr.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else ""
