"""Datasets from class tokens: ``generate_dataset(run_dir, out, classes=..., per_class=...)`` (``probe generate``).

The paper's second use of a discriminative class token is training data: images generated with the token
are images the classifier takes for the class. For each selected class this module generates images from a
prompt template with the class's token, classifies every image with the run's classifier, and writes an
ImageFolder dataset (``OUT/<class slug>/<seed>.png``) with a manifest (``OUT/manifest.csv`` and
``OUT/manifest.parquet``: class_index, class_name, prompt, seed, path — empty when not kept —,
target_prob, predicted, kept).

* **Keeping.** Without ``min_prob`` every image is kept (the manifest still records how the classifier
  sees it). With ``min_prob`` an image is kept when the classifier calls it its class (top class; multi-label: P above 0.5) with
  probability at least ``min_prob``; images are generated until ``per_class`` are kept or ``max_attempts``
  (default 4 x ``per_class``) were tried, and the result says how many were kept. Probabilities are
  measured on the image exactly as saved (quantised to 8 bits), so re-classifying a PNG gives the same.
* **Seeds.** Image k of every class uses seed ``GENERATE_SEED + k`` (10,000,000 on): disjoint from the
  audit's training seeds (``--seed`` on, 0 by default), evaluation seeds (1000 on) and the analysis'
  seeds (7000 up to below 1,000,000). An audit whose training or evaluation seeds reach 10,000,000 is
  refused rather than silently overlapped.
* **Resume.** The manifest is rewritten atomically after every batch, so an interrupted run keeps every
  finished batch; re-running the same command skips seeds already in the manifest and finishes the rest
  (a kept row whose image was deleted, or a deleted row, is generated again). The settings that decide what
  an image is (run, prompt, min_prob, model, generator, sampling) are saved in ``OUT/generate.json``; a
  resume with another value is refused naming the field. ``per_class`` and the classes may change.
* **Safety.** Class names are untrusted: folder names come from ``probe.files.slugify`` and every path is
  checked to stay inside ``OUT``. The classifier is loaded as the audit loads it (``probe.auditing.class_run.load_models``);
  ``trust_pickle`` comes from the caller, never from the run's config.json.
"""

from __future__ import annotations

import csv
import io
import os
import string
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

from probe.auditing.config import AuditConfig
from probe.errors import ProbeError
from probe.files import atomic_path, check_writable, class_folders, save_png, write_json, write_text

GENERATE_SEED = 10_000_000
SETTINGS = "generate.json"
MANIFEST_CSV = "manifest.csv"
MANIFEST_PARQUET = "manifest.parquet"
COLUMNS = ["class_index", "class_name", "prompt", "seed", "path", "target_prob", "predicted", "kept"]
ATTEMPTS_FACTOR = 4  # with min_prob: images tried per class at most, as a multiple of per_class
# Upper bounds on the counts that size memory and disk, checked before anything loads: beyond them a typo
# (--per-class 1000000000000) would build a seed list of that length after the models load.
MAX_PER_CLASS = 1_000_000
MAX_ATTEMPTS = ATTEMPTS_FACTOR * MAX_PER_CLASS
MAX_BATCH_SIZE = 1024
_SEED_BYTES = 36  # a Python int in a list: 8-byte pointer + 28-byte object
# Settings that decide what an image in OUT is; a resume must match them (flag named in the error).
_RESUME_FIELDS = {"run": "RUN_DIR (another run)", "prompt": "--prompt", "min_prob": "--min-prob", "model": "--model",
                  "generator": "--generator", "sampling": "the run's sampling settings", "seed_base": "seed base"}


class GenerateError(ProbeError):
    """The dataset cannot be generated as asked (a setting, the run, or the output folder)."""


