"""The counterfactual balance dataset (probe.balance, `probe generate RUN --balance CLASS:CUE`)."""

from __future__ import annotations

import csv
import json
import os
import shutil

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

    # interrupted after two batches, the same command resumes: the finished batches are not drawn again, and the
    # dataset is the uninterrupted one (it was refused: "--out exists and is not an empty folder", all work lost)
    import probe
    from probe.balance import PARTIAL
    from probe.world import bundled_generator_path

    class Counting:
        def __init__(self, inner, stop_at=None):
            self.inner, self.stop_at, self.calls = inner, stop_at, 0

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def generate(self, *a, **k):
            self.calls += 1
            if self.stop_at is not None and self.calls == self.stop_at:
                raise KeyboardInterrupt
            return self.inner.generate(*a, **k)

    world = probe.load_generator(bundled_generator_path(), device="cpu")
    again = tmp_path / "again"
    first = Counting(world, stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        generate_balance(run, again, specs=["star:grass"], per_class=4, device="cpu", generator=first)
    assert (again / PARTIAL).is_file() and not (again / MANIFEST_CSV).exists()
    resumed = Counting(world)
    generate_balance(run, again, specs=["star:grass"], per_class=4, device="cpu", generator=resumed)
    assert not (again / PARTIAL).exists()
    whole = [(r["seed"], r["prompt"], r["kept"], r["path"]) for r in rows]
    assert [(r["seed"], r["prompt"], r["kept"], r["path"]) for r in csv.DictReader(open(again / MANIFEST_CSV))] == whole
    full = Counting(world)  # the same command uninterrupted, batch by batch
    generate_balance(run, tmp_path / "full", specs=["star:grass"], per_class=4, device="cpu", generator=full)
    assert resumed.calls == full.calls - 2  # the two finished batches were not drawn again, the interrupted one was
    with pytest.raises(Exception, match="finished balance dataset"):  # a finished one is not drawn into again
        generate_balance(run, again, specs=["star:grass"], per_class=4, device="cpu", generator=resumed)
    # the run analysed again since the interrupt, its plan changed (the finding's direction flipped): the resume is
    # refused, where it drew the new plan's images beside the old ones' and left files the manifest lacks
    import shutil

    from probe.balance import BalanceError

    flipped = tmp_path / "flipped"
    shutil.copytree(run, flipped)
    findings = json.loads((flipped / "findings.json").read_text())
    for f in findings:
        if f["class_name"] == "star" and f["cue"] == "grass":
            f["effect"], f["ci_low"], f["ci_high"] = -f["effect"], -f["ci_high"], -f["ci_low"]
    (flipped / "findings.json").write_text(json.dumps(findings))
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        generate_balance(run, cut, specs=["star:grass"], per_class=4, device="cpu", generator=Counting(world, stop_at=3))
    with pytest.raises(BalanceError, match="made with other settings \\(targets\\)"):
        generate_balance(flipped, cut, specs=["star:grass"], per_class=4, device="cpu", generator=Counting(world))


def test_a_cue_the_class_avoids_is_balanced_the_other_way_round(readme_demo, tmp_path):
    """The demo's heart token draws fewer bars than the plain prompt (a token-shift finding of -0.17): the classifier
    avoids the bar for 'heart', so the balance data are hearts *with* a bar and its confusers *without* one (the other
    way round from star/grass), each read again from its PNG by the oracles."""
    import numpy as np
    import torch
    from PIL import Image

    from probe.balance import MANIFEST_JSON, generate_balance, plan_balance
    from probe.world.oracles import load_oracles

    from dataclasses import replace

    from probe.run import RunDir

    # the demo's heart/bar decision as float32 sampling makes it (a token-shift of -0.17); where the generator samples
    # in bfloat16 (CPUs with native bf16) the heart's bar ends screened only, so the test pins the records it reads
    run = tmp_path / "demo"
    shutil.copytree(readme_demo / "runs" / "demo", run)
    records = RunDir(run)
    findings = records.require_findings()
    bar = next(f for f in findings if f.class_name == "heart" and f.cue == "bar")
    findings = [f for f in findings if not (f.class_name == "heart" and f.cue == "bar")]
    findings.append(replace(bar, kind="token-shift", effect=-0.167, ci_low=-0.29, ci_high=-0.04, passes=False,
                            status="weak", strength="weak"))
    records.write_findings(findings)
    (star,), (heart,) = plan_balance(run, ["star:grass"]), plan_balance(run, ["heart:bar"])
    assert star.direction == 1 and star.roles == ("without cue", "with cue")
    assert heart.direction == -1 and heart.roles == ("with cue", "without cue") and "avoids" in repr(heart), heart
    out = tmp_path / "balanced"
    result = generate_balance(run, out, specs=["heart:bar"], per_class=3, confusers=1, device="cpu")
    roles = {(o.class_name, o.role): o.kept for o in result.outcomes}
    assert roles[("heart", "with cue")] == 3 and len(roles) == 2, roles
    assert any("avoids 'bar'" in n and "the other way round" in n for n in result.notes), result.notes
    manifest = json.loads((out / MANIFEST_JSON).read_text())
    assert manifest["targets"][0]["direction"] == "avoids"
    kept = [r for r in manifest["rows"] if r["kept"]]
    images = torch.stack([torch.from_numpy(np.array(Image.open(out / r["path"]).convert("RGB"))).permute(2, 0, 1)
                          .float() / 255 for r in kept])
    read = load_oracles().predict(images)
    for k, r in enumerate(kept):
        assert read["shape"][k] == r["class_name"], r
        if r["class_name"] == "heart":
            assert r["role"] == "with cue" and read["tag"][k] == "bar", r
        else:
            assert r["role"] == "without cue" and read["tag"][k] != "bar", r


def test_the_confusers_of_a_cue_the_class_avoids_are_first_the_classes_the_cue_raises(tmp_path):
    """Circles with the heart's dot are called hearts (the circle's token draws fewer dots; the dot raises P(heart) on
    other objects): the balance data for circle:dot are circles with the dot and, first among the confusers, hearts
    without it; a cue the class leans on keeps the classifier's own confusers. From the records alone, no model."""
    from probe.balance import plan_balance
    from probe.run import RunDir
    from probe.run.types import Finding, RunConfig
    from probe.world.scenes import SHAPES

    def finding(cls, kind, effect, passes=False):
        return Finding(class_index=SHAPES.index(cls), class_name=cls, cue="dot", kind=kind, effect=effect,
                       ci_low=effect - 0.1, ci_high=effect + 0.1, n_images=8, evidence=(), passes=passes,
                       strength="weak", sentence=f"{cls} {kind} dot", p=0.2, q=float("nan"), status="screened",
                       details={"attribute": "tag", "value": "dot"}, checked_by="world oracles")

    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.write_labels(list(SHAPES))
    run.write_config(RunConfig(audit={"model": "m.pt2", "out": str(run.root)}, classes=(0, 1, 2, 5)))
    for index in (0, 1, 2, 5):  # each class's baseline images give most probability to the triangle, then circle or square
        run.write_metrics(run.class_dir(index, SHAPES[index]), {
            "status": "done", "class_index": index, "class_name": SHAPES[index],
            "images": [{"kind": "baseline", "path": "images/b.png", "topk": [{"index": index, "prob": 0.7}, {"index": 2, "prob": 0.2},
                                                          {"index": 1 if index == 0 else 0, "prob": 0.1}]}]})
    run.write_findings([finding("circle", "token-shift", -0.5), finding("heart", "sufficiency", 0.08),
                        finding("triangle", "sufficiency", -0.06), finding("square", "token-shift", 0.3)])
    run.write_analysis({"domain": "world", "interventions_checked_by": "world oracles", "cues": {"list": [
        {"name": "dot", "template": "{} with a dot in the corner", "counters": ["{} with a bar in the corner",
         "{} with no tag"], "counter_values": ["bar", "none"]}]}})
    (circle,) = plan_balance(run.root, ["circle:dot"])
    assert circle.direction == -1 and circle.confusers == (5, 2), circle  # the heart first (not the triangle the dot
    # lowers), then the classifier's own nearest, the triangle
    (square,) = plan_balance(run.root, ["square:dot"])
    assert square.direction == 1 and square.confusers == (2, 0), square  # its own confusers, the heart not pulled in


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
    # a run checked by a concept model: the later command is told to name it again (the run never picks a model)
    from types import SimpleNamespace

    checked = SimpleNamespace(domain=None, checked_by="concepts: my-clip", cues={})
    with pytest.raises(BalanceError, match="checked by 'concepts: my-clip'.*the same CLIP or SigLIP") as e:
        _load_check(checked, "auto", ["star"], [])
    assert "\n" not in str(e.value)


def test_example_finetunes_only_the_last_layer_and_weakens_the_cue(tmp_path):
    """examples/balance_and_finetune.py: the rebuilt classifier is the saved one, fine-tuning moves only its last
    layer, balance images of star without grass raise P(star) there, and the result saves and loads."""
    import importlib.util
    from pathlib import Path

    import numpy as np
    import torch

    import probe
    from probe.world import SHAPES, bundled_classifier_path
    from probe.world.classifiers import _render, sample_biased_attributes, save_world_classifier

    path = Path(__file__).resolve().parents[1] / "examples" / "balance_and_finetune.py"
    spec = importlib.util.spec_from_file_location("balance_and_finetune", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    biased = bundled_classifier_path("biased")
    model, recipe = example.rebuild(biased)
    x = torch.rand(3, 3, 32, 32)
    assert torch.allclose(model((x - 0.5) / 0.25), torch.export.load(str(biased)).module()((x - 0.5) / 0.25))
    train = example.training_distribution(recipe, 256, seed=5)
    rng = np.random.default_rng(9)  # stars on sand: the shortcut's counterexamples
    attrs = sample_biased_attributes(48, {}, 0.0, rng)
    attrs["shape"][:] = SHAPES.index("star")
    attrs["background"][:] = 2  # sand
    balance = (_render(attrs, 11), torch.as_tensor(attrs["shape"]))
    star = SHAPES.index("star")
    before_p = model((balance[0] - 0.5) / 0.25).softmax(-1)[:, star].mean().item()
    frozen = {k: v.clone() for k, v in model.state_dict().items() if "fc." not in k}
    head = model.net.fc.weight.clone()
    example.finetune_last_layer(model, (0.5,) * 3, (0.25,) * 3, train, balance, steps=60, balance_weight=2.0)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in frozen.items())  # batch-norm statistics too
    assert not torch.equal(head, model.net.fc.weight)
    after_p = model((balance[0] - 0.5) / 0.25).softmax(-1)[:, star].mean().item()
    assert after_p > before_p + 0.05, (before_p, after_p)
    saved = save_world_classifier(model, tmp_path / "ft.pt2", bias=recipe["bias"], strength=recipe["strength"])
    clf = probe.load_classifier(str(saved))
    assert list(clf.labels) == list(SHAPES)
    assert torch.allclose(clf(balance[0][:4]).softmax(-1), model((balance[0][:4] - 0.5) / 0.25).softmax(-1), atol=1e-4)
