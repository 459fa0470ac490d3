"""The run directory's format (docs/run-format.md): the only code that reads and writes its files.

A run directory travels: every path stored in it is relative to it and resolved against it on read,
so a run copied or moved anywhere re-renders with ``probe report NEW_PATH`` from any working
directory. ``config.json`` carries ``format_version``; a run written in another format is refused
with the next step to take.

Records are typed (``probe.run.types``): ``RunConfig``, ``ClassRecord``, ``AnalysisSummary``, ``Finding``. One
writer per file takes the record (or its dict, made into the record first) and checks it as the reader will;
one reader per file returns the record, and the dict readers (``read_config``, ``read_metrics``,
``read_analysis``, ``read_findings``) are that record's ``to_dict``. One error policy: damage is a ``RunError``
of one line naming the file, the record and the field; a reader given ``on_error`` (the report) passes that
line to it and leaves the record out instead, and a resume treats a damaged metrics.json as unfinished.

This module imports no torch, so the report and ``probe.open_run`` stay light.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import socket
import stat
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from probe.errors import RunError
from probe.files import slugify, write_json, write_text
from probe.run.records import FINDING_FIELDS, check_findings, check_labels, nonfinite_field, plain_row
from probe.run.types import AnalysisSummary, ClassRecord, Finding, RunConfig

FORMAT_VERSION = 1

CONFIG = "config.json"
LABELS = "labels.json"
SUMMARY = "summary.csv"
FINDINGS = "findings.json"
FINDINGS_TABLE = "findings.parquet"
ANALYSIS = "analysis.json"
CONFIRMATION = "confirmation.json"  # the findings checked on the user's own images (probe confirm)
CONFIRMATION_DIR = "confirmation"  # its example thumbnails
METRICS = "metrics.json"
HISTORY = "history.csv"
TOKEN = "token.safetensors"
LOCK = ".probe.lock"
INIT_LOCK = ".probe-init.lock"  # held while a writer creates config.json and labels.json
CLAIMS = ".probe-claims"  # one lock file per class, held by the one writer of that class
CLASSES = "classes"


def is_internal(name: str) -> bool:
    """Probe's own bookkeeping at a run's top level (locks, claims, a file being written atomically), and
    labels.json, which a writer creates just before config.json: none of it makes a folder "not a probe run"."""
    return name.startswith(".probe") or name == LABELS or (name.startswith(".") and name.endswith(".tmp"))

SUMMARY_COLUMNS = ["class_index", "class_name", "slug", "status", "baseline_accuracy", "token_accuracy",
                   "baseline_target_prob", "token_target_prob", "eval_baseline_accuracy", "eval_token_accuracy",
                   "steps", "best_step", "token_moved", "seconds"]
HISTORY_COLUMNS = ["step", "loss", "accuracy", "mean_target_prob", "grad_norm", "lr", "event", "seconds"]
FINISHED = ("done", "failed")
_CLASS_DIR = re.compile(r"^(\d+)-")


def enclosing_run(path: str | Path) -> Path | None:
    """The probe run directory ``path`` is, or lies inside (a folder with config.json beside labels.json or classes/),
    or None. ``path`` is resolved first, so a link into a run counts as inside it."""
    resolved = Path(os.path.realpath(Path(path).expanduser()))
    for folder in (resolved, *resolved.parents):
        if (folder / CONFIG).is_file() and ((folder / LABELS).is_file() or (folder / CLASSES).is_dir()):
            return folder
    return None


class RunFormatError(RunError):
    """The run directory was written in another format version."""


def record_file(path: Path, root: Path | None = None) -> Path | None:
    """``path`` when it is a regular file (inside ``root`` once links are followed, where given); None when it does not
    exist. A record is never read from a FIFO or a device (reading one would hang or never end) nor, through a link,
    from outside its run: either is a RunError naming the file."""
    try:
        mode = os.stat(path).st_mode  # follows links; never blocks, where opening a FIFO would
    except (FileNotFoundError, NotADirectoryError):  # the latter: a folder above it is a file (--out taken/run)
        return None
    except OSError as e:
        raise RunError(f"{str(path)!r} cannot be read ({type(e).__name__}: {e}); check its permissions") from e
    if root is not None:
        real = Path(os.path.realpath(path))
        if real != root and root not in real.parents:
            raise RunError(f"{str(path)!r} is a link to {str(real)!r}, outside the run; a run's records are read only "
                           "from inside it: remove the link, or copy the file into the run")
    if not stat.S_ISREG(mode):
        raise RunError(f"{str(path)!r} is not a regular file (a folder, FIFO or device); restore the file or delete it "
                       "to have it rewritten")
    return path


def load_json(path: Path, *, finite: bool = True, root: Path | None = None) -> Any:
    """The parsed file, or None when it does not exist; RunError when it cannot be read or parsed, or (``finite``)
    when it holds NaN or Infinity, which strict JSON (every file probe writes) never does: the error names the
    field. ``finite=False`` leaves them to the caller's record check (findings: one damaged record, not the file).
    ``root``: the run the file belongs to (:func:`record_file`: a link out of it is refused)."""
    if record_file(path, root) is None:
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):  # the latter: a folder above it is a file (--out taken/run)
        return None
    except UnicodeDecodeError as e:
        raise RunError(f"{str(path)!r} is not UTF-8 text ({e}); delete it to have it rewritten") from e
    except OSError as e:
        raise RunError(f"{str(path)!r} cannot be read ({type(e).__name__}: {e}); check its permissions") from e
    constants: list[str] = []
    try:
        data = json.loads(text, parse_constant=lambda name: constants.append(name) or float(name))
    except (ValueError, RecursionError) as e:  # RecursionError: nested too deeply to be a probe file
        raise RunError(f"{str(path)!r} is not valid JSON ({type(e).__name__}: {str(e)[:200]}); delete it to have it "
                       "rewritten") from e
    if data is None:  # None means "no such file" to every caller; no probe file is a bare null
        raise RunError(f"{str(path)!r} holds only null, not a probe record; restore the file or delete it to have it "
                       "rewritten")
    if constants and finite:
        raise RunError(f"{str(path)!r}: field {nonfinite_field(data) or '?'} is {constants[0]}, not a finite number "
                       "(strict JSON stores a missing number as null); restore the file or delete it to have it rewritten")
    return data


def class_index_of(folder_name: str) -> int | None:
    """The class index a class folder's name starts with (``3-star`` -> 3), or None."""
    match = _CLASS_DIR.match(folder_name)
    return int(match.group(1)) if match else None