@dataclass(frozen=True)
class GenerateConfig:
    """Everything ``probe generate`` needs besides the run and the output folder."""

    classes: str | Sequence[int | str] = "all"
    per_class: int = 10
    prompt: str | None = None  # template with {token} and optionally {name}; None: the run's first template
    min_prob: float | None = None
    max_attempts: int | None = None  # with min_prob; default ATTEMPTS_FACTOR x per_class
    batch_size: int = 8
    model: str | None = None  # override of the run's classifier path (a moved run)
    generator: str | None = None  # override of the run's generator (a moved run)
    trust_pickle: bool = False
    device: str = "auto"
    dtype: str | None = None

    def __post_init__(self):
        if isinstance(self.per_class, bool) or not isinstance(self.per_class, int) or self.per_class < 1:
            raise GenerateError(f"--per-class {self.per_class!r} must be a whole number >= 1")
        if self.per_class > MAX_PER_CLASS:
            raise GenerateError(f"--per-class {self.per_class} asks for {_count(self.per_class)} images per class "
                                f"(its seed list alone would need {_size(self.per_class * _SEED_BYTES)} of memory, "
                                f"the PNGs far more disk); use at most {MAX_PER_CLASS:,} per call")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise GenerateError(f"--batch-size {self.batch_size!r} must be a whole number >= 1")
        if self.batch_size > MAX_BATCH_SIZE:
            raise GenerateError(f"--batch-size {self.batch_size} would generate {_count(self.batch_size)} images in one "
                                f"batch on one device; use at most {MAX_BATCH_SIZE} (8 is the default; memory grows "
                                "with it)")
        if self.min_prob is not None and not (isinstance(self.min_prob, (int, float)) and 0 < self.min_prob <= 1):
            raise GenerateError(f"--min-prob {self.min_prob!r} must lie in (0, 1], e.g. 0.9")
        if self.max_attempts is not None:
            if self.min_prob is None:
                raise GenerateError("--max-attempts applies only with --min-prob (without it every image is kept)")
            if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
                raise GenerateError(f"--max-attempts {self.max_attempts!r} must be a whole number")
            if self.max_attempts > MAX_ATTEMPTS:
                raise GenerateError(f"--max-attempts {self.max_attempts} would try {_count(self.max_attempts)} images "
                                    f"per class (a seed list of {_size(self.max_attempts * _SEED_BYTES)} in memory); "
                                    f"use at most {MAX_ATTEMPTS:,}")
            if self.max_attempts < self.per_class:
                raise GenerateError(f"--max-attempts {self.max_attempts} is below --per-class {self.per_class}; "
                                    "allow at least as many attempts as images to keep")
        if self.prompt is not None:
            check_template(self.prompt)

    @property
    def attempts(self) -> int:
        """Images tried per class at most."""
        if self.min_prob is None:
            return self.per_class
        return self.max_attempts or ATTEMPTS_FACTOR * self.per_class


def _count(n: int) -> str:
    """A count for a message: 1,000,000 as is, 10^12 as a power of ten when it is one."""
    text = str(n)
    if n >= 10**7 and text.strip("0") == "1":
        return f"10^{len(text) - 1}"
    return f"{n:,}" if n < 10**15 else f"{n:.1e}"


def _size(n_bytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n_bytes < 1000 or unit == "PB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000
    return ""


def check_template(template: str) -> str:
    """A prompt template: ``{token}`` required, ``{name}`` optional, nothing else in braces."""
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template) if name is not None]
    except ValueError as e:
        raise GenerateError(f"--prompt {template!r} is not a valid template ({e}); write braces as {{token}}, "
                            "{name}, or doubled {{ }} for a literal brace") from None
    for name, spec, conv in fields:
        if name not in ("token", "name") or spec or conv:
            shown = "{" + name + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
            raise GenerateError(f"--prompt {template!r} has an unknown placeholder {shown}; use only {{token}} "
                                "(required) and {name}")
    if "token" not in [name for name, _, _ in fields]:
        raise GenerateError(f"--prompt {template!r} has no {{token}}; put the class token in the prompt, e.g. "
                            "'a photo of a {token} {name}'")
    return template


def fill(template: str, token: str, name: str | None) -> str:
    return " ".join(template.format(token=token, name=name or "").split())


@dataclass(frozen=True)
class ClassOutcome:
    class_index: int
    class_name: str
    folder: str
    kept: int
    attempted: int
    generated: int  # images generated by this call (the rest came from the manifest)
    target: int
    cap: int

    def line(self) -> str:
        short = f"; stopped at the cap of {self.cap} attempts" if self.kept < self.target else ""
        return (f"class {self.class_index} {self.class_name!r}: {self.kept}/{self.target} kept of {self.attempted} "
                f"generated ({self.generated} new) in {self.folder}/{short}")


