"""`probe audit --dry-run --measure`: the models load as the audit would, a few image batches and token steps are timed
at the audit's own settings, and the plan has a time on a device the throughput table has no row for; nothing is
written. The generator is the tiny random SD pipeline (no row: a custom generator), the classifier a small exported
program."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import run_main


@pytest.fixture()
def exported(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(4, 3)).eval()
    program = torch.export.export(net, (torch.rand(2, 3, 32, 32),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    path = tmp_path / "net.pt2"
    torch.export.save(program, str(path))
    (tmp_path / "net.labels.txt").write_text("cat\ndog\ntruck\n")
    (tmp_path / "net.data.json").write_text(json.dumps({"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3,
                                                        "crop_pct": 1.0}))
    return path


def _args(exported, tiny_sd_path, out, *extra):
    return ["audit", "--model", str(exported), "--generator", str(tiny_sd_path), "--classes", "dog,truck",
            "--out", str(out), "--device", "cpu", "--dry-run", *extra]


def test_the_plan_of_an_unmeasured_generator_gets_a_time_measured_here_and_nothing_is_written(
        exported, tiny_sd_path, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    code, plan, err = run_main(monkeypatch, capsys, *_args(exported, tiny_sd_path, out))
    assert code == 0 and "time unknown (no measured row for custom on cpu" in plan, (plan, err)
    assert "`--dry-run --measure` times it here)" in plan  # the plan names the way to a time
    # the flag's wiring (the measurement itself is timed for real below): the models load, nothing is written
    import probe.auditing.measure as measure_module
    from probe.auditing.throughput import Measured

    seen = {}

    def fake(config, classifier, generator, classes, labels):
        seen.update(classes=classes, labels=labels, generator=type(generator).__name__)
        return Measured(image_s=0.5, image_batch=16, image_calls=2, step_s=2.0, step_images=5, token_steps=2,
                        device="cpu")

    monkeypatch.setattr(measure_module, "measure", fake)
    code, plan, err = run_main(monkeypatch, capsys, *_args(exported, tiny_sd_path, out, "--measure", "--max-steps", "3"))
    assert code == 0, err
    assert seen == {"classes": [1, 2], "labels": ["cat", "dog", "truck"], "generator": "Generator"}, seen
    assert "measuring on this machine" in err and "time unknown" not in plan, (plan, err)
    assert "times measured just now on cpu: 0.5 s per image (median of 2 calls of 16)" in plan, plan
    assert "2 s per 5-image token step (median of 2)" in plan, plan
    assert "token optimisation (images with gradient)" in plan and "12 s" in plan  # 2 classes x 3 steps x 2 s
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["net.pt2", "net.labels.txt", "net.data.json", "pipe"] if (tmp_path / "pipe").exists() else
        ["net.pt2", "net.labels.txt", "net.data.json"])


def test_measure_without_dry_run_is_one_line_naming_it(exported, tiny_sd_path, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(monkeypatch, capsys, "audit", "--model", str(exported), "--generator", str(tiny_sd_path),
                            "--out", str(tmp_path / "run"), "--measure")
    assert code != 0 and "--dry-run" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_an_audit_with_a_time_budget_on_an_unmeasured_device_measures_here_and_caps_the_analysis(
        exported, tiny_sd_path, tmp_path, monkeypatch, capsys):
    """Before, `--budget 20s` stopped here ("no measured throughput ... give an image count"); now the audit times the
    machine once the models load and turns the 20 s into an image cap, which the analysis keeps."""
    from probe.run import RunDir

    cues = tmp_path / "cues.txt"
    cues.write_text("{} on grass | {} on sand\n")
    out = tmp_path / "run"
    args = ["audit", "--model", str(exported), "--generator", str(tiny_sd_path), "--classes", "dog", "--out", str(out),
            "--device", "cpu", "--max-steps", "2", "--eval-images", "2", "--cues", str(cues), "--concepts", "none",
            "--attributions", "none", "--discover", "0", "--no-report", "--budget", "20s"]
    code, stdout, err = run_main(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "--budget 20s: no measured throughput" in err and "timing a few image batches" in err, err
    plans = [ln for ln in err.splitlines() if ln.startswith("plan:")]
    assert len(plans) == 2 and "time unknown" in plans[0] and "(budget " in plans[1], plans  # before and after
    cap = int(plans[1].split("(budget ")[1].split(")")[0].replace(",", ""))
    saved = RunDir(out).read_config()["audit"]["analysis"]
    assert saved["max_images"] == cap > 0, (saved, plans)
    # the same command again resumes with the cap it started with: no new measurement (it would move the cap and
    # with it the analysis journal's key)
    code, _, err = run_main(monkeypatch, capsys, *args)
    assert code == 0 and f"--budget 20s: {cap:,} analysis images, as measured when this run started" in err, err
    assert "timing a few image batches" not in err
    assert RunDir(out).read_config()["audit"]["analysis"]["max_images"] == cap
    # a shard started beside the first measured a cap of its own before config.json existed: it takes the saved one
    # (its class records would otherwise be keyed by another cap and read as stale at `probe report`)
    from dataclasses import replace

    from probe.auditing.config import AuditConfig
    from probe.auditing.loop import _shared_cap

    run = RunDir(out)
    mine = AuditConfig.saved(run.read_run_config())
    mine = replace(mine, analysis=mine.analysis.replace(max_images=cap + 7))
    assert _shared_cap(run, mine).analysis.max_images == cap
    assert _shared_cap(run, replace(mine, budget="30s")).analysis.max_images == cap + 7  # another budget: its own
    # the dry run says how to see it: one line naming --measure
    code, _, err = run_main(monkeypatch, capsys, *_args(exported, tiny_sd_path, tmp_path / "plan", "--budget", "20s"))
    assert code != 0 and "--measure" in err and len(err.strip().splitlines()) == 1, err


def test_a_notebook_plans_with_the_models_it_holds_and_every_stage_costs_its_images_at_the_cost_measured(
        exported, tiny_generator, tmp_path):
    """probe.Audit(...).plan(): the plan of run() from Python; with measure=True timed on the loaded models (the
    same measurement as `--dry-run --measure`): every stage's time is its images at the measured cost, and a
    device-time budget turns into images."""
    import probe
    from probe.auditing.loop import AuditConfig
    from probe.token_config import TokenConfig

    config = AuditConfig(model="m", out=str(tmp_path / "run"), token=TokenConfig(max_steps=4, batch_size=3),
                         budget="90s")
    audit = probe.Audit(str(exported), tiny_generator, config=config)
    with pytest.raises(probe.ProbeError, match="--measure"):  # a time budget nothing converts: measure, or images
        audit.plan(["dog"])
    plan = audit.plan(["dog", "truck"], measure=True)
    assert plan.classes == 2 and plan.timing.startswith("measured just now on cpu"), plan.timing
    assert "(median of 2 calls of 16)" in plan.timing and "3-image token step (median of 2)" in plan.timing
    assert "measured just now" in plan._repr_html_()
    for stage in plan.stages:
        if stage.name == "token":  # 2 classes x 4 steps of 3 images, at the measured step
            assert stage.optimisation_steps == 8 and stage.seconds > 0
        else:
            assert stage.seconds == pytest.approx(stage.images * plan.seconds_per_image)
    assert plan.max_images == max(1, int(90 / plan.seconds_per_image))


def test_the_measurement_times_images_in_the_chunks_the_run_uses(exported, tiny_generator, monkeypatch):
    """On CUDA the run generates in the chunk size chosen from free memory; the measurement timed one unchunked batch of
    16 (an optimistic time per image, and a decode that could run out of memory where the run would not). Found by
    review (7 December 2026); the seam is probe.generators.memory.resolve_max_batch, stood in for here (no GPU)."""
    import probe.auditing.measure as measure_module
    import probe.generators.memory as memory
    from probe.auditing.loop import AuditConfig
    from probe.classifiers import load_classifier

    seen = []
    real = measure_module.time_images
    monkeypatch.setattr(memory, "resolve_max_batch", lambda generator, token: memory.MaxBatchChoice(
        max_batch=2, batch_size=token.batch_size, source="auto", limited_by="memory"))
    monkeypatch.setattr(measure_module, "time_images", lambda *a, **k: seen.append(k["max_batch"]) or real(*a, **k))
    config = AuditConfig(model=str(exported), out="unused")
    measure_module.measure(config, load_classifier(str(exported)), tiny_generator, [0], ["dog", "truck"], calls=1,
                           steps=1)
    assert seen == [2]
