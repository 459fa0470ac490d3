"""probe.auditing.cost: the plan before any model loads, `probe audit --dry-run`, `--budget`, and the engine honouring it.

The plan's counts are checked against what the engine's Lab actually generated (analysis.json ``images_by_stage``):
on the fake world (analysis_fakes, seconds) and on the README's one-class demo (the shared session fixture, a real
world audit). The budget is checked end to end on the fake world: screening runs in full, confirmation goes to the
most decisive screens first and stops, the tests it did not reach stay screening-only and the run still renders.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from analysis_fakes import CLASSES, FakeGenerator, PlantedClassifier, fake_cues, write_run
from conftest import probe_script, run_main
from probe.analysis import AnalysisConfig, analyze_run, read_findings
from probe.auditing.budget import Budget
from probe.auditing.cost import AuditPlan, Stage, plan_audit
from probe.errors import RunError
from probe.tokens import TokenConfig

STAR = CLASSES.index("star")
TEMPLATES = ("a photo of a {}", "a picture of a {}")  # the fake run's token templates
# 4 sufficiency seeds: the fake's small background effects then make some screens ambiguous (adaptive rounds run)
CUES_ONLY = AnalysisConfig(attributions=False, off_object=False, ig_steps=4, screen_seeds=4)


def _fake_analysis(tmp: Path, config: AnalysisConfig):
    import probe.domains as registry
    from analysis_fakes import fake_domain

    source = tmp / "fake-pipeline"
    source.mkdir(parents=True)
    gen = FakeGenerator({"<probe-2>": "on grass"}, source=str(source))
    clf = PlantedClassifier({STAR: "grass"})
    run = write_run(tmp / "run", gen, clf, tokens={0: "<probe-0>", 1: "<probe-1>", 2: "<probe-2>"}, n_seeds=4)
    registry.domains()
    registry.register_domain(fake_domain(source))
    try:
        findings = analyze_run(run, clf, gen, config)
    finally:
        registry._REGISTRY.pop("fake", None)
    return run, gen, findings, json.loads((run / "analysis.json").read_text())


def _fake_plan(config: AnalysisConfig) -> AuditPlan:
    return plan_audit(TokenConfig(templates=TEMPLATES, eval_images=4), config, classes=3, labels=3, cues=fake_cues(),
                      family="fake", device="cpu", steps=4, guidance=2.0, stated_contexts=True, discovery=False)


@pytest.fixture(scope="module")
def unbudgeted(tmp_path_factory):
    return _fake_analysis(tmp_path_factory.mktemp("cost-free"), CUES_ONLY)


def test_the_plan_counts_what_the_lab_generated_on_the_fake_world(unbudgeted):
    _, gen, _, a = unbudgeted
    plan, spent = _fake_plan(CUES_ONLY), a["images_by_stage"]
    # every image the analysis made is counted, once, by stage
    assert sum(spent.values()) == a["images_generated"] == gen.images_made
    # one shared sufficiency pass; with stated contexts a bound of (attributes + cues) images a pair, reached at
    # cues + 1 here (every drawn context is a listed cue value, so the cue images that repeat it coincide); necessity
    # with the arms cues of one attribute share (nothing skipped here)
    assert spent["screen_sufficiency"] == (1 + len(fake_cues())) * 3 * CUES_ONLY.screen_seeds
    assert plan.stage("screen_sufficiency").images == (2 + len(fake_cues())) * 3 * CUES_ONLY.screen_seeds
    assert spent["screen_necessity"] == plan.stage("screen_necessity").images
    assert not plan.stage("screen_sufficiency").exact and not plan.stage("screen_necessity").exact
    # the rest are upper bounds that hold
    for stage in ("screen_extend", "confirm"):
        assert 0 < spent.get(stage, 0) <= plan.stage(stage).images, stage
    assert a["images_generated"] <= plan.analysis_images


def test_a_budget_ends_confirmation_on_the_most_decisive_screens_first(unbudgeted, tmp_path):
    from probe.analysis.engine import _decisiveness  # the order the budget spends in
    from probe.report import render_report

    screening = sum(v for k, v in unbudgeted[3]["images_by_stage"].items() if k.startswith("screen_"))
    config = CUES_ONLY.replace(max_images=screening + 40)
    run, gen, findings, a = _fake_analysis(tmp_path, config)
    budget = a["budget"]
    assert budget["max_images"] == screening + 40 and budget["ended_confirmation"]
    assert a["images_generated"] <= screening + 40 and gen.images_made == a["images_generated"]
    assert budget["unconfirmed"] and any("image budget" in n and "screening-only" in n for n in a["notes"])
    # a test the budget never reached is screening-only and never passes; the free run confirmed it
    left = {tuple(k) for k in budget["unconfirmed"]}
    assert left <= {(f.kind, f.class_index, f.cue) for f in findings}  # each of them is a finding, checked below
    for f in findings:
        if (f.kind, f.class_index, f.cue) in left:
            assert f.status == "screened" and not f.passes and f.details.get("budget")
    confirmed_here = {(p["kind"], p["class_index"], p["cue"]) for p in a["pairs"] if p.get("confirm")}
    assert confirmed_here and not confirmed_here & left
    # what was confirmed was at least as decisive as anything left out: compare the screens' |mean| / se
    from probe.analysis.sample import Sample
    from probe.analysis.plan import Test

    def decisiveness(entry):
        return _decisiveness(Test(entry["kind"], None, None, Sample(entry["kind"], 0, entry["cue"],
                                                                     diffs=__import__("numpy").array(entry["screen"]["values"]))))

    screens = {(p["kind"], p["class_index"], p["cue"]): p for p in a["pairs"]}
    assert min(decisiveness(screens[k]) for k in confirmed_here) >= max(decisiveness(screens[k]) for k in left)
    free = {(p["kind"], p["class_index"], p["cue"]) for p in unbudgeted[3]["pairs"] if p.get("confirm")}
    assert left <= free  # without the budget these were confirmed
    assert [f.sentence for f in read_findings(run)] == [f.sentence for f in findings]
    page = render_report(run)  # the run still renders, and says the budget ended confirmation
    html = (page / "index.html" if page.is_dir() else page).read_text()
    assert "image budget" in html and "screening-only" in html


def test_the_plan_counts_what_the_readme_demo_generated(readme_demo):
    from probe.auditing.loop import plan_of
    from probe.world.demo import demo_config

    run = readme_demo / "runs" / "demo"
    a = json.loads((run / "analysis.json").read_text())
    plan = plan_of(demo_config(out=str(run)), device="cpu")  # labels from the model's sidecar file
    spent = a["images_by_stage"]
    assert plan.classes == 6 and plan.family == "world"
    # the world's oracles read only its listed cues, so discovery adds no tests to the screening stages
    assert not any((a["cues"].get("discovered") or {}).values())
    # sufficiency pairs state contexts: one cue-free image per cue attribute, and the cue image whose value is the
    # pair's own drawn context shared between attributes and classes, so (3 + 12 cues) x 3 carriers x 2 seeds is a bound
    assert spent["screen_sufficiency"] == 78 and plan.stage("screen_sufficiency").images == 90
    assert not plan.stage("screen_sufficiency").exact
    # necessity is a bound: the counter rule skipped cues whose every counter it dropped (264 of 312 on 5 Dec 2026)
    assert 0 < spent["screen_necessity"] <= plan.stage("screen_necessity").images == 6 * 52
    for stage, images in spent.items():
        assert images <= plan.stage(stage).images, stage
    for folder in (run / "classes").iterdir():
        metrics = json.loads((folder / "metrics.json").read_text())
        assert len(metrics["images"]) * plan.classes == plan.stage("evaluation").images
        assert metrics["steps"] * 5 <= plan.stage("token").images / plan.classes


def test_an_audit_prints_the_plan_line_before_its_models_load(tmp_path, capsys, monkeypatch):
    import probe.auditing.loop
    from probe.errors import ProbeError
    from test_hostile_cli import CLEAN, run_cli

    def reached(*args, **kwargs):
        raise ProbeError("the models would load now")

    monkeypatch.setattr(probe.auditing.loop, "load_models", reached)
    args = ["audit", "--model", CLEAN, "--generator", "world", "--classes", "star,heart", "--out", "runs/x",
            "--max-steps", "3", "--budget", "400img", "--device", "cpu"]
    code, text = run_cli(args, tmp_path, capsys, monkeypatch)
    assert code == 2 and "the models would load now" in text, text
    line = next(x for x in text.splitlines() if x.startswith("plan: "))
    assert line.startswith("plan: 2 classes, world generator on cpu") and "tokens <= 6 steps" in line
    assert "(budget 400)" in line and text.index("plan: ") < text.index("the models would load now")
    assert not (tmp_path / "runs").exists()


def test_dry_run_prints_the_plan_without_loading_the_generator_or_writing(tmp_path):
    from probe.world import bundled_classifier_path

    # a generator folder that cannot load (no weights): a dry run must not try
    broken = tmp_path / "no-weights"
    (broken / "unet").mkdir(parents=True)
    (broken / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (broken / "unet" / "config.json").write_text(json.dumps({"block_out_channels": [320, 640, 1280, 1280]}))
    out = tmp_path / "run"
    done = subprocess.run([probe_script(), "audit", "--model", str(bundled_classifier_path("biased")), "--generator",
                           str(broken), "--classes", "star,heart", "--out", str(out), "--dry-run", "--budget", "3000img"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "AuditPlan: 2 classes, sd1 on" in done.stdout and "sufficiency screen" in done.stdout
    assert "the budget caps the analysis at" in done.stdout
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["no-weights"]


@pytest.mark.parametrize("text", ["2", "2 parsecs", "-1h", "0img", "1.5img", "h"])
def test_a_bad_budget_is_one_line_naming_the_accepted_forms(monkeypatch, capsys, text):
    code, out, err = run_main(monkeypatch, capsys, "audit", "--model", "missing.pt", "--budget", text, lines=True)
    assert code == 2 and len(err) == 1 and "--budget" in err[0] and "5000img" in err[0] and "2h" in err[0], err


def test_budget_forms_and_their_images():
    assert Budget.parse("2h").seconds == 7200 and Budget.parse("90 min").seconds == 5400
    assert Budget.parse("600s").seconds == 600 and Budget.parse("5000img").images == 5000
    assert Budget.parse("5000 images").max_images(None) == 5000
    assert Budget.parse("1h").max_images(0.5) == 7200
    with pytest.raises(RunError, match="give an image count instead"):
        Budget.parse("1h").max_images(None, "sd1 on cpu")


def test_times_come_from_the_measured_table_or_say_they_are_unmeasured():
    token, cfg = TokenConfig(), AnalysisConfig()
    cues = fake_cues()
    h200 = plan_audit(token, cfg, classes=10, labels=1000, cues=cues, family="sd1", device="h200", steps=15,
                      guidance=7.5)
    # the H200 row: 0.7208 s per 5 images without gradient, 0.9893 s per 5-image step at DDIM 15 with guidance
    assert h200.stage("evaluation").seconds == pytest.approx(10 * 12 * 0.7208 / 5)
    assert h200.stage("token").seconds == pytest.approx(10 * 50 * 0.9893)
    cpu = plan_audit(token, cfg, classes=10, labels=1000, cues=cues, family="sd1", device="cpu", steps=15, guidance=7.5)
    assert cpu.seconds is None and cpu.reference_seconds == pytest.approx(h200.seconds)
    assert "time unknown" in cpu.summary() and "on an H200" in cpu.summary()
    # two measured samplings split the step's cost: 2 steps without guidance is the measured `distilled` row
    turbo = plan_audit(token, None, classes=1, labels=1000, cues=[], family="sd1", device="h200", steps=2, guidance=0.0)
    assert turbo.stage("token").seconds == pytest.approx(50 * 0.4739, rel=1e-3)
    # the budget caps the analysis, never the screening
    capped = plan_audit(token, cfg, classes=10, labels=1000, cues=cues, family="sd1", device="h200", steps=15,
                        guidance=7.5, max_images=1)
    assert capped.analysis_cap == capped.screening_images < h200.analysis_images and capped.seconds < h200.seconds


def test_a_cpu_plan_takes_the_row_of_its_sampling_precision_and_budgets_with_it(monkeypatch):
    """The world's pipeline samples in bf16 autocast only where the CPU computes bf16 natively (17x slower emulated):
    the plan reads the row of the precision the generator will use, the budget converts time with it, and a
    precision without a row is unmeasured, never another precision's row. Among bf16 CPUs, the one measured with AMX
    (about twice as fast) serves only CPUs with AMX; the others get the Zen 4 row, tokens included."""
    import probe.auditing.cost as cost
    import probe.devices
    import probe.generators.generator as generator_module
    from probe.auditing.cost import plan_for_config, sampling_precision
    from probe.auditing.throughput import throughput_for
    from probe.world.demo import demo_config

    token, cfg, cues = TokenConfig(max_steps=8), AnalysisConfig(), fake_cues()
    monkeypatch.setattr(cost, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16", "amx_tile"}))  # the Xeon's kind

    def world(precision):
        return plan_audit(token, cfg, classes=6, labels=6, cues=cues, family="world", device="cpu", steps=5,
                          guidance=4.0, precision=precision)

    fp32, bf16, fp16 = world("float32"), world("bfloat16 autocast"), world("float16")
    assert fp32.seconds_per_image == pytest.approx(0.2049) and bf16.seconds_per_image == pytest.approx(0.0548)
    assert fp32.stage("token").seconds == pytest.approx(6 * 8 * 1.404)
    assert bf16.stage("token").seconds is None and bf16.seconds is None  # its token step was not measured
    assert fp16.seconds_per_image is None and throughput_for("world", "cpu", precision="float16") is None
    assert "world generator on cpu, float32 sampling" in fp32.summary() and "time unknown" in bf16.summary()
    assert Budget.parse("10min").max_images(fp32.seconds_per_image) == 2928
    assert Budget.parse("10min").max_images(bf16.seconds_per_image) == 10948
    monkeypatch.setattr(cost, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))  # bf16 without AMX: Zen 4
    zen4 = world("bfloat16 autocast")
    assert zen4.seconds_per_image == pytest.approx(0.1023) and zen4.stage("token").seconds == pytest.approx(6 * 8 * 0.8648)
    assert zen4.fixed_seconds == pytest.approx(sum(zen4.stage(n).seconds for n in cost.FIXED_STAGES if zen4.stage(n)))
    # the bound is mostly confirmation of tests screening may never pick: the line says what is spent in any case
    assert f"of which the tokens and screens <= {cost._duration(zen4.fixed_seconds)}" in zen4.summary()
    assert throughput_for("world", "cpu", precision="bfloat16 autocast").cpu is None  # no flags: never the AMX row
    # the front page's `probe audit --generator world` samples 20 steps: on the Zen 4 the row's two measured
    # samplings give it a time (it said "time unknown"); the Xeon's row, measured at 5 steps only, still cannot
    plain = plan_audit(token, cfg, classes=6, labels=6, cues=cues, family="world", device="cpu", steps=20,
                       guidance=4.0, precision="bfloat16 autocast")
    assert plain.seconds_per_image == pytest.approx(0.1023 + 30 * 0.01015)
    assert plain.stage("token").seconds == pytest.approx(6 * 8 * (0.8648 + 30 * 0.0699))
    assert plain.seconds is not None and "time unknown" not in plain.summary()
    monkeypatch.setattr(cost, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16", "amx_tile"}))
    assert "time unknown" in plan_audit(token, cfg, classes=6, labels=6, cues=cues, family="world", device="cpu",
                                        steps=20, guidance=4.0, precision="bfloat16 autocast").summary()
    monkeypatch.setattr(cost, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    # what the plan assumes is what the generator does, on either kind of CPU
    settings = {"cpu_sampling_autocast": "bfloat16"}
    for native, precision, autocast in ((False, "float32", None), (True, "bfloat16 autocast", torch.bfloat16)):
        monkeypatch.setattr(probe.devices, "native_bf16", lambda: native)
        monkeypatch.setattr(generator_module, "native_bf16", lambda: native)
        config = demo_config(out="unused")
        assert sampling_precision(config.generator, "cpu") == precision
        assert plan_for_config(config, 6, 6, device="cpu").precision == precision
        assert generator_module._sampling_autocast(settings, torch.device("cpu"), torch.float32) is autocast
    assert sampling_precision(config.generator, "cpu", "bf16") == "bf16" and sampling_precision("world", "h200") is None


def test_the_plan_displays_itself_and_escapes_what_it_shows():
    plan = AuditPlan(classes=2, family="<b>x</b>", device="cpu", steps=5, guidance=4.0,
                     stages=(Stage("token", 10, False, gradient=True, optimisation_steps=2), Stage("evaluation", 4, True)),
                     notes=("a <note>",))
    text = repr(plan)
    assert "token optimisation" in text and "<= 10" in text and "total <= 14 images" in text
    html = plan._repr_html_()
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html and "a &lt;note&gt;" in html
    with pytest.raises(RunError):
        Stage("nonsense", 1, True)


def test_the_cost_model_imports_no_torch():
    code = "import sys, probe.auditing.cost, probe.auditing.throughput; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr[-2000:]


def test_discovery_bounds_one_proposal_more_per_class_only_where_a_concept_model_reads_the_outside_pairs():
    """The outside-the-object source (probe/analysis/outside.py) proposes one cue more per class, but only a concept
    model reads those images: the oracles' plan keeps the tighter bound."""
    config = AnalysisConfig(discover=3)
    kw = dict(classes=3, labels=3, cues=fake_cues(), family="fake", device="cpu", steps=4, guidance=2.0, discovery=True)
    token = TokenConfig(templates=TEMPLATES, eval_images=4)

    def discovered(plan: AuditPlan) -> int:
        return sum(s.images for s in plan.stages if s.name == "discovered")

    concepts = discovered(plan_audit(token, config, concept_model=True, **kw))
    oracles = discovered(plan_audit(token, config, concept_model=False, **kw))
    no_off = discovered(plan_audit(token, config.replace(off_object=False), concept_model=True, **kw))
    assert concepts > oracles > 0 and no_off == oracles
    # without adaptive rounds every image of the bound is a proposal's own: 3 + 2 against 3 + 1 cues per class
    fixed = config.replace(screen_extend=())
    assert (discovered(plan_audit(token, fixed, concept_model=True, **kw))
            == discovered(plan_audit(token, fixed, concept_model=False, **kw)) * 5 // 4 > 0)
    # the adaptive rounds' sufficiency seeds add, per class, the proposals' cue images and one cue-free set on every
    # carrier and seed: 3 classes x (3 + 1 proposals + 1) x 3 carriers (the spread over 3 labels) x the rounds' seeds

    def sufficiency_share(cfg) -> int:
        return (discovered(plan_audit(token, cfg, concept_model=False, **kw))
                - discovered(plan_audit(token, cfg.replace(sufficiency=False), concept_model=False, **kw)))

    extra = sum(config.sufficiency_extend_seeds(m) for m in config.screen_extend)
    assert extra == 6 and sufficiency_share(config) - sufficiency_share(fixed) == 3 * 5 * 3 * extra


def test_confirmation_is_bounded_at_three_times_the_pairs_because_any_generator_may_fail_the_checks():
    """A test attempts at its own loss rate where its class loses pairs anyway, up to 3 x max_pairs and one round
    (plan.confirmed_enough); the plan's bound says so for every generator, the world's own included (at the demo's 5
    sampling steps its oracles exclude a few pairs: the README demo's star lost 2 of 24). A necessity test may spend it
    twice: once with its token, once with the class's name when the token's pairs kept losing the class
    (plan.confirm_with_name)."""
    from dataclasses import replace

    from probe.auditing.cost import plan_for_config
    from probe.world.demo import demo_config

    config = demo_config(classes="star")
    world = plan_for_config(config, classes=1, labels=6, device="cpu")
    unfaithful = plan_for_config(replace(config, generator="world:infidelity=0.3"), classes=1, labels=6, device="cpu")
    pairs, round_ = config.analysis.max_pairs, config.analysis.confirm_round
    # both arms of each pair, token then name (a round over 3 carriers, rounded up to 9 pairs, costs less)
    for plan in (world, unfaithful):
        assert 2 * 2 * (3 * pairs + round_) <= plan.confirm_test_images < 2 * 2 * (3 * pairs + 2 * round_)
    assert unfaithful.stage("confirm").images == world.stage("confirm").images


def test_the_screen_bound_covers_a_token_top_up_and_then_the_class_name_drawn_and_topped_up():
    """Per necessity screen (N seeds) a generator that fails anyway can spend N more twice over (screening.top_up)
    and then, for a screen the token still cannot decide, draw it with the class's name (N) and top that up (2N):
    5N beyond the screen, which the plan's screen_extend must bound (it said 2N before the name fallback)."""
    from probe.auditing.cost import NAME_FALLBACK_SEEDS

    plan = _fake_plan(CUES_ONLY.replace(sufficiency=False, screen_extend=()))
    screen, extend = plan.stage("screen_necessity").images, plan.stage("screen_extend").images
    assert NAME_FALLBACK_SEEDS == 2 + 1 + 2 and extend == NAME_FALLBACK_SEEDS * screen > 0


def test_ray_and_shards_plan_the_shared_sufficiency_screen_once_per_class():
    """In one process the spread sufficiency screen is one pass shared by every class; a Ray worker or a --shard
    analyses each class on its own and generates it per class: the plan (and the --budget it converts) counted it once
    (found in review, 7 December 2026)."""
    from dataclasses import replace

    from probe.auditing.config import AuditConfig
    from probe.auditing.cost import plan_for_config
    from probe.auditing.scale import ScaleConfig

    base = AuditConfig(model="m.pt2", generator="world", out="runs/x")
    local = plan_for_config(base, 6, 6, device="cpu")
    one_pass = local.stage("screen_sufficiency").images
    assert local.stage("screen_sufficiency").shared
    for scale in (ScaleConfig(shard="0/2"), ScaleConfig(backend="ray", workers=2)):
        plan = plan_for_config(replace(base, scale=scale), 6, 6, device="cpu")
        stage = plan.stage("screen_sufficiency")
        assert stage.images == 6 * one_pass and not stage.shared, scale
        assert any("generated once per class" in n for n in plan.notes)
        assert plan.images - local.images == 5 * one_pass and plan.screening_images - local.screening_images == 5 * one_pass
