"""The run directory's format (docs/run-format.md): the only code that reads and writes its files.

A run directory travels: every path stored in it is relative to it and resolved against it on read,
so a run copied or moved anywhere re-renders with ``probe report NEW_PATH`` from any working
directory. ``config.json`` carries ``format_version``; a run written in another format is refused
with the next step to take. Reads used for resuming are strict (a file of the wrong shape is a
``RunError`` naming it); the report reads leniently and turns problems into warnings.

This module imports no torch, so the report and ``probe.open_run`` stay light.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import socket
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterator

from probe.errors import RunError
from probe.files import slugify, write_json, write_text
from probe.run.records import (check_analysis, check_config, check_findings, check_labels, check_metrics,
                              nonfinite_field, plain_row)

FORMAT_VERSION = 1

CONFIG = "config.json"
LABELS = "labels.json"
SUMMARY = "summary.csv"
FINDINGS = "findings.json"
FINDINGS_TABLE = "findings.parquet"
ANALYSIS = "analysis.json"
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


def load_json(path: Path, *, finite: bool = True) -> Any:
    """The parsed file, or None when it does not exist; RunError when it cannot be read or parsed, or (``finite``)
    when it holds NaN or Infinity, which strict JSON (every file probe writes) never does: the error names the
    field. ``finite=False`` leaves them to the caller's record check (findings: one damaged record, not the file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
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
        found = [(class_index_of(p.name), p) for p in folder.iterdir() if p.is_dir()]
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

    # ------------------------------------------------------------------ config.json
    def has_config(self) -> bool:
        return (self.root / CONFIG).is_file()

    def read_config(self) -> dict | None:
        """config.json as written by ``write_config``; None when absent; RunError for another shape or version."""
        path = self.root / CONFIG
        data = load_json(path)
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
        return check_config(data, path)

    def write_config(self, data: dict) -> Path:
        return write_json(self.root / CONFIG, {"format_version": FORMAT_VERSION, **data})

    @staticmethod
    def audit_settings(config: dict | None) -> dict:
        """The saved AuditConfig (``config["audit"]``)."""
        audit = (config or {}).get("audit")
        return audit if isinstance(audit, dict) else {}

    @classmethod
    def token_settings(cls, config: dict | None) -> dict:
        """The saved TokenConfig (``config["audit"]["token"]``) with what the audit decided itself where the user left
        it unset: the images per chunk it chose from free GPU memory (``gradient_chunks``, source "auto"). The
        analysis, ``probe generate`` and ``test_cue`` read these effective settings, so they decode as the audit did."""
        token = cls.audit_settings(config).get("token")
        token = dict(token) if isinstance(token, dict) else {}
        chunks = (config or {}).get("gradient_chunks")
        chosen = chunks.get("max_batch") if isinstance(chunks, dict) and chunks.get("source") == "auto" else None
        if token.get("max_batch") is None and type(chosen) is int and chosen >= 1:
            token["max_batch"] = chosen
        return token

    # ------------------------------------------------------------------ labels.json
    def read_labels(self) -> list[str] | None:
        data = load_json(self.root / LABELS)
        if data is None:
            return None
        return check_labels(data, self.root / LABELS)

    def write_labels(self, labels: list) -> Path:
        return write_json(self.root / LABELS, [str(x) for x in labels])

    # ------------------------------------------------------------------ classes/<i>-<slug>/metrics.json
    def read_metrics(self, directory: Path, *, strict: bool = False) -> dict | None:
        """A finished class's metrics (checked by ``probe.run.records.check_metrics``); None when the class is
        unfinished: no metrics.json, or (for resume, where damage means "redo it") a damaged one. With ``strict``
        (the gate, compare), a metrics.json that exists but is damaged is a RunError naming the file and field."""
        path = Path(directory) / METRICS
        try:
            data = load_json(path)
            return None if data is None else check_metrics(data, path, class_index_of(Path(directory).name))
        except RunError:
            if strict:
                raise
            return None  # unreadable or misshapen: treated as unfinished and redone

    def write_metrics(self, directory: Path, metrics: dict) -> Path:
        for record in metrics.get("images") or []:
            record["path"] = self._stored(record.get("path"), directory)
        return write_json(Path(directory) / METRICS, metrics)

    def _stored(self, path, base: Path) -> str:
        """A path for a class's metrics: relative to the class folder, checked to stay inside the run."""
        if path is None:
            raise RunError("an image record has no path")
        full = Path(os.path.realpath(path if Path(path).is_absolute() else Path(base) / path))
        self.rel(full)  # raises when outside the run
        return Path(os.path.relpath(full, os.path.realpath(base))).as_posix()

    def finished_classes(self, *, strict: bool = False) -> list[tuple[Path, dict]]:
        """(folder, metrics) of every finished class (done or failed), in class-index order; ``strict`` as in
        :meth:`read_metrics`."""
        out = []
        for directory in self.class_dirs():
            metrics = self.read_metrics(directory, strict=strict)
            if metrics is not None:
                out.append((directory, metrics))
        return out

    # ------------------------------------------------------------------ history.csv
    def write_history(self, directory: Path, history: list[dict]) -> Path:
        return write_text(Path(directory) / HISTORY, _csv(HISTORY_COLUMNS, history))

    def read_history(self, directory: Path) -> list[dict[str, float | None]]:
        path = Path(directory) / HISTORY
        if not path.is_file():
            return []
        try:
            with open(path, newline="", encoding="utf-8") as f:
                return [{k: _number(v) for k, v in row.items() if k is not None} for row in csv.DictReader(f)]
        except (OSError, csv.Error, UnicodeDecodeError) as e:
            raise RunError(f"{str(path)!r} is unreadable ({e})") from e

    # ------------------------------------------------------------------ summary.csv
    def write_summary(self) -> list[dict]:
        """Rebuild summary.csv from every finished class's metrics.json."""
        rows = [summary_row(m) for _, m in self.finished_classes()]
        write_text(self.root / SUMMARY, _csv(SUMMARY_COLUMNS, rows))
        return rows

    def read_summary(self) -> dict[int, dict[str, str]]:
        path = self.root / SUMMARY
        if not path.is_file():
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
    def write_findings(self, rows: list[dict], columns: list[str]) -> None:
        """findings.json (the record) and findings.parquet (the same rows; ``details`` as a JSON string)."""
        import pandas as pd

        from probe.files import atomic_path, dumps_json

        write_json(self.root / FINDINGS, rows)
        table = pd.DataFrame([{**r, "details": dumps_json(r.get("details", {})).strip()} for r in rows], columns=columns)
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
        data = load_json(path, finite=False)  # a NaN is one damaged record, named by check_findings
        if data is None:
            path = self.root / FINDINGS_TABLE
            if not path.is_file():
                return None
            try:
                import pandas as pd

                table = pd.read_parquet(path)
                data = [plain_row(row) for row in table.to_dict(orient="records")]
            except Exception as e:  # pyarrow absent or the file damaged
                raise RunError(f"{str(path)!r} is unreadable ({type(e).__name__}: {str(e)[:200]}); re-run the analysis "
                               "or restore findings.json") from e
        return check_findings(data, path, on_error)

    def write_analysis(self, data: dict) -> Path:
        return write_json(self.root / ANALYSIS, data)

    def read_analysis(self) -> dict | None:
        """analysis.json checked (``probe.run.records.check_analysis``); None when absent; RunError naming the field."""
        data = load_json(self.root / ANALYSIS)
        return None if data is None else check_analysis(data, self.root / ANALYSIS)

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
            handle = open(path, "a+", encoding="utf-8")
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

    def initialise(self, labels: list, config: dict, check=None) -> None:
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
        saved = self.read_config() or {}
        settings = self.audit_settings(saved)
        scale = settings.get("scale")
        if settings.get("analyze", True) is False or not (isinstance(scale, dict) and scale.get("shard")):
            return None  # only a sharded run leaves its analysis to `probe report`
        labels = self.read_labels() or []
        classes = saved.get("classes")
        targets = [i for i in (classes if isinstance(classes, list) else []) if type(i) is int and 0 <= i < len(labels)]
        missing = [i for i in targets if self.read_metrics(self.class_dir(i, labels[i])) is None]
        if missing:
            shown = ", ".join(f"{i} {labels[i]}" for i in missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise RunError(f"{len(missing)} of {len(targets)} classes of {str(self.root)!r} have not run yet ({shown}); "
                           "finish every --shard first (the same command resumes), or pass --no-analyze to render "
                           "what exists")
        analysis = self.read_analysis()
        analysed = {str(k) for k in ((analysis or {}).get("classes") or {})}
        done = {str(m["class_index"]) for _, m in self.finished_classes() if m.get("status") == "done"}
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
