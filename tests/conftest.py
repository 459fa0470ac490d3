"""Shared fixtures: everything offline, tiny and seeded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Thread counts are read once, when numpy's OpenBLAS and torch load: set them before either is imported (this file
# is the first to import them). scripts/test.sh runs two pytest-xdist workers on the 2-core machines: one thread each
# (and one for the subprocesses they start), else two threads each. numpy's OpenBLAS gets one thread either way: its
# idle workers busy-wait after every call, and the tests' numpy is small. With its default of one thread per core,
# measured 7 December 2026 (Zen 4, 2 cores), a test of the statistics engine used 1.7 cores for its one thread of
# work, and the whole suite 1364 core-seconds.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory) -> Path:
    """A random tiny StableDiffusionPipeline saved as a diffusers folder (32 px images, 4 DDIM steps)."""
    from tiny_sd import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd") / "pipe")


@pytest.fixture()
def tiny_generator(tiny_sd_path):
    """A fresh Generator per test: tokens added by one test never leak into another."""
    from probe.generators import load_generator

    return load_generator(tiny_sd_path, device="cpu")


def world_cue_file(path: Path, *names: str) -> str:
    """A cue-list file of some of the shapes world's cues (by name), for tests that need a cheap analysis."""
    import json

    from probe.world.domain import world_cues

    Path(path).write_text(json.dumps([c.to_dict() for c in world_cues() if c.name in names]))
    return str(path)


