"""Scale-out (issue 12): --shard slices merged by `probe report`, and the Ray backend on a local cluster.

Every audit here is the shapes world at a reduced size (2 optimisation steps, 2 evaluation images), so the
comparisons are about *where* classes ran, not about the method.
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

from probe.errors import RunError
from probe.auditing.scale import ScaleConfig, parse_shard


# ---------------------------------------------------------------------- settings
def test_shard_settings_are_checked_and_slices_cover_every_class_once():
    assert parse_shard("0/3") == (0, 3) and parse_shard(" 2 / 3 ") == (2, 3) and parse_shard(None) is None
    for bad in ("3/3", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(RunError, match="--shard"):
            parse_shard(bad)
    targets = list(range(10))
    slices = [ScaleConfig(shard=f"{i}/3").select(targets) for i in range(3)]
    assert sorted(sum(slices, [])) == targets and slices[0] == [0, 3, 6, 9]
    assert ScaleConfig(shard="1/3").lock_name() == ".probe-shard-1-of-3.lock" and ScaleConfig().lock_name() is None
    with pytest.raises(RunError, match="belong to --backend ray"):
        ScaleConfig(workers=2)
    with pytest.raises(RunError, match="unknown"):
        ScaleConfig(backend="slurm")


def _config(out: Path, classes: str, *, analyze: bool = False, **scale):
    from probe.analysis import AnalysisConfig
    from probe.world.demo import demo_config

    # plumbing, not findings: 3 sampling steps, and a necessity screen on 2 seeds without extension
    config = demo_config(out=out, classes=classes, max_steps=4, eval_images=2, analyze=analyze, report=analyze,
                         analysis=AnalysisConfig(attributions=False, off_object=False, sufficiency=False, confirm=False,
                                                 iou_images=0, nearest_k=3, necessity_screen_seeds=2,
                                                 screen_extend=()))
    return replace(config, token=replace(config.token, steps=3), scale=ScaleConfig(**scale))


def _tokens(run_dir: Path) -> dict[int, torch.Tensor]:
    from safetensors.torch import load_file

    from probe.run import TOKEN, RunDir

    out = {}
    for directory, metrics in RunDir(run_dir).finished_classes():
        data = load_file(str(directory / TOKEN))
        out[metrics["class_index"]] = torch.cat([v.flatten().float() for _, v in sorted(data.items())])
    return out


def _metrics(run_dir: Path) -> dict[int, dict]:
    from probe.run import RunDir

    return {m["class_index"]: m for _, m in RunDir(run_dir).finished_classes()}


def _findings(run_dir: Path) -> list[tuple]:
    from probe.run import RunDir

    return sorted((f["class_index"], f["cue"], f["kind"], round(f["effect"], 4), f["passes"])
                  for f in RunDir(run_dir).read_findings() or [])


# ---------------------------------------------------------------------- shards
def test_two_shards_and_probe_report_equal_one_full_run(tmp_path, monkeypatch, capsys):
    """SLURM-style: each shard runs its slice into the one run directory; `probe report` analyses once all are done."""
    from conftest import run_main

    from probe.auditing.loop import audit

    full = tmp_path / "full"
    audit(_config(full, "star,heart", analyze=True), progress=False)
    sharded = tmp_path / "sharded"
    audit(_config(sharded, "star,heart", analyze=True, shard="0/2"), progress=False)
    assert not (sharded / "analysis.json").exists()  # one slice cannot be analysed alone
    code, out, err = run_main(monkeypatch, capsys, "report", str(sharded))
    assert code == 2 and "1 of 2 classes" in err and "finish every --shard" in err  # shard 1 has not run
    config = _config(sharded, "star,heart", analyze=True, shard="1/2")
    audit(config, progress=False)
    # each shard measured its own classes' analysis (steps 3-5) where it learned their tokens ...
    from probe.run import RunDir

    records = {i: RunDir(sharded).read_class_analysis(d) for d, m in RunDir(sharded).finished_classes()
               for i in [m["class_index"]]}
    assert sorted(records) == [3, 5] and all(r is not None and r.unit == (i,) for i, r in records.items())
    # ... so `probe report` alone decides over every class (steps 6-7) and renders, loading no model
    # (this test said "not analysed" before the shards measured their analysis; changed with issue 21 item 2)
    import probe.auditing.loop as loop

    monkeypatch.setattr(loop, "load_models", lambda *a, **k: pytest.fail("probe report loaded a model"))
    code, out, err = run_main(monkeypatch, capsys, "report", str(sharded))
    assert code == 0 and "not analysed" not in err, err
    assert (sharded / "report" / "index.html").is_file() and (sharded / "analysis.json").is_file()
    monkeypatch.undo()
    # the models on the command line (never taken from the run's config.json): nothing is pending any more
    code, out, err = run_main(monkeypatch, capsys, "report", str(sharded), "--model", config.model,
                              "--generator", config.generator, "--device", "cpu")
    assert code == 0, err
    a, b = _tokens(full), _tokens(sharded)
    assert sorted(a) == sorted(b) == [3, 5]
    for i in a:
        assert torch.equal(a[i], b[i]), i  # same process settings, same seeds: the very same tokens
    ma, mb = _metrics(full), _metrics(sharded)
    for i in ma:
        assert ma[i]["token"] == mb[i]["token"] and ma[i]["baseline"] == mb[i]["baseline"]
    assert _findings(full) == _findings(sharded)
    # `probe report` again: nothing pending, no model is loaded, the report renders
    code, out, err = run_main(monkeypatch, capsys, "report", str(sharded))
    assert code == 0 and "report:" in out


def test_the_backend_names_checked_up_front_are_the_registered_ones():
    import probe.auditing.backends
    import probe.auditing.scale

    assert set(probe.auditing.scale.BACKENDS) == set(probe.auditing.backends.BACKENDS)
    assert probe.auditing.backends.get_backend("local") is probe.auditing.backends.LocalBackend
    with pytest.raises(RunError, match="unknown"):
        probe.auditing.backends.get_backend("slurm")


def test_without_ray_the_ray_backend_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    import sys

    from probe.auditing.backends import get_backend

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    backend = get_backend("ray")(replace(_config(Path("unused"), "star"), scale=ScaleConfig(backend="ray")), None,
                                 None, ["star"])
    with pytest.raises(RunError, match=r"pip install 'probe-audit\[ray\]'"):
        backend.run([0], bar=None)
    from probe.auditing.loop import audit

    out = tmp_path / "never"
    with pytest.raises(RunError, match=r"pip install 'probe-audit\[ray\]'"):  # checked before any model loads
        audit(replace(_config(out, "star"), scale=ScaleConfig(backend="ray")), progress=False)
    assert not out.exists()


# ---------------------------------------------------------------------- Ray
ray = pytest.importorskip("ray", reason="the Ray backend's tests need `pip install 'probe-audit[ray]'`")


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster with 2 CPU slots (one worker each), shut down after the module."""
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    yield
    ray.shutdown()


