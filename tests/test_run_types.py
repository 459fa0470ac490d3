"""probe.run.types: the typed records RunDir writes and reads back, and the effective settings an audit saves and every
later command reads back."""

from __future__ import annotations

import json
import sys

import pytest

from probe.auditing.config import AuditConfig
from probe.errors import RunError
from probe.run import (AnalysisSummary, ClassRecord, EffectiveSettings, EvalScores, Finding, RunConfig, RunDir,
                       RunFormatError, Scores)

TOKEN = {"templates": ["a photo of a {}"], "batch_size": 4, "max_batch": None, "steps": None, "guidance_scale": None,
         "scheduler": None, "seed": 0}
GENERATOR = {"source": "tiny", "scheduler": "DDIMScheduler", "device": "cuda:0", "dtype": "bfloat16", "default_steps": 15,
             "guidance_scale": 7.5}
CHUNKS = {"max_batch": 2, "batch_size": 4, "source": "auto", "limited_by": "memory", "chunks": [2, 2]}


def _config() -> RunConfig:
    return RunConfig.of_audit({"model": "m.pt2", "out": "run", "token": TOKEN}, generator=GENERATOR,
                              gradient_chunks=CHUNKS, classifier={"name": "Net"}, eval_classifier=None, classes=[0, 1],
                              versions={"probe": "0.1.0"}, started="2026-12-01T10:00:00+00:00")


def test_the_run_config_round_trips_with_the_effective_settings_the_audit_decided(tmp_path):
    run = RunDir(tmp_path / "run")
    record = _config()
    assert record.effective == EffectiveSettings(max_batch=2, steps=15, guidance_scale=7.5, scheduler=None,
                                                 scheduler_class="DDIMScheduler", dtype="bfloat16", device="cuda:0")
    run.write_config(record)
    assert run.read_run_config() == record
    saved = json.loads((run.root / "config.json").read_text())
    assert saved["format_version"] == 1 and saved["effective"]["max_batch"] == 2 and saved["eval_classifier"] is None
    # the settings later commands use: as given, with what the audit decided where the user left them unset
    token = RunDir.token_settings(run.read_config())
    assert (token["max_batch"], token["steps"], token["guidance_scale"], token["batch_size"]) == (2, 15, 7.5, 4)
    assert record.dtype_for("cuda") == "bfloat16" and record.dtype_for("cuda:1") == "bfloat16"
    assert record.dtype_for("cpu") is None  # half precision is no default for a CPU


def test_a_format_1_run_saved_before_the_effective_settings_opens_with_them_derived(tmp_path):
    from probe.files import write_json

    run = RunDir(tmp_path / "old")
    old = {"format_version": 1, "audit": {"model": "m", "out": "o", "token": {**TOKEN, "steps": 6}},
           "generator": GENERATOR, "gradient_chunks": CHUNKS, "classes": [0]}
    write_json(run.root / "config.json", old)
    record = run.read_run_config()
    assert record.effective.max_batch == 2 and record.effective.steps == 6  # the user's steps win over the default
    assert record.audit == old["audit"] and record.classes == (0,)
    write_json(run.root / "config.json", {**old, "format_version": 2})
    lines = []
    with pytest.raises(RunFormatError, match="format_version 2.*re-run the audit"):
        run.read_run_config(on_error=lines.append)  # another format is refused by every reader, lenient or not
    assert not lines


def test_a_class_record_round_trips_and_the_writer_checks_it_as_the_reader_does(tmp_path):
    run = RunDir(tmp_path / "run")
    folder = run.class_dir(3, "star")
    record = ClassRecord(
        status="done", class_index=3, class_name="star", slug="star", token_string="<probe-3>", init_word="a",
        prompts={"templates": ["a photo of a {}"], "token": ["a photo of a <probe-3> star"], "baseline": ["a photo of a star"]},
        steps=12, best_step=9, stopped="threshold", objective="cross_entropy", token_change={"moved": True},
        seconds=4.2, train_seeds=(0, 1), eval_seeds=(1000,), baseline=Scores(0.2, 0.18, 10), token=Scores(0.9, 0.71, 10),
        eval_model=EvalScores("held-out", Scores(0.1, 0.2, 10), Scores(0.8, 0.6, 10)),
        images=({"path": "images/token_p0_s1000.png", "kind": "token", "seed": 1000, "target_prob": 0.8},),
        worker={"backend": "ray", "attempt": 1}, extra={"added_by_a_newer_probe": [1, 2]})
    run.write_metrics(folder, record)
    assert run.read_class(folder) == record
    assert run.read_metrics(folder) == record.to_dict() and run.finished_records() == [(folder, record)]
    failed = ClassRecord.from_dict({"status": "failed", "class_index": 3, "error": "TokenError: NaN", "baseline": None,
                                    "images": []})
    run.write_metrics(folder, failed)
    assert run.read_class(folder) == failed and run.read_metrics(folder)["baseline"] is None  # null kept, not dropped
    with pytest.raises(RunError, match=r"metrics.json'?: field baseline.accuracy is 1.5, outside 0..1"):
        run.write_metrics(folder, {**record.to_dict(), "baseline": {"accuracy": 1.5}})
    with pytest.raises(RunError, match="class_index is 4 but the folder is class 3"):
        run.write_metrics(folder, {**record.to_dict(), "class_index": 4})
    assert run.read_class(folder) == failed  # nothing written by a refused record