def run_main(monkeypatch, capsys, *args, lines: bool = False):
    """``probe ARGS`` through the console entry point in this process: (exit code, stdout, stderr); with
    ``lines`` the outputs come as lists of their non-empty lines."""
    from probe.cli import main

    monkeypatch.setattr(sys, "argv", ["probe", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    out, err = capsys.readouterr()
    if lines:
        return code, [x for x in out.splitlines() if x.strip()], [x for x in err.splitlines() if x.strip()]
    return code, out, err


def probe_script() -> str:
    """The console script the README's commands run (installed beside this Python)."""
    script = Path(sys.executable).with_name("probe")
    return str(script) if script.is_file() else "probe"


def _shared(tmp_path_factory, name: str, build) -> Path:
    """A session result built once for the whole test run, also when pytest-xdist runs it in several
    workers: the first worker builds it under a file lock in the run's common temporary folder, the others
    wait and reuse it (a failed build is re-raised in every worker that asks). Tests must not change it:
    copy it first."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this run
    folder, failed = root / f"shared-{name}", root / f"shared-{name}.failed"
    with FileLock(str(root / f"shared-{name}.lock")):
        if failed.is_file():
            pytest.fail(failed.read_text())
        if not (folder / ".done").is_file():
            folder.mkdir(parents=True, exist_ok=True)
            try:
                build(folder)
            except BaseException as e:
                failed.write_text(f"{name}: {e}"[-4000:])
                raise
            (folder / ".done").write_text("")
    return folder


def _probe(args: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([probe_script(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _build_readme_demo(cwd: Path) -> None:
    done = _probe(["demo", "--quiet"], cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warning" not in done.stderr.lower() and "error" not in done.stderr.lower(), done.stderr[-3000:]
    (cwd / "demo.stderr").write_text(done.stderr)


def _readme_demo(tmp_path_factory) -> Path:
    return _shared(tmp_path_factory, "readme-demo", _build_readme_demo)


def _clean_demo(tmp_path_factory) -> Path:
    biased = _readme_demo(tmp_path_factory) / "runs" / "demo"

    def build(folder: Path) -> None:
        done = _probe(["demo", "--classifier", "clean", "--quiet", "--confirm-like", str(biased),
                       "--out", str(folder / "clean")], folder)
        assert done.returncode == 0, done.stderr[-3000:]
        (folder / "clean.stderr").write_text(done.stderr)

    return _shared(tmp_path_factory, "clean-demo", build)


@pytest.fixture(scope="session")
def readme_demo(tmp_path_factory) -> Path:
    """`probe demo` as the README types it: from the working directory, default (relative) output, every class of
    the biased classifier (about 125 s at one thread); the run is in ./runs/demo of the returned folder."""
    return _readme_demo(tmp_path_factory)


@pytest.fixture(scope="session")
def clean_demo(readme_demo, tmp_path_factory) -> tuple[Path, Path, str]:
    """The README's biased demo, and the clean classifier's demo of all six classes confirming the biased run's tests
    on its seeds (``probe compare`` pairs them; the clean run must also yield no passing finding): (biased run, clean
    run, the clean demo's stderr)."""
    folder = _clean_demo(tmp_path_factory)
    return readme_demo / "runs" / "demo", folder / "clean", (folder / "clean.stderr").read_text()


_PREBUILDS: list = []  # the background threads of pytest_collection_finish, joined at the session's end


def pytest_collection_finish(session) -> None:
    """Start the shared demo runs at once, in a background thread (the work is a ``probe demo`` subprocess), when a
    selected test needs them: the worker goes on with other tests meanwhile, where it used to sit idle in the file
    lock while the other worker built them (about 80 s of a 2-core suite). Whichever worker takes the lock first
    builds; a failure is recorded by ``_shared`` and re-raised by the fixture in every test that asks."""
    import threading

    if session.config.option.collectonly:
        return  # nothing runs: --collect-only must not wait minutes for demos nobody reads
    wanted = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    steps = [build for fixture, build in (("readme_demo", _readme_demo), ("clean_demo", _clean_demo))
             if fixture in wanted]
    if not steps:
        return
    factory = session.config._tmp_path_factory  # noqa: SLF001 - the object behind the tmp_path_factory fixture

    def prebuild() -> None:
        for build in steps:
            try:
                build(factory)
            except BaseException:  # noqa: BLE001 - recorded in shared-<name>.failed; the fixture re-raises it
                return

    thread = threading.Thread(target=prebuild, name="prebuild-shared-demos", daemon=True)
    thread.start()
    _PREBUILDS.append(thread)
    # The demos are the suite's critical path (tests that read them wait in the lock), so they get the CPU first: on
    # Linux a nice value belongs to one thread, and this thread (the worker's tests and their subprocesses) steps
    # back while the build thread and the demo it starts stay at the worker's own priority.
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, 0, os.getpriority(os.PRIO_PROCESS, 0) + 10)
        except OSError:
            pass



def pytest_sessionfinish(session, exitstatus) -> None:
    """A worker that ran out of tests while its thread still builds a shared demo waits for it: the other worker may
    be waiting in the lock for the same run, which would otherwise be left half written."""
    for thread in _PREBUILDS:
        thread.join(timeout=1800)


# The longest files first (pytest-xdist --dist loadfile --no-loadscope-reorder hands out files in collection order;
# without that flag it hands out the files with the most tests first, which left this order unused until 5 December
# 2026): two workers then end together instead of one running the Ray tests alone for the last ~3 minutes (measured
# 4 December 2026, 00:10 UTC: the Ray file started last and ran ~200 s with the other worker idle). Files that read
# the shared demos come last, when their background build (pytest_collection_finish) is done. Seconds: each file's
# wall time in the suite of 6 December 2026, 04:00 UTC (576 s; the Ray file beside the demo builds at the lower
# priority, 78 s alone).
FIRST = ("test_backend_ray.py",  # ~400 s
         "test_notebook.py",  # ~50 s
         "test_concept_checks_audit.py",  # ~95 s
         "test_examples.py",  # ~70 s
         "test_scale.py",  # ~30 s
         "test_run_locks.py",  # ~40 s
         "test_run_properties.py",  # ~25 s
         "test_hostile_cli.py")  # ~30 s of small tests


def pytest_collection_modifyitems(session, config, items) -> None:
    """FIRST, then the files that need no shared demo, then those that read the README demo, then those that read the
    clean demo too (built after it): the workers run everything else while the demos build in the background."""
    rank = {name: i for i, name in enumerate(FIRST)}
    needs: dict = {}
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        level = 2 if "clean_demo" in used else 1 if "readme_demo" in used else 0
        needs[item.path] = max(needs.get(item.path, 0), level)
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST) + needs[item.path]))  # stable otherwise