@dataclass
class GenerateResult:
    """What a dataset holds per class; displays itself."""

    out: Path
    manifest: Path
    classes: list[ClassOutcome] = field(default_factory=list)

    @property
    def generated(self) -> int:
        return sum(c.generated for c in self.classes)

    def lines(self) -> list[str]:
        return [" ".join(c.line().split()) for c in self.classes]

    def __repr__(self) -> str:
        return "\n".join([f"GenerateResult({str(self.out)!r}: {sum(c.kept for c in self.classes)} images kept)",
                          *(f"  {line}" for line in self.lines())])

    def _repr_html_(self) -> str:
        from html import escape

        head = "".join(f"<th>{c}</th>" for c in ("class", "folder", "kept", "target", "generated", "new"))
        rows = "".join(f"<tr><td>{escape(f'{c.class_index} {c.class_name}')}</td><td>{escape(c.folder)}</td>"
                       f"<td>{c.kept}</td><td>{c.target}</td><td>{c.attempted}</td><td>{c.generated}</td></tr>"
                       for c in self.classes)
        return f"<p>Dataset <code>{escape(str(self.out))}</code></p><table><tr>{head}</tr>{rows}</table>"


@dataclass(frozen=True)
class _Class:
    index: int
    name: str  # display name (labels.json)
    prompt_name: str | None  # the name the audit put in its prompts (None: token-only)
    folder: str
    token_file: Path


def generate_dataset(run_dir: str | Path, out: str | Path, *, config: GenerateConfig | None = None, classifier=None,
                     generator=None, progress: bool = True, console=None, **settings) -> GenerateResult:
    """Generate (or resume) an ImageFolder dataset from a run's class tokens (see the module docstring).

    Settings come as ``config`` or as keywords (``classes=``, ``per_class=``, ``prompt=``, ``min_prob=``,
    ``batch_size=``, ...). ``classifier`` and ``generator`` may be passed already loaded (notebooks, tests);
    otherwise they are loaded as the run's config.json names them, or from ``config.model``/``config.generator``.
    """
    import torch

    from probe.classifiers.classifier import called, probabilities
    from probe.run import RunDir

    # 1. the settings, typed and checked
    if isinstance(generator, (str, Path)):
        settings.setdefault("generator", str(generator))
        generator = None
    if isinstance(classifier, (str, Path)):
        settings.setdefault("model", str(classifier))
        classifier = None
    if config is not None and settings:
        raise GenerateError(f"pass either config= or settings ({', '.join(sorted(settings))}), not both")
    config = config or GenerateConfig(**settings)
    # 2. the run: its audit settings, labels and the selected classes' tokens (nothing loaded yet)
    run = RunDir(run_dir)
    saved = run.require_config(GenerateError)
    token_settings = saved.token_settings()  # as given, with what the audit decided (config.json's "effective")
    _check_seeds(token_settings, config.attempts)
    template = config.prompt or _default_template(token_settings)
    check_template(template)
    targets = _select(run, config.classes)
    # 3. the output folder: new or empty, or a dataset made with the same settings (then it resumes)
    out_dir = Path(os.path.abspath(Path(out).expanduser()))
    _check_out_outside_runs(out_dir, run.root)
    check_writable(out_dir, "--out")
    audit = AuditConfig.saved(saved)  # typed after the --out checks, so that their errors come first
    model_spec = (config.model or (getattr(classifier, "source", None) if classifier is not None else None)
                  or (_inert_model_spec(saved.source("model")) if classifier is None else audit.model))
    generator_spec = config.generator or (generator.source if generator is not None else None) or saved.source("generator")
    # the images are drawn with the audit's effective sampling; the identity keeps the settings as given (the run,
    # named by its start, fixes the rest), so that a dataset begun before config.json held them still resumes
    sampling = {k: token_settings.get(k) for k in ("steps", "guidance_scale", "scheduler")}
    identity = {"run": saved.started, "prompt": template, "min_prob": config.min_prob, "model": _absolute(model_spec),
                "generator": _absolute(generator_spec), "sampling": {k: saved.token.get(k) for k in sampling},
                "seed_base": GENERATE_SEED}
    rows = _open_output(out_dir, identity)
    # 4. the models, loaded as the audit loads them (probe.auditing.class_run.load_models), unless passed in
    if classifier is None or generator is None:
        from probe.auditing.class_run import load_models
        from probe.devices import resolve_device

        # the dtype the audit's generator ran in, on a device of the same kind, unless --dtype names one
        dtype = config.dtype or saved.dtype_for(str(resolve_device(config.device)))
        audit_config = replace(audit, model=model_spec, generator=generator_spec,
                               trust_pickle=config.trust_pickle, device=config.device, dtype=dtype,
                               eval_model=None, labels=None, gate=None)
        loaded = load_models(audit_config) if (classifier is None and generator is None) else None
        if loaded is None:
            raise GenerateError("pass both classifier= and generator= loaded, or neither")
        classifier, _, generator = loaded
    labels = run.read_labels() or []
    if labels and getattr(classifier, "num_classes", len(labels)) != len(labels):
        raise GenerateError(f"the classifier has {classifier.num_classes} classes but the run {len(labels)}; pass the "
                            "run's classifier with --model")
    # 5. each class's token into the generator
    tokens = {c.index: _load_token(generator, c, generator_spec) for c in targets}
    # 6. per class, batch by batch: generate, classify as saved, keep, save, rewrite the manifest
    outcomes = []
    with out_dir_lock(out_dir), _bar(progress, console) as bar:
        write_json(out_dir / SETTINGS, identity)
        for cls in targets:
            mine = _reconcile(out_dir, rows, cls.index)
            candidates = [GENERATE_SEED + k for k in range(config.attempts)]
            done = {r["seed"] for r in mine}
            kept = sum(r["kept"] for r in mine)
            task = bar.add_task(_describe(cls, kept, len(mine)), total=config.per_class, completed=min(kept, config.per_class))
            generated = 0
            todo = [s for s in candidates if s not in done]
            while kept < config.per_class and todo:
                n = min(config.batch_size, config.per_class - kept)  # never more kept than per_class
                seeds, todo = todo[:n], todo[n:]
                prompt = fill(template, tokens[cls.index], cls.prompt_name)
                with torch.no_grad():
                    images = generator.generate([prompt] * len(seeds), seeds, steps=sampling["steps"],
                                                guidance_scale=sampling["guidance_scale"], scheduler=sampling["scheduler"],
                                                max_batch=token_settings.get("max_batch"))
                    images = torch.floor(images.float().clamp(0, 1) * 255 + 0.5) / 255  # exactly what the PNG holds
                    probs = probabilities(classifier, classifier(images.to(classifier.device))).cpu()
                hits = called(classifier, probs, cls.index).tolist()
                for image, seed, p, hit in zip(images, seeds, probs, hits):
                    target_prob, predicted = float(p[cls.index]), int(p.argmax())
                    keep = config.min_prob is None or (hit and target_prob >= config.min_prob)
                    path = ""
                    if keep:
                        path = f"{cls.folder}/{seed}.png"
                        save_png(_inside(out_dir, path), image)
                    rows[(cls.index, seed)] = {"class_index": cls.index, "class_name": cls.name, "prompt": prompt,
                                               "seed": seed, "path": path, "target_prob": round(target_prob, 6),
                                               "predicted": predicted, "kept": keep}
                    kept += keep
                generated += len(seeds)
                _write_manifest(out_dir, rows)
                bar.update(task, completed=min(kept, config.per_class),
                           description=_describe(cls, kept, len(mine) + generated))
            _write_manifest(out_dir, rows)  # also after a resume that only dropped stale rows
            attempted = sum(1 for (i, _) in rows if i == cls.index)
            outcomes.append(ClassOutcome(cls.index, cls.name, cls.folder, kept, attempted, generated,
                                         config.per_class, config.attempts))
    # 7. the result: per class, kept of attempted, and where the manifest is
    return GenerateResult(out=out_dir, manifest=out_dir / MANIFEST_CSV, classes=outcomes)


