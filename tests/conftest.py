"""Shared fixtures: everything offline, tiny and seeded."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))
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


@pytest.fixture(scope="session")
def readme_demo(tmp_path_factory) -> Path:
    """`probe demo` exactly as the README types it: from the working directory, default (relative) output.

    Reduced to one class so the suite stays within its budget; the run goes to ./runs/demo.
    """
    cwd = tmp_path_factory.mktemp("newcomer")
    done = subprocess.run([probe_script(), "demo", "--classes", "star", "--quiet"], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warning" not in done.stderr.lower() and "error" not in done.stderr.lower(), done.stderr[-3000:]
    return cwd


@pytest.fixture(scope="session")
def clean_star_demo(readme_demo, tmp_path_factory) -> tuple[Path, Path, str]:
    """The README's biased star demo, and the clean classifier's star demo confirming its tests on its seeds
    (``probe compare`` pairs them; the clean run must also yield no passing cue finding): (biased run, clean
    run, the clean demo's stderr)."""
    biased = readme_demo / "runs" / "demo"
    clean = tmp_path_factory.mktemp("clean") / "clean"
    done = subprocess.run([probe_script(), "demo", "--classifier", "clean", "--classes", "star", "--quiet",
                           "--confirm-like", str(biased), "--out", str(clean)], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return biased, clean, done.stderr
