"""Where the test suite's CPU goes: core-seconds per test file, the shared demo builds, and the machine's total.

The suite is CPU-bound on 2 cores (both busy ~98% of its run), so its wall time is its core-seconds divided by two,
and the only way to a shorter suite is less work. This runs the README's test command (pytest on two xdist workers,
``--dist loadfile``) with a plugin that records, around every test, the worker process's CPU (its threads) and the
CPU of the children it reaped meanwhile (``probe`` subprocesses; the shared demo builds land in whichever test was
running when they ended, and are named as such), and reads the machine's busy time from /proc/stat around the whole
run (Ray's daemons and workers are nobody's children: they are in the total only).

    .venv/bin/python benchmarks/suite_cost.py                      # the whole suite
    .venv/bin/python benchmarks/suite_cost.py --top 40 --json out.json -- tests/test_confirm.py

Prints the wall time, the busy core-seconds, and the files by core-seconds. Linux only (/proc/stat, getrusage).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_BUILD = 120.0  # core-seconds of reaped children in one test above which they are a shared demo's build (a
# demo takes 200-270 on 2 cores, the notebook test's kernel ~60)

PLUGIN = '''
import json, os, resource, time
_LOG = os.path.join(os.environ["SUITE_COST_DIR"], os.environ.get("PYTEST_XDIST_WORKER", "main") + ".jsonl")
_START = {}

def _cpu():
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime, c.ru_utime + c.ru_stime

def pytest_runtest_logstart(nodeid, location):
    _START[nodeid] = (time.time(),) + _cpu()

def pytest_runtest_logfinish(nodeid, location):
    if nodeid not in _START or not os.environ.get("PYTEST_XDIST_WORKER"):
        return  # the xdist controller sees every test's report too: only the workers ran them
    t0, s0, c0 = _START.pop(nodeid)
    s1, c1 = _cpu()
    with open(_LOG, "a") as f:
        f.write(json.dumps({"id": nodeid, "wall": time.time() - t0, "self": s1 - s0, "children": c1 - c0}) + "\\n")
'''


def busy_seconds() -> float:
    """The machine's busy CPU time so far (user, nice, system, irq, softirq), in seconds."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6]) / os.sysconf("SC_CLK_TCK")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--top", type=int, default=25, help="files to list (default 25)")
    parser.add_argument("--json", help="also write every test's record and the totals here")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest (test files, -k ...)")
    args = parser.parse_args(argv)
    if not Path("/proc/stat").is_file():
        print("error: benchmarks/suite_cost.py reads /proc/stat; run it on Linux", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="suite-cost-") as tmp:
        (Path(tmp) / "suite_cost_plugin.py").write_text(PLUGIN)
        env = dict(os.environ, SUITE_COST_DIR=tmp, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   PYTHONPATH=os.pathsep.join(filter(None, [tmp, os.environ.get("PYTHONPATH")])))
        command = [sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadfile", "--no-loadscope-reorder",
                   "-p", "suite_cost_plugin", "-p", "no:cacheprovider", *args.pytest_args]
        b0, t0 = busy_seconds(), time.time()
        code = subprocess.run(command, cwd=ROOT, env=env).returncode
        wall, busy = time.time() - t0, busy_seconds() - b0
        rows = [json.loads(line) for log in Path(tmp).glob("gw*.jsonl") for line in log.read_text().splitlines()]
    files: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
    builds = []
    for r in rows:
        name = r["id"].split("::")[0]
        if r["children"] > DEMO_BUILD:  # a shared demo build ended during this test: counted apart
            builds.append(r["children"])
            r = dict(r, children=0.0)
        files[name][0] += r["self"] + r["children"]
        files[name][1] += r["wall"]
        files[name][2] += 1
    tests = sum(v[0] for v in files.values())
    print(f"pytest exit {code}; {len(rows)} tests; wall {wall:.0f} s; machine busy {busy:.0f} core-seconds "
          f"({busy / wall:.2f} cores on average, {os.cpu_count()} present)")
    print(f"  the tests (their processes and the probe subprocesses they reaped): {tests:.0f} core-seconds")
    print(f"  shared demo builds (children above {DEMO_BUILD:.0f} s reaped in one test, with that test's own "
          f"subprocesses): {', '.join(f'{b:.0f} core-seconds' for b in builds) or 'none'}")
    print(f"  outside any test (collection and imports in the workers, Ray's daemons and workers, pytest-xdist, "
          f"the kernel): {busy - tests - sum(builds):.0f} core-seconds")
    print(f"{'core-s':>8} {'wall s':>8} {'tests':>6}  file")
    for name, (cpu, w, n) in sorted(files.items(), key=lambda kv: -kv[1][0])[:args.top]:
        print(f"{cpu:8.1f} {w:8.1f} {n:6d}  {name}")
    if args.json:
        Path(args.json).write_text(json.dumps({"wall_s": wall, "busy_core_s": busy, "pytest_exit": code,
                                               "demo_builds_core_s": builds, "tests": rows}, indent=1))
    return code


if __name__ == "__main__":
    sys.exit(main())
