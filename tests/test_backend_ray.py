"""The Ray backend on a local cluster (issue 12, issue 21 item 2): tokens and each class's analysis on the workers,
a worker killed in either and its work retried, a class whose worker keeps dying recorded as failed.

Split from tests/test_scale.py and named to be collected early: these are the suite's longest tests, and the
suite's two pytest-xdist workers (``--dist loadfile``) then run them beside everything else instead of last.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from test_scale import _config, _metrics, _tokens

# ---------------------------------------------------------------------- Ray
ray = pytest.importorskip("ray", reason="the Ray backend's tests need `pip install 'probe-audit[ray]'`")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster with 2 CPU slots (one worker each), shut down after the module."""
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


CLASSES = "circle,star"  # indices 0 and 3: two classes, one per worker, both in flight at once


def _analysed_config(out: Path, **scale):
    """``_config`` with each class's analysis, kept to plumbing: 3 of the world's 12 cues (the planted star/grass
    among them), 8 confirmation pairs, no report (the same tests must come out the same on the workers; 4 cues and
    16 pairs took ~110 s of a 2-core suite)."""
    from probe.analysis import AnalysisConfig
    from probe.analysis.policy import Thresholds

    from conftest import world_cue_file

    cues = world_cue_file(Path(out).parent / "cues.json", "grass", "water", "dot")
    analysis = AnalysisConfig(attributions=False, off_object=False, iou_images=0, nearest_k=3, n_carriers=2,
                              necessity_screen_seeds=2, screen_extend=(), max_pairs=8, cues=str(cues), discover=0,
                              thresholds=Thresholds(min_pairs=8))
    return replace(_config(out, CLASSES, analyze=True, **scale), report=False, analysis=analysis)


@pytest.fixture(scope="module")
def local_run(tmp_path_factory) -> Path:
    """The local backend's run of CLASSES with their analysis, at one thread as a Ray worker with one CPU slot: the
    reference the workers' tokens and findings are compared with."""
    from probe.auditing.loop import audit

    out = tmp_path_factory.mktemp("ray-reference") / "local"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        audit(_analysed_config(out), progress=False)
    finally:
        torch.set_num_threads(threads)
    return out


def _assert_same_tokens(local: Path, out: Path) -> None:
    """Every class's token and its evaluation equal the local run's (the retried class too)."""
    a, b = _tokens(local), _tokens(out)
    assert sorted(a) == sorted(b) == [0, 3]
    for i in a:
        torch.testing.assert_close(a[i], b[i], rtol=0, atol=1e-5)
    ma, mb = _metrics(local), _metrics(out)
    for i in ma:
        assert ma[i]["token"]["accuracy"] == mb[i]["token"]["accuracy"]
        assert ma[i]["token"]["mean_target_prob"] == pytest.approx(mb[i]["token"]["mean_target_prob"], abs=1e-4)


def _killer(out: Path, choose) -> tuple[list, threading.Thread]:
    """A thread that polls ``choose(out)`` every 50 ms and SIGKILLs the first worker it names: it returns what to
    record (its ``"pid"`` is killed) or None to keep watching. The record goes into the returned list (one at most).
    It watches for 20 minutes at most: in the suite on an AVX2-only CPU, beside the demo builds at the higher priority,
    one Ray audit of this file took 294 s (6 December 2026), and a kill that waits for a token to finish (the analysis
    test's) must not run out of watching on a slower hour."""
    killed: list = []

    def watch():
        deadline = time.time() + 1200
        while time.time() < deadline and not killed:
            try:
                record = choose(out)
            except (OSError, ValueError, KeyError, TypeError):
                record = None
            if record is not None:
                os.kill(record["pid"], signal.SIGKILL)
                killed.append(record)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return killed, thread


def _finished(out: Path) -> dict[Path, dict]:
    """classes/*/metrics.json as written so far: {path: its data} (a half-written file raises ValueError)."""
    return {path: json.loads(path.read_text()) for path in out.glob("classes/*/metrics.json")}


def _claims_held(out: Path) -> dict[int, int]:
    """{class index: pid} of the claims (.probe-claims/<index>.lock) another process holds now, read from the kernel's
    /proc/locks: the test never takes a claim itself, which would make a worker skip its class."""
    inodes = {path.stat().st_ino: int(path.stem) for path in (out / ".probe-claims").glob("*.lock")}
    held = {}
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK":
            continue  # "1: -> FLOCK ..." lines are waiters, not holders
        inode = int(fields[5].rsplit(":", 1)[1])
        if inode in inodes and int(fields[4]) != os.getpid():
            held[inodes[inode]] = int(fields[4])
    return held


def _kill_in_flight(out: Path) -> tuple[list, threading.Thread]:
    """The worker of a class it is learning now (it holds the class's claim and no metrics.json is written yet): a
    class surely in flight, where killing "the worker that finished first, a second later" sometimes hit a worker
    with nothing left to do (Ray had given the next class to a fresh worker). Records {"pid", "index"}."""

    def choose(out_dir):
        finished = {int(path.parent.name.split("-", 1)[0]) for path in out_dir.glob("classes/*/metrics.json")}
        in_flight = {i: pid for i, pid in _claims_held(out_dir).items() if i not in finished}
        if not in_flight:
            return None
        index = min(in_flight)
        return {"pid": in_flight[index], "index": index}

    return _killer(out, choose)