# ---------------------------------------------------------------------- steps, in order
def _check_seeds(token_settings: dict, attempts: int) -> None:
    first, batch = int(token_settings.get("seed", 0) or 0), int(token_settings.get("batch_size", 5) or 5)
    eval_first, n_eval = int(token_settings.get("eval_seed", 1000) or 0), int(token_settings.get("eval_images", 6) or 0)
    ours = range(GENERATE_SEED, GENERATE_SEED + attempts)
    for low, high, what in ((first, first + batch, "training"), (eval_first, eval_first + n_eval, "evaluation")):
        if low < ours.stop and ours.start < high:
            raise GenerateError(f"the run's {what} seeds {low}..{high - 1} overlap the dataset's seeds "
                                f"{ours.start}..{ours.stop - 1}; generate from a run audited with smaller --seed")


def _default_template(token_settings: dict) -> str:
    """The run's first token prompt as a template: "a photo of a {}" -> "a photo of a {token} {name}"."""
    templates = token_settings.get("templates") or ["a photo of a {}"]
    return str(templates[0]).replace("{}", "{token} {name}")


def _select(run, classes) -> list[_Class]:
    """The selected classes of the run, each finished with a token (by index: names only label folders)."""
    from probe.classifiers.select import select_classes
    from probe.run import TOKEN, class_index_of

    labels = run.read_labels()
    if not labels:
        raise GenerateError(f"{str(run.root)!r} has no labels.json; it is not a finished probe run")
    folders = {class_index_of(d.name): d for d in run.class_dirs()}
    finished = {m["class_index"]: (d, m) for d, m in run.finished_classes()}
    folders_of = class_folders(labels)
    chosen = select_classes(classes, labels)
    if isinstance(classes, str) and classes.strip().lower() == "all":
        chosen = [i for i in chosen if i in finished and finished[i][1]["status"] == "done"]
    out = []
    for index in chosen:
        directory, metrics = finished.get(index, (folders.get(index), None))
        if metrics is None or metrics.get("status") != "done" or not (directory / TOKEN).is_file():
            state = "was not audited" if metrics is None else (
                "failed in the audit" if metrics.get("status") != "done" else "has no token.safetensors")
            raise GenerateError(f"class {index} ({labels[index]!r}) {state} in {str(run.root)!r}; choose classes "
                                "with a token, or audit this one first")
        out.append(_Class(index, labels[index], metrics.get("class_name"), folders_of[index], directory / TOKEN))
    if not out:
        raise GenerateError(f"{str(run.root)!r} has no class with a token; run `probe audit` into it first")
    return out


