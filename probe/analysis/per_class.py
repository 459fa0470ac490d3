"""One class's analysis as a record, and back: what steps 3-5 leave for steps 6-7.

:func:`class_records` turns what :func:`probe.analysis.engine.measure_run` measured for a unit of classes into one
:class:`probe.run.class_analysis.ClassAnalysis` per class; :func:`tests_of` and :func:`off_object_of` turn a record
back into the engine's own objects (:class:`probe.analysis.plan.Test` with its :class:`Sample`\\ s, an
:class:`OffObjectTest`), exactly: paired differences are float64 and JSON keeps them to the last bit, so the
driver's p- and q-values are those the measuring process would have computed.

The order of the tests is kept too (:func:`test_order`): the listed cues' tests by kind, then class, then as
measured; the discovered cues' by class, then kind. That is the order a single process builds them in, so a
driver that reads the records of many units lists, ranks and writes them as one process would.
"""

from __future__ import annotations

import json

import numpy as np

from probe.analysis.class_evidence import ClassRun, OffObjectTest
from probe.analysis.cues import Cue
from probe.analysis.off_object import OffObjectMeasure
from probe.analysis.plan import Test
from probe.analysis.sample import Sample
from probe.analysis.stats import Effect
from probe.files import dumps_json
from probe.run.class_analysis import ClassAnalysis, decode_number, encode_number

__all__ = ["class_records", "settings_of", "tests_of", "off_object_of", "test_order", "KIND_ORDER"]

KIND_ORDER = ("sufficiency", "necessity", "token-shift")


def settings_of(cfg) -> dict:
    """The analysis settings a record must have been measured with to be used (the class filter aside), as JSON."""
    data = json.loads(dumps_json(cfg.to_dict()))
    data.pop("classes", None)
    return data


# ------------------------------------------------------------------ measured -> records
def sample_to_dict(sample: Sample) -> dict:
    return {"kind": sample.kind, "class_index": int(sample.class_index), "cue": sample.cue,
            "diffs": [encode_number(v) for v in np.asarray(sample.diffs, np.float64).tolist()],
            "before": None if sample.before is None else [bool(v) for v in sample.before],
            "after": None if sample.after is None else [bool(v) for v in sample.after],
            "attempted": int(sample.attempted), "excluded": int(sample.excluded),
            "evidence": [str(e) if e else "" for e in sample.evidence], "extra": dict(sample.extra),
            "keys": [str(k) for k in sample.keys]}


def _measure_to_dict(measure: OffObjectMeasure) -> dict:
    e = measure.effect
    return {"effect": {"mean": encode_number(e.mean), "ci_low": encode_number(e.ci_low),
                       "ci_high": encode_number(e.ci_high), "n": int(e.n), "p": encode_number(e.p),
                       "method": e.method, "confidence": e.confidence},
            "share_outside": encode_number(measure.share_outside), "area_outside": encode_number(measure.area_outside),
            "values": [encode_number(v) for v in measure.values]}


def class_records(cfg, classes: list[ClassRun], unit_facts: dict, *, per_class: dict, tests: list[Test], n_listed: int,
                  candidates: list[Test], added: list[Test], suspects: dict, off_object: list, off_candidates: list,
                  off_unconfirmed: list, discovered: dict, carriers: dict) -> list[ClassAnalysis]:
    """One record per class of the unit (in ``classes``' order); ``tests[:n_listed]`` are the listed cues' tests."""
    chosen, extra_ids = {id(t) for t in candidates}, {id(t) for t in added}
    off_by_class = {t.cls.index: t for t in off_object}
    cand_ids, unconfirmed_ids = {id(t) for t in off_candidates}, {id(t) for t in off_unconfirmed}
    unit = tuple(c.index for c in classes)
    settings = settings_of(cfg)
    out = []
    for cls in classes:
        mine = []
        for order, test in enumerate(tests):
            if test.cls.index != cls.index:
                continue
            mine.append({"kind": test.kind, "phase": "listed" if order < n_listed else "discovered", "order": order,
                         "cue": test.cue.to_dict(), "screen": sample_to_dict(test.screen),
                         "confirm": None if test.confirm is None else sample_to_dict(test.confirm),
                         "extra": dict(test.extra), "candidate": id(test) in chosen, "added": id(test) in extra_ids})
        off = off_by_class.get(cls.index)
        off_record = None if off is None else {
            "screen": _measure_to_dict(off.screen), "confirm": None if off.confirm is None else _measure_to_dict(off.confirm),
            "evidence": list(off.evidence), "method": off.method, "candidate": id(off) in cand_ids,
            "unconfirmed": id(off) in unconfirmed_ids}
        proposals = [{**p.to_dict(), "cue_record": p.cue.to_dict()} for p in discovered.get(cls.index, [])]
        out.append(ClassAnalysis(class_index=cls.index, class_name=cls.name, settings=settings, unit=unit,
                                 tests=tuple(mine), off_object=off_record, info=per_class.get(str(cls.index), {}),
                                 discovered=tuple(proposals), suspects=tuple(sorted(suspects.get(cls.index, ()))),
                                 carriers=tuple(k.text for k in carriers.get(cls.index, [])), unit_facts=unit_facts))
    return out