def test_a_class_whose_worker_keeps_dying_is_recorded_as_failed_and_the_run_completes(tmp_path, ray_cluster):
    """With --max-retries 0 the class in flight on the killed worker is not retried: it is recorded as failed with
    the reason, and every other class still finishes."""
    from probe.auditing.loop import audit

    out = tmp_path / "ray-no-retry"
    killed, thread = _kill_in_flight(out)
    result = audit(_config(out, CLASSES, backend="ray", workers=2, max_retries=0), progress=False)
    thread.join(timeout=5)
    assert killed
    metrics = _metrics(out)
    assert sorted(metrics) == [0, 3]
    failed = [m for m in metrics.values() if m["status"] == "failed"]
    errors = [m.get("error") for m in metrics.values()]
    assert len(failed) == 1 and "worker died in each of its 1 attempt(s)" in failed[0]["error"], errors
    assert len(result.failed) == 1 and sum(m["status"] == "done" for m in metrics.values()) == 1


def _kill_in_analysis(out: Path, after: list) -> tuple[list, threading.Thread]:
    """Once ``after`` (the token killer's record list) holds its kill: the worker of another class whose token is
    finished while that class's analysis (steps 3-5, on the same worker) is still running: no tests.json yet.
    Records {"pid", "index"}."""

    def choose(out_dir):
        if not after:
            return None
        for path, data in _finished(out_dir).items():
            if data["class_index"] != after[0]["index"] and not (path.parent / "analysis" / "tests.json").exists():
                return {"pid": data["worker"]["pid"], "index": data["class_index"]}
        return None

    return _killer(out, choose)


def test_ray_workers_learn_and_measure_and_a_worker_killed_in_either_is_retried(tmp_path, ray_cluster, local_run):
    """2 workers on a local cluster. Each class's analysis (steps 3-5: screening with the shared sufficiency pass,
    necessity, confirmation) runs on the worker that learned its token. Two workers are killed (SIGKILL): the one
    learning the first class (its token is learned again on a fresh worker), then the one analysing the other class
    once its token is written (the class keeps its token, attempt 1, and only its analysis is retried on a fresh
    worker). Every class ends done exactly once and the driver decides once (step 6 over both classes). Tokens and
    findings equal the local backend's on the same seeds within the stated tolerance: effects to 1e-4 (the local run
    batches both classes' images together, a worker one class's; on the CPU the world's generator gives the same
    pixels for any batch of 2 or more but differs by up to ~1e-6 for a batch of 1), the same tests passing."""
    from probe.auditing.loop import audit
    from probe.run import RunDir

    out = tmp_path / "ray"
    in_token, token_thread = _kill_in_flight(out)
    in_analysis, analysis_thread = _kill_in_analysis(out, after=in_token)
    result = audit(_analysed_config(out, backend="ray", workers=2, max_retries=2), progress=False)
    token_thread.join(timeout=5)
    analysis_thread.join(timeout=5)
    assert in_token, "the test never saw a class in flight to kill its worker"
    assert in_analysis, "the test never saw a class in its analysis to kill its worker"
    assert not result.failed and not result.problems, result.problems
    assert len(list(out.glob("classes/*/"))) == 2  # one folder per class: nothing duplicated
    run = RunDir(out)
    assert sorted(r["class_index"] for r in run.write_summary()) == [0, 3]
    metrics = _metrics(out)
    assert sorted(metrics) == [0, 3] and all(m["status"] == "done" for m in metrics.values())
    relearned, reanalysed = in_token[0], in_analysis[0]
    # the token killed in flight was learned again elsewhere; the other class's token was learned once
    assert metrics[relearned["index"]]["worker"]["attempt"] > 1
    assert metrics[relearned["index"]]["worker"]["pid"] != relearned["pid"]
    assert metrics[reanalysed["index"]]["worker"]["attempt"] == 1
    assert os.getpid() not in {m["worker"]["pid"] for m in metrics.values()}  # the workers ran them, not this process
    records = {i: run.read_class_analysis(run.class_dir(i, metrics[i]["class_name"]), strict=True) for i in metrics}
    workers = {i: r.unit_facts["worker"] for i, r in records.items()}
    analysed = workers[reanalysed["index"]]
    assert analysed["attempt"] == 2 and analysed["pid"] not in (reanalysed["pid"], os.getpid())  # retried elsewhere
    assert all(w is not None and w["pid"] != os.getpid() for w in workers.values())  # measured on the workers
    assert all(r.unit == (i,) for i, r in records.items())
    # the driver decided once over both classes: analysis.json names both, from 2 units
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["units"] == {"count": 2, "largest": 1} and sorted(summary["classes"]) == ["0", "3"]
    _assert_same_tokens(local_run, out)
    a = {(f["class_index"], f["cue"], f["kind"]): f for f in RunDir(local_run).read_findings()}
    b = {(f["class_index"], f["cue"], f["kind"]): f for f in RunDir(out).read_findings()}
    assert a.keys() == b.keys() and a
    for key in a:
        assert b[key]["effect"] == pytest.approx(a[key]["effect"], abs=1e-4), key
        assert (b[key]["passes"], b[key]["status"], b[key]["n_images"]) == (a[key]["passes"], a[key]["status"],
                                                                           a[key]["n_images"]), key