def _check_out_outside_runs(out_dir: Path, run_root: Path) -> None:
    """A dataset never goes into a probe run directory: OUT/7-evil inside RUN/classes would read as a class of the run."""
    from probe.run import enclosing_run

    resolved = Path(os.path.realpath(out_dir))
    inside = enclosing_run(resolved)
    source = Path(os.path.realpath(run_root))
    if inside is not None or resolved == source or source in resolved.parents:
        where = inside or source
        raise GenerateError(f"--out {str(out_dir)!r} lies inside the probe run {str(where)!r}, where its folders would "
                            "read as the run's own files; pass a folder outside every run directory, e.g. "
                            f"{str(source.parent / (source.name + '-dataset'))!r}")


def _absolute(spec):
    """A model or generator as the dataset's settings record it: a path that exists, absolute (the same dataset
    resumes from any working directory; a relative path read from the run came back absolute from elsewhere and was
    refused as "a different --model"); anything else (a hub id, an alias) as given."""
    if isinstance(spec, str) and spec and Path(spec).expanduser().exists():
        return str(Path(os.path.abspath(Path(spec).expanduser())))
    return spec


def _same_file(saved, now) -> bool:
    """Whether two recorded specs name the same existing file or folder (one recorded before :func:`_absolute`)."""
    try:
        return isinstance(saved, str) and isinstance(now, str) and os.path.samefile(Path(saved).expanduser(),
                                                                                     Path(now).expanduser())
    except OSError:
        return False


def _open_output(out_dir: Path, identity: dict) -> dict[tuple[int, int], dict]:
    """The manifest rows already in ``out_dir`` (empty for a new folder); refuse another dataset or other settings."""
    from probe.run import LOCK, load_json

    if out_dir.exists() and not out_dir.is_dir():
        raise GenerateError(f"--out {str(out_dir)!r} is a file; pass a folder for the dataset")
    if not out_dir.exists():
        return {}
    saved = load_json(out_dir / SETTINGS)
    if saved is None:
        if any(p.name != LOCK for p in out_dir.iterdir()):
            raise GenerateError(f"--out {str(out_dir)!r} exists and is not a probe dataset; choose an empty or new folder")
        return {}
    if not isinstance(saved, dict):
        raise GenerateError(f"{str(out_dir / SETTINGS)!r} is not a probe dataset's settings; use another --out")
    for key, flag in _RESUME_FIELDS.items():
        if saved.get(key) != identity.get(key) and not _same_file(saved.get(key), identity.get(key)):
            raise GenerateError(f"--out {str(out_dir)!r} holds a dataset made with a different {flag} "
                                f"({saved.get(key)!r}, now {identity.get(key)!r}); use another --out, or the same "
                                "settings to resume")
    return _read_manifest(out_dir)


def _read_manifest(out_dir: Path) -> dict[tuple[int, int], dict]:
    path = out_dir / MANIFEST_CSV
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8") as f:
            raw = list(csv.DictReader(f))
        rows = {}
        for r in raw:
            row = {"class_index": int(r["class_index"]), "class_name": r["class_name"], "prompt": r["prompt"],
                   "seed": int(r["seed"]), "path": r["path"] or "", "target_prob": float(r["target_prob"]),
                   "predicted": int(r["predicted"]), "kept": r["kept"].strip().lower() == "true"}
            rows[(row["class_index"], row["seed"])] = row
        return rows
    except (OSError, csv.Error, UnicodeDecodeError, KeyError, ValueError, AttributeError) as e:
        raise GenerateError(f"{str(path)!r} is damaged ({type(e).__name__}: {e}); delete the --out folder to start "
                            "over") from None


