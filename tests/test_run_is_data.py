"""A run directory is data: nothing in it decides what probe loads or executes.

A crafted run whose config.json asks for pickle trust and names a pickle inside the run (the payload writes a
marker file when unpickled) is given to every command that reads runs, from outside the folder and from inside
it. The marker must never appear. The payload itself is checked to work, so the test can fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import run_main
from probe.world import bundled_classifier_path


class _Payload:
    """Unpickling this object opens (creates) the marker file: proof that code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_run(root: Path, marker: Path, model: str = "model.pt") -> Path:
    run = root / "evil"
    (run / "classes" / "0-star").mkdir(parents=True)
    torch.save(_Payload(marker), run / "model.pt")
    config = {"format_version": 1, "classes": [0], "started": "2026-12-01T00:00:00+00:00",
              "audit": {"model": model, "out": str(run), "generator": "model.pt", "trust_pickle": True,
                        "eval_model": "model.pt", "analyze": True, "report": True, "classes": "all",
                        "scale": {"backend": "local", "shard": "0/1"}, "token": {}, "analysis": {}}}
    (run / "config.json").write_text(json.dumps(config))
    (run / "labels.json").write_text(json.dumps(["star"]))
    metrics = {"status": "done", "error": None, "class_index": 0, "class_name": "star", "slug": "0-star",
               "steps": 1, "best_step": 0, "seconds": 1.0, "baseline": {"accuracy": 0.5, "mean_target_prob": 0.5, "n": 2},
               "token": {"accuracy": 1.0, "mean_target_prob": 0.9, "n": 2}, "eval_model": None, "images": []}
    (run / "classes" / "0-star" / "metrics.json").write_text(json.dumps(metrics))
    save_file({"<star-0>": torch.zeros(32)}, str(run / "classes" / "0-star" / "token.safetensors"))
    return run


def test_the_payload_runs_when_unpickled(tmp_path):
    """The marker the other tests look for does appear when the pickle is loaded with trust."""
    marker = tmp_path / "marker"
    run = _crafted_run(tmp_path, marker)
    with pytest.raises(Exception):
        torch.load(run / "model.pt", weights_only=True)
    assert not marker.exists()
    torch.load(run / "model.pt", weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("inside", [False, True], ids=["from-outside", "from-inside"])
def test_a_crafted_run_never_executes_its_pickle(inside, tmp_path, capsys, monkeypatch):
    marker = tmp_path / "marker"
    run = _crafted_run(tmp_path, marker)
    cwd = run if inside else tmp_path
    monkeypatch.chdir(cwd)
    target = "." if inside else str(run)

    code, out, err = run_main(monkeypatch, capsys, "report", target)
    assert code == 0, err
    assert "not analysed" in err and "--model MODEL --generator GENERATOR" in err  # says how to analyse it
    assert not marker.exists(), "probe report ran the run's pickle"

    code, out, err = run_main(monkeypatch, capsys, "check", target, "--max-effect", "0.3")
    assert code != 0 and not marker.exists()

    code, out, err = run_main(monkeypatch, capsys, "compare", target, target, "--out", str(tmp_path / "cmp"))
    assert not marker.exists(), "probe compare ran the run's pickle"

    code, out, err = run_main(monkeypatch, capsys, "generate", target, "--per-class", "1", "--device", "cpu",
                              "--out", str(tmp_path / "data"))
    # inside, the run's relative "model.pt" is found and refused as a pickle (no trust); outside, it is not found
    assert code == 2 and ("--trust-pickle" if inside else "does not exist") in err and "Traceback" not in out + err
    assert not marker.exists(), "probe generate ran the run's pickle"

    import probe

    opened = probe.open_run(target)
    repr(opened), opened._repr_html_(), opened.summary
    assert not marker.exists(), "open_run ran the run's pickle"


def test_a_run_naming_a_python_factory_is_not_imported(tmp_path, capsys, monkeypatch):
    """A ``package.module:function`` model would be imported and called: only the command line may name one."""
    marker = tmp_path / "marker"
    run = _crafted_run(tmp_path, marker, model="probe_evil_module:build")
    (tmp_path / "probe_evil_module.py").write_text(f"open({str(marker)!r}, 'w')\ndef build():\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, "generate", str(run), "--per-class", "1", "--device", "cpu",
                              "--out", str(tmp_path / "data"))
    assert code == 2 and "Python factory" in err and "--model" in err, err
    assert not marker.exists()


def test_report_analyses_only_with_the_models_the_user_names(tmp_path, capsys, monkeypatch):
    """--model without --generator is refused before anything loads; the pickle named by the run stays unread."""
    marker = tmp_path / "marker"
    run = _crafted_run(tmp_path, marker)
    code, out, err = run_main(monkeypatch, capsys, "report", str(run), "--model", str(bundled_classifier_path("clean")))
    assert code == 2 and "--model and --generator go together" in err
    assert not marker.exists()