# ------------------------------------------------------------------ records -> the engine's objects
def cue_of(data: dict) -> Cue:
    return Cue(name=data["name"], template=data["template"], counters=tuple(data.get("counters") or ()),
               category=data.get("category", "other"), description=data.get("description", ""),
               attribute=data.get("attribute"), value=data.get("value"),
               counter_values=tuple(data.get("counter_values") or ()))


def sample_of(data: dict, where: str = "sample") -> Sample:
    diffs = np.asarray([decode_number(v, f"{where}.diffs") for v in data.get("diffs", [])], np.float64)
    before = None if data.get("before") is None else np.asarray(data["before"], bool)
    after = None if data.get("after") is None else np.asarray(data["after"], bool)
    return Sample(data["kind"], int(data["class_index"]), data["cue"], diffs=diffs, before=before, after=after,
                  attempted=int(data.get("attempted", 0)), excluded=int(data.get("excluded", 0)),
                  evidence=list(data.get("evidence", [])), extra=dict(data.get("extra", {})),
                  keys=list(data.get("keys", [])))


def test_order(record_test: dict, class_index: int) -> tuple:
    """A single process's order: listed cues by (kind, class, as measured), then discovered ones by (class, kind)."""
    kind = KIND_ORDER.index(record_test["kind"])
    if record_test["phase"] == "listed":
        return (0, kind, class_index, record_test["order"])
    return (1, class_index, kind, record_test["order"])


def tests_of(record: ClassAnalysis, cls: ClassRun) -> list[tuple[tuple, Test, dict]]:
    """(order key, Test, the test's record) for every test of ``record``."""
    out = []
    for i, data in enumerate(record.tests):
        where = f"class {record.class_index} tests[{i}]"
        test = Test(data["kind"], cls, cue_of(data["cue"]), sample_of(data["screen"], where),
                    confirm=None if data.get("confirm") is None else sample_of(data["confirm"], where),
                    extra=dict(data.get("extra", {})))
        out.append((test_order(data, record.class_index), test, data))
    return out


def _measure_of(data: dict, where: str) -> OffObjectMeasure:
    e = data["effect"]
    effect = Effect(decode_number(e["mean"], where), decode_number(e["ci_low"], where), decode_number(e["ci_high"], where),
                    int(e["n"]), p=decode_number(e.get("p"), where), method=str(e.get("method", "")),
                    confidence=float(e.get("confidence", 0.95)))
    return OffObjectMeasure(effect, decode_number(data.get("share_outside"), where),
                            decode_number(data.get("area_outside"), where),
                            tuple(decode_number(v, where) for v in data.get("values", [])))


def off_object_of(record: ClassAnalysis, cls: ClassRun) -> OffObjectTest | None:
    data = record.off_object
    if data is None:
        return None
    where = f"class {record.class_index} off_object"
    return OffObjectTest(cls, _measure_of(data["screen"], where), [], [], [], tuple(data.get("evidence", [])),
                         str(data.get("method", "")),
                         confirm=None if data.get("confirm") is None else _measure_of(data["confirm"], where))
