"""classes/<i>-<slug>/analysis/tests.json: one class's measured analysis, what the driver decides from.

The analysis is split where its work splits (probe/analysis/engine.py): steps 3-5 (class evidence, discovery,
screening, confirmation) need the models and run wherever the class's token was learned (this process, a Ray
worker, a ``--shard``); step 6 (the false-discovery-rate step, over every class at once) and step 7 (findings,
analysis.json) need only these records, so the process that renders runs them once (``probe audit`` at its end,
``probe report RUN`` after the shards).

A record holds every test's samples exactly (paired differences as float64, booleans for token shifts, keys,
pairs attempted and excluded), so the driver's p- and q-values are the ones a single process would compute, and
what the driver needs besides: the class's analysis.json entry, its discovered cues, dropped counters, carriers,
and the *unit* it was measured in (``unit``: the classes measured together; their notes, image counts and
timings, stored alike on each of them and counted once by the driver).

Like every file of a run, a record is data: it is checked where it is read (a ``RunError`` naming the file and
the field), and a record measured with other analysis settings is stale, never mixed in (``settings``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from probe.errors import RunError

__all__ = ["CLASS_ANALYSIS", "CLASS_ANALYSIS_VERSION", "ClassAnalysis", "decode_number", "encode_number"]

CLASS_ANALYSIS = "analysis/tests.json"  # relative to the class folder
CLASS_ANALYSIS_VERSION = 1
TEST_KINDS = ("sufficiency", "necessity", "token-shift")
PHASES = ("listed", "discovered")


def encode_number(value) -> float | str | None:
    """A float as strict JSON holds it exactly: finite as itself, NaN as null, infinities as "inf" / "-inf"."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def decode_number(value, where: str) -> float:
    if value is None:
        return float("nan")
    if value in ("inf", "-inf"):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RunError(f"{where} is {value!r}, not a number; delete the file to have the class analysed again")
    return float(value)


def _fail(path, field_name: str, what: str):
    raise RunError(f"{str(path)!r}: {field_name} {what}; delete the file to have the class analysed again")


def _check_relative(path, where: str, value) -> None:
    """An evidence path: relative to the run, inside it by its name (the report resolves it again on disk)."""
    if not isinstance(value, str) or not value.strip():
        _fail(path, where, f"is {value!r}, not a path")
    pure = PurePosixPath(value.replace("\\", "/"))
    if pure.is_absolute() or ".." in pure.parts or (len(value) > 1 and value[1] == ":"):
        _fail(path, where, f"is {value!r}, not a path inside the run")


