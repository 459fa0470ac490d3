"""`probe check`, `probe compare` and `probe report` read files only: they import no torch (nor diffusers,
transformers, captum), so they start fast in CI and on a laptop. Each runs in a fresh interpreter whose modules
are inspected after the command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from run_files import make_valid_run

HEAVY = ("torch", "diffusers", "transformers", "captum", "timm")
PROGRAM = """
import json, sys
from probe.cli import main
sys.argv = ["probe", *json.loads(sys.argv[1])]
code = 0
try:
    main()
except SystemExit as e:
    code = e.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY=" + json.dumps(heavy))
print("CODE=" + json.dumps(code))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("light")
    return make_valid_run(root / "a"), make_valid_run(root / "b", seed=1)


@pytest.mark.parametrize("command", ["check", "compare", "report"])
def test_the_file_commands_load_no_torch(command, runs, tmp_path):
    a, b = runs
    args = {"check": ["check", str(a), "--max-effect", "0.3"],
            "compare": ["compare", str(a), str(b), "--out", str(tmp_path / "cmp")],
            "report": ["report", str(a), "--out", str(tmp_path / "report")]}[command]
    done = subprocess.run([sys.executable, "-c", PROGRAM.format(heavy=HEAVY), json.dumps(args)], capture_output=True,
                          text=True, timeout=120)
    line = [x for x in done.stdout.splitlines() if x.startswith("HEAVY=")]
    assert line, done.stdout[-2000:] + done.stderr[-2000:]
    assert json.loads(line[0][len("HEAVY="):]) == [], f"probe {command} imported heavy libraries"
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    # and the command did its work (a refusal at parsing would import nothing heavy either)
    code = json.loads(next(x for x in done.stdout.splitlines() if x.startswith("CODE="))[len("CODE="):])
    assert code in ((0, 3, 4) if command == "check" else (0, None)), (code, done.stderr[-2000:])
    if command != "check":
        assert (tmp_path / ("cmp" if command == "compare" else "report") / "index.html").is_file()


NAMES = """
import importlib, inspect, json, sys
import probe
import probe.comparison  # the module behind probe.compare: importing it must not replace the function
out = {"compare": [callable(probe.compare), inspect.ismodule(probe.compare)]}
for package in ("probe", "probe.analysis", "probe.world"):  # every lazy public name, after importing its module
    module = importlib.import_module(package)
    for name, source in module._LAZY.items():
        importlib.import_module(source)
        out[package + "." + name] = [True, inspect.ismodule(getattr(module, name))]
print("NAMES=" + json.dumps(out))
"""


def test_public_functions_stay_functions_after_their_modules_are_imported():
    """`probe.compare(a, b)` as the README shows it, even after `import probe.comparison` (a module named like the
    function would replace it: "'module' object is not callable"); and no lazy public name of probe, probe.analysis
    or probe.world is shadowed by a module of the same name."""
    done = subprocess.run([sys.executable, "-c", NAMES], capture_output=True, text=True, timeout=300)
    line = [x for x in done.stdout.splitlines() if x.startswith("NAMES=")]
    assert line, done.stdout[-2000:] + done.stderr[-2000:]
    names = json.loads(line[0][len("NAMES="):])
    assert names.pop("compare") == [True, False]
    assert not [name for name, (_, is_module) in names.items() if is_module]


def test_probe_dash_dash_version_prints_what_probe_version_prints(monkeypatch, capsys):
    """`probe --version`, as most tools spell it, was 'No such option'; it prints what `probe version` prints."""
    from conftest import run_main

    code, flag, _ = run_main(monkeypatch, capsys, "--version")
    assert code == 0 and flag.startswith("probe ") and "torch " in flag
    code, command, _ = run_main(monkeypatch, capsys, "version")
    assert code == 0 and command == flag
