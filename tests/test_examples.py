"""examples/*.py: each script runs as a user runs it, writes only under --out, and probe loads what it wrote.

Every script is run as a subprocess from an empty working directory whose path is also HOME, so a
file written anywhere but --out (a cache, a default folder) shows up. The classifier each one saves
is then loaded here with probe.load_classifier; where the script carried the bundled shapes-world
weights, its logits must equal the bundled classifier's. The TorchScript example's printed audit
command is run through the CLI (with the fastest settings) to show that the command works.
"""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import probe
from conftest import probe_script
from probe.world import SHAPES, bundled_classifier_path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# script -> (what to load, relative to --out, or a factory spec; load_classifier arguments; format; carries world weights)
LOADS = {
    "export_program.py": ("world.pt2", {}, "export", True),
    "torchscript_archive.py": ("world.ts", {}, "torchscript", True),
    "state_dict_with_arch.py": ("world.pth", {"arch": "timm:test_resnet"}, "state_dict", True),
    "huggingface_folder.py": ("tiny-vit", {}, "huggingface", False),
    "timm_hub_folder.py": ("world-timm", {}, "timm", True),
    "factory_function.py": ("factory_function:world_classifier", {"labels": "labels.txt"}, "factory", True),
    "pickled_module.py": ("world.pt", {"trust_pickle": True}, "pickle", True),
}
FACTORY_PREPROCESSING = dict(input_size=32, mean=(0.5,) * 3, std=(0.25,) * 3, crop_pct=1.0, interpolation="bilinear")


# recipes that need a finished run, tested elsewhere (tests/test_balance.py)
RECIPES = {"balance_and_finetune.py"}


def test_every_example_is_tested():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert scripts == set(LOADS) | RECIPES


def run_example(script: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(cwd), PYTHONDONTWRITEBYTECODE="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, str(EXAMPLES / script), "--out", "out"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warning" not in done.stderr.lower(), done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """script -> (its working directory, its completed process); each script runs once per module."""
    cache: dict[str, tuple[Path, subprocess.CompletedProcess]] = {}

    def get(script: str) -> tuple[Path, subprocess.CompletedProcess]:
        if not cache:  # all of them on first use, two at a time: each is mostly a single-threaded import
            from concurrent.futures import ThreadPoolExecutor

            names = sorted(LOADS)
            folders = [tmp_path_factory.mktemp(Path(n).stem) for n in names]  # here: mktemp is not thread-safe
            with ThreadPoolExecutor(max_workers=2) as pool:
                done = list(pool.map(run_example, names, folders))
            cache.update(zip(names, zip(folders, done)))
        return cache[script]

    return get


def audit_line(stdout: str) -> str:
    lines = [ln for ln in stdout.splitlines() if " audit --model " in ln and "probe" in ln]
    assert lines, stdout
    return lines[0]


@pytest.fixture(scope="module")
def bundled():
    return probe.load_classifier(bundled_classifier_path("biased"))


@pytest.mark.parametrize("script", sorted(LOADS))
def test_example_runs_and_its_model_loads(script, ran, bundled, monkeypatch):
    cwd, done = ran(script)
    out = cwd / "out"
    # 1. Files only under --out, and some there.
    assert sorted(p.name for p in cwd.iterdir()) == ["out"]
    assert any(out.iterdir())
    # 2. What it printed: the classifier, its accuracy, the audit command naming what it wrote.
    assert "Classifier(" in done.stdout and "accuracy on 96 rendered scenes" in done.stdout
    spec, kwargs, fmt, carried = LOADS[script]
    command = shlex.split(audit_line(done.stdout))
    assert command[command.index("--model") + 1] == (spec if ":" in spec else str(Path("out") / spec))
    # 3. probe loads it as a user would.
    kwargs = dict(kwargs)
    if fmt == "factory":
        monkeypatch.syspath_prepend(str(EXAMPLES))
        kwargs = dict(labels=out / kwargs["labels"], **FACTORY_PREPROCESSING)
    else:
        spec = out / spec
    clf = probe.load_classifier(spec, **kwargs)
    assert clf.format == fmt
    assert clf.labels == list(SHAPES)
    if carried:  # the bundled weights, moved into this format: the same logits
        x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            assert torch.allclose(clf(x), bundled(x), atol=1e-4)
    if fmt == "pickle":  # without trust_pickle: refused, in one line naming the flag
        with pytest.raises(probe.ClassifierError) as e:
            probe.load_classifier(spec)
        assert "\n" not in str(e.value) and "--trust-pickle" in str(e.value)
        assert f"without trust_pickle: model {Path('out') / 'world.pt'}: " in done.stdout
        assert str(e.value).split(": ", 1)[1] in done.stdout  # the same refusal, shown by the script


def test_torchscript_example_audit_command_runs(ran, tmp_path):
    """The printed command, through the CLI from the script's directory, with the fastest settings and
    its --out moved to tmp/run."""
    cwd, done = ran("torchscript_archive.py")
    command = shlex.split(audit_line(done.stdout))
    assert command[:2] == ["probe", "audit"]
    command[0] = probe_script()
    command[command.index("--out") + 1] = str(tmp_path / "run")
    command += ["--max-steps", "1", "--no-analyze", "--no-report", "--eval-images", "2", "--steps", "2", "--batch-size", "2",
                "--quiet"]
    audit = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert audit.returncode == 0, audit.stdout[-2000:] + audit.stderr[-3000:]
    with open(tmp_path / "run" / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["class_name"], r["status"]) for r in rows] == [("star", "done")]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert '"format": "torchscript"' in json.dumps(config)