def _kill_first_finisher(out: Path) -> tuple[list[int], threading.Thread]:
    """A thread that SIGKILLs the worker of the first class to finish in ``out``, one second later (it has taken
    its next class by then); the pid goes into the returned list."""
    killed: list[int] = []

    def killer():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            for path in out.glob("classes/*/metrics.json"):
                try:
                    pid = json.loads(path.read_text())["worker"]["pid"]
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                time.sleep(1.0)
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.2)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return killed, thread


def test_ray_backend_matches_the_local_backend_and_survives_a_killed_worker(tmp_path, ray_cluster):
    """2 workers on a local cluster; the first worker to finish a class is killed (SIGKILL) while it runs its next
    one. Every class ends done exactly once, the lost one retried on a fresh worker, and every token equals the
    local backend's for the same seeds."""
    from probe.run import RunDir
    from probe.auditing.loop import audit

    classes = "circle,square,star"
    local = tmp_path / "local"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # Ray's workers use one thread per CPU slot: the same arithmetic here
    try:
        audit(_config(local, classes), progress=False)
    finally:
        torch.set_num_threads(threads)

    out = tmp_path / "ray"
    killed, thread = _kill_first_finisher(out)
    result = audit(_config(out, classes, backend="ray", workers=2, max_retries=2), progress=False)
    thread.join(timeout=5)
    assert killed, "the test never saw a finished class to kill its worker"
    assert not result.failed and len(result.rows) == 3
    metrics = _metrics(out)
    assert sorted(metrics) == [0, 1, 3] and all(m["status"] == "done" for m in metrics.values())
    assert len(list(out.glob("classes/*/"))) == 3  # one folder per class: nothing duplicated
    rows = RunDir(out).write_summary()
    assert sorted(r["class_index"] for r in rows) == [0, 1, 3]
    retried = [m for m in metrics.values() if m["worker"]["attempt"] > 1]
    assert retried and all(m["worker"]["pid"] != killed[0] for m in retried)
    assert os.getpid() not in {m["worker"]["pid"] for m in metrics.values()}  # the workers ran them, not this process
    a, b = _tokens(local), _tokens(out)
    assert sorted(a) == sorted(b) == [0, 1, 3]
    for i in a:
        torch.testing.assert_close(a[i], b[i], rtol=0, atol=1e-5)  # the retried class too
    ma = _metrics(local)
    for i in ma:
        assert ma[i]["token"]["accuracy"] == metrics[i]["token"]["accuracy"]
        assert ma[i]["token"]["mean_target_prob"] == pytest.approx(metrics[i]["token"]["mean_target_prob"], abs=1e-4)


