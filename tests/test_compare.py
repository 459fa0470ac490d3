"""probe.compare: two audits on the same generator and seeds, compared cue by cue on their shared pairs.

Most tests audit the fake world (analysis_fakes: a procedural generator, a classifier with a planted
grass cue for the star and a clean one) in a few seconds; one test audits the shapes world's bundled
biased and clean classifiers, as the README shows.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from analysis_fakes import CLASSES, FakeGenerator, FakeOracles, PlantedClassifier, fake_cues, registered, write_run
from conftest import probe_script
from probe.analysis import AnalysisConfig, Carrier, OracleCheck, Lab, analyze_run, measure_necessity, measure_sufficiency
from probe.comparison import VERDICTS, Comparison, NoPairDataError, NotComparableError, compare

STAR = CLASSES.index("star")
TOKENS = {0: "<probe-0>", 1: "<probe-1>", 2: "<probe-2>"}
CUE_TESTS = AnalysisConfig(attributions=False, off_object=False)




def _audit(root: Path, name: str, planted: bool, config: AnalysisConfig = CUE_TESTS) -> tuple[Path, FakeGenerator]:
    source = root / "fake-pipeline"
    source.mkdir(parents=True, exist_ok=True)
    gen = FakeGenerator({"<probe-2>": "on grass"} if planted else {}, source=str(source))
    clf = PlantedClassifier({STAR: "grass"} if planted else {})
    run = write_run(root / name, gen, clf, tokens=TOKENS, n_seeds=4)
    with registered(source):
        analyze_run(run, clf, gen, config)
    return run, gen


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory):
    """A: the classifier with the planted star-grass cue; B: a clean one, confirming A's tests on A's seeds."""
    root = tmp_path_factory.mktemp("compare")
    a, gen_a = _audit(root, "biased", True)
    b, gen_b = _audit(root, "clean", False, CUE_TESTS.replace(confirm_like=str(a)))
    return a, b, gen_a, gen_b


def _pairs(run: Path) -> dict:
    analysis = json.loads((run / "analysis.json").read_text())
    return {(e["kind"], e["class_index"], e["cue"]): e for e in analysis["pairs"]}


def _copy(run: Path, to: Path) -> Path:
    shutil.copytree(run, to)
    return to


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# ------------------------------------------------------------------------------------ pair keys
def test_pair_keys_name_the_seed_and_carrier_or_prompt_the_generator_drew():
    gen = FakeGenerator({"<probe-2>": "on grass"})
    lab = Lab(gen, [PlantedClassifier({STAR: "grass"})], check=OracleCheck(FakeOracles()))
    carriers = [Carrier(n, i, n) for i, n in enumerate(CLASSES)]
    cues = fake_cues()
    samples = measure_sufficiency(lab, cues, [STAR], carriers, [11, 12])
    grass = samples[("grass", STAR)]
    # one key per valid pair, in the order of the values: the star carrier is never used for the star
    assert grass.keys == ["s11:circle", "s11:square", "s12:circle", "s12:square"] and len(grass.diffs) == 4
    drawn = set(gen.prompts)
    for key in grass.keys:
        seed, carrier = key[1:].split(":")
        assert (f"a photo of a {carrier}", int(seed)) in drawn and (f"a photo of a {carrier} on grass", int(seed)) in drawn
    cue = next(c for c in cues if c.name == "grass")
    prompts = [("a photo of a {}", "<probe-2> star"), ("a picture of a {}", "<probe-2> star")]
    necessity = measure_necessity(lab, STAR, cue, prompts, [21, 22], object_value="star")
    assert necessity.keys == ["s21:p0", "s21:p1", "s22:p0", "s22:p1"]
    drawn = set(gen.prompts)
    for key in necessity.keys:
        seed, prompt = key[1:].split(":p")
        assert (prompts[int(prompt)][0].replace("{}", cue.apply(prompts[int(prompt)][1])), int(seed)) in drawn
    assert (grass + grass).keys == grass.keys * 2 and grass.pairs()["keys"] == grass.keys


def test_analysis_json_keeps_every_tests_pairs_by_stage_on_the_seeds_drawn(fake_runs):
    a, _, gen_a, _ = fake_runs
    pairs = _pairs(a)
    drawn = {s for _, s in gen_a.prompts}
    assert {k[0] for k in pairs} == {"sufficiency", "necessity", "token-shift"}
    suff = pairs[("sufficiency", STAR, "grass")]
    seeds = lambda stage: {int(k[1:].split(":")[0]) for k in suff[stage]["keys"]}
    assert seeds("screen") == {7000, 7001} and min(seeds("confirm")) >= 107000  # screening and confirmation apart
    assert seeds("screen") | seeds("confirm") <= drawn
    assert len(suff["confirm"]["values"]) == len(suff["confirm"]["keys"]) >= 16
    # token shift screens the run's own evaluation images (seeds 1000+), paired by prompt and seed
    shift = pairs[("token-shift", STAR, "grass")]
    assert {k.split(":")[0] for k in shift["screen"]["keys"]} == {f"s{s}" for s in range(1000, 1004)}
    assert set(shift["screen"]["values"]) <= {-1.0, 0.0, 1.0}


def test_confirm_like_confirms_the_other_runs_tests_on_the_same_pairs(fake_runs):
    a, b, _, _ = fake_runs
    pa, pb = _pairs(a), _pairs(b)
    confirmed_a = {k for k, e in pa.items() if e.get("confirm")}
    assert confirmed_a and {k for k, e in pb.items() if e.get("confirm")} == confirmed_a
    for key in confirmed_a:  # the clean run found nothing itself, but measured A's tests on A's seeds
        assert set(pb[key]["confirm"]["keys"]) & set(pa[key]["confirm"]["keys"]), key
        assert pb[key]["confirm"]["attempted"] >= pa[key]["confirm"]["attempted"]
    assert json.loads((b / "analysis.json").read_text())["confirm_like"]["confirmed_here_only_for_it"] == len(confirmed_a)


# ------------------------------------------------------------------------------------ the comparison
def test_the_planted_cue_is_gone_in_b_and_nothing_is_new(fake_runs):
    a, b, _, _ = fake_runs
    result = compare(a, b)
    assert isinstance(result, Comparison)
    gone = result.cues[result.cues["verdict"] == "gone in B"]
    assert set(zip(gone["class_name"], gone["cue"])) == {("star", "grass")}
    assert set(gone["kind"]) == {"sufficiency", "necessity", "token-shift"}
    assert (gone["status_a"] == "passes").all() and (gone["status_b"] != "passes").all()
    assert (gone["change"] < -0.15).all() and (gone["q"] <= 0.05).all() and (gone["n_shared"] >= 16).all()
    assert (gone["ci_high"] < 0).all() and (gone["basis"] == "confirmation").all()
    assert result.counts["new in B"] == 0 and result.counts["grew"] == 0
    # rows without shared confirmation pairs get no p-value, never a verdict of change
    untested = result.cues[result.cues["verdict"] == "untested"]
    assert len(untested) and untested["p"].isna().all() and untested["q"].isna().all()
    # per class: both runs' accuracies and their difference
    star = result.classes.set_index("class_name").loc["star"]
    assert star["passing_a"] >= 3 and star["passing_b"] == 0
    assert star["token_accuracy_delta"] == pytest.approx(star["token_accuracy_b"] - star["token_accuracy_a"])
    assert "gone in B: star · grass" in repr(result)


def test_a_run_against_itself_changes_nothing(fake_runs):
    a, _, _, _ = fake_runs
    result = compare(a, a)
    assert result.counts["gone in B"] == result.counts["new in B"] == result.counts["grew"] == result.counts["shrank"] == 0
    tested = result.cues[result.cues["p"].notna()]
    assert len(tested) >= 3 and (tested["change"] == 0).all() and (tested["verdict"] == "unchanged").all()
    assert (result.cues["change"].fillna(0) == 0).all()
    assert (result.classes.filter(like="_delta") == 0).all().all()


@pytest.mark.parametrize("where, change, field", [
    ("config.json", lambda d: d["generator"].update(source="other-generator"), "generator.source"),
    ("config.json", lambda d: d["audit"]["token"].update(eval_seed=5000), "token.eval_seed"),
    ("analysis.json", lambda d: d["config"].update(seed=1), "analysis.seed"),
    ("labels.json", lambda d: d.__setitem__(0, "disc"), "labels"),
])
def test_runs_that_are_not_comparable_are_refused_naming_the_field(fake_runs, tmp_path, where, change, field):
    a, b, _, _ = fake_runs
    other = _copy(b, tmp_path / "other")
    if where == "labels.json":
        other.joinpath(where).write_text(json.dumps(["disc"] + CLASSES[1:]))
    else:
        _edit_json(other / where, change)
    with pytest.raises(NotComparableError) as info:
        compare(a, other)
    message = str(info.value)
    assert field in message and "\n" not in message and "not comparable" in message


def test_a_run_analysed_before_pair_data_is_refused_with_the_command_that_adds_it(fake_runs, tmp_path):
    a, b, _, _ = fake_runs
    old = _copy(b, tmp_path / "old")
    _edit_json(old / "analysis.json", lambda d: d.pop("pairs"))
    with pytest.raises(NoPairDataError, match=r"before probe kept per-pair data.*probe audit"):
        compare(a, old)


def test_classes_finished_in_one_run_only_are_skipped_and_named(fake_runs, tmp_path):
    a, b, _, _ = fake_runs
    partial = _copy(b, tmp_path / "partial")
    shutil.rmtree(partial / "classes" / "0-circle")
    result = compare(a, partial)
    assert list(result.classes["class_name"]) == ["square", "star"]
    assert result.skipped == ["class 0 (circle): A done, B not run"]
    assert 0 not in set(result.cues["class_index"])


# ------------------------------------------------------------------------------------ the page and the CLI
class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.scripts, self.text, self.images = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self.scripts.append(attrs)
        if tag == "img":
            self.images.append(attrs["src"])

    def handle_data(self, data):
        self.text.append(data)


def test_the_page_escapes_a_hostile_class_name_and_links_both_runs_evidence(fake_runs, tmp_path):
    a, b, _, _ = fake_runs
    hostile = '<script>alert("x")</script>&'
    runs = []
    for run in (a, b):
        copy = _copy(run, tmp_path / run.name)
        names = list(CLASSES)
        names[STAR] = hostile
        (copy / "labels.json").write_text(json.dumps(names))
        _edit_json(copy / "classes" / "2-star" / "metrics.json", lambda d: d.update(class_name=hostile))
        runs.append(copy)
    result = compare(*runs)
    assert result.counts["gone in B"] == 3
    assert "<script>" not in result._repr_html_() and "&lt;script&gt;" in result._repr_html_()
    path = result.render()
    assert path == runs[1] / f"compare-{runs[0].name}" / "index.html"
    html = path.read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    page = _Page()
    page.feed(html)
    # the only scripts: the table's JSON data and the report's own script file
    assert all(s.get("type") == "application/json" or s.get("src") == "assets/report.js" for s in page.scripts)
    assert hostile in "".join(page.text)  # shown as text
    assert (path.parent / "assets" / "report.css").is_file() and (path.parent / "assets" / "report.js").is_file()
    # evidence thumbnails: relative links into run A's own files, which exist
    assert page.images and all(not Path(src).is_absolute() and (path.parent / src).resolve().is_file()
                               for src in page.images)
    assert any((path.parent / src).resolve().is_relative_to(runs[0].resolve()) for src in page.images)
    with pytest.raises(Exception, match="mix the comparison into a run"):
        result.render(runs[1] / "classes" / "x")


def test_cli_prints_the_verdicts_and_the_page_and_refuses_in_one_line(fake_runs, tmp_path):
    a, b, _, _ = fake_runs
    done = subprocess.run([probe_script(), "compare", str(a), str(b), "--out", str(tmp_path / "page")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "gone in B" in done.stdout and str(tmp_path / "page" / "index.html") in done.stdout.replace("\n", "")
    assert (tmp_path / "page" / "index.html").is_file()
    # piped, the table is 80 columns wide (a CI log): each verdict and kind whole on its row, nothing cut to "…"
    rows = [line for line in done.stdout.splitlines() if " star " in line]
    assert sum("gone in B" in line for line in rows) == 3 and not any("…" in line for line in rows), done.stdout
    assert all(any(kind in line for line in rows) for kind in ("sufficiency", "necessity", "token-shift")), done.stdout
    other = _copy(b, tmp_path / "other")
    _edit_json(other / "analysis.json", lambda d: d["config"].update(screen_seeds=3))
    refused = subprocess.run([probe_script(), "compare", str(a), str(other)], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "analysis.screen_seeds" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and not (other / f"compare-{a.name}").exists()


# ------------------------------------------------------------------------------------ the shapes world
def test_shapes_world_the_planted_star_cue_is_gone_with_the_clean_classifier(clean_demo):
    from probe.world import bundled_bias

    biased, clean, _ = clean_demo
    result = compare(biased, clean)
    found = 0
    for name, planted_cue in bundled_bias("biased").items():  # every planted cue the biased demo found is gone
        (attribute, value), = planted_cue.items()
        planted = result.cues[(result.cues["class_name"] == name) & (result.cues["cue"] == value)]
        passed = planted[planted["status_a"] == "passes"]
        assert (passed["verdict"] == "gone in B").all(), passed.T
        found += bool(len(passed))
    assert found >= 2  # star/grass and triangle/water on every CPU; heart/dot where the CPU samples in bf16
    star = result.cues[(result.cues["class_name"] == "star") & (result.cues["cue"] == "grass")]
    assert len(star[star["status_a"] == "passes"]), f"the planted star cue did not pass:\n{result.cues.head()}"
    assert set(result.cues["checked_a"]) == set(result.cues["checked_b"]) == {"world oracles"}  # who checked each side
    assert result.counts["new in B"] == 0
    assert set(result.cues["verdict"]) <= set(VERDICTS)
    assert result.render().is_file()


def test_a_test_drawn_with_the_class_name_in_one_run_only_is_not_paired(fake_runs, tmp_path):
    """A necessity test whose token lost the class is drawn with the class's name (plan.confirm_with_name); the other
    run drew the same seeds with its token: other images, so no change is measured on them, and the row says why."""
    a, b, _, _ = fake_runs
    named = _copy(a, tmp_path / "a-named")

    def draw_with_name(findings):
        for f in findings:
            if (f["kind"], f["class_index"], f["cue"]) == ("necessity", STAR, "grass"):
                f["details"]["drawn_with_name"] = "star"

    _edit_json(named / "findings.json", draw_with_name)
    before = compare(a, b).cues.set_index(["kind", "class_index", "cue"]).loc[("necessity", STAR, "grass")]
    assert before["basis"] == "confirmation" and before["verdict"] == "gone in B"
    row = compare(named, b).cues.set_index(["kind", "class_index", "cue"]).loc[("necessity", STAR, "grass")]
    assert row["verdict"] == "untested" and row["n_shared"] == 0 and math.isnan(row["change"])
    assert row["basis"] == "not paired: A drew the class's name 'star', B the class's token"
    assert compare(named, named).cues.set_index(["kind", "class_index", "cue"]).loc[
        ("necessity", STAR, "grass"), "basis"] == "confirmation"  # both drawn with the name: paired


def test_necessity_tests_against_other_counters_are_not_paired_and_confirm_like_keeps_the_counters(fake_runs, tmp_path):
    """Found by review (7 December 2026): each run's counter rule drops its own counters, and pair keys s{seed}:p{k}
    then name other counter images; compare paired them as like with like. A --confirm-like run now takes the other
    run's dropped counters (its tests are the same tests), and a test measured against other counters, another cue
    prompt or other sampling steps is not paired."""
    a, b, _, _ = fake_runs
    dropped = lambda run: json.loads((run / "analysis.json").read_text()).get("dropped_counters") or {}  # noqa: E731
    assert dropped(a) == dropped(b)  # B (confirm_like=A) kept A's counters
    other = _copy(a, tmp_path / "a-other-counters")

    def drop_sand(analysis):
        analysis["dropped_counters"] = {**(analysis.get("dropped_counters") or {}), str(STAR): ["on sand"]}

    _edit_json(other / "analysis.json", drop_sand)
    row = compare(other, b).cues.set_index(["kind", "class_index", "cue"]).loc[("necessity", STAR, "grass")]
    assert row["verdict"] == "untested" and row["n_shared"] == 0, row
    assert row["basis"].startswith("not paired: A measured the prompt") and "counters" in row["basis"], row["basis"]
    assert compare(other, other).cues.set_index(["kind", "class_index", "cue"]).loc[
        ("necessity", STAR, "grass"), "basis"] == "confirmation"
    # a run written before the counters were keyed by class index (by name, no dropped_counters_keyed_by) compares
    # as it did: the same counters paired, others not
    old_a, old_b, old_other = (_copy(r, tmp_path / f"{r.name}-by-name") for r in (a, b, other))
    for run in (old_a, old_b, old_other):
        _edit_json(run / "analysis.json", _keyed_by_name)
    assert set(json.loads((old_other / "analysis.json").read_text())["dropped_counters"]) >= {"star"}
    assert _row(old_a, old_b, "necessity", STAR, "grass")["basis"] == "confirmation"
    assert _row(old_a, b, "necessity", STAR, "grass")["basis"] == "confirmation"  # yesterday's A, today's B
    assert _row(old_other, old_b, "necessity", STAR, "grass")["basis"].startswith("not paired: A measured")


def _keyed_by_name(analysis: dict) -> None:
    """analysis.json as probe wrote it before 8 December 2026: dropped counters keyed by class name."""
    analysis["dropped_counters"] = {CLASSES[int(k)]: v for k, v in (analysis.get("dropped_counters") or {}).items()}
    analysis.pop("dropped_counters_keyed_by", None)


def _row(a: Path, b: Path, kind: str, index: int, cue: str):
    return compare(a, b).cues.set_index(["kind", "class_index", "cue"]).loc[(kind, index, cue)]


def _set_counters(run: Path, cue: str, counters: list[str], *, discovered: bool = False) -> Path:
    """``run``'s analysis.json with ``cue`` listed against ``counters`` and no counter values (a cue list without
    them, as default_cues.json and a run without a concept model have), or proposed by discovery for the star
    (``discovered``: Proposal.to_dict's record, which saved no counter values before 8 December 2026)."""
    def change(analysis):
        listed = analysis["cues"]["list"]
        for c in listed:
            c.pop("counter_values", None)
        entry = next(c for c in listed if c["name"] == cue)
        entry["counters"] = list(counters)
        if discovered:
            listed.remove(entry)
            analysis["cues"]["discovered"] = {str(STAR): [
                {"cue": cue, "group": "background", "phrase": entry["template"].replace("{} ", ""), "shift": 0.3,
                 "z": 3.0, "n_pairs": 8, "r": None, "t": None, "reason": "score shift", "template": entry["template"],
                 "counters": list(counters)}]}

    _edit_json(run / "analysis.json", change)
    return run


@pytest.mark.parametrize("discovered", [False, True], ids=["listed without values", "discovered"])
def test_necessity_tests_against_other_counters_are_not_paired_when_no_counter_values_are_recorded(
        fake_runs, tmp_path, discovered):
    """Found by review (8 December 2026): the counters check read ``kept_counters``, which pairs counters with their
    recorded values; a discovered cue (Proposal.to_dict saved none) and a cue list without values (default_cues.json,
    a run without a concept model) had none, so A against sand and snow and B against water and snow both read as
    the prompt '{} on grass' and were paired."""
    a, b, _, _ = fake_runs
    a_sand = _set_counters(_copy(a, tmp_path / "a-sand"), "grass", ["{} on sand", "{} on snow"], discovered=discovered)
    b_same = _set_counters(_copy(b, tmp_path / "b-same"), "grass", ["{} on sand", "{} on snow"], discovered=discovered)
    b_water = _set_counters(_copy(b, tmp_path / "b-water"), "grass", ["{} on water", "{} on snow"],
                            discovered=discovered)
    row = _row(a_sand, b_water, "necessity", STAR, "grass")
    assert row["verdict"] == "untested" and row["n_shared"] == 0, row
    assert row["basis"] == ("not paired: A measured the prompt '{} on grass'; counters '{} on sand', '{} on snow', "
                            "B the prompt '{} on grass'; counters '{} on water', '{} on snow'"), row["basis"]
    assert _row(a_sand, b_same, "necessity", STAR, "grass")["basis"] == "confirmation"  # the same counters: paired


def test_a_discovered_cue_keeps_its_counter_values(fake_runs):
    """Proposal.to_dict records what each counter shows, as a listed cue does: ``kept_counters`` (probe confirm's and
    --balance's neutral values for a finding without counters of its own) reads them for a discovered cue too."""
    from probe.analysis.cues import Cue
    from probe.analysis.discovery import Proposal
    from probe.run import AnalysisSummary

    cue = Cue("on water", "{} on water", ("{} on sand", "{} on snow"), category="discovered: background",
              attribute="background", value="on water", counter_values=("on sand", "on snow"))
    record = Proposal(cue, "background", "on water", 0.3, 3.0, 8, "score shift").to_dict()
    assert record["counter_values"] == ["on sand", "on snow"]
    summary = AnalysisSummary.from_dict({"cues": {"list": [], "discovered": {str(STAR): [record]}},
                                         "dropped_counters": {"star": ["on snow"]}})
    assert summary.kept_counters(STAR, "star", "on water") == (("{} on sand", "on sand"),)


def test_sampling_steps_divide_only_the_tests_drawn_with_the_classs_token(fake_runs, tmp_path):
    """Found by review (8 December 2026): a class's extra sampling steps apply only to prompts holding its token
    (probe.analysis.lab ``Lab.settings``), but compare left every test of the class unpaired when only the steps
    differed: its sufficiency tests (carriers, no token) and a necessity test drawn with the class's name too."""
    a, b, _, _ = fake_runs
    slow = _copy(a, tmp_path / "a-10-steps")

    def ten_steps(analysis):
        analysis["classes"][str(STAR)]["sampling_steps"] = 10

    _edit_json(slow / "analysis.json", ten_steps)
    assert _row(slow, b, "sufficiency", STAR, "grass")["basis"] == "confirmation"  # carriers: no token, same steps
    # a token shift draws both arms with the token, at the class's steps: not like with like (review of the fix)
    from probe.comparison import _measured, _open

    shift = ("token-shift", STAR, "grass")
    assert "10 sampling steps" in _measured(_open(slow, "A"), shift) and "sampling steps" not in _measured(_open(b, "B"), shift)
    necessity = _row(slow, b, "necessity", STAR, "grass")
    assert necessity["n_shared"] == 0 and necessity["basis"].endswith("; 10 sampling steps, B the prompt '{} on grass'; "
                                                                      "counters '{} on sand', '{} on snow', '{} on water'")

    def draw_with_name(findings):
        for f in findings:
            if (f["kind"], f["class_index"], f["cue"]) == ("necessity", STAR, "grass"):
                f["details"]["drawn_with_name"] = "star"

    named_slow, named_b = _copy(slow, tmp_path / "a-10-named"), _copy(b, tmp_path / "b-named")
    found = [f for f in json.loads((a / "findings.json").read_text()) if (f["kind"], f["cue"]) == ("necessity", "grass")]
    (named_b / "findings.json").write_text(json.dumps(found))  # B's (clean) test as a finding, to say what it drew
    for run in (named_slow, named_b):
        _edit_json(run / "findings.json", draw_with_name)
    assert _row(named_slow, named_b, "necessity", STAR, "grass")["basis"] == "confirmation"  # both by name, run's steps


def test_dropped_counters_are_keyed_by_class_index_so_classes_of_one_name_keep_their_own(fake_runs, tmp_path):
    """Found by review (8 December 2026): analysis.json keyed the dropped counters by class name, and ImageNet's two
    "crane"s (134, 517) overwrote each other; compare and --confirm-like then read the other crane's. They are keyed
    by class index now; a run written before (by name) is read by name where the name is one class's, and a necessity
    test of a class whose name another shares is paired with none (its analysis.json cannot say its counters)."""
    a, b, _, _ = fake_runs
    analysis = json.loads((a / "analysis.json").read_text())
    assert analysis["dropped_counters_keyed_by"] == "class index"
    assert set(analysis["dropped_counters"]) <= {str(i) for i in range(len(CLASSES))} and analysis["dropped_counters"]
    twins = ["star", "square", "star"]  # class 0 renamed: two classes named "star", as ImageNet has two "crane"s
    a2, b2 = _copy(a, tmp_path / "a-twins"), _copy(b, tmp_path / "b-twins")
    for run in (a2, b2):
        (run / "labels.json").write_text(json.dumps(twins))

    def drop(which: dict):
        return lambda data: data.update(dropped_counters=which, dropped_counters_keyed_by="class index")

    _edit_json(a2 / "analysis.json", drop({"0": ["on grass"], str(STAR): ["on grass", "on sand"]}))
    _edit_json(b2 / "analysis.json", drop({"0": ["on grass"], str(STAR): ["on grass"]}))
    assert _row(a2, b2, "necessity", STAR, "grass")["basis"].startswith("not paired: A measured")
    assert _row(a2, b2, "necessity", 0, "grass")["basis"] == "screening only"  # class 0: the same counters
    # a run written before: by name, where two classes share it, neither class's counters are known
    for run in (a2, b2):
        _edit_json(run / "analysis.json", lambda data: data.update(dropped_counters={"star": ["on grass"]},
                                                                   dropped_counters_keyed_by=None))
    for index in (0, STAR):
        row = _row(a2, b2, "necessity", index, "grass")
        assert row["n_shared"] == 0 and row["basis"].startswith("not paired: A measured the prompt '{} on grass'; "
                                                                "counters it cannot tell ('star' names classes 0, 2"), row
    assert _row(a2, b2, "sufficiency", STAR, "grass")["basis"] == "confirmation"  # no counters: paired as before


def test_confirm_like_takes_the_other_runs_counters_by_class_index():
    """--confirm-like's counters (engine._suspects_like) by class index: two classes of one name keep their own; an
    older analysis keyed by name is read as before where the name is one class's, and a shared name leaves the class
    its own counter rule (compare pairs none of its necessity tests either way)."""
    from types import SimpleNamespace

    from probe.analysis.cues import Cue
    from probe.analysis.engine import _suspects_like
    from probe.run import AnalysisSummary

    cues = [Cue("grass", "{} on grass", ("{} on sand", "{} on snow")), Cue("sand", "{} on sand", ("{} on grass",))]
    classes = [SimpleNamespace(index=i) for i in range(3)]
    labels = ["crane", "square", "crane"]
    by_index = AnalysisSummary.from_dict({"dropped_counters": {"0": ["on sand"], "2": ["on snow"], "1": ["on grass"]},
                                          "dropped_counters_keyed_by": "class index"})
    assert _suspects_like(by_index, cues, classes, labels) == {0: {"{} on sand"}, 1: {"{} on grass"}, 2: {"{} on snow"}}
    by_name = AnalysisSummary.from_dict({"dropped_counters": {"crane": ["on snow"], "square": ["on grass"]}})
    own = {0: {"{} on grass"}}
    assert _suspects_like(by_name, cues, classes, labels, own=own) == {0: {"{} on grass"}, 1: {"{} on grass"}, 2: set()}


def test_a_retest_reads_the_dropped_counters_by_class_index(fake_runs, tmp_path):
    """probe.analysis.retest (a re-test measured as the audit measured it) reads the dropped counters by class index,
    and a run written before (by class name) as before where the name is one class's."""
    from probe.analysis.retest import RunContext

    a, _, gen_a, _ = fake_runs
    run = _copy(a, tmp_path / "a-retest")
    (run / "labels.json").write_text(json.dumps(["star", "square", "star"]))  # two classes named "star"
    _edit_json(run / "analysis.json", lambda data: data.update(
        dropped_counters={"0": ["on water"], "1": ["on snow"], str(STAR): ["on sand"]},
        dropped_counters_keyed_by="class index"))

    def kept(index: int) -> tuple[str, ...]:
        with registered(str(a.parent / "fake-pipeline")):
            context = RunContext.open(run, PlantedClassifier({STAR: "grass"}), gen_a)
        return context.kept_counters(context.classes[index], context.cues["grass"]).counters

    assert kept(0) == ("{} on sand", "{} on snow") and kept(STAR) == ("{} on snow", "{} on water")
    assert kept(1) == ("{} on sand", "{} on water")
    _edit_json(run / "analysis.json", lambda data: data.update(dropped_counters={"square": ["on sand"]},
                                                               dropped_counters_keyed_by=None))
    assert kept(1) == ("{} on snow", "{} on water")  # by name, as before