class RunDir:
    """One run directory. ``RunDir("runs/demo")`` holds its absolute path; nothing is written on construction."""

    def __init__(self, path: str | Path):
        # symlinks resolved once, here: a run reached through a link (a macOS temp folder, a shared data mount) is
        # the same run, and every path checked against ``root`` is compared as a real path
        self.root = Path(os.path.realpath(Path(path).expanduser()))
        self.given = str(path)  # as the user typed it, for messages
        if self.root.exists() and not self.root.is_dir():
            raise RunError(f"{str(path)!r} is a file, not a run directory; pass a folder (e.g. --out runs/NAME)")

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    def __fspath__(self) -> str:
        return str(self.root)

    # ------------------------------------------------------------------ paths
    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    def class_dir(self, index: int, name: str | None) -> Path:
        return self.root / CLASSES / f"{int(index)}-{slugify(name if name is not None else str(index))}"

    def class_dirs(self) -> list[Path]:
        """Every class folder, in class-index order."""
        folder = self.root / CLASSES
        if not folder.is_dir():
            return []
        # a class folder linked out of the run is no class of it
        found = [(class_index_of(p.name), p) for p in folder.iterdir() if p.is_dir() and self.inside(p) is not None]
        return [p for i, p in sorted((i, p) for i, p in found if i is not None)]

    def rel(self, path: str | Path) -> str:
        """``path`` (absolute, or relative to the working directory) as stored: relative to the run, '/'-separated."""
        full = Path(os.path.realpath(path))
        try:
            return full.relative_to(self.root).as_posix()
        except ValueError:
            raise RunError(f"{str(path)!r} lies outside the run directory {str(self.root)!r}; probe stores only "
                           "paths inside the run") from None

    def resolve(self, stored: str | Path, base: Path | None = None) -> Path | None:
        """A stored path (relative to ``base``, default the run) as a real path; None if it is absolute or escapes the
        run, by its name or through a symlink."""
        stored_path = PurePosixPath(str(stored).replace("\\", "/"))
        if not str(stored).strip() or stored_path.is_absolute() or re.match(r"^[A-Za-z]:", str(stored)):
            return None
        return self.inside(os.path.normpath((base or self.root) / Path(*stored_path.parts)))

    def inside(self, path: str | Path) -> Path | None:
        """``path`` as a real path (symlinks followed) when it lies inside the run; None otherwise."""
        real = Path(os.path.realpath(path))
        return real if real == self.root or self.root in real.parents else None

    def owns(self, path: str | Path) -> bool:
        """``path`` is no symbolic link itself and lies inside the run, through no link out of it: the one test
        before probe (re)writes or removes a folder or file of the run (a crafted link would steer the writes, or
        the removal, to wherever it points)."""
        return not Path(path).is_symlink() and self.inside(path) is not None

    # ------------------------------------------------------------------ config.json
    def has_config(self) -> bool:
        return (self.root / CONFIG).is_file()

    def require_config(self, error: type[Exception] = RunError, who: str = "") -> RunConfig:
        """config.json's record, or ``error``'s one line when this folder is no run directory (``who``: a prefix
        naming which run, e.g. ``"run A "``). The commands that consume a run open it with this."""
        config = self.read_run_config() if self.root.is_dir() else None
        if config is None:
            raise error(f"{who}{self.given!r} is not a probe run directory (no config.json); pass the --out folder of "
                        "`probe audit`")
        return config

    def read_run_config(self, on_error: Callable[[str], None] | None = None) -> RunConfig | None:
        """config.json as the typed record ``write_config`` wrote (its effective settings derived when the run predates
        them); None when absent; RunError for another shape or version (with ``on_error``: passed to it, None)."""
        return _policy(self._read_run_config, on_error)

    def _read_run_config(self) -> RunConfig | None:
        path = self.root / CONFIG
        data = load_json(path, root=self.root)
        if data is None:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("audit", {}), dict):
            raise RunError(f"{str(path)!r} is not a probe run config (expected a JSON object with an 'audit' object); "
                           "delete the folder or use another --out")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            age = "an older probe (no format_version)" if version is None else (
                f"format_version {version!r}, {'an older' if _older(version) else 'a newer or unknown'} format")
            raise RunFormatError(f"{str(self.root)!r} was written by {age}; this probe reads format {FORMAT_VERSION}: "
                           "re-run the audit into a new --out (or use the probe version that wrote it)")
        return RunConfig.from_dict(data, path)

    def read_config(self) -> dict | None:
        """config.json as a checked dict (``read_run_config().to_dict()`` with its format_version); None when absent."""
        record = self.read_run_config()
        return None if record is None else {"format_version": FORMAT_VERSION, **record.to_dict()}

    def write_config(self, config: RunConfig | dict) -> Path:
        """config.json: the record (a dict is made into one and checked first), with this probe's format_version."""
        if not isinstance(config, RunConfig):
            data = _normalised(config)
            data.pop("format_version", None)
            config = RunConfig.from_dict(data, self.root / CONFIG)
        return write_json(self.root / CONFIG, {"format_version": FORMAT_VERSION, **config.to_dict()})

    @staticmethod
    def run_config(config: RunConfig | dict | None) -> RunConfig:
        """``config`` as the typed record: a RunConfig as it is, a dict (config.json as read) checked, None empty."""
        if isinstance(config, RunConfig):
            return config
        return RunConfig.from_dict({k: v for k, v in (config or {}).items() if k != "format_version"})

    @classmethod
    def audit_settings(cls, config: RunConfig | dict | None) -> dict:
        """The saved AuditConfig as config.json holds it (``audit``), for display (typed: ``AuditConfig.saved``)."""
        return cls.run_config(config).audit

    @classmethod
    def token_settings(cls, config: RunConfig | dict | None) -> dict:
        """The saved TokenConfig with what the audit decided itself where the user left it unset
        (``RunConfig.token_settings``: the chunk size it chose from free GPU memory, the generator's steps and
        guidance). The analysis, ``probe generate`` and ``test_cue`` read these effective settings, so they sample
        and decode as the audit did."""
        return cls.run_config(config).token_settings()

    # ------------------------------------------------------------------ labels.json
    def read_labels(self) -> list[str] | None:
        data = load_json(self.root / LABELS, root=self.root)
        if data is None:
            return None
        return check_labels(data, self.root / LABELS)

    def write_labels(self, labels: list) -> Path:
        return write_json(self.root / LABELS, [str(x) for x in labels])

    # ------------------------------------------------------------------ classes/<i>-<slug>/metrics.json
    def read_class(self, directory: Path, *, strict: bool = False,
                   on_error: Callable[[str], None] | None = None) -> ClassRecord | None:
        """A finished class's record (checked by ``probe.run.records.check_metrics``); None when the class is
        unfinished: no metrics.json, or (for resume, where damage means "redo it") a damaged one. With ``strict``
        (the gate, compare), a metrics.json that exists but is damaged is a RunError naming the file and field;
        with ``on_error``, that line is passed to it."""
        path = Path(directory) / METRICS
        try:
            data = load_json(path, root=self.root)
            return None if data is None else ClassRecord.from_dict(data, path, class_index_of(Path(directory).name))
        except RunError as error:
            if strict and on_error is None:
                raise
            if on_error is not None:
                on_error(str(error))
            return None  # unreadable or misshapen: treated as unfinished and redone

    def read_metrics(self, directory: Path, *, strict: bool = False) -> dict | None:
        """:meth:`read_class` as the dict metrics.json holds."""
        record = self.read_class(directory, strict=strict)
        return None if record is None else record.to_dict()

    def write_metrics(self, directory: Path, metrics: ClassRecord | dict) -> Path:
        """A class's metrics.json: the record (a dict is made into one, its image paths stored relative to the class
        folder in place, and checked as the reader checks it: a RunError naming the field otherwise)."""
        path = Path(directory) / METRICS
        if isinstance(metrics, ClassRecord):
            images = tuple({**r, "path": self._stored(r.get("path"), directory)} for r in metrics.images)
            record = ClassRecord.from_dict(_normalised({**metrics.to_dict(), "images": list(images)}), path,
                                           class_index_of(Path(directory).name))
        else:
            for image in metrics.get("images") or []:
                image["path"] = self._stored(image.get("path"), directory)
            record = ClassRecord.from_dict(_normalised(metrics), path, class_index_of(Path(directory).name))
        return write_json(path, record.to_dict())

    def _stored(self, path, base: Path) -> str:
        """A path for a class's metrics: relative to the class folder, checked to stay inside the run."""
        if path is None:
            raise RunError("an image record has no path")
        full = Path(os.path.realpath(path if Path(path).is_absolute() else Path(base) / path))
        self.rel(full)  # raises when outside the run
        return Path(os.path.relpath(full, os.path.realpath(base))).as_posix()

    def finished_records(self, *, strict: bool = False) -> list[tuple[Path, ClassRecord]]:
        """(folder, record) of every finished class (done or failed), in class-index order; ``strict`` as in
        :meth:`read_class`."""
        out = []
        for directory in self.class_dirs():
            record = self.read_class(directory, strict=strict)
            if record is not None:
                out.append((directory, record))
        return out

    def finished_classes(self, *, strict: bool = False) -> list[tuple[Path, dict]]:
        """:meth:`finished_records` with each record as the dict metrics.json holds."""
        return [(directory, record.to_dict()) for directory, record in self.finished_records(strict=strict)]

    # ------------------------------------------------------------------ history.csv
    def write_history(self, directory: Path, history: list[dict]) -> Path:
        return write_text(Path(directory) / HISTORY, _csv(HISTORY_COLUMNS, history))

    def read_history(self, directory: Path) -> list[dict[str, float | None]]:
        path = Path(directory) / HISTORY
        if record_file(path, self.root) is None:
            return []
        try:
            with open(path, newline="", encoding="utf-8") as f:
                return [{k: _number(v) for k, v in row.items() if k is not None} for row in csv.DictReader(f)]
        except (OSError, csv.Error, UnicodeDecodeError) as e:
            raise RunError(f"{str(path)!r} is unreadable ({e})") from e

    # ------------------------------------------------------------------ summary.csv
    def write_summary(self) -> list[dict]:
        """Rebuild summary.csv from every finished class's metrics.json."""
        rows = [summary_row(m.to_dict()) for _, m in self.finished_records()]
        write_text(self.root / SUMMARY, _csv(SUMMARY_COLUMNS, rows))
        return rows

    def read_summary(self) -> dict[int, dict[str, str]]:
        path = self.root / SUMMARY
        if record_file(path, self.root) is None:
            return {}
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
        except (OSError, csv.Error, UnicodeDecodeError) as e:
            raise RunError(f"{str(path)!r} is unreadable ({e})") from e
        out = {}
        for row in rows:
            index = _number(row.get("class_index"))
            if index is not None and index >= 0 and index == int(index):  # other rows are no class: left out
                out[int(index)] = row
        return out

    # ------------------------------------------------------------------ findings and analysis
    def has_findings(self) -> bool:
        """Whether the analysis has written the run's findings (passing or not; none is an empty list)."""
        return (self.root / FINDINGS).is_file()

    def write_findings(self, findings: list[Finding | dict], columns: list[str] | tuple[str, ...] = FINDING_FIELDS) -> None:
        """findings.json (the records) and findings.parquet (the same rows; ``details`` as a JSON string). Each
        finding (a ``Finding`` or its dict) is checked as the reader checks it: a RunError naming the record and
        field otherwise."""
        import pandas as pd

        from probe.files import atomic_path, dumps_json

        rows = _normalised([f.to_dict() if isinstance(f, Finding) else f for f in findings])
        rows = check_findings(rows, self.root / FINDINGS)
        write_json(self.root / FINDINGS, rows)
        table = pd.DataFrame([{**r, "details": dumps_json(r.get("details", {})).strip()} for r in rows],
                             columns=list(columns))
        if "evidence" in table:
            table["evidence"] = table["evidence"].apply(lambda v: list(v) if isinstance(v, (list, tuple)) else [])
        with atomic_path(self.root / FINDINGS_TABLE) as tmp:
            table.to_parquet(tmp, index=False)

    def read_findings(self, on_error: Callable[[str], None] | None = None) -> list[dict] | None:
        """The findings as checked plain dicts (``probe.run.records.check_finding``: the fields of ``Finding``);
        None when the analysis has not run. findings.json is the record; when only findings.parquet is left it is
        read to the very same values (lists as lists, ``details`` parsed, a missing number as None, numpy scalars
        as Python). A damaged record is a RunError naming the file, the record and the field; with ``on_error``
        (the report, which renders what it can) the record is left out and its message passed to ``on_error``."""
        path = self.root / FINDINGS
        data = load_json(path, finite=False, root=self.root)  # a NaN is one damaged record, named by check_findings
        if data is None:
            path = self.root / FINDINGS_TABLE
            if record_file(path, self.root) is None:
                return None
            try:
                import pandas as pd

                table = pd.read_parquet(path)
                data = [plain_row(row) for row in table.to_dict(orient="records")]
            except Exception as e:  # pyarrow absent or the file damaged
                raise RunError(f"{str(path)!r} is unreadable ({type(e).__name__}: {str(e)[:200]}); re-run the analysis "
                               "or restore findings.json") from e
        return check_findings(data, path, on_error)

    def require_findings(self, error: type[Exception] = RunError, then: str = "") -> list[Finding]:
        """The findings as records, or ``error``'s one line when the analysis wrote none (``then``: what to do)."""
        findings = self.read_finding_records()
        if findings is None:
            raise error(f"{self.given!r} has no findings.json (the analysis was switched off or failed); "
                        + (then or "run `probe audit` with the analysis on into it first"))
        return findings

    def read_finding_records(self, on_error: Callable[[str], None] | None = None) -> list[Finding] | None:
        """:meth:`read_findings` as ``Finding`` records, in file order; None when the analysis has not run."""
        rows = self.read_findings(on_error)
        return None if rows is None else [Finding.from_dict(r) for r in rows]

    def write_analysis(self, summary: AnalysisSummary | dict) -> Path:
        """analysis.json: the record (a dict is made into one and checked first: a RunError naming the field)."""
        if not isinstance(summary, AnalysisSummary):
            summary = AnalysisSummary.from_dict(_normalised(summary), self.root / ANALYSIS)
        return write_json(self.root / ANALYSIS, summary.to_dict())

    def read_analysis_summary(self, on_error: Callable[[str], None] | None = None) -> AnalysisSummary | None:
        """analysis.json as its record (checked by ``probe.run.records.check_analysis``); None when absent; RunError
        naming the field (with ``on_error``: passed to it, None)."""
        def read():
            data = load_json(self.root / ANALYSIS, root=self.root)
            return None if data is None else AnalysisSummary.from_dict(data, self.root / ANALYSIS)

        return _policy(read, on_error)

    def read_analysis(self) -> dict | None:
        """:meth:`read_analysis_summary` as the dict analysis.json holds."""
        record = self.read_analysis_summary()
        return None if record is None else record.to_dict()

    # ------------------------------------------------------------------ classes/<i>-<slug>/analysis/tests.json
    def write_class_analysis(self, directory: Path, record) -> Path:
        """A class's measured analysis (``probe.run.class_analysis.ClassAnalysis``; a dict is made into one and
        checked first), written atomically: the driver decides from these (probe/analysis/decide.py)."""
        from probe.run.class_analysis import CLASS_ANALYSIS, ClassAnalysis

        path = Path(directory) / CLASS_ANALYSIS
        data = _normalised(record.to_dict() if isinstance(record, ClassAnalysis) else record)
        ClassAnalysis.from_dict(data, path, class_index_of(Path(directory).name))  # written as the reader accepts it
        path.parent.mkdir(parents=True, exist_ok=True)
        return write_json(path, data)

    def read_class_analysis(self, directory: Path, *, strict: bool = False):
        """A class's measured analysis record, or None when absent; a damaged one is None too (it is measured
        again), or with ``strict`` a RunError naming the file and field."""
        from probe.run.class_analysis import CLASS_ANALYSIS, ClassAnalysis

        path = Path(directory) / CLASS_ANALYSIS
        if self.inside(path) is None:
            return None  # a symlink out of the run is no record of it
        try:
            data = load_json(path, root=self.root)
            return None if data is None else ClassAnalysis.from_dict(data, path, class_index_of(Path(directory).name))
        except RunError:
            if strict:
                raise
            return None

    # ------------------------------------------------------------------ the analysis journal
    def journal(self, key: str, widths: tuple[int, ...]):
        """The analysis journal of one unit (``probe.run.journal.Journal``: what an interrupted analysis observed,
        read back when it runs again), or None where its folder would lie outside the run (a link)."""
        from probe.run.journal import JOURNAL, Journal

        folder = self.path(JOURNAL, slugify(key, 64))
        return Journal(folder, widths) if self.inside(folder) is not None else None

    def clear_journals(self) -> None:
        """Remove every analysis journal (the findings are decided: nothing is left to resume)."""
        from probe.run.journal import JOURNAL

        folder = self.path(JOURNAL)
        if folder.is_dir() and self.owns(folder):
            shutil.rmtree(folder, ignore_errors=True)

    def write_confirmation(self, confirmation) -> Path:
        """confirmation.json: a ``probe.run.confirmation.Confirmation`` (a dict is made into one and checked first)."""
        from probe.run.confirmation import Confirmation

        if not isinstance(confirmation, Confirmation):
            confirmation = Confirmation.from_dict(_normalised(confirmation), self.root / CONFIRMATION)
        data = _normalised(confirmation.to_dict())
        Confirmation.from_dict(data, self.root / CONFIRMATION)  # written only as the reader will accept it
        return write_json(self.root / CONFIRMATION, data)

    def read_confirmation(self, on_error: Callable[[str], None] | None = None):
        """confirmation.json as its record (``probe.run.confirmation.Confirmation``, checked); None when absent
        (`probe confirm` has not run); RunError naming the field (with ``on_error``: passed to it, None)."""
        from probe.run.confirmation import Confirmation

        def read():
            data = load_json(self.root / CONFIRMATION, root=self.root)
            return None if data is None else Confirmation.from_dict(data, self.root / CONFIRMATION)

        return _policy(read, on_error)

    # ------------------------------------------------------------------ locks: one protocol for every writer
    # Every writer (a full audit, each --shard, each Ray worker, probe report's analysis) follows it:
    # 1. the run's lock (LOCK) or its shard's own: a second identical writer is refused;
    # 2. initialisation under INIT_LOCK: labels.json, then config.json last, so to every other process a run
    #    either has a complete config.json or holds nothing of its own yet;
    # 3. each class under its claim (CLAIMS/<index>.lock): exactly one writer learns and writes a class; another
    #    that meets the claim leaves the class to it (and a full audit waits for it before the analysis).
    # All are OS file locks (flock), released by the kernel when a process dies: no stale lock survives a kill.
    @contextmanager
    def lock(self, name: str | None = None, *, wait: bool = False, command: str = "probe audit") -> Iterator[None]:
        """Hold the run directory for one writer: a second one is refused, naming the lock (``wait``: block instead)."""
        with self._flock(self.root / (name or LOCK), wait=wait) as held:
            if not held:
                raise RunError(f"{str(self.root)!r} is in use by another {command} ({held.holder}; lock file "
                               f"{str(self.root / (name or LOCK))!r}); wait for it to finish, or use another --out")
            yield

    @contextmanager
    def claim(self, index: int, *, wait: bool = False) -> Iterator["Held"]:
        """Claim class ``index`` for this process: the yielded value is true when held, false (naming the holder)
        when another process holds it and ``wait`` is False."""
        with self._flock(self.root / CLAIMS / f"{int(index)}.lock", wait=wait) as held:
            yield held

    @contextmanager
    def _flock(self, path: Path, *, wait: bool) -> Iterator["Held"]:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot write {str(self.root)!r} ({e.strerror or type(e).__name__}); choose a writable "
                           "--out or fix its permissions") from e
        # a lock file (or the claims folder) linked elsewhere would have had the writer's pid written through it
        if not (self.owns(path.parent) and self.owns(path)):
            linked = path if path.is_symlink() else path.parent
            raise RunError(f"{str(linked)!r} is a link to {os.path.realpath(linked)!r}; a run's lock files are written "
                           "only inside it: remove the link")
        try:
            flags = os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_NOFOLLOW", 0)  # no link made since the check
            handle = os.fdopen(os.open(path, flags, 0o666), "a+", encoding="utf-8")
        except OSError as e:
            raise RunError(f"cannot write {str(self.root)!r} ({e.strerror or type(e).__name__}); choose a writable "
                           "--out or fix its permissions") from e
        try:
            try:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except ImportError:  # not POSIX: no lock, as before
                pass
            except OSError:
                handle.seek(0)
                yield Held(False, handle.read().strip() or "another process")
                return
            handle.seek(0)
            handle.truncate()
            handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
            handle.flush()
            yield Held(True, "this process")
        finally:
            handle.close()

    def initialise(self, labels: list, config: RunConfig | dict, check=None) -> None:
        """Write labels.json and config.json once, atomically as a pair (step 2 of the protocol): under INIT_LOCK,
        ``check()`` (is this run still ours to join?) runs first; config.json, written last, marks the run complete."""
        with self.lock(INIT_LOCK, wait=True):
            if check is not None:
                check()
            if not self.has_config():
                self.write_labels(labels)
                self.write_config(config)

    # ------------------------------------------------------------------ what `probe report` may still have to do
    def pending_analysis(self) -> str | None:
        """Why a sharded run still needs its analysis, or None when nothing is pending (or the run is not sharded).
        Raises a one-line RunError when classes of other shards have not run yet. Reads files only."""
        saved = self.read_run_config() or RunConfig()
        # the settings as saved, not typed (AuditConfig.saved): `probe report` asks this of every run, also of one whose
        # settings do not read back (partial, or holding an older probe's field), and only a sharded run needs them
        settings = saved.audit
        scale = settings.get("scale")
        if settings.get("analyze", True) is False or not (isinstance(scale, dict) and scale.get("shard")):
            return None  # only a sharded run leaves its analysis to `probe report`
        labels = self.read_labels() or []
        targets = [i for i in (saved.classes or ()) if 0 <= i < len(labels)]
        missing = [i for i in targets if self.read_class(self.class_dir(i, labels[i])) is None]
        if missing:
            shown = ", ".join(f"{i} {labels[i]}" for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise RunError(f"{len(missing)} of {len(targets)} classes of {str(self.root)!r} have not run yet ({shown}); "
                           "finish every --shard first (the same command resumes), or pass --no-analyze to render "
                           "what exists")
        analysis = self.read_analysis_summary()
        analysed = {str(k) for k in ((analysis.classes if analysis is not None else None) or {})}
        done = {str(m.class_index) for _, m in self.finished_records() if m.done}
        if analysis is not None and done <= analysed:
            return None
        return ("every shard is done but the run is not analysed" if analysis is None else
                "classes finished after the last analysis are not analysed")

class Held:
    """Whether a lock or a class claim is held by this process; ``holder`` names who has it otherwise."""

    def __init__(self, held: bool, holder: str):
        self.held, self.holder = held, holder

    def __bool__(self) -> bool:
        return self.held

    def __repr__(self) -> str:
        return f"Held({self.held}, {self.holder!r})"


def _policy(read: Callable[[], Any], on_error: Callable[[str], None] | None) -> Any:
    """The one error policy of the readers: a RunError propagates, or with ``on_error`` its line goes there (None).
    A run of another format is refused whatever the reader (no record of it can be read)."""
    try:
        return read()
    except RunError as error:
        if on_error is None or isinstance(error, RunFormatError):
            raise
        on_error(str(error))
        return None


def _normalised(data: Any) -> Any:
    """``data`` as the file will hold it (strict JSON: tuples as lists, numpy values plain, NaN as null), so a writer
    checks exactly what its reader will read."""
    from probe.files import dumps_json

    return json.loads(dumps_json(data))


def _older(version) -> bool:
    return isinstance(version, int) and not isinstance(version, bool) and version < FORMAT_VERSION


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None  # NaN and infinities are no measurement (as in JSON: null)


def _csv(columns: list[str], rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def summary_row(metrics: dict) -> dict:
    """One summary.csv row from a class's metrics (missing or misshapen blocks give empty cells)."""
    def block(source, key):
        value = source.get(key) if isinstance(source, dict) else None
        return value if isinstance(value, dict) else {}

    def score(kind, key, source=metrics):
        return block(source, kind).get(key)

    eval_model = block(metrics, "eval_model")
    return {
        "class_index": metrics["class_index"], "class_name": metrics.get("class_name"), "slug": metrics.get("slug"),
        "status": metrics["status"], "baseline_accuracy": score("baseline", "accuracy"),
        "token_accuracy": score("token", "accuracy"), "baseline_target_prob": score("baseline", "mean_target_prob"),
        "token_target_prob": score("token", "mean_target_prob"),
        "eval_baseline_accuracy": score("baseline", "accuracy", eval_model),
        "eval_token_accuracy": score("token", "accuracy", eval_model),
        "steps": metrics.get("steps"), "best_step": metrics.get("best_step"),
        "token_moved": block(metrics, "token_change").get("moved"), "seconds": metrics.get("seconds"),
    }
