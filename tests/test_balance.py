"""The counterfactual balance dataset (probe.balance, `probe generate RUN --balance CLASS:CUE`)."""

from __future__ import annotations

import csv
import json
import os

import pytest

from conftest import run_main


def _no_models(monkeypatch):
    """Loading a generator or a concept model fails the test: the errors under test must come first."""
    import probe.auditing.class_run as class_run
    import probe.concepts as concepts

    def refuse(*_a, **_k):
        raise AssertionError("a model was loaded before the error")

    monkeypatch.setattr(class_run, "load_generator_of", refuse)
    monkeypatch.setattr(concepts, "load_concepts", refuse)


def test_star_grass_balance_shows_star_without_grass_and_confusers_with_it(readme_demo, tmp_path):
    from PIL import Image
    import numpy as np
    import torch

    from probe.balance import MANIFEST_CSV, MANIFEST_JSON, generate_balance
    from probe.world.oracles import load_oracles

    run = readme_demo / "runs" / "demo"
    out = tmp_path / "balanced"
    result = generate_balance(run, out, specs=["star:grass"], per_class=4, device="cpu")
    (target,) = result.targets
    assert target.class_name == "star" and (target.attribute, target.value) == ("background", "grass")
    assert "grass" not in target.counter_values and target.confusers, target
    roles = {(o.class_name, o.role): o for o in result.outcomes}
    assert roles[("star", "without cue")].kept == 4
    assert sum(o.kept for o in result.outcomes if o.role == "with cue") >= 4
    # every kept image, read again by the oracles from the PNG on disk: star without grass, confusers with grass
    oracles = load_oracles()
    rows = list(csv.DictReader(open(out / MANIFEST_CSV, encoding="utf-8")))
    kept = [r for r in rows if r["kept"] == "True"]
    assert len(kept) == result.kept and len(rows) == result.kept + result.dropped
    images = torch.stack([torch.from_numpy(np.array(Image.open(out / r["path"]).convert("RGB"))).permute(2, 0, 1)
                          .float() / 255 for r in kept])
    read = oracles.predict(images)
    for k, r in enumerate(kept):
        assert read["shape"][k] == r["class_name"], r
        if r["role"] == "without cue":
            assert r["class_name"] == "star" and read["background"][k] != "grass", r
        else:
            assert r["class_name"] != "star" and read["background"][k] == "grass", r
        assert (out / r["path"]).parent.name == r["class_name"]  # ImageFolder: one folder per class
    # everything stays under --out, and the JSON manifest says what was planned and kept
    for root, _, files in os.walk(out):
        for f in files:
            assert os.path.realpath(os.path.join(root, f)).startswith(os.path.realpath(out) + os.sep)
    manifest = json.loads((out / MANIFEST_JSON).read_text())
    assert manifest["checked_by"] == "world oracles" and manifest["targets"][0]["cue"] == "grass"
    assert len(manifest["rows"]) == len(rows) and {"prompt", "seed", "reading", "kept"} <= set(manifest["rows"][0])
    assert not any(p.name.startswith("bal") for p in run.iterdir())  # nothing written into the run


def test_bad_balance_specs_fail_in_one_line_before_models_load(readme_demo, tmp_path, monkeypatch, capsys):
    _no_models(monkeypatch)
    run = str(readme_demo / "runs" / "demo")
    out = str(tmp_path / "d")
    code, _, err = run_main(monkeypatch, capsys, "generate", run, "--balance", "star:sky", "--per-class", "4", "--out", out)
    assert code != 0 and len(err.strip().splitlines()) == 1
    assert "'sky' is not a cue of a finding of class 3 ('star')" in err and "'grass'" in err
    code, _, err = run_main(monkeypatch, capsys, "generate", run, "--balance", "moon:grass", "--per-class", "4", "--out", out)
    assert code != 0 and "names no class of the run" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_main(monkeypatch, capsys, "generate", run, "--balance", "star", "--per-class", "4", "--out", out)
    assert code != 0 and "is not CLASS:CUE" in err
    code, _, err = run_main(monkeypatch, capsys, "generate", run, "--balance", "star:grass", "--per-class", "4",
                            "--min-prob", "0.5", "--out", out)
    assert code != 0 and "--min-prob do not apply with --balance" in err
    code, _, err = run_main(monkeypatch, capsys, "generate", run, "--balance", "star:grass", "--per-class", "4",
                            "--out", str(readme_demo / "runs" / "demo" / "balanced"))
    assert code != 0 and "lies inside the probe run" in err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    code, _, err = run_main(monkeypatch, capsys, "generate", run, "--balance", "star:grass", "--per-class", "4",
                            "--out", str(tmp_path / "full"))
    assert code != 0 and "not an empty folder" in err
    assert not os.path.exists(out)


def test_balance_needs_a_check(tmp_path, monkeypatch):
    from probe.balance import BalanceConfig, BalanceError, _load_check

    with pytest.raises(BalanceError, match="--per-class 0"):
        BalanceConfig(specs=("star:grass",), per_class=0)
    with pytest.raises(BalanceError, match="at least one CLASS:CUE"):
        BalanceConfig(specs=())
    with pytest.raises(BalanceError, match="keep images nobody checked"):
        _load_check(None, "none", ["star"], [])
    with pytest.raises(BalanceError, match="not checked by an installed domain's oracles"):
        _load_check(None, "auto", ["star"], [])