def _reconcile(out_dir: Path, rows: dict, index: int) -> list[dict]:
    """This class's rows whose images are still there; a kept row whose file is gone is dropped (generated again)."""
    for key in [k for k in rows if k[0] == index]:
        if rows[key]["kept"]:
            full = _inside(out_dir, rows[key]["path"], strict=False) if rows[key]["path"] else None
            if full is None or not full.is_file():
                del rows[key]
    return [r for k, r in rows.items() if k[0] == index]


def _inside(out_dir: Path, rel: str, strict: bool = True) -> Path | None:
    """``out_dir/rel``, refused (or None) when it would lie outside ``out_dir``."""
    full = Path(os.path.normpath(out_dir / rel))
    if out_dir not in full.parents:
        if not strict:
            return None
        raise GenerateError(f"image path {rel!r} would lie outside --out {str(out_dir)!r}; refusing to write it")
    return full


def _inert_model_spec(spec):
    """The run's classifier as config.json names it, when loading it cannot run code: a run directory is data, so a
    ``package.module:function`` factory (an import and a call) is taken only from the command line. Files load
    without pickle trust unless ``--trust-pickle`` is typed (GenerateConfig.trust_pickle)."""
    from probe.classifiers.detect import looks_like_factory

    if isinstance(spec, str) and looks_like_factory(spec):
        raise GenerateError(f"the run's classifier is a Python factory ({spec!r}), which would import and run code named "
                            "by the run's config.json; pass it yourself with --model")
    return spec


def _load_token(generator, cls: _Class, generator_spec) -> str:
    from probe.errors import GeneratorError

    try:
        return generator.load_token(cls.token_file)
    except GeneratorError:
        raise
    except RuntimeError as e:  # a vector of another width: the token was learned on another generator
        raise GenerateError(f"the token of class {cls.index} ({cls.name!r}) does not fit generator {generator_spec!r} "
                            f"({str(e).splitlines()[0]}); pass the generator the run was audited with (--generator)") from e


def _write_manifest(out_dir: Path, rows: dict) -> None:
    """manifest.csv and manifest.parquet, each atomically, rows in (class, seed) order."""
    import pandas as pd

    ordered = [rows[k] for k in sorted(rows)]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(ordered)
    table = pd.DataFrame(ordered, columns=COLUMNS).astype({"class_index": "int64", "seed": "int64", "predicted": "int64",
                                                            "target_prob": "float64", "kept": "bool"})
    with atomic_path(out_dir / MANIFEST_PARQUET) as tmp:
        table.to_parquet(tmp, index=False)
    write_text(out_dir / MANIFEST_CSV, buffer.getvalue())  # last: the CSV is what a resume reads


@contextmanager
def out_dir_lock(out_dir: Path):
    """One writer per dataset folder (the run directory's OS file lock, released when the process ends); a second
    ``probe generate`` into the folder is refused naming this command."""
    from probe.errors import RunError
    from probe.run import LOCK, RunDir

    lock = RunDir(out_dir).lock()
    try:
        lock.__enter__()
    except RunError as error:
        if "in use by" not in str(error):
            raise
        try:
            holder = (out_dir / LOCK).read_text(encoding="utf-8", errors="replace").strip() or "another process"
        except OSError:
            holder = "another process"
        raise GenerateError(f"--out {str(out_dir)!r} is in use by another `probe generate` ({holder!r}; lock file "
                            f"{str(out_dir / LOCK)!r}); wait for it to finish, or use another --out") from None
    try:
        yield
    except BaseException:
        if not lock.__exit__(*sys.exc_info()):
            raise
    else:
        lock.__exit__(None, None, None)


def _describe(cls: _Class, kept: int, attempted: int) -> str:
    from rich.markup import escape

    from probe.display import terminal_safe

    # untrusted: one line, no markup, no control characters
    return escape(terminal_safe(f"{' '.join(cls.name.split())[:30]}: {kept} kept of {attempted}"))


def _bar(enabled: bool, console):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("eta"), TimeRemainingColumn(), console=console or Console(stderr=True),
                    disable=not enabled)
