"""A counterfactual "balance" dataset for a finding: ``generate_balance(run_dir, out, specs=["star:grass"], per_class=N)``
(``probe generate RUN --balance star:grass --per-class N --out D``).

A finding says the classifier leans on a cue for a class ("star" on grass). The data that breaks the shortcut shows
the class *without* the cue and the classes it is confused with *with* it. For each ``class:cue`` spec:

* **the class without the cue**: ``per_class`` images from the plain prompt with the cue's counters stated ("a photo
  of a star on sand", "... on snow", ...; the counters cycle). The counters are the finding's own
  (``details.counter_templates`` of its necessity test, after the analysis' counter rule dropped values that are cues
  themselves); a cue tested only for sufficiency or token shift takes the counters of analysis.json's cue list, less
  the class's dropped counters.
* **its nearest confusers with the cue**: ``per_class`` images for each of the ``confusers`` classes the classifier
  confuses with it (the largest mean probability on the class's plain-prompt images, ``probe.analysis.confusers``;
  then the sufficiency test's carriers), from the plain prompt with the cue ("a photo of a triangle on grass").

A finding whose effect is negative says the other thing: the class *avoids* the cue (a token that draws fewer bars
than the plain prompt, and the user's hearts with a bar classified worse). Its shortcut is broken the other way round,
and the dataset is: the class *with* the cue, and its confusers *without* it (the counters cycled), first the classes
the cue itself raises (their sufficiency findings on it: the demo's dotted circles are called hearts, so hearts without
the dot), then the usual ones. The direction is the deciding finding's (a passing one first, then a necessity test),
named in ``BalanceTarget`` and the manifest.

*Plain prompts, not the token*, and this is deliberate: the token draws what the classifier takes for the class,
its other shortcuts included, and training on them would teach those shortcuts again; the plain prompt states the
class and the counter and lets the generator vary everything else. A class the audit prompted with its token only (no
usable name) is prompted with its token.

Every image is read by the run's kind of check before it is kept: the world's oracles for a run they checked, else the
concept model ``concepts`` names (never one named by the run directory). An image is kept when it shows the object
it was asked for and the value it was asked for (the counter; for the confusers, the cue); the rest are dropped and
counted, and images are generated until ``per_class`` are kept or ``ATTEMPTS_FACTOR`` x ``per_class`` were tried.

Output, all under ``out`` (a new or empty folder outside every run): ImageFolder layout, ``OUT/<class slug>/<role>-<cue
slug>-<seed>.png``, and ``OUT/manifest.csv`` / ``OUT/manifest.json`` (one row per generated image: class, role,
spec, cue, the asked value, prompt, seed, what the check read, whether it shows the cue, kept, path). Class names
are untrusted: folder names come from ``probe.files.slugify``. Every spec is checked against the run before a model
loads: an unknown class or a cue that is no finding's cue for it is a one-line error naming the run's cues.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from probe.classifiers.labels import object_name
from probe.errors import ProbeError
from probe.files import check_writable, class_folders, save_png, slugify, write_json, write_text
from probe.run.summary import balance_direction, deciding_finding

__all__ = ["BalanceConfig", "BalanceError", "BalanceTarget", "BalanceResult", "plan_balance", "generate_balance",
           "MANIFEST_CSV", "MANIFEST_JSON", "ROLES"]

MANIFEST_CSV = "manifest.csv"
MANIFEST_JSON = "manifest.json"
PARTIAL = ".probe-balance-partial.jsonl"  # the settings, then each batch's rows appended: an interrupted run resumes
ATTEMPTS_FACTOR = 4  # images tried per (class, role) at most, as a multiple of per_class
MAX_PER_CLASS = 100_000
MAX_CONFUSERS = 20
ROLES = ("without cue", "with cue")  # the class without its cue, a confuser with it (the other way round: avoids)
DIRECTIONS = {1: "leans on", -1: "avoids"}  # what the class does with the cue, by the sign of the finding's effect
COLUMNS = ["class_index", "class_name", "role", "spec", "cue", "attribute", "asked", "prompt", "seed", "reading",
           "shows_cue", "kept", "path"]


class BalanceError(ProbeError):
    """A balance dataset cannot be made as asked (a spec, the run, the check or the output folder)."""


@dataclass(frozen=True)
class BalanceConfig:
    """``specs``: "class:cue" (class by name or index); ``per_class``: images kept per class and role;
    ``confusers``: confuser classes per spec; ``concepts``: "auto" (the oracles of a run they checked) or a CLIP /
    SigLIP hub id or folder; ``generator``: the run's generator at a new path."""

    specs: tuple[str, ...]
    per_class: int = 50
    confusers: int = 2
    batch_size: int = 8
    concepts: str = "auto"
    generator: str | None = None
    device: str = "auto"
    dtype: str | None = None

    def __post_init__(self):
        specs = (self.specs,) if isinstance(self.specs, str) else tuple(self.specs or ())
        object.__setattr__(self, "specs", specs)
        if not specs:
            raise BalanceError("--balance needs at least one CLASS:CUE, e.g. --balance star:grass")
        for spec in specs:
            if not isinstance(spec, str) or ":" not in spec or not spec.split(":", 1)[0].strip() \
                    or not spec.rsplit(":", 1)[-1].strip():
                raise BalanceError(f"--balance {spec!r} is not CLASS:CUE; write e.g. --balance star:grass (the class by "
                                   "name or index, the cue as the run's findings name it)")
        if isinstance(self.per_class, bool) or not isinstance(self.per_class, int) or not 1 <= self.per_class <= MAX_PER_CLASS:
            raise BalanceError(f"--per-class {self.per_class!r} must be a whole number from 1 to {MAX_PER_CLASS:,}")
        if isinstance(self.confusers, bool) or not isinstance(self.confusers, int) or not 0 <= self.confusers <= MAX_CONFUSERS:
            raise BalanceError(f"--confusers {self.confusers!r} must be a whole number from 0 to {MAX_CONFUSERS}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or not 1 <= self.batch_size <= 1024:
            raise BalanceError(f"--batch-size {self.batch_size!r} must be a whole number from 1 to 1024")
        if not isinstance(self.concepts, str) or not self.concepts.strip():
            raise BalanceError("--concepts must be 'auto' (the world's oracles) or a CLIP/SigLIP hub id or folder")

    @property
    def attempts(self) -> int:
        return ATTEMPTS_FACTOR * self.per_class


@dataclass(frozen=True)
class Group:
    """Images of one class in one role for one spec: the prompts to cycle and what each must show."""

    spec: str
    cue: str
    attribute: str
    value: str  # the cue's value (what "shows the cue" means)
    class_index: int
    class_name: str
    folder: str
    role: str
    object_value: str  # what the check must read as the object
    prompts: tuple[str, ...]  # cycled; TOKEN stands for the class token of a token-only class
    asked: tuple[str, ...]  # the attribute value each prompt asks for (parallel to prompts)
    rivals: tuple[tuple[str, ...], ...]  # what each asked value must beat (a concept model's check)
    token_file: Path | None = None  # a token-only class: its token.safetensors


TOKEN = "\x00token\x00"  # placeholder for a token-only class's token string in Group.prompts


@dataclass(frozen=True)
class BalanceTarget:
    """One spec resolved against the run: the class, the cue (attribute, value, template), its counters and the
    confusers that get the cue; ``finding`` names the finding it came from."""

    spec: str
    class_index: int
    class_name: str
    cue: str
    attribute: str
    value: str
    template: str
    counter_templates: tuple[str, ...]
    counter_values: tuple[str, ...]
    confusers: tuple[int, ...]
    finding: str
    direction: int = 1  # 1: the class leans on the cue (its effect is positive); -1: it avoids it

    @property
    def roles(self) -> tuple[str, str]:
        """(the class's role, the confusers' role): without and with the cue, or the other way round."""
        return (ROLES[0], ROLES[1]) if self.direction > 0 else (ROLES[1], ROLES[0])

    def __repr__(self) -> str:
        cue = f"{self.attribute}={self.value}"
        counters = f"({', '.join(self.counter_values)})"
        own, other = (f"without {cue} {counters}", "with it") if self.direction > 0 else \
            (f"with {cue}", f"without it {counters}")
        return (f"BalanceTarget({self.spec!r}: {self.class_name!r} {DIRECTIONS[self.direction]} it: {self.class_name!r} "
                f"{own}, confusers {list(self.confusers)} {other}; from {self.finding})")


@dataclass(frozen=True)
class Outcome:
    spec: str
    class_index: int
    class_name: str
    role: str
    folder: str
    kept: int
    attempted: int
    target: int

    @property
    def dropped(self) -> int:
        return self.attempted - self.kept

    def line(self) -> str:
        short = f" (stopped at the cap of {ATTEMPTS_FACTOR * self.target} attempts)" if self.kept < self.target else ""
        return (f"{self.spec}: class {self.class_index} {self.class_name!r} {self.role}: {self.kept}/{self.target} kept, "
                f"{self.dropped} dropped by the check, in {self.folder}/{short}")


@dataclass
class BalanceResult:
    """What the dataset holds per spec, class and role; displays itself."""

    out: Path
    checked_by: str
    targets: list[BalanceTarget]
    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def manifest(self) -> Path:
        return self.out / MANIFEST_CSV

    @property
    def kept(self) -> int:
        return sum(o.kept for o in self.outcomes)

    @property
    def dropped(self) -> int:
        return sum(o.dropped for o in self.outcomes)

    def lines(self) -> list[str]:
        return [" ".join(o.line().split()) for o in self.outcomes] + [" ".join(n.split()) for n in self.notes]

    def __repr__(self) -> str:
        return "\n".join([f"BalanceResult({str(self.out)!r}: {self.kept} images kept, {self.dropped} dropped; checked "
                          f"by {self.checked_by})", *(f"  {line}" for line in self.lines())])

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<th>{c}</th>" for c in ("spec", "class", "role", "folder", "kept", "dropped"))
        rows = "".join(f"<tr><td>{escape(o.spec)}</td><td>{escape(f'{o.class_index} {o.class_name}')}</td>"
                       f"<td>{escape(o.role)}</td><td>{escape(o.folder)}</td><td>{o.kept}/{o.target}</td>"
                       f"<td>{o.dropped}</td></tr>" for o in self.outcomes)
        notes = "".join(f"<p>{escape(n)}</p>" for n in self.notes)
        return (f"<p>Balance dataset <code>{escape(str(self.out))}</code>, checked by {escape(self.checked_by)}</p>"
                f"<table><tr>{head}</tr>{rows}</table>{notes}")


# ------------------------------------------------------------------------------------------ the plan (no models)
def plan_balance(run_dir: str | Path, specs: Sequence[str], confusers: int = 2) -> list[BalanceTarget]:
    """Every spec resolved against the run's records (findings, analysis.json, metrics.json); a one-line
    BalanceError for a spec that names no class of the run or no cue of the class's findings. Loads no model."""
    from probe.run import RunDir

    run = RunDir(run_dir)
    run.require_config(BalanceError)
    labels = run.read_labels() or []
    findings = run.require_findings(BalanceError, "finish the audit's analysis first: --balance needs a finding's cue")
    analysis = run.read_analysis_summary()
    metrics = {index: m for _, m in run.finished_classes() if isinstance(m, dict)
               for index in [m.get("class_index")] if isinstance(index, int)}
    confirmation = run.read_confirmation()  # the user's data may decide a direction the generated pairs did not
    return [_target(spec, labels, findings, analysis, metrics, confusers, confirmation) for spec in specs]


def _split(spec: str, labels: list[str], findings) -> tuple[int, str]:
    """(class index, cue) of "class:cue": the class by index or name (a name may hold colons: the split that names a
    class of the run and one of its cues wins, else the first that names a class)."""
    if ":" not in spec:
        raise BalanceError(f"--balance {spec!r} is not CLASS:CUE; write e.g. --balance star:grass")
    parts = spec.split(":")
    named = []
    for k in range(1, len(parts)):
        left, cue = ":".join(parts[:k]).strip(), ":".join(parts[k:]).strip()
        index = int(left) if left.isdigit() and int(left) < len(labels) else (labels.index(left) if left in labels else None)
        if index is not None:
            named.append((index, cue))
    for index, cue in named:
        if any(f.class_index == index and f.cue == cue for f in findings):
            return index, cue
    if named:
        return named[0]
    shown = ", ".join(repr(n) for n in labels[:8]) + (", …" if len(labels) > 8 else "")
    raise BalanceError(f"--balance {spec!r} names no class of the run (by name or index 0..{len(labels) - 1}: "
                       f"{shown}); write CLASS:CUE, e.g. --balance {labels[0] if labels else 'star'}:grass")


def _target(spec: str, labels: list[str], findings, analysis, metrics: dict, k: int,
            confirmation=None) -> BalanceTarget:

    from probe.analysis.confusers import confusers as nearest

    # 1. the class and the cue, which must be a cue of one of the class's findings with an attribute and a value
    index, cue = _split(spec, labels, findings)
    mine = [f for f in findings if f.class_index == index and f.kind in ("necessity", "sufficiency", "token-shift")]
    if not any(f.cue == cue for f in mine):
        cues = sorted({f.cue for f in mine})
        raise BalanceError(f"--balance {spec!r}: {cue!r} is not a cue of a finding of class {index} ({labels[index]!r}); "
                           f"its findings' cues are: {', '.join(repr(c) for c in cues) if cues else 'none'}")
    finding = deciding_finding(f for f in mine if f.cue == cue)  # the summary's balance step follows the same one
    details = finding.details if isinstance(finding.details, dict) else {}
    attribute, value = details.get("attribute"), details.get("value")
    if not isinstance(attribute, str) or not isinstance(value, str) or not attribute or not value:
        raise BalanceError(f"--balance {spec!r}: the finding on {cue!r} names no attribute and value a check could read "
                           "(a run analysed before probe recorded them); re-run the analysis")
    # 2. its template and counters: the necessity test's own, else the analysis' cue list less the dropped counters
    listed = analysis.listed_cue(index, cue) if analysis is not None else {}
    template = listed.get("template") if listed else None
    necessity = next((f for f in mine if f.cue == cue and f.kind == "necessity" and f.details.get("counter_templates")),
                     None)
    if necessity is not None:
        counters = [str(t) for t in necessity.details["counter_templates"]]
        values = [str(v) for v in necessity.details.get("counter_values") or []]
    else:
        pairs = analysis.kept_counters(index, labels[index], cue) if analysis is not None else ()
        counters, values = [t for t, _ in pairs], [v for _, v in pairs]
    if not isinstance(template, str) or template.count("{}") != 1:
        raise BalanceError(f"--balance {spec!r}: analysis.json does not record the prompt template of cue {cue!r}, so "
                           "its confusers cannot be drawn with it; re-run the analysis (it records its cue list)")
    if not counters or len(values) != len(counters) or any(t.count("{}") != 1 for t in counters):
        raise BalanceError(f"--balance {spec!r}: the run records no usable counters for cue {cue!r} (templates with "
                           "'{}' and the value each shows); re-run the analysis")
    # 3. the confusers: for a cue the class avoids, first the classes the cue itself raises (their sufficiency findings
    #    on it, largest effect first: dotted circles are called hearts); then the classifier's own (the class's
    #    plain-prompt images), then the sufficiency carriers
    direction = balance_direction(finding, confirmation)
    raised = [] if direction > 0 else [
        f for f in findings if f.kind == "sufficiency" and f.class_index != index and isinstance(f.details, dict)
        and (f.details.get("attribute"), f.details.get("value")) == (attribute, value) and _finite(f.effect)
        and f.effect > 0]
    takers = [f.class_index for f in sorted(raised, key=lambda f: -f.effect)]
    near = list(dict.fromkeys(takers + nearest(metrics.get(index) or {}, index, len(labels), k)))[:k]
    carriers = [c for f in mine if f.cue == cue and f.kind == "sufficiency"
                for c in (f.details.get("carriers") or [])]
    for text in carriers:
        hit = next((i for i, n in enumerate(labels) if object_name(n) == str(text) and i != index), None)
        if len(near) < k and hit is not None and hit not in near:
            near.append(hit)
    return BalanceTarget(spec, index, labels[index], cue, attribute, value, template, tuple(counters), tuple(values),
                         tuple(near[:k]), f"{finding.kind} finding ({finding.status}"
                         + (f", effect {finding.effect:+.2f})" if _finite(finding.effect) else ")"), direction)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ------------------------------------------------------------------------------------------ the verb
def generate_balance(run_dir: str | Path, out: str | Path, *, config: BalanceConfig | None = None, generator=None,
                     check=None, progress=None, **settings) -> BalanceResult:
    """Write the balance dataset (see the module docstring). Settings come as ``config`` or keywords (``specs=``,
    ``per_class=``, ``confusers=``, ``concepts=``, ...); ``generator`` and ``check`` (``read(images01)``,
    ``valid(arm, reading)``) may be passed already loaded."""
    import torch

    from probe.generate import GENERATE_SEED, _check_out_outside_runs, _check_seeds, _inside, out_dir_lock
    from probe.run import RunDir

    say = progress or (lambda _line: None)
    # 1. the settings, typed and checked
    if config is not None and settings:
        raise BalanceError(f"pass either config= or settings ({', '.join(sorted(settings))}), not both")
    config = config or BalanceConfig(**settings)
    # 2. the run and every spec, resolved before anything loads
    run = RunDir(run_dir)
    saved = run.require_config(BalanceError)
    targets = plan_balance(run_dir, config.specs, config.confusers)
    labels = run.read_labels() or []
    token_settings = saved.token_settings()
    metrics = {m.get("class_index"): (d, m) for d, m in run.finished_classes() if isinstance(m, dict)}
    groups = [g for t in targets for g in _groups(t, labels, token_settings, metrics)]
    total = sum(config.attempts for _ in groups)
    _check_seeds(token_settings, total)
    # 3. the output folder: new or empty, outside every run
    out_dir = Path(os.path.abspath(Path(out).expanduser()))
    _check_out_outside_runs(out_dir, run.root)
    check_writable(out_dir, "--out")
    identity = {"run_started": saved.started, "specs": list(config.specs), "per_class": config.per_class,
                "confusers": config.confusers, "batch_size": config.batch_size, "concepts": config.concepts,
                "seed_base": GENERATE_SEED,
                # the plan itself (direction, counters, confusers, template): a run analysed again since may plan the
                # same specs otherwise, and the new plan's images beside the old ones' left files the manifest lacks
                "targets": json.loads(json.dumps([_target_dict(t, labels) for t in targets]))}  # as the record reads back
    done = _resumable(out_dir, identity)  # {seed: row} of an interrupted run of this very command, else {}
    partial = None  # the PARTIAL file, opened for appending once the folder is locked
    # 4. the check: the world's oracles for a run they checked, else the concept model --concepts names
    analysis = run.read_analysis_summary()
    if check is None:
        check = _load_check(analysis, config.concepts, labels, targets)
    checked_by = getattr(check, "name", type(check).__name__)
    object_attribute = getattr(check, "object_attribute", None) or _domain_object_attribute(analysis)
    # 5. the generator (the run's, or --generator), with the tokens of token-only classes
    if generator is None:
        from probe.auditing.class_run import load_generator_of
        from probe.auditing.config import AuditConfig
        from probe.devices import resolve_device

        dtype = config.dtype or saved.dtype_for(str(resolve_device(config.device)))
        audit = AuditConfig.saved(saved)
        generator = load_generator_of(replace(audit, generator=config.generator or saved.source("generator"),
                                              device=config.device, dtype=dtype))
    groups = _with_tokens(generator, groups)
    sampling = {k: token_settings.get(k) for k in ("steps", "guidance_scale", "scheduler")}
    # 6. per group, batch by batch: generate, quantise as saved, read, keep or drop, save
    from probe.analysis.lab import Arm

    rows: list[dict] = []
    outcomes: list[Outcome] = []
    seed = GENERATE_SEED
    with out_dir_lock(out_dir):
        for group in groups:
            say(f"balance: {group.spec}: class {group.class_index} {group.role}")
            kept = attempted = 0
            while kept < config.per_class and attempted < config.attempts:
                n = min(config.batch_size, config.per_class - kept, config.attempts - attempted)
                picks = [(attempted + j) % len(group.prompts) for j in range(n)]
                seeds = list(range(seed, seed + n))
                seed += n
                prompts = [group.prompts[p] for p in picks]
                before = [done.get(s) for s in seeds]  # this batch, as an interrupted run of the command left it
                if all(r is not None and r["prompt"] == group.prompts[p]
                       and (not r["kept"] or (out_dir / r["path"]).is_file()) for r, p in zip(before, picks)):
                    rows += before
                    kept += sum(bool(r["kept"]) for r in before)
                    attempted += n
                    continue
                with torch.no_grad():
                    images = generator.generate(prompts, seeds, steps=sampling["steps"],
                                                guidance_scale=sampling["guidance_scale"],
                                                scheduler=sampling["scheduler"], max_batch=token_settings.get("max_batch"))
                images = (torch.floor(images.float().clamp(0, 1) * 255 + 0.5) / 255).cpu()  # what the PNG holds
                readings = check.read(images)
                for image, s, p, reading in zip(images, seeds, picks, readings):
                    attribute = group.attribute
                    expect = {attribute: group.asked[p]}
                    if object_attribute:
                        expect[object_attribute] = group.object_value
                    arm = Arm.of(group.prompts[p], s, against={attribute: group.rivals[p]}, **expect)
                    keep = bool(check.valid(arm, reading))
                    read = {str(a): str(v) for a, v in dict(reading).items()}
                    path = ""
                    if keep:
                        path = f"{group.folder}/{slugify(group.role)}-{slugify(group.cue)}-{s}.png"
                        save_png(_inside(out_dir, path), image)
                    rows.append({"class_index": group.class_index, "class_name": group.class_name, "role": group.role,
                                 "spec": group.spec, "cue": group.cue, "attribute": attribute, "asked": group.asked[p],
                                 "prompt": group.prompts[p], "seed": s, "reading": read,
                                 "shows_cue": (read.get(attribute) == group.value) if attribute in read else None,
                                 "kept": keep, "path": path})
                    kept += keep
                attempted += n
                partial = partial or _open_partial(out_dir, identity, done)
                partial.write("".join(json.dumps(r) + "\n" for r in rows[-n:]))  # this batch's rows, appended
                partial.flush()
            outcomes.append(Outcome(group.spec, group.class_index, group.class_name, group.role, group.folder, kept,
                                    attempted, config.per_class))
        # 7. the manifest (CSV and JSON), and the result
        notes = [f"{t.spec}: no confuser recorded for class {t.class_index} ({t.class_name!r}); only its images "
                 f"{t.roles[0]} were written" for t in targets if not t.confusers]
        notes += [f"{t.spec}: {t.class_name!r} avoids {t.cue!r} (its {t.finding}), so the data go the other way "
                  "round: the class with the cue, its confusers without it" for t in targets if t.direction < 0]
        _write_manifest(out_dir, rows, {"run": str(run.root), "run_started": saved.started, "checked_by": checked_by,
                                        "per_class": config.per_class, "confusers": config.confusers,
                                        "targets": [_target_dict(t, labels) for t in targets],
                                        "outcomes": [o.__dict__ | {"dropped": o.dropped} for o in outcomes],
                                        "notes": notes})
        if partial is not None:
            partial.close()
        (out_dir / PARTIAL).unlink(missing_ok=True)  # the manifest now holds every row
    return BalanceResult(out_dir, checked_by, targets, outcomes, notes)


def _open_partial(out_dir: Path, identity: dict, done: dict[int, dict]):
    """The PARTIAL file for appending: the settings first, then the rows an earlier run left (so that a second
    interrupt keeps them too). Rewritten once per command; each batch then appends only its own rows."""
    handle = open(out_dir / PARTIAL, "w", encoding="utf-8")
    handle.write("".join(json.dumps(x) + "\n" for x in [identity, *done.values()]))
    handle.flush()
    return handle


def _resumable(out_dir: Path, identity: dict) -> dict[int, dict]:
    """{seed: row} that an interrupted run of the same command left in ``out_dir`` (its PARTIAL record, written after
    every batch); {} for a new or empty folder. Another command's folder, a finished dataset or a foreign folder is
    refused in one line, before any model loads."""
    from probe.generate import _inside
    from probe.run import LOCK

    if not out_dir.exists():
        return {}
    if not out_dir.is_dir():
        raise BalanceError(f"--out {str(out_dir)!r} is a file; choose a new or empty folder for the balance dataset")
    if not any(p.name != LOCK for p in out_dir.iterdir()):
        return {}
    lines = []
    if (out_dir / PARTIAL).is_file() and not (out_dir / PARTIAL).is_symlink():
        for line in (out_dir / PARTIAL).read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:  # a line cut short by the interrupt
                continue
    if lines and isinstance(lines[0], dict) and "specs" in lines[0]:
        changed = [k for k in identity if lines[0].get(k) != identity[k]]
        if changed:
            raise BalanceError(f"--out {str(out_dir)!r} holds an interrupted balance dataset made with other settings "
                               f"({', '.join(changed)}); use another --out, or the same command to resume it")
        rows = [r for r in lines[1:] if isinstance(r, dict) and isinstance(r.get("seed"), int)
                and isinstance(r.get("prompt"), str) and isinstance(r.get("kept"), bool) and isinstance(r.get("path"), str)
                and (not r["kept"] or _inside(out_dir, r["path"], strict=False) is not None)]
        return {r["seed"]: r for r in rows}
    finished = "holds a finished balance dataset" if (out_dir / MANIFEST_JSON).is_file() else "is not an empty folder"
    raise BalanceError(f"--out {str(out_dir)!r} {finished}; choose a new or empty folder for the balance dataset")


# ------------------------------------------------------------------------------------------ steps
def _groups(t: BalanceTarget, labels: list[str], token_settings: dict, metrics: dict) -> list[Group]:
    """The class without the cue (its counters cycled), then each confuser with the cue; for a class that avoids the
    cue, the class with it, then each confuser without it (the counters cycled)."""

    template = str((token_settings.get("templates") or ["a photo of a {}"])[0])
    if template.count("{}") != 1:
        template = "a photo of a {}"
    folders = class_folders(labels)

    def phrase(i: int) -> tuple[str, Path | None]:
        """The object as the audit prompted it: its name, or its token for a class the audit named by token only."""
        directory, m = metrics.get(i, (None, None))
        if m is not None and m.get("class_name") is None and directory is not None:
            from probe.run import TOKEN as TOKEN_FILE

            return TOKEN, directory / TOKEN_FILE
        name = m.get("class_name") if m is not None and isinstance(m.get("class_name"), str) else labels[i]
        return object_name(name), None

    def without_cue(i: int, obj: str, token_file: Path | None, role: str) -> Group:
        return Group(t.spec, t.cue, t.attribute, t.value, i, labels[i], folders[i], role, object_name(labels[i]),
                     tuple(template.replace("{}", c.replace("{}", obj)) for c in t.counter_templates),
                     t.counter_values, tuple((t.value,) for _ in t.counter_values), token_file)

    def with_cue(i: int, obj: str, token_file: Path | None, role: str) -> Group:
        return Group(t.spec, t.cue, t.attribute, t.value, i, labels[i], folders[i], role, object_name(labels[i]),
                     (template.replace("{}", t.template.replace("{}", obj)),), (t.value,), (t.counter_values,),
                     token_file)

    own_role, other_role = t.roles
    own_group, other_group = (without_cue, with_cue) if t.direction > 0 else (with_cue, without_cue)
    out = [own_group(t.class_index, *phrase(t.class_index), own_role)]
    for c in t.confusers:
        other, token_file = phrase(c)
        if other.strip():
            out.append(other_group(c, other, token_file, other_role))
    return out


def _with_tokens(generator, groups: list[Group]) -> list[Group]:
    """Token-only classes' tokens loaded into the generator and put into their prompts."""
    out = []
    for g in groups:
        if g.token_file is None:
            out.append(g)
            continue
        if not g.token_file.is_file():
            raise BalanceError(f"class {g.class_index} ({g.class_name!r}) is prompted by its token only, and its token "
                               f"{str(g.token_file)!r} is missing; audit the class again")
        token = generator.load_token(g.token_file)
        out.append(replace(g, prompts=tuple(p.replace(TOKEN, token) for p in g.prompts)))
    return out


def _domain_object_attribute(analysis) -> str | None:
    from probe.domains import domains

    name = analysis.domain if analysis is not None and isinstance(analysis.domain, str) else None
    domain = domains().get(name) if name else None
    return domain.object_attribute if domain is not None else None


def _load_check(analysis, concepts: str, labels: list[str], targets: list[BalanceTarget]):
    """The world's oracles for a run they checked ("auto"), else the concept model ``concepts`` names over the run's
    cues and the specs' own (as their findings name them)."""
    from probe.analysis.checks import check_for_run
    from probe.analysis.cues import Cue

    specs = [Cue(name=t.cue, template=t.template, counters=t.counter_templates, attribute=t.attribute, value=t.value,
                 counter_values=t.counter_values) for t in targets]
    return check_for_run(analysis, concepts, labels, specs, error=BalanceError,
                         none_means="would keep images nobody checked",
                         unchecked="nothing would check the generated images")[0]


def _target_dict(t: BalanceTarget, labels: list[str]) -> dict:
    return {"spec": t.spec, "class_index": t.class_index, "class_name": t.class_name, "cue": t.cue,
            "attribute": t.attribute, "value": t.value, "template": t.template,
            "counter_templates": list(t.counter_templates), "counter_values": list(t.counter_values),
            "confusers": [{"class_index": c, "class_name": labels[c]} for c in t.confusers], "finding": t.finding,
            "direction": DIRECTIONS[t.direction], "roles": {"class": t.roles[0], "confusers": t.roles[1]}}


def _write_manifest(out_dir: Path, rows: list[dict], settings: dict) -> None:
    """manifest.json (the settings, the targets, the outcomes and every row) and manifest.csv (the rows; the
    check's reading as JSON), each written atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "reading": json.dumps(row["reading"], sort_keys=True)})
    write_json(out_dir / MANIFEST_JSON, {**settings, "columns": COLUMNS, "rows": rows})
    write_text(out_dir / MANIFEST_CSV, buffer.getvalue())