def test_the_analysis_summary_and_findings_round_trip(tmp_path):
    run = RunDir(tmp_path / "run")
    data = {"config": {"seed": 7000}, "rule": "A finding passes when ...", "interventions_checked_by": None,
            "attributions": {"methods_run": ["occlusion"], "skipped": {"grad_cam": "no conv layer"}},
            "tests": {"screened": 2}, "notes": ["class 1: necessity skipped"], "classes": {"1": {"class_name": "star"}},
            "n_findings": 1, "n_passing": 1, "stated_contexts": "each pair states ...",
            "pairs": [{"kind": "sufficiency", "class_index": 1, "class_name": "star", "cue": "grass background",
                       "screen": {"keys": ["s7000:c0"], "values": [0.25], "attempted": 1, "excluded": 0},
                       "confirm": {"keys": ["s8000:c0", "s8001:c0"], "values": [0.5, -0.125], "attempted": 3,
                                   "excluded": 1}}]}
    summary = AnalysisSummary.from_dict(data)
    assert summary.methods_run == ("occlusion",) and summary.methods_skipped == {"grad_cam": "no conv layer"}
    assert summary.pairs[0].key == ("sufficiency", 1, "grass background") and summary.pairs[0].confirm.values == (0.5, -0.125)
    run.write_analysis(summary)
    assert run.read_analysis_summary() == summary
    assert run.read_analysis() == data  # null written as null: "interventions not checked" is not "not said"
    finding = Finding(class_index=1, class_name="star", cue="grass background", kind="sufficiency", effect=0.4,
                      ci_low=0.2, ci_high=0.6, n_images=16, evidence=("classes/1-star/images/a.png",), passes=True,
                      strength="strong", sentence="s", details={"category": "background"}, p=0.001, q=0.01,
                      status="passes")
    run.write_findings([finding])
    assert run.read_finding_records() == [finding] and run.read_finding_records()[0].details == finding.details
    with pytest.raises(RunError, match="finding 0: field effect is null on a passing finding"):
        run.write_findings([{**finding.to_dict(), "effect": None}])


def test_the_lenient_readers_pass_the_one_line_on_and_leave_the_record_out(tmp_path):
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    (run.root / "analysis.json").write_text(json.dumps({"pairs": [{"kind": "sufficiency", "class_index": 1, "cue": "x",
                                                                    "screen": {"keys": ["a"], "values": []}}]}))
    lines = []
    assert run.read_analysis_summary(on_error=lines.append) is None
    assert len(lines) == 1 and "analysis.json" in lines[0] and "pairs[0].screen.values" in lines[0]
    with pytest.raises(RunError, match=r"pairs\[0\].screen.values has 0 values for 1 keys"):
        run.read_analysis_summary()
    folder = run.class_dir(1, "x")
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": "running", "class_index": 1}))
    assert run.read_class(folder) is None  # a resume redoes it
    lines.clear()
    assert run.read_class(folder, on_error=lines.append) is None and "status" in lines[0]
    with pytest.raises(RunError, match="status is 'running'"):
        run.read_class(folder, strict=True)


def test_the_run_records_load_no_torch():
    import subprocess

    code = "import sys, probe.run, probe.run.types, probe.analysis.finding; print(sorted(m for m in ('torch', " \
           "'diffusers', 'transformers') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


TYPED = """
import sys
from probe.auditing.config import AuditConfig
from probe.auditing.scale import ScaleConfig
from probe.run import RunConfig, RunDir
from probe.token_config import TokenConfig

config = AuditConfig(model="m.pt2", out=sys.argv[1], generator="tiny", mean=(0.5, 0.5, 0.5),
                     token=TokenConfig(batch_size=3, steps=4, scheduler="ddim"), scale=ScaleConfig(shard="1/2"))
run = RunDir(sys.argv[1])
run.write_config(RunConfig.of_audit(config.to_dict(), classes=[0]))
saved = run.read_run_config()
assert AuditConfig.saved(saved) == config, AuditConfig.saved(saved)
assert isinstance(AuditConfig.saved(saved).token, TokenConfig) and AuditConfig.saved(saved).scale.slice == (1, 2)
print(sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules))
"""


