"""probe audit's run directory: artifacts, resume, per-class failures, Ctrl-C, and the CLI's errors."""

from __future__ import annotations

import csv
import json
import re

import pytest

from conftest import run_main
import torch

import probe.auditing.class_run as class_run
import probe.auditing.loop as runs
from color_classifier import calibrated_redness_classifier
from probe.classifiers import load_classifier
from probe.errors import RunError
from probe.auditing.loop import AuditConfig, audit
from probe.tokens import TokenConfig

TOKEN = TokenConfig(lr=0.1, max_steps=2, patience=2, guidance_scale=7.5, eval_images=2, batch_size=2)


@pytest.fixture()
def redness(tiny_generator):
    module = calibrated_redness_classifier(tiny_generator)
    return load_classifier(module, labels=["other", "star <b>"], input_size=32, mean=(0, 0, 0), std=(1, 1, 1),
                           crop_pct=1.0)


def _config(tmp_path, tiny_sd_path, **kw):
    return AuditConfig(model="tests:redness", out=str(tmp_path / "run"), generator=str(tiny_sd_path), token=TOKEN,
                       analyze=False, report=False, **kw)


def test_audit_writes_the_documented_run_directory(tmp_path, tiny_sd_path, tiny_generator, redness):
    result = audit(_config(tmp_path, tiny_sd_path), classifier=redness, generator=tiny_generator, progress=False)
    run = result.run_dir
    assert not result.failed and len(result.rows) == 2
    config = json.loads((run / "config.json").read_text())
    assert config["audit"]["token"]["max_steps"] == 2 and config["versions"]["torch"] == torch.__version__
    assert json.loads((run / "labels.json").read_text()) == ["other", "star <b>"]
    rows = list(csv.DictReader((run / "summary.csv").open()))
    assert [r["class_name"] for r in rows] == ["other", "star <b>"] and rows[1]["status"] == "done"
    star = run / "classes" / "1-star-b"
    metrics = json.loads((star / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["token_string"] == "<probe-1>"
    assert metrics["prompts"]["token"][0] == "a photo of a <probe-1> star <b>"
    kinds = sorted(i["kind"] for i in metrics["images"])
    assert kinds == ["baseline", "baseline", "token", "token"]
    for image in metrics["images"]:
        assert (star / image["path"]).is_file() and image["topk"][0]["label"] in {"other", "star <b>"}
    history = list(csv.DictReader((star / "history.csv").open()))
    assert len(history) == metrics["steps"] and float(history[0]["loss"]) > 0
    from safetensors.torch import load_file

    assert torch.equal(load_file(str(star / "token.safetensors"))["<probe-1>"], tiny_generator.token_vector("<probe-1>"))
    assert not list(run.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_resume_skips_finished_classes_and_redoes_an_interrupted_one(tmp_path, tiny_sd_path, tiny_generator, redness,
                                                                      monkeypatch):
    config = _config(tmp_path, tiny_sd_path)
    first = audit(config, classifier=redness, generator=tiny_generator, progress=False)
    finished = first.run_dir / "classes" / "0-other" / "metrics.json"
    stamp = finished.stat().st_mtime_ns
    interrupted = first.run_dir / "classes" / "1-star-b"
    (interrupted / "metrics.json").unlink()  # as if Ctrl-C hit before the class finished
    (interrupted / "half-written.png").write_bytes(b"\x89PNG")
    calls = []
    real = class_run.optimize_class_token
    monkeypatch.setattr(class_run, "optimize_class_token", lambda g, c, target, *a, **k: calls.append(target) or real(g, c, target, *a, **k))
    second = audit(config, classifier=redness, generator=tiny_generator, progress=False)
    assert calls == [1]
    assert finished.stat().st_mtime_ns == stamp
    assert not (interrupted / "half-written.png").exists() and (interrupted / "metrics.json").is_file()
    assert [r["status"] for r in second.rows] == ["done", "done"]


def test_a_failing_class_is_recorded_and_the_run_goes_on(tmp_path, tiny_sd_path, tiny_generator, redness, monkeypatch):
    real = class_run.optimize_class_token

    def flaky(g, c, target, *a, **k):
        if target == 0:
            raise RuntimeError("boom inside the user's model")
        return real(g, c, target, *a, **k)

    monkeypatch.setattr(class_run, "optimize_class_token", flaky)
    result = audit(_config(tmp_path, tiny_sd_path), classifier=redness, generator=tiny_generator, progress=False)
    assert [r["status"] for r in result.rows] == ["failed", "done"]
    failed = json.loads((result.run_dir / "classes" / "0-other" / "metrics.json").read_text())
    assert failed["error"] == "RuntimeError: boom inside the user's model"
    # Resume leaves a failed class alone unless asked to retry it.
    monkeypatch.setattr(class_run, "optimize_class_token", real)
    again = audit(_config(tmp_path, tiny_sd_path), classifier=redness, generator=tiny_generator, progress=False)
    assert [r["status"] for r in again.rows] == ["failed", "done"]
    retried = audit(_config(tmp_path, tiny_sd_path, retry_failed=True), classifier=redness, generator=tiny_generator,
                    progress=False)
    assert [r["status"] for r in retried.rows] == ["done", "done"]


def test_ctrl_c_keeps_finished_classes(tmp_path, tiny_sd_path, tiny_generator, redness, monkeypatch):
    real = class_run.optimize_class_token

    def interrupt_second(g, c, target, *a, **k):
        if target == 1:
            raise KeyboardInterrupt
        return real(g, c, target, *a, **k)

    monkeypatch.setattr(class_run, "optimize_class_token", interrupt_second)
    result = audit(_config(tmp_path, tiny_sd_path), classifier=redness, generator=tiny_generator, progress=False)
    assert result.interrupted and [r["class_index"] for r in result.rows] == [0]
    assert (result.run_dir / "classes" / "0-other" / "metrics.json").is_file()
    assert not (result.run_dir / "classes" / "1-star-b" / "metrics.json").exists()


def test_resume_with_other_settings_is_refused(tmp_path, tiny_sd_path, tiny_generator, redness):
    audit(_config(tmp_path, tiny_sd_path, classes="0"), classifier=redness, generator=tiny_generator, progress=False)
    other = AuditConfig(model="tests:redness", out=str(tmp_path / "run"), generator="elsewhere", token=TOKEN)
    with pytest.raises(RunError, match="different generator"):
        runs.prepare_run_dir(other)
    # the preprocessing too: a later class learned under other inputs would mix two runs (it was accepted)
    for change, named in ((dict(mean=(0.4, 0.4, 0.4), std=(0.2, 0.2, 0.2)), "different mean"),
                          (dict(multi_label=True), "different multi_label"), (dict(input_size=64), "different input_size"),
                          (dict(crop_pct=0.5), "different crop_pct")):
        with pytest.raises(RunError, match=named):
            runs.prepare_run_dir(_config(tmp_path, tiny_sd_path, classes="0", **change))
    # and the classes: labels.json against the classifier's labels now (another --labels file, another model)
    relabelled = type(redness).__new__(type(redness))
    relabelled.__dict__.update(redness.__dict__)
    relabelled.labels = ["other", "circle"]
    with pytest.raises(RunError, match=r"other classes \(labels.json: 2 classes, now 2; class 1 is 'star <b>', now "
                                       r"'circle'\)"):
        audit(_config(tmp_path, tiny_sd_path, classes="1"), classifier=relabelled, generator=tiny_generator,
              progress=False)
    assert not (tmp_path / "run" / "classes" / "1-circle").exists()
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not a probe run"):
        runs.prepare_run_dir(AuditConfig(model="x", out=str(tmp_path / "foreign")))


# ---------------------------------------------------------------------- the command line
@pytest.fixture()
def exported_redness(tmp_path, tiny_generator):
    module = calibrated_redness_classifier(tiny_generator)
    program = torch.export.export(module, (torch.rand(2, 3, 32, 32),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
    path = tmp_path / "redness.pt2"
    torch.export.save(program, str(path))
    (tmp_path / "redness.labels.txt").write_text("other\nstar\n")
    (tmp_path / "redness.data.json").write_text(json.dumps({"input_size": [3, 32, 32], "mean": [0, 0, 0],
                                                            "std": [1, 1, 1], "crop_pct": 1.0}))
    return path


def _cli(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    return run_main(monkeypatch, capsys, *args)


def test_cli_audit_end_to_end_on_an_exported_program(tmp_path, tiny_sd_path, exported_redness, monkeypatch, capsys):
    out = tmp_path / "cli-run"
    args = ["audit", "--model", str(exported_redness), "--generator", str(tiny_sd_path), "--classes", "star",
            "--max-steps", "2", "--batch-size", "2", "--eval-images", "2", "--out", str(out), "--no-analyze",
            "--no-report", "--quiet", "--device", "cpu"]
    code, stdout, err = _cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "probe audit summary" in stdout and "1 star" in stdout
    # under the table, the token's accuracy change on the same 2 evaluation seeds, with its evidence
    assert "paired on the same seeds: " in " ".join(stdout.split()) and "2 pairs)" in stdout, stdout
    assert (out / "classes" / "1-star" / "metrics.json").is_file()
    assert not (out / "classes" / "0-other").exists()


@pytest.mark.parametrize("args, message", [
    (["--model", "missing.pt"], "missing.pt"),
    (["--classes", "zebra"], "zebra"),
    (["--classes", ""], "no classes selected"),
    (["--labels", "LABELS3"], "3 names but the classifier outputs 2 logits"),
    (["--device", "cuda"], "CUDA"),
    (["--generator", "NOT_A_FOLDER"], "not a diffusers pipeline folder"),
])
def test_cli_bad_input_is_one_line_with_exit_code_2(tmp_path, tiny_sd_path, exported_redness, monkeypatch, capsys,
                                                    args, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    labels3 = tmp_path / "three.txt"
    labels3.write_text("a\nb\nc\n")
    not_folder = tmp_path / "file.txt"
    not_folder.write_text("x")
    args = [a.replace("LABELS3", str(labels3)).replace("NOT_A_FOLDER", str(not_folder)) for a in args]
    base = {"--model": str(exported_redness), "--generator": str(tiny_sd_path), "--out": str(tmp_path / "r")}
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    flat = [x for kv in base.items() for x in kv]
    code, _, err = _cli(monkeypatch, capsys, "audit", *flat, "--quiet", "--no-analyze", "--no-report")
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message.lower() in lines[0].lower(), err


def test_held_out_classifier_is_reported_beside_the_first(tmp_path, tiny_sd_path, tiny_generator, redness):
    from color_classifier import RednessClassifier

    # A held-out classifier with the classes in the other order: matched by name, not by index.
    class Swapped(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = RednessClassifier(float(redness.model.threshold))

        def forward(self, x):
            return self.inner(x).flip(1)

    held_out = load_classifier(Swapped(), labels=["star <b>", "other"], input_size=32, mean=(0, 0, 0), std=(1, 1, 1),
                               crop_pct=1.0)
    result = audit(_config(tmp_path, tiny_sd_path, classes="1"), classifier=redness, generator=tiny_generator,
                   eval_classifier=held_out, progress=False)
    metrics = json.loads((result.run_dir / "classes" / "1-star-b" / "metrics.json").read_text())
    # Same decision rule, so the held-out accuracy equals the first one's when classes are matched by name.
    assert metrics["eval_model"]["token"]["accuracy"] == metrics["token"]["accuracy"]
    assert metrics["eval_model"]["baseline"]["accuracy"] == metrics["baseline"]["accuracy"]
    assert result.rows[0]["eval_token_accuracy"] == metrics["token"]["accuracy"]
    # image by image: the held-out P(class) is the first one's (classes matched by index would give 1 - p)
    assert metrics["images"] and all(image["eval_target_prob"] == pytest.approx(image["target_prob"], abs=1e-5)
                                     for image in metrics["images"]), metrics["images"][:2]


def test_the_summary_table_shows_the_held_out_column_only_when_a_held_out_classifier_ran(capsys):
    """Every audit without --eval-model used to print an empty "held-out token acc" column."""
    from probe.cli import print_summary

    row = {"class_index": 3, "class_name": "star", "status": "done", "baseline_accuracy": 0.5, "token_accuracy": 0.75,
           "eval_token_accuracy": None, "steps": 3, "seconds": 4.2}
    print_summary([row])
    plain = capsys.readouterr().out
    assert "held-out" not in plain and "0.75" in plain and "4.2" in plain
    print_summary([row, {**row, "class_index": 4, "eval_token_accuracy": 0.625}])
    held = capsys.readouterr().out
    assert "held-out" in held and "0.62" in held


def test_the_summary_table_of_1000_classes_shows_40_those_not_done_first_and_names_the_csv(capsys):
    """An audit of 1000 classes printed 1000 rows to the terminal: now 40, a failed class among them wherever it
    is, and one line for the rest naming summary.csv, which has every class."""
    from probe.cli import SUMMARY_ROWS, print_summary

    rows = [{"class_index": i, "class_name": f"c{i}", "status": "failed" if i == 900 else "done",
             "baseline_accuracy": 0.5, "token_accuracy": 0.75, "eval_token_accuracy": None, "steps": 3, "seconds": 1.0}
            for i in range(1000)]
    print_summary(rows, run_dir="runs/imagenet")
    out = capsys.readouterr().out
    shown = [line for line in out.splitlines() if re.search(r"│ \d+ c\d+ ", line)]
    assert len(shown) == SUMMARY_ROWS == 40
    assert "900 c900" in out and "failed" in out  # the failed class, though it is the 901st
    assert "… and 960 more classes (all done), every class in runs/imagenet/summary.csv" in out
    print_summary(rows[:40])  # at 40 classes, every row and no such line
    out = capsys.readouterr().out
    assert "more classes" not in out and "39 c39" in out


def test_gradient_checkpointing_gives_the_same_gradient(tiny_generator):
    tiny_generator.add_token("<t>", "a")
    vector = tiny_generator.trainable_token("<t>")
    tiny_generator.generate(["a photo of a <t> star"] * 2, [0, 1], grad_steps=2).mean().backward()
    plain = vector.grad.clone()
    vector.grad = None
    tiny_generator.generate(["a photo of a <t> star"] * 2, [0, 1], grad_steps=2,
                            gradient_checkpointing=True).mean().backward()
    assert torch.allclose(vector.grad, plain, rtol=1e-4, atol=1e-7)


def test_a_run_s_relative_paths_name_its_model_and_generator_however_they_are_typed_later(
        tmp_path, tiny_sd_path, exported_redness, monkeypatch, capsys):
    """An audit started with relative paths (`--model redness.pt2 --generator sd`): resuming it with `./redness.pt2`,
    an absolute path or a byte-identical copy was refused as "a run with a different model"; `probe generate` from
    another folder could not find `redness.pt2`; and `probe confirm --model /abs/path` dropped the audit's --mean and
    --std (they were kept only for the same text). config.json records the audit's working directory."""
    from probe.confirm.confirm import ClassifierSource, _load_classifier
    from probe.run import RunDir

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "sd").symlink_to(tiny_sd_path)
    monkeypatch.chdir(tmp_path)
    common = ["--classes", "star", "--max-steps", "2", "--batch-size", "2", "--eval-images", "2", "--no-analyze",
              "--no-report", "--quiet", "--device", "cpu", "--out", "run", "--mean", "0.5,0.5,0.5", "--std", "1,1,1"]
    code, _, err = _cli(monkeypatch, capsys, "audit", "--model", "redness.pt2", "--generator", "sd", *common)
    assert code == 0, err
    saved = RunDir(tmp_path / "run").read_run_config()
    assert saved.workdir == str(tmp_path) and saved.audit["model"] == "redness.pt2"
    copy = tmp_path / "copies" / "redness.pt2"
    copy.parent.mkdir()
    copy.write_bytes(exported_redness.read_bytes())
    for sidecar in ("redness.labels.txt", "redness.data.json"):
        (copy.parent / sidecar).write_text((tmp_path / sidecar).read_text())
    for model, generator in (("./redness.pt2", str(tiny_sd_path)), (str(exported_redness), "./sd"),
                             (str(copy), "sd")):
        code, _, err = _cli(monkeypatch, capsys, "audit", "--model", model, "--generator", generator, *common)
        assert code == 0, (model, generator, err)
    other = tmp_path / "copies" / "other.pt2"
    other.write_bytes(exported_redness.read_bytes() + b"\0")
    code, _, err = _cli(monkeypatch, capsys, "audit", "--model", str(other), "--generator", "sd", *common)
    assert code == 2 and "different model" in err, err
    # from another folder: the run's relative model and generator are read from where the audit started
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, _, err = _cli(monkeypatch, capsys, "generate", "../run", "--per-class", "1", "--out", "../gen", "--device",
                        "cpu")
    assert code == 0, err
    assert len(list((tmp_path / "gen").glob("*/*.png"))) == 1
    # another model of the same name here: the run's own (its recorded bytes) is the one read from the audit's folder
    (elsewhere / "redness.pt2").write_bytes(b"not the run's model")
    assert RunDir(tmp_path / "run").read_run_config().source("model") == str(tmp_path / "redness.pt2")
    (elsewhere / "redness.pt2").unlink()
    # --model typed as an absolute path keeps the audit's own data settings (the sidecar says mean 0, std 1)
    run = RunDir(tmp_path / "run")
    for model in (None, str(exported_redness), str(copy)):
        clf = _load_classifier(run, ClassifierSource(model=model, device="cpu"), ["other", "star"])
        assert tuple(clf.data_config.mean) == (0.5, 0.5, 0.5), model


def test_prompt_sets_the_token_s_templates_and_the_sufficiency_carrier(tmp_path, tiny_sd_path, exported_redness,
                                                                       monkeypatch, capsys):
    """`--prompt` (repeatable) puts the token in the images' own domain ("a chest X-ray showing {}"); the CLI had no
    way to change "a photo of a {}" (only the Python TokenConfig). A template with another brace is one line."""
    from probe.run import RunDir

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "run"
    base = ["audit", "--model", str(exported_redness), "--generator", str(tiny_sd_path), "--classes", "star",
            "--max-steps", "1", "--batch-size", "2", "--eval-images", "2", "--out", str(out), "--no-analyze",
            "--no-report", "--quiet", "--device", "cpu"]
    code, _, err = _cli(monkeypatch, capsys, *base, "--prompt", "a drawing of {}", "--prompt", "a sketch of {} {{x}}")
    assert code == 0, err
    saved = RunDir(out).read_run_config()
    assert saved.audit["token"]["templates"] == ["a drawing of {}", "a sketch of {} {{x}}"]
    assert saved.audit["analysis"]["carrier_template"] == "a drawing of {}"
    metrics = json.loads((out / "classes" / "1-star" / "metrics.json").read_text())
    assert "a drawing of star" in json.dumps(metrics) and "a sketch of star {x}" in json.dumps(metrics)
    for bad, message in (("a drawing", "(--prompt) must be non-empty and each contain '{}' where the token"),
                         ("a {style} drawing of {}", "has braces other than the one '{}'")):
        code, _, err = _cli(monkeypatch, capsys, *base[:-3], "--out", str(tmp_path / "bad"), "--prompt", bad)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "bad").exists()


def test_sigterm_stops_an_audit_as_ctrl_c_does_and_the_same_command_resumes(tmp_path, tiny_sd_path, exported_redness):
    """A batch scheduler's time limit or preemption sends SIGTERM: the audit died without a word (the default
    action). It now stops as on Ctrl-C: one line saying so, exit 143, finished work kept, and the same command
    resumes."""
    import os
    import signal
    import subprocess
    import time

    from conftest import probe_script

    out = tmp_path / "run"
    args = [probe_script(), "audit", "--model", str(exported_redness), "--generator", str(tiny_sd_path),
            "--classes", "all", "--max-steps", "4", "--threshold", "1.0", "--batch-size", "2",
            "--eval-images", "2", "--out", str(out), "--no-analyze", "--no-report", "--quiet", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 300
    while not (out / "config.json").is_file() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)  # the models are loaded and the run begun: the handler is in place
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 143, (process.returncode, stderr[-2000:])
    assert "stopped by SIGTERM: finished" in stderr and "Traceback" not in stderr, stderr[-2000:]
    done = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert {json.loads(p.read_text())["status"] for p in out.glob("classes/*/metrics.json")} == {"done"}
    assert len(list(out.glob("classes/*/metrics.json"))) == 2


def test_the_printed_command_that_analyses_a_sharded_run_keeps_its_concept_model_and_dtype(tmp_path):
    """`probe report RUN --model M --generator G` as probe prints it after the last shard: with the shards' --concepts
    (another concept model would measure every class again: the records name theirs) and --dtype."""
    from probe.analysis import AnalysisConfig
    from probe.auditing.loop import analyse_command

    config = AuditConfig(model="m.pt2", out=str(tmp_path / "run"), generator="world", dtype="bf16",
                         analysis=AnalysisConfig(concepts="none"))
    line = analyse_command(config)
    assert line.endswith("--concepts none --dtype bf16") and "--model m.pt2 --generator world" in line, line
    assert "--concepts" not in analyse_command(AuditConfig(model="m.pt2", out=str(tmp_path / "run")))