def check_sample(data, path, where: str) -> dict:
    """One test's sample: diffs (numbers) or before/after (booleans of one length), counts, keys, evidence."""
    if not isinstance(data, dict):
        _fail(path, where, "is not an object")
    for name in ("kind", "cue"):
        if not isinstance(data.get(name), str):
            _fail(path, f"{where}.{name}", "is not a string")
    if not isinstance(data.get("class_index"), int) or isinstance(data.get("class_index"), bool):
        _fail(path, f"{where}.class_index", "is not an integer")
    diffs = data.get("diffs", [])
    if not isinstance(diffs, list):
        _fail(path, f"{where}.diffs", "is not a list")
    for i, v in enumerate(diffs):
        decode_number(v, f"{str(path)!r}: {where}.diffs[{i}]")
    before, after = data.get("before"), data.get("after")
    if (before is None) != (after is None):
        _fail(path, f"{where}.before/after", "must both be lists or both null")
    if before is not None:
        if not (isinstance(before, list) and isinstance(after, list) and len(before) == len(after)
                and all(isinstance(v, bool) for v in before + after)):
            _fail(path, f"{where}.before/after", "must be lists of booleans of one length")
    for name in ("attempted", "excluded"):
        v = data.get(name, 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            _fail(path, f"{where}.{name}", f"is {v!r}, not a count")
    if data.get("excluded", 0) > data.get("attempted", 0):
        _fail(path, f"{where}.excluded", "exceeds attempted")
    for name in ("keys", "evidence"):
        values = data.get(name, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            _fail(path, f"{where}.{name}", "is not a list of strings")
    for i, v in enumerate(data.get("evidence", [])):
        if v:
            _check_relative(path, f"{where}.evidence[{i}]", v)
    if not isinstance(data.get("extra", {}), dict):
        _fail(path, f"{where}.extra", "is not an object")
    return data


def check_measure(data, path, where: str) -> dict:
    """An off-object measure: its effect (numbers, "inf" allowed for interval ends), shares, per-image values."""
    if not isinstance(data, dict) or not isinstance(data.get("effect"), dict):
        _fail(path, where, "is not an object with an effect")
    effect = data["effect"]
    for name in ("mean", "ci_low", "ci_high", "p"):
        decode_number(effect.get(name), f"{str(path)!r}: {where}.effect.{name}")
    if not isinstance(effect.get("n"), int) or effect["n"] < 0:
        _fail(path, f"{where}.effect.n", "is not a count")
    for name in ("share_outside", "area_outside"):
        decode_number(data.get(name), f"{str(path)!r}: {where}.{name}")
    if not isinstance(data.get("values", []), list):
        _fail(path, f"{where}.values", "is not a list")
    return data


@dataclass(frozen=True)
class ClassAnalysis:
    """One class's measured analysis (steps 3-5): see the module's docstring; written by ``RunDir.write_class_analysis``."""

    class_index: int
    class_name: str
    settings: dict  # the AnalysisConfig (its dict, ``classes`` left out) the class was measured with
    unit: tuple[int, ...]  # the classes measured together with it (itself included)
    tests: tuple[dict, ...] = ()  # {"kind", "phase", "order", "cue", "screen", "confirm", "extra", "candidate", "added"}
    off_object: dict | None = None  # {"screen", "confirm", "evidence", "method", "candidate", "unconfirmed"}
    info: dict = field(default_factory=dict)  # the class's entry in analysis.json's "classes"
    discovered: tuple[dict, ...] = ()  # the proposals (probe.analysis.discovery.Proposal.to_dict), with their cue
    suspects: tuple[str, ...] = ()  # counter templates dropped from the class's necessity tests
    carriers: tuple[str, ...] = ()  # its sufficiency carriers
    unit_facts: dict = field(default_factory=dict)  # the unit's notes, images, timings, attributions, setup
    version: int = CLASS_ANALYSIS_VERSION

    def __post_init__(self):
        if not isinstance(self.class_index, int) or isinstance(self.class_index, bool) or self.class_index < 0:
            raise RunError(f"a class analysis record needs a class index >= 0, got {self.class_index!r}")
        if self.class_index not in self.unit:
            raise RunError(f"class analysis {self.class_index}: its unit {list(self.unit)} does not hold it")

    def __repr__(self) -> str:
        confirmed = sum(1 for t in self.tests if t.get("confirm"))
        return (f"ClassAnalysis(class {self.class_index} {self.class_name!r}: {len(self.tests)} tests, {confirmed} "
                f"confirmed, unit of {len(self.unit)})")

    @classmethod
    def from_dict(cls, data, path: Path | str = CLASS_ANALYSIS, class_index: int | None = None) -> "ClassAnalysis":
        """The record, checked: a RunError naming ``path`` and the field for anything misshapen."""
        if not isinstance(data, dict):
            _fail(path, "the record", "is not a JSON object")
        if data.get("version") != CLASS_ANALYSIS_VERSION:
            _fail(path, "version", f"is {data.get('version')!r}; this probe reads {CLASS_ANALYSIS_VERSION}")
        index = data.get("class_index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            _fail(path, "class_index", f"is {index!r}, not a class index")
        if class_index is not None and index != class_index:
            _fail(path, "class_index", f"is {index}, but the record lies in class {class_index}'s folder")
        unit = data.get("unit")
        if not isinstance(unit, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in unit):
            _fail(path, "unit", "is not a list of class indices")
        for name in ("settings", "info", "unit_facts"):
            if not isinstance(data.get(name), dict):
                _fail(path, name, "is not an object")
        tests = data.get("tests")
        if not isinstance(tests, list):
            _fail(path, "tests", "is not a list")
        for i, test in enumerate(tests):
            where = f"tests[{i}]"
            if not isinstance(test, dict):
                _fail(path, where, "is not an object")
            if test.get("kind") not in TEST_KINDS:
                _fail(path, f"{where}.kind", f"is {test.get('kind')!r}, not one of {TEST_KINDS}")
            if test.get("phase") not in PHASES:
                _fail(path, f"{where}.phase", f"is {test.get('phase')!r}, not one of {PHASES}")
            if not isinstance(test.get("order"), int):
                _fail(path, f"{where}.order", "is not an integer")
            cue = test.get("cue")
            if not (isinstance(cue, dict) and isinstance(cue.get("name"), str) and isinstance(cue.get("template"), str)
                    and cue["template"].count("{}") == 1):
                _fail(path, f"{where}.cue", "is not a cue (name, and a template with one '{}')")
            check_sample(test.get("screen"), path, f"{where}.screen")
            if test.get("confirm") is not None:
                check_sample(test["confirm"], path, f"{where}.confirm")
            if not isinstance(test.get("extra", {}), dict):
                _fail(path, f"{where}.extra", "is not an object")
        off = data.get("off_object")
        if off is not None:
            if not isinstance(off, dict):
                _fail(path, "off_object", "is not an object")
            check_measure(off.get("screen"), path, "off_object.screen")
            if off.get("confirm") is not None:
                check_measure(off["confirm"], path, "off_object.confirm")
            for i, v in enumerate(off.get("evidence", [])):
                _check_relative(path, f"off_object.evidence[{i}]", v)
        for name in ("discovered", "suspects", "carriers"):
            if not isinstance(data.get(name, []), list):
                _fail(path, name, "is not a list")
        if not all(isinstance(s, str) for s in data.get("suspects", []) + data.get("carriers", [])):
            _fail(path, "suspects/carriers", "hold something other than strings")
        return cls(class_index=index, class_name=str(data.get("class_name") or index), settings=data["settings"],
                   unit=tuple(unit), tests=tuple(tests), off_object=off, info=data["info"],
                   discovered=tuple(data.get("discovered", [])), suspects=tuple(data.get("suspects", [])),
                   carriers=tuple(data.get("carriers", [])), unit_facts=data["unit_facts"])

    def to_dict(self) -> dict:
        return {"version": self.version, "class_index": self.class_index, "class_name": self.class_name,
                "settings": self.settings, "unit": list(self.unit), "tests": list(self.tests),
                "off_object": self.off_object, "info": self.info, "discovered": list(self.discovered),
                "suspects": list(self.suspects), "carriers": list(self.carriers), "unit_facts": self.unit_facts}
