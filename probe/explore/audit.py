"""An audit as an object: the models in the constructor, one verb (``run``), a result you can question.

    audit = probe.Audit(classifier, generator)            # loaded objects, or a path / alias for each
    result = audit.run(classes=["star", "heart"], out="runs/nb")
    result.test_cue("star", "on grass")                    # CueTest: effect, interval, p, q, verdict, images
    result.hypotheses                                      # every test of this session, q adjusted over all
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from probe.errors import RunError
from probe.explore.run import Run


class Audit:
    """Learn class tokens and find cues for a classifier with a generator (the API of ``probe audit``).

    ``classifier``: a ``probe.Classifier`` or anything ``probe.load_classifier`` accepts (``transform``: its
    evaluation transform, read for the input size, crop and normalisation); ``generator``: a
    ``probe.Generator`` or anything ``probe.load_generator`` accepts. ``config``: an ``AuditConfig`` whose
    settings are reused (its ``model``/``generator``/``out``/``classes`` are replaced); ``token`` and
    ``analysis`` override its token and analysis settings.
    """

    def __init__(self, classifier, generator, *, config=None, token=None, analysis=None, device: str = "auto",
                 dtype: str | None = None, trust_pickle: bool = False, labels: str | None = None,
                 multi_label: bool = False, transform=None):
        from probe.auditing.loop import AuditConfig
        from probe.classifiers import Classifier, load_classifier
        from probe.devices import resolve_device
        from probe.generators import Generator, load_generator

        if config is not None and not isinstance(config, AuditConfig):
            raise RunError(f"config must be a probe.AuditConfig, got {type(config).__name__}")
        # one device for both models, as `probe audit` loads them (the classifier stayed on the CPU beside a GPU
        # generator: every token step moved its images off the GPU and ran the classifier there); a generator given
        # loaded decides it (one on cuda:1 kept a classifier loaded from a path on the CPU)
        where = str(generator.device) if isinstance(generator, Generator) else \
            str(resolve_device(device if config is None else config.device))
        if dtype is None and config is not None:
            dtype = config.dtype  # the config's precision, as its other settings are reused
        if not isinstance(classifier, Classifier):
            classifier = load_classifier(classifier, trust_pickle=trust_pickle, labels=labels, multi_label=multi_label,
                                         transform=transform, device=where)
        if not isinstance(generator, Generator):
            generator = load_generator(generator, device=where, dtype=dtype)
        self.classifier, self.generator = classifier, generator
        base = config if config is not None else AuditConfig(model="in-memory", out="runs/notebook")
        if not isinstance(base, AuditConfig):
            raise RunError(f"config must be a probe.AuditConfig, got {type(base).__name__}")
        changes = {"model": str(classifier.source or classifier.name),
                   "generator": str(generator.source) if generator.source is not None else base.generator,
                   "device": device if config is None else base.device, "multi_label": classifier.multi_label}
        if token is not None:
            changes["token"] = token
        if analysis is not None:
            changes["analysis"] = analysis
        self.config = replace(base, **changes)

    def run(self, classes="all", out: str | Path = "runs/notebook", *, progress: bool = True, analyze: bool | None = None,
            report: bool | None = None, confirm_like: "Run | str | Path | None" = None, val_data=None) -> "AuditedRun":
        """Audit ``classes`` ("all", a list of names or indices, or the CLI's syntax) into ``out``; resumes a
        run of the same settings there. Returns the run with the models attached (``test_cue`` needs them).

        ``val_data``: your labelled images (an ImageFolder folder, a CSV of path,label, a list of (path, label) or a
        torch Dataset of (image, label)), checked against the classifier's labels before the tokens; the findings
        are then confirmed on them (``probe audit --val-data``; ``run.confirmation``, the findings' ``real_*``).

        ``confirm_like``: an earlier run (e.g. of the model before retraining) whose confirmed tests this run
        confirms too, on the same seeds, so that ``probe.compare(earlier, this)`` can test every change."""
        from probe.auditing.loop import audit

        if not isinstance(classes, str):
            classes = ",".join(str(c) for c in classes)
        analysis = self.config.analysis
        if confirm_like is not None:
            like = confirm_like.path if isinstance(confirm_like, Run) else confirm_like
            analysis = replace(analysis, confirm_like=str(like))
        config = replace(self.config, out=str(out), classes=classes, analysis=analysis,
                         analyze=self.config.analyze if analyze is None else analyze,
                         report=self.config.report if report is None else report)
        result = audit(config, classifier=self.classifier, generator=self.generator, progress=progress,
                       val_data=val_data)
        if val_data is not None:
            from probe.confirm import confirm_audit

            confirm_audit(result, val_data, classifier=self.classifier, concepts=analysis.concepts,
                          progress=print if progress else None)
        return AuditedRun(result.run_dir, self.classifier, self.generator, result=result, concepts=analysis.concepts)

    def plan(self, classes="all", *, measure: bool = False):
        """What ``run(classes)`` will generate and how long that takes (``probe audit --dry-run``): a
        ``probe.auditing.cost.AuditPlan`` that displays itself. ``measure``: time a few image batches and token steps
        of these very models here (``--measure``), for a time where the throughput table has no row."""
        from probe.auditing.cost import device_kind
        from probe.auditing.loop import measured_plan, plan_of

        if not isinstance(classes, str):
            classes = ",".join(str(c) for c in classes)
        config = replace(self.config, classes=classes)
        if measure:
            return measured_plan(config, self.classifier, self.generator)
        return plan_of(config, self.classifier, device=device_kind(config.device))

    def __repr__(self) -> str:
        return f"Audit(classifier={self.classifier.name!r}, generator={self.generator.source!r})"


class AuditedRun(Run):
    """A run with its classifier and generator attached: everything ``Run`` shows, plus ``test_cue``."""

    def __init__(self, path, classifier, generator, *, result=None, concepts: str = "auto"):
        super().__init__(path)
        self.classifier, self.generator, self.result = classifier, generator, result
        self.concepts = concepts  # the concept model test_cue checks its images with (never read from the run)
        self._context = None
        self._tests: list = []

    @classmethod
    def attach(cls, run: Run | str | Path, classifier, generator, *, concepts: str = "auto", arch: str | None = None,
               trust_pickle: bool = False, device: str = "auto", dtype: str | None = None) -> "AuditedRun":
        """An earlier run with its models: loaded objects, or paths / hub ids / aliases, loaded as ``probe report
        --model M --generator G`` loads them (the run's inert settings: data config, labels, sampling dtype; what
        loads or may run code, ``arch`` and ``trust_pickle`` included, only from this call, never from the run)."""
        from probe.auditing.class_run import load_classifiers, load_generator_of
        from probe.auditing.loop import ModelSources, config_for_run
        from probe.classifiers import Classifier
        from probe.generators import Generator
        from probe.run import RunDir

        path = run.path if isinstance(run, Run) else Path(run)
        if not isinstance(classifier, Classifier) or not isinstance(generator, Generator):
            run_dir = RunDir(path)
            run_dir.require_config(RunError)
            config = config_for_run(run_dir, ModelSources(
                model=str(getattr(classifier, "source", None) or classifier), arch=arch, trust_pickle=trust_pickle,
                generator=str(getattr(generator, "source", None) or generator), device=device, dtype=dtype))
            if not isinstance(classifier, Classifier):
                classifier = load_classifiers(config)[0]
            if not isinstance(generator, Generator):
                generator = load_generator_of(config)
        return cls(path, classifier, generator, concepts=concepts)

    @property
    def problems(self) -> list[str]:
        return list(getattr(self.result, "problems", []) or [])

    def test_cue(self, class_, cue: str, *, kind: str = "necessity", counters: list[str] | None = None,
                 n_pairs: int = 32, seed: int | None = None):
        """Test a hypothesis the way the audit tests its cues, on fresh seeds.

        ``kind="necessity"``: does P(class) drop when ``cue`` is swapped for its counters in the class's token
        prompts (for a cue of the run's list: its counters, minus those the audit's counter rule dropped; for a
        free phrase: the prompt without it, or ``counters``)? ``kind="sufficiency"``: does adding ``cue`` to
        other objects raise P(class)? Returns a ``CueTest``: effect, interval, pairs, p, q (over this session's
        tests, see ``hypotheses``), and a verdict by the audit's thresholds. Evidence images are saved under
        RUN_DIR/analysis/hypotheses/.
        """
        from probe.analysis.retest import ADHOC_SEED, RunContext, adjust, measure_cue

        if self._context is None:
            self._context = RunContext.open(self.path, self.classifier, self.generator, concepts=self.concepts)
        # every test of the session gets its own seeds: repeating a test is a replication, not the same images
        first = seed if seed is not None else ADHOC_SEED + 1000 * len(self._tests)
        test = measure_cue(self._context, class_, cue, kind=kind, counters=counters, n_pairs=n_pairs, seed=first)
        self._tests.append(test)
        return adjust(self._context.cfg, self._tests)[-1]

    @property
    def hypotheses(self):
        """Every ``test_cue`` of this session (DataFrame), q adjusted over all of them together."""
        import pandas as pd

        from probe.analysis.retest import adjust

        if not self._tests:
            return pd.DataFrame(columns=["hypothesis", "class_name", "kind", "verdict", "effect", "ci_low", "ci_high",
                                         "n_images", "p", "q"])
        rows = [t.to_dict() for t in adjust(self._context.cfg, self._tests)]
        return pd.DataFrame(rows)[["hypothesis", "class_name", "kind", "verdict", "effect", "ci_low", "ci_high",
                                   "n_images", "p", "q", "sentence"]]

