"""The analysis scales out (issue 21 item 2): steps 3-5 per class wherever the class ran, step 6 once in the driver.

On the tests' fake world (analysis_fakes: procedural images, colour classifiers with planted background cues,
oracles that read the pixels back), three ways to analyse one run:

- local: ``analyze_run``, every class measured as one unit, then decided;
- distributed: each class measured alone (``measure_run(only=[i])``: what a Ray worker or a ``--shard`` runs), then
  ``decide_run`` once over every class's record (what ``probe audit``'s driver or ``probe report RUN`` runs);
- a shard killed mid-analysis, resumed.

The Ray backend and ``--shard`` end to end run in tests/test_scale.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from analysis_fakes import CLASSES, FakeGenerator, PlantedClassifier, registered, write_run
from probe.analysis import AnalysisConfig, AnalysisError, analyze_run
from probe.analysis.decide import decide_run, missing_records
from probe.analysis.engine import measure_run
from probe.run import RunDir

TOKENS = {0: "<probe-0>", 1: "<probe-1>", 2: "<probe-2>"}
# cue tests with confirmation: the shared sufficiency pass (3 classes: "spread" carriers), necessity, token shift
CFG = AnalysisConfig(attributions=False, off_object=False, iou_images=0, nearest_k=0)




@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A run with two planted cues in two classes (circle on sand, star on grass), analysed locally and per class."""
    tmp = tmp_path_factory.mktemp("distributed")
    source = tmp / "fake-pipeline"
    source.mkdir()
    gen = FakeGenerator({"<probe-0>": "on sand", "<probe-2>": "on grass"}, source=str(source))
    clf = PlantedClassifier({0: "sand", 2: "grass"})
    local = write_run(tmp / "local", gen, clf, tokens=TOKENS, n_seeds=4)
    units = tmp / "units"
    shutil.copytree(local, units)
    with registered(source):
        analyze_run(local, clf, gen, CFG)
        for index in TOKENS:  # one class per unit, as a worker or a shard measures it
            measure_run(units, clf, gen, CFG, only=[index])
        decide_run(units, CFG)
    return tmp, gen, clf, source, local, units


def _findings(run: Path) -> list[dict]:
    return json.loads((run / "findings.json").read_text())


def _analysis(run: Path) -> dict:
    return json.loads((run / "analysis.json").read_text())


def test_classes_measured_alone_and_decided_once_give_the_local_findings(world):
    """Same seeds, same findings, in the same order: every class's samples, p- and q-values; the fake world draws
    each image alone (batch-invariant), so they are equal to the last bit."""
    _, _, _, _, local, units = world
    a, b = _findings(local), _findings(units)
    assert a == b and sum(f["passes"] for f in a) >= 2
    passing = {(f["class_index"], f["cue"]) for f in a if f["passes"]}
    assert {(0, "sand"), (2, "grass")} <= passing
    la, lb = _analysis(local), _analysis(units)
    assert la["pairs"] == lb["pairs"] and la["tests"] == lb["tests"] and la["classes"] == lb["classes"]
    assert la["dropped_counters"] == lb["dropped_counters"] and la["carriers"] == lb["carriers"]
    # what differs is the cost: each unit generated the shared sufficiency pass again (3 units, 1 locally)
    shared = la["images_by_stage"]["screen_sufficiency"]
    assert lb["images_by_stage"]["screen_sufficiency"] == 3 * shared
    assert la["units"] == {"count": 1, "largest": 3} and lb["units"] == {"count": 3, "largest": 1}


def test_each_class_record_holds_its_own_tests_exactly(world):
    _, _, _, _, local, units = world
    run = RunDir(units)
    for directory, metrics in run.finished_classes():
        record = run.read_class_analysis(directory, strict=True)
        assert record.class_index == metrics["class_index"] and record.unit == (record.class_index,)
        assert record.tests and all(t["screen"]["class_index"] == record.class_index for t in record.tests)
    # float64 differences survive JSON to the last bit: the local record's values are the analysis.json pairs'
    star = RunDir(local).read_class_analysis(RunDir(local).class_dir(2, "star"))
    grass = next(t for t in star.tests if t["kind"] == "sufficiency" and t["cue"]["name"] == "grass")
    values = np.asarray(grass["confirm"]["diffs"], np.float64)
    assert values.size >= 8 and np.all(np.isfinite(values)) and values.mean() > 0.3