def test_the_saved_audit_settings_read_back_typed_without_torch(tmp_path):
    """config.json -> AuditConfig.saved(RunConfig): the AuditConfig the audit saved, the same type and value (its TokenConfig,
    ScaleConfig; a --scheduler name checked against the generators' registry), in an interpreter without torch."""
    import subprocess

    done = subprocess.run([sys.executable, "-c", TYPED, str(tmp_path / "run")], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_settings_that_do_not_read_back_are_one_line_and_the_run_still_opens(tmp_path):
    """A partial config (an old run, a test fixture) opens and its settings as saved stay readable; the typed read
    fills what it leaves out with the defaults, and refuses in one line what it cannot read back."""
    from probe.files import write_json

    run = RunDir(tmp_path / "old")
    write_json(run.root / "config.json", {"format_version": 1, "audit": {"model": "m", "out": "o", "token": {"steps": 6}}})
    settings = AuditConfig.saved(run.read_run_config())
    assert (settings.token.steps, settings.token.batch_size, settings.analyze) == (6, 5, True)
    for audit, message in (({"token": {"steps": 4}}, r"model, out missing"),
                           ({"model": "m", "out": "o", "retired_flag": 1}, r"unknown setting\(s\) retired_flag"),
                           ({"model": "m", "out": "o", "token": {"lr": "fast"}}, r"not supported|'>'")):
        write_json(run.root / "config.json", {"format_version": 1, "audit": audit})
        record = run.read_run_config()
        assert record.audit == audit  # opens: the report and the notebook show what the file holds
        with pytest.raises(RunError, match=r"config.json's audit settings do not read back .*(?:" + message + ")"):
            AuditConfig.saved(record)


# ------------------------------------------------------------------------------------------ a real tiny audit
def test_the_effective_settings_a_real_audit_saves_are_what_generate_and_the_analysis_use(tmp_path, tiny_sd_path,
                                                                                          tiny_generator, monkeypatch):
    """No --steps, --guidance-scale or --max-batch: the audit decides them (the chunk size as on a GPU, from free
    memory), saves them in config.json's "effective", and the analysis and `probe generate` sample with exactly those
    (and generate loads the generator in the audit's dtype)."""
    import probe.auditing.class_run as class_run
    import probe.generators.memory as memory
    from color_classifier import calibrated_redness_classifier
    from probe.analysis import AnalysisConfig, analyze_run
    from probe.auditing.loop import AuditConfig, audit
    from probe.classifiers import load_classifier
    from probe.generate import generate_dataset
    from probe.tokens import TokenConfig

    module = calibrated_redness_classifier(tiny_generator, seeds=range(2))
    clf = load_classifier(module, labels=["other", "star"], input_size=32, mean=(0, 0, 0), std=(1, 1, 1), crop_pct=1.0)
    auto = memory.MaxBatchChoice(max_batch=1, batch_size=2, source="auto", limited_by="memory", free_bytes=2 ** 30,
                                 per_image_bytes=2 ** 28)
    monkeypatch.setattr(memory, "resolve_max_batch", lambda generator, token: auto)
    token = TokenConfig(lr=0.1, max_steps=1, patience=1, eval_images=1, batch_size=2)
    config = AuditConfig(model="tests:redness", out=str(tmp_path / "run"), generator=str(tiny_sd_path), token=token,
                         analyze=False, report=False, classes="1")
    result = audit(config, classifier=clf, generator=tiny_generator, progress=False)
    assert not result.failed
    described = tiny_generator.describe()
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["effective"] == {"max_batch": 1, "steps": described["default_steps"],
                                  "guidance_scale": described["guidance_scale"], "scheduler": None,
                                  "scheduler_class": described["scheduler"], "dtype": "float32", "device": "cpu"}
    assert AuditConfig.saved(RunDir(result.run_dir).read_run_config()) == config  # the same type read back
    expected = {"steps": described["default_steps"], "guidance_scale": described["guidance_scale"], "max_batch": 1}

    calls = []
    real = tiny_generator.generate

    def spy(prompts, seeds, **kw):
        calls.append({k: kw.get(k) for k in expected})
        return real(prompts, seeds, **kw)

    monkeypatch.setattr(tiny_generator, "generate", spy)
    cues = tmp_path / "cues.txt"
    cues.write_text("{} on grass | {} on sand\n")
    cheap = AnalysisConfig(cues=str(cues), attributions=False, necessity=False, token_shift=False, off_object=False,
                           confirm=False, n_carriers=2, screen_seeds=1)
    analyze_run(result.run_dir, clf, tiny_generator, cheap)
    assert calls and all(c == expected for c in calls), calls[:3]  # every image sampled as the audit's were
    assert json.loads((result.run_dir / "analysis.json").read_text())["generation"] == expected

    calls.clear()
    loaded = []
    monkeypatch.setattr(class_run, "load_models", lambda cfg: loaded.append(cfg) or (clf, None, tiny_generator))
    generate_dataset(result.run_dir, tmp_path / "data", classes="1", per_class=1, progress=False,
                     model="tests:redness", generator=str(tiny_sd_path))
    assert calls == [expected] and loaded[0].dtype == "float32"  # the audit's dtype, the device being of its kind
