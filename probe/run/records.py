"""The records of a run directory, validated where they are read (docs/run-format.md, "Validation").

A run directory is data that travels: it may be crafted, damaged or half-written. ``probe.run.RunDir``
reads every file through one check here, so every reader (the gate, compare, the report, the notebook API)
sees the same plain Python records: the right types, finite numbers, known kinds and statuses. Damage is a
``RunError`` of one line naming the file, the record, the field and the fix; lenient readers (the report)
turn it into a warning and leave the record out.

One check per record kind: :func:`check_finding` (a row of findings.json or findings.parquet, the same
fields as ``probe.run.types.Finding``), :func:`check_metrics` (a class's metrics.json),
:func:`check_analysis` (analysis.json: the parts that readers use, the per-pair data in full),
:func:`check_config` and :func:`check_labels`. The typed records built from the checked data (``ClassRecord``, ``AnalysisSummary``, ``RunConfig``, ``Finding``)
are in ``probe.run.types``. Torch-free: the report and the gate stay light.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from probe.errors import RunError

FINDING_KINDS = ("sufficiency", "necessity", "token-shift", "off-object")
PAIR_KINDS = ("sufficiency", "necessity", "token-shift")  # cue tests: per-pair data in analysis.json, effects in probability
SHARE_KINDS = ("off-object",)  # measured shares of the attribution, not changes in probability
STATUSES = ("passes", "weak", "inconclusive", "screened", "unverified")
CONFIRMED = ("passes", "weak", "unverified")  # statuses of a test decided on confirmation pairs (or measured: off-object)
UNCHECKED = "unchecked"  # checked_by when nothing checked the generated images (such a finding never passes)
# analysis.json's note when the concept model could not be loaded, before the one-line reason (which names the fix)
UNCHECKED_NOTE = "interventions unchecked, the cue findings are unverified: "
NOT_RECORDED = "not recorded"  # checked_by of a finding written before probe recorded who checked its images
STRENGTHS = ("strong", "weak")
UNITS = ("pairs", "images")
FINISHED = ("done", "failed")

_FINDING_FIX = "re-run the analysis (the same `probe audit` command resumes and re-analyses) or restore the file"
_ANALYSIS_FIX = _FINDING_FIX
_METRICS_FIX = "delete that metrics.json to have the class redone (the same `probe audit` command resumes)"


class _Bad(Exception):
    """One field's problem, turned into a RunError naming the file and the record by the caller."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ------------------------------------------------------------------------------------------ field checks
def _int(field: str, value: Any, *, minimum: int = 0, maximum: int = 2 ** 53) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Bad(field, f"is {_shown(value)}, not a whole number")
    if not minimum <= value <= maximum:
        raise _Bad(field, f"is {value}, outside {minimum}..{maximum}")
    return value


def _num(field: str, value: Any, *, low: float = -math.inf, high: float = math.inf, null: bool = True) -> float | None:
    if value is None and null:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Bad(field, f"is {_shown(value)}, not a number")
    number = float(value)
    if not math.isfinite(number):
        raise _Bad(field, f"is {value!r}, not a finite number (strict JSON stores a missing number as null)")
    if not low <= number <= high:
        raise _Bad(field, f"is {number:g}, outside {low:g}..{high:g}")
    return number


def _str(field: str, value: Any, *, null: bool = False) -> str | None:
    if value is None and null:
        return None
    if not isinstance(value, str):
        raise _Bad(field, f"is {_shown(value)}, not text")
    return value


def _choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _Bad(field, f"is {_shown(value)}, not one of {', '.join(choices)}")
    return value