def test_a_class_whose_worker_keeps_dying_is_recorded_as_failed_and_the_run_completes(tmp_path, ray_cluster):
    """With --max-retries 0 the class in flight on the killed worker is not retried: it is recorded as failed with
    the reason, and every other class still finishes."""
    from probe.auditing.loop import audit

    out = tmp_path / "ray-no-retry"
    killed, thread = _kill_first_finisher(out)
    result = audit(_config(out, "circle,square,star", backend="ray", workers=2, max_retries=0), progress=False)
    thread.join(timeout=5)
    assert killed
    metrics = _metrics(out)
    assert sorted(metrics) == [0, 1, 3]
    failed = [m for m in metrics.values() if m["status"] == "failed"]
    errors = [m.get("error") for m in metrics.values()]
    assert len(failed) == 1 and "worker died in each of its 1 attempt(s)" in failed[0]["error"], errors
    assert len(result.failed) == 1 and sum(m["status"] == "done" for m in metrics.values()) == 2


def _kill_in_analysis(out: Path) -> tuple[list[tuple[int, int]], threading.Thread]:
    """A thread that SIGKILLs the worker of the first class whose token is finished while that class's analysis
    (steps 3-5, on the same worker) is still running: no tests.json yet. (class index, pid) goes into the list."""
    killed: list[tuple[int, int]] = []

    def killer():
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            for path in out.glob("classes/*/metrics.json"):
                try:
                    data = json.loads(path.read_text())
                    pid, index = data["worker"]["pid"], data["class_index"]
                except (OSError, ValueError, KeyError, TypeError):
                    continue
                if (path.parent / "analysis" / "tests.json").exists():
                    continue  # too late for this class
                os.kill(pid, signal.SIGKILL)
                killed.append((index, pid))
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    return killed, thread


def test_ray_workers_measure_the_analysis_and_a_worker_killed_in_it_is_retried(tmp_path, ray_cluster):
    """Each class's analysis (steps 3-5: screening with the shared sufficiency pass, necessity, confirmation) runs
    on the worker that learned its token; the worker analysing the first finished class is killed: the class keeps
    its token (attempt 1) and its analysis is retried on a fresh worker; the driver decides once (step 6 over both
    classes). Findings equal a local run's on the same seeds within the stated tolerance: effects to 1e-4 (the
    local run batches both classes' images together, a worker one class's; on the CPU the world's generator gives
    the same pixels for any batch of 2 or more but differs by up to ~1e-6 for a batch of 1), the same tests passing."""
    from probe.analysis import AnalysisConfig
    from probe.auditing.loop import audit
    from probe.run import RunDir

    analysis = AnalysisConfig(attributions=False, off_object=False, iou_images=0, nearest_k=3, n_carriers=2,
                              necessity_screen_seeds=2, screen_extend=(), max_pairs=16)

    def config(out, **scale):
        base = _config(out, "circle,star", analyze=True, **scale)
        return replace(base, report=False, analysis=analysis)

    local = tmp_path / "local"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a Ray worker with one CPU slot
    try:
        audit(config(local), progress=False)
    finally:
        torch.set_num_threads(threads)
    out = tmp_path / "ray"
    killed, thread = _kill_in_analysis(out)
    result = audit(config(out, backend="ray", workers=2, max_retries=2), progress=False)
    thread.join(timeout=5)
    assert killed, "the test never saw a class in its analysis to kill its worker"
    assert not result.failed and not result.problems, result.problems
    run = RunDir(out)
    metrics = _metrics(out)
    assert all(m["worker"]["attempt"] == 1 for m in metrics.values())  # no token was learned twice
    records = {i: run.read_class_analysis(run.class_dir(i, metrics[i]["class_name"]), strict=True) for i in metrics}
    workers = {i: r.unit_facts["worker"] for i, r in records.items()}
    index, pid = killed[0]
    assert workers[index]["attempt"] == 2 and workers[index]["pid"] not in (pid, os.getpid())  # retried elsewhere
    assert all(w is not None and w["pid"] != os.getpid() for w in workers.values())  # measured on the workers
    assert all(r.unit == (i,) for i, r in records.items())
    # the driver decided once over both classes: analysis.json names both, from 2 units
    summary = json.loads((out / "analysis.json").read_text())
    assert summary["units"] == {"count": 2, "largest": 1} and sorted(summary["classes"]) == ["0", "3"]
    a = {(f["class_index"], f["cue"], f["kind"]): f for f in RunDir(local).read_findings()}
    b = {(f["class_index"], f["cue"], f["kind"]): f for f in RunDir(out).read_findings()}
    assert a.keys() == b.keys() and a
    for key in a:
        assert b[key]["effect"] == pytest.approx(a[key]["effect"], abs=1e-4), key
        assert (b[key]["passes"], b[key]["status"], b[key]["n_images"]) == (a[key]["passes"], a[key]["status"],
                                                                           a[key]["n_images"]), key