def test_the_fdr_step_runs_once_over_every_class(world, tmp_path):
    """A q-value depends on the confirmed tests of other classes (other shards, other workers): deciding class 2's
    record alone gives its tests other q-values than deciding every class's record once."""
    from probe.analysis.per_class import sample_of
    from probe.analysis.stats import fdr

    _, _, _, _, _, units = world
    both = {(f["class_index"], f["cue"], f["kind"]): f for f in _findings(units) if np.isfinite(f["q"] or np.nan)}
    assert {k[0] for k in both} >= {0, 2}  # confirmed tests in more than one class
    keys = sorted(both)
    exact = {}  # every confirmed test's p-value, recomputed from the class records' float64 pairs
    for directory, _ in RunDir(units).finished_classes():
        record = RunDir(units).read_class_analysis(directory, strict=True)
        for t in record.tests:
            if t["confirm"] is not None and t["candidate"]:
                exact[(record.class_index, t["cue"]["name"], t["kind"])] = sample_of(t["confirm"]).effect().p
    assert sorted(exact) == keys
    q_all, _ = fdr([exact[k] for k in keys], q=CFG.thresholds.fdr_q, method=CFG.thresholds.fdr_method)
    for k, q in zip(keys, q_all):
        assert both[k]["q"] == pytest.approx(q, rel=1e-4, abs=1e-8)  # findings.json rounds q (8 decimals)
    alone = tmp_path / "alone"
    shutil.copytree(units, alone)
    decide_run(alone, CFG.replace(classes=[2]))  # as if class 2's shard decided for itself
    solo = {(f["class_index"], f["cue"], f["kind"]): f for f in _findings(alone) if np.isfinite(f["q"] or np.nan)}
    star = [k for k in keys if k[0] == 2]
    assert star and all(solo[k]["p"] == both[k]["p"] for k in star)
    assert any(solo[k]["q"] < both[k]["q"] for k in star)  # a smaller family: the one-shard q-values are too small


def test_a_shard_killed_mid_analysis_resumes_with_only_its_unfinished_class(world, tmp_path, monkeypatch):
    """``--shard``'s analysis loop (probe.auditing.loop._analyse_slice): killed while class 1 is being screened, it
    keeps class 0's record; run again, it measures only classes 1 and 2, and the run decides as the local one."""
    import probe.analysis.engine as engine
    from probe.auditing.config import AuditConfig
    from probe.auditing.loop import AuditResult, _analyse_slice
    from probe.auditing.scale import ScaleConfig

    _, gen, clf, source, local, units = world
    run_dir = tmp_path / "shard"
    shutil.copytree(units, run_dir)
    for d in RunDir(run_dir).class_dirs():  # nothing measured yet
        shutil.rmtree(d / "analysis", ignore_errors=True)
    (run_dir / "analysis.json").unlink()
    config = AuditConfig(model="unused.pt", generator=str(source), out=str(run_dir), analysis=CFG,
                         scale=ScaleConfig(shard="0/1"))
    real = engine.run_cue_tests
    measured: list[int] = []

    def killed_in_class_1(cfg, lab, classes, *args, **kwargs):
        if classes[0].index == 1:
            raise KeyboardInterrupt  # as SIGINT mid-screening: nothing of class 1 is written
        return real(cfg, lab, classes, *args, **kwargs)

    run = RunDir(run_dir)
    with registered(source):
        monkeypatch.setattr(engine, "run_cue_tests", killed_in_class_1)
        result = AuditResult(run_dir=run_dir, rows=[])
        assert _analyse_slice(run, config, clf, gen, [0, 1, 2], CLASSES, None, False, result) is True
        assert missing_records(run_dir, CFG) == [1, 2]
        first = (run.class_dir(0, "circle") / "analysis" / "tests.json").read_bytes()
        monkeypatch.setattr(engine, "run_cue_tests",
                            lambda cfg, lab, classes, *a, **k: measured.append(classes[0].index) or real(cfg, lab, classes, *a, **k))
        assert _analyse_slice(run, config, clf, gen, [0, 1, 2], CLASSES, None, False, result) is False
    assert measured == [1, 2] and not result.problems
    assert (run.class_dir(0, "circle") / "analysis" / "tests.json").read_bytes() == first  # kept, not redone
    decide_run(run_dir, CFG)
    assert _findings(run_dir) == _findings(local)


def test_the_driver_refuses_to_decide_without_every_class_or_with_stale_records(world, tmp_path):
    _, _, _, _, _, units = world
    run_dir = tmp_path / "partial"
    shutil.copytree(units, run_dir)
    (RunDir(run_dir).class_dir(1, "square") / "analysis" / "tests.json").unlink()
    with pytest.raises(AnalysisError, match=r"1 finished classes .* no analysis measured with these settings \(1\)"):
        decide_run(run_dir, CFG)
    # a record measured with other settings is stale: never mixed into this decision
    assert missing_records(run_dir, CFG.replace(screen_seeds=CFG.screen_seeds + 1)) == [0, 1, 2]
    # a damaged record is named, file and field
    path = RunDir(run_dir).class_dir(0, "circle") / "analysis" / "tests.json"
    data = json.loads(path.read_text())
    data["tests"][0]["screen"]["excluded"] = data["tests"][0]["screen"]["attempted"] + 1
    path.write_text(json.dumps(data))
    with pytest.raises(Exception, match=r"tests\[0\]\.screen\.excluded exceeds attempted"):
        RunDir(run_dir).read_class_analysis(path.parent.parent, strict=True)
    data["tests"][0]["screen"]["excluded"] = 0
    data["tests"][0]["screen"]["evidence"] = ["../../../etc/passwd"]
    path.write_text(json.dumps(data))
    with pytest.raises(Exception, match="not a path inside the run"):
        RunDir(run_dir).read_class_analysis(path.parent.parent, strict=True)
    assert RunDir(run_dir).read_class_analysis(path.parent.parent) is None  # resume: measured again