def _bool(field: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad(field, f"is {_shown(value)}, not true or false")
    return value


def _dict(field: str, value: Any, *, null: bool = False) -> dict | None:
    if value is None and null:
        return None
    if not isinstance(value, dict):
        raise _Bad(field, f"is {_shown(value)}, not a JSON object")
    return value


def _list(field: str, value: Any) -> list:
    if not isinstance(value, list):
        raise _Bad(field, f"is {_shown(value)}, not a list")
    return value


def _finite_tree(field: str, value: Any, depth: int = 0) -> None:
    """Every number inside ``value`` (nested lists and objects) is finite."""
    if depth > 32:
        raise _Bad(field, "is nested too deeply")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Bad(field, f"holds {value!r}, not a finite number")
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_tree(f"{field}.{k}", v, depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite_tree(f"{field}[{i}]", v, depth + 1)


def nonfinite_field(data: Any) -> str | None:
    """Where the first NaN or Infinity in parsed JSON is (``pairs[0].screen.values[2]``), or None."""
    try:
        _finite_tree("", data)
    except _Bad as bad:
        return str(bad).split(" ", 1)[0].lstrip(".") or "(top level)"
    return None


def _unknown(value: dict, known, field: str = "") -> None:
    for key in value:
        if key not in known:
            raise _Bad(f"{field}.{key}" if field else str(key), "is not a known field")


def _error(path: Path | str, where: str, bad: _Bad, fix: str) -> RunError:
    return RunError(f"{str(path)!r}: {where}{': ' if where else ''}field {bad}; {fix}")


# ------------------------------------------------------------------------------------------ findings
# the fields of probe.run.types.Finding, as Finding.to_dict writes them (null: not a finite number)
FINDING_FIELDS = ("class_index", "class_name", "cue", "kind", "effect", "ci_low", "ci_high", "n_images", "evidence",
                  "passes", "strength", "sentence", "details", "p", "q", "status", "unit", "excluded", "attempted",
                  "checked_by")
_FINDING_REQUIRED = FINDING_FIELDS[:12]  # written by every probe that wrote findings; the rest have defaults


def check_finding(row: Any, path: Path | str, index: int) -> dict:
    """One finding record (a row of findings.json, or of findings.parquet made plain by :func:`plain_row`),
    checked and completed with the defaults of older analyses; RunError naming the file, the record and
    the field otherwise. A passing finding must carry a finite effect, and ``passes`` must agree with
    ``status``."""
    where = f"finding {index}"
    try:
        return _finding(row)
    except _Bad as bad:
        raise _error(path, where, bad, _FINDING_FIX) from None


def _finding(row: Any) -> dict:
    if not isinstance(row, dict):
        raise _Bad("record", f"is {_shown(row)}, not a JSON object")
    _unknown(row, FINDING_FIELDS)
    missing = [k for k in _FINDING_REQUIRED if k not in row]
    if missing:
        raise _Bad(missing[0], "is missing")
    kind = _choice("kind", row["kind"], FINDING_KINDS)
    passes = _bool("passes", row["passes"])
    out = {
        "class_index": _int("class_index", row["class_index"], maximum=10 ** 7),
        "class_name": _str("class_name", row["class_name"]),
        "cue": _str("cue", row["cue"]),
        "kind": kind,
        "effect": _num("effect", row["effect"], low=-1.0, high=1.0),
        "ci_low": _num("ci_low", row["ci_low"]),
        "ci_high": _num("ci_high", row["ci_high"]),
        "n_images": _int("n_images", row["n_images"], maximum=10 ** 9),
        "evidence": [_str(f"evidence[{i}]", e) for i, e in enumerate(_list("evidence", row["evidence"]))],
        "passes": passes,
        "strength": _choice("strength", row["strength"], STRENGTHS),
        "sentence": _str("sentence", row["sentence"]),
        "details": _dict("details", row.get("details", {}), null=True) or {},
        "p": _num("p", row.get("p"), low=0.0, high=1.0),
        "q": _num("q", row.get("q"), low=0.0, high=1.0),
        "status": _choice("status", row.get("status", "passes" if passes else "weak"), STATUSES),
        "unit": _choice("unit", row.get("unit", "images"), UNITS),  # before units existed, counts were images
        "excluded": _int("excluded", row.get("excluded", 0), maximum=10 ** 9),
        "attempted": _int("attempted", row.get("attempted", 0), maximum=10 ** 9),
        "checked_by": _str("checked_by", row.get("checked_by", NOT_RECORDED)),  # before probe recorded who checked
    }
    _finite_tree("details", out["details"])
    if out["ci_low"] is not None and out["ci_high"] is not None and out["ci_low"] > out["ci_high"]:
        raise _Bad("ci_low", f"({out['ci_low']:g}) is above ci_high ({out['ci_high']:g})")
    if passes != (out["status"] == "passes"):
        raise _Bad("passes", f"is {str(passes).lower()} but status is {out['status']!r}")
    if passes and out["effect"] is None:
        raise _Bad("effect", "is null on a passing finding")
    return out


def plain(value: Any) -> Any:
    """A value from pandas (numpy scalars and arrays, NaN and NA for a missing value) as plain Python."""
    if value is None:
        return None
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy arrays and scalars
        value = value.tolist()
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None  # a table stores a missing number as NaN
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def plain_row(row: dict) -> dict:
    """A findings.parquet row as findings.json holds it: plain values, ``details`` parsed from its JSON text (text
    that does not parse is kept, and :func:`check_finding` names the field)."""
    out = {str(k): plain(v) for k, v in row.items()}
    details = out.get("details")
    if isinstance(details, str):
        try:
            out["details"] = json.loads(details) if details.strip() else {}
        except (ValueError, RecursionError):
            pass
    return out


def check_findings(data: Any, path: Path | str, on_error: Callable[[str], None] | None = None) -> list[dict]:
    """Every record of findings.json/.parquet checked (:func:`check_finding`). With ``on_error`` (lenient
    readers), a damaged record is left out and its one-line message passed to ``on_error``."""
    if not isinstance(data, list):
        raise RunError(f"{str(path)!r} is not a list of findings (it holds {type(data).__name__}); {_FINDING_FIX}")
    out = []
    for index, row in enumerate(data):
        try:
            out.append(check_finding(row, path, index))
        except RunError as error:
            if on_error is None:
                raise
            on_error(str(error))
    return out


# ------------------------------------------------------------------------------------------ metrics.json
def check_metrics(data: Any, path: Path | str, folder_index: int | None = None) -> dict:
    """A finished class's metrics.json (docs/run-format.md): status done or failed, the class index of its
    folder, score blocks of finite numbers in 0..1. Unknown fields are kept (the record grows: worker
    provenance, token change); RunError naming the file and the field otherwise."""
    try:
        return _metrics(data, folder_index)
    except _Bad as bad:
        raise _error(path, "", bad, _METRICS_FIX) from None


METRICS_TEXT = ("slug", "token_string", "init_word", "stopped", "objective")  # text or null where present


def _scores(field: str, value: Any) -> None:
    block = _dict(field, value, null=True)
    if block is None:
        return
    for key in ("accuracy", "mean_target_prob"):
        _num(f"{field}.{key}", block.get(key), low=0.0, high=1.0)
    if block.get("n") is not None:
        _int(f"{field}.n", block["n"], maximum=10 ** 9)


def _metrics(data: Any, folder_index: int | None) -> dict:
    if not isinstance(data, dict):
        raise _Bad("record", f"is {_shown(data)}, not a JSON object")
    if "status" not in data:
        raise _Bad("status", "is missing")
    _choice("status", data["status"], FINISHED)
    if "class_index" not in data:
        raise _Bad("class_index", "is missing")
    index = _int("class_index", data["class_index"], maximum=10 ** 7)
    if folder_index is not None and index != folder_index:
        raise _Bad("class_index", f"is {index} but the folder is class {folder_index}")
    _str("class_name", data.get("class_name"), null=True)
    _str("error", data.get("error"), null=True)
    for key in ("baseline", "token"):
        _scores(key, data.get(key))
    eval_model = _dict("eval_model", data.get("eval_model"), null=True)
    if eval_model is not None:
        for key in ("baseline", "token"):
            _scores(f"eval_model.{key}", eval_model.get(key))
    for key in ("steps", "best_step"):
        if data.get(key) is not None:
            _int(key, data[key], maximum=10 ** 9)
    _num("seconds", data.get("seconds"), low=0.0)
    for i, record in enumerate(_list("images", data.get("images", []))):
        _str(f"images[{i}].path", _dict(f"images[{i}]", record).get("path"))
    for key in ("token_change", "prompts", "worker"):
        _dict(key, data.get(key), null=True)
    for key in METRICS_TEXT:
        _str(key, data.get(key), null=True)
    for key in ("train_seeds", "eval_seeds"):
        if data.get(key) is not None:
            for i, seed in enumerate(_list(key, data[key])):
                _int(f"{key}[{i}]", seed, maximum=2 ** 63)
    if data.get("traceback") is not None:
        for i, line in enumerate(_list("traceback", data["traceback"])):
            _str(f"traceback[{i}]", line)
    return data


# ------------------------------------------------------------------------------------------ analysis.json
PAIR_FIELDS = ("kind", "class_index", "class_name", "cue", "screen", "confirm")
STAGE_FIELDS = ("keys", "values", "attempted", "excluded")


def check_analysis(data: Any, path: Path | str) -> dict:
    """analysis.json: an object whose per-pair data (``pairs``, docs/analysis.md) is complete and typed (keys
    are text, values finite, one value per key), and whose ``config``, ``classes``, ``cues`` and ``tests``
    have the documented shapes; RunError naming the file and the field otherwise."""
    try:
        return _analysis(data)
    except _Bad as bad:
        raise _error(path, "", bad, _ANALYSIS_FIX) from None


def _stage(field: str, value: Any) -> None:
    block = _dict(field, value)
    _unknown(block, STAGE_FIELDS, field)
    keys = [_str(f"{field}.keys[{i}]", k) for i, k in enumerate(_list(f"{field}.keys", block.get("keys", [])))]
    values = [_num(f"{field}.values[{i}]", v, low=-1.0, high=1.0)
              for i, v in enumerate(_list(f"{field}.values", block.get("values", [])))]
    if len(keys) != len(values):
        raise _Bad(f"{field}.values", f"has {len(values)} values for {len(keys)} keys")
    for key in ("attempted", "excluded"):
        if key in block:
            _int(f"{field}.{key}", block[key], maximum=10 ** 9)


def _analysis(data: Any) -> dict:
    if not isinstance(data, dict):
        raise _Bad("record", f"is {_shown(data)}, not a JSON object")
    config = _dict("config", data.get("config"), null=True)
    if config is not None:
        thresholds = _dict("config.thresholds", config.get("thresholds"), null=True) or {}
        for key in ("min_effect", "weak_effect", "fdr_q"):
            _num(f"config.thresholds.{key}", thresholds.get(key), low=0.0, high=1.0)
        if thresholds.get("two_sided_kinds") is not None:
            for i, k in enumerate(_list("config.thresholds.two_sided_kinds", thresholds["two_sided_kinds"])):
                _choice(f"config.thresholds.two_sided_kinds[{i}]", k, FINDING_KINDS)
    classes = _dict("classes", data.get("classes"), null=True)
    for key, info in (classes or {}).items():
        if not (isinstance(key, str) and key.isdigit()):
            raise _Bad("classes", f"has a key {_shown(key)}, not a class index")
        _dict(f"classes.{key}", info)
        if "sampling_steps" in info:  # a class drawn at more steps (probe.analysis.screening.more_steps)
            _int(f"classes.{key}.sampling_steps", info["sampling_steps"], minimum=1, maximum=1000)
        if info.get("nearest_words") is not None:  # the token's nearest vocabulary words, one object each
            for i, word in enumerate(_list(f"classes.{key}.nearest_words", info["nearest_words"])):
                _dict(f"classes.{key}.nearest_words[{i}]", word)
    cues = _dict("cues", data.get("cues"), null=True)
    if cues is not None and cues.get("list") is not None:
        for i, cue in enumerate(_list("cues.list", cues["list"])):
            _str(f"cues.list[{i}].name", _dict(f"cues.list[{i}]", cue).get("name"))
    for name, proposed in (_dict("cues.discovered", (cues or {}).get("discovered"), null=True) or {}).items():
        _list(f"cues.discovered.{name}", proposed)  # per class: the cues discovery proposed
    dropped = data.get("dropped_counters")  # per class: the counters left out (a flat list in older analyses)
    _str("dropped_counters_keyed_by", data.get("dropped_counters_keyed_by"), null=True)  # "class index"; else names
    groups = {"": dropped} if isinstance(dropped, list) else _dict("dropped_counters", dropped, null=True) or {}
    for name, values in groups.items():
        field = f"dropped_counters.{name}" if name else "dropped_counters"
        for i, value in enumerate(_list(field, values)):
            _str(f"{field}[{i}]", value)
    tests = _dict("tests", data.get("tests"), null=True)
    for key, value in (tests or {}).items():
        _int(f"tests.{key}", value, maximum=10 ** 9)
    for key in ("n_findings", "n_passing"):
        if data.get(key) is not None:
            _int(key, data[key], maximum=10 ** 9)
    for key in ("attributions", "timings_s", "confirm_like", "generation", "budget"):
        _dict(key, data.get(key), null=True)
    for key, value in (_dict("images_by_stage", data.get("images_by_stage"), null=True) or {}).items():
        _int(f"images_by_stage.{key}", value, maximum=10 ** 12)
    _str("rule", data.get("rule"), null=True)
    if data.get("notes") is not None:
        for i, note in enumerate(_list("notes", data["notes"])):
            _str(f"notes[{i}]", note)
    methods = (data.get("attributions") or {}).get("methods_run")
    if methods is not None:
        for i, method in enumerate(_list("attributions.methods_run", methods)):
            _str(f"attributions.methods_run[{i}]", method)
    _dict("attributions.skipped", (data.get("attributions") or {}).get("skipped"), null=True)
    if "pairs" in data:
        for i, entry in enumerate(_list("pairs", data["pairs"])):
            field = f"pairs[{i}]"
            _unknown(_dict(field, entry), PAIR_FIELDS, field)
            for key in ("kind", "class_index", "cue", "screen"):
                if key not in entry:
                    raise _Bad(f"{field}.{key}", "is missing")
            _choice(f"{field}.kind", entry["kind"], PAIR_KINDS)
            _int(f"{field}.class_index", entry["class_index"], maximum=10 ** 7)
            _str(f"{field}.class_name", entry.get("class_name"), null=True)
            _str(f"{field}.cue", entry["cue"])
            _stage(f"{field}.screen", entry["screen"])
            if entry.get("confirm") is not None:
                _stage(f"{field}.confirm", entry["confirm"])
    return data


# ------------------------------------------------------------------------------------------ config, labels
# what the audit decided itself and ran with (config.json's "effective"; probe.run.types.EffectiveSettings)
EFFECTIVE_FIELDS = ("max_batch", "steps", "guidance_scale", "scheduler", "scheduler_class", "dtype", "device")


def check_config(data: Any, path: Path | str) -> dict:
    """config.json's fields that readers use: ``audit`` (the saved AuditConfig, an object), ``classes`` (the audited
    class indices), the ``generator``, ``classifier`` and ``audit.token`` descriptions (objects) and ``effective``
    (what the audit ran with: :data:`EFFECTIVE_FIELDS`, typed). Other fields are descriptive and kept."""
    try:
        if not isinstance(data, dict):
            raise _Bad("record", f"is {_shown(data)}, not a JSON object")
        classes = data.get("classes")
        if classes is not None:
            for i, index in enumerate(_list("classes", classes)):
                _int(f"classes[{i}]", index, maximum=10 ** 7)
        for key in ("audit", "generator", "classifier", "eval_classifier", "gradient_chunks", "versions"):
            _dict(key, data.get(key), null=True)
        _dict("audit.token", (data.get("audit") or {}).get("token"), null=True)
        _str("started", data.get("started"), null=True)
        _str("workdir", data.get("workdir"), null=True)
        effective = _dict("effective", data.get("effective"), null=True)
        if effective is not None:
            _unknown(effective, EFFECTIVE_FIELDS, "effective")
            for key in ("max_batch", "steps"):
                if effective.get(key) is not None:
                    _int(f"effective.{key}", effective[key], minimum=1, maximum=10 ** 6)
            _num("effective.guidance_scale", effective.get("guidance_scale"), low=0.0)
            for key in ("scheduler", "scheduler_class", "dtype", "device"):
                _str(f"effective.{key}", effective.get(key), null=True)
    except _Bad as bad:
        raise _error(path, "", bad, "restore it from the run's copy, or re-run the audit into a new --out") from None
    return data


def check_labels(data: Any, path: Path | str) -> list[str]:
    """labels.json: a list of class names (text)."""
    if not isinstance(data, list):
        raise RunError(f"{str(path)!r} is not a list of class names; delete it to have it rewritten")
    for i, name in enumerate(data):
        if not isinstance(name, str):
            raise _error(path, "", _Bad(f"[{i}]", f"is {_shown(name)}, not text (a class name)"),
                         "delete it to have it rewritten")
    return data


def rank_findings(findings: list, get: Callable[[Any, str], Any] = dict.get) -> list:
    """The one ranking of findings, best first: passing before the rest, then by status (passes, weak, inconclusive,
    screened); cue findings before off-object; cues that more kinds agree on first; larger |effect| first.
    ``findings`` are records (dicts) or, with ``get=getattr``, ``Finding`` objects. The sort is stable."""
    agree: dict[tuple, int] = {}
    for f in findings:
        if get(f, "passes") is True and get(f, "kind") not in SHARE_KINDS:
            agree[(get(f, "class_index"), get(f, "cue"))] = agree.get((get(f, "class_index"), get(f, "cue")), 0) + 1
    order = {s: i for i, s in enumerate(STATUSES)}

    def key(f):
        effect = get(f, "effect")
        size = abs(effect) if isinstance(effect, (int, float)) and math.isfinite(effect) else -1e9
        return (get(f, "passes") is not True, order.get(get(f, "status"), len(order)), get(f, "kind") in SHARE_KINDS,
                -agree.get((get(f, "class_index"), get(f, "cue")), 0), -size)

    return sorted(findings, key=key)
