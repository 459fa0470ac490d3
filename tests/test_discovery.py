"""Cue discovery (issue 19 §3): the vocabulary, the paired shift and the proposals it makes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probe.analysis.cues import Cue
from probe.analysis.discovery import DISCOVERED, Discovery, is_discovered, paired_shift
from probe.concepts.vocabulary import MIN_BUNDLED_PHRASES, VocabularyError, load_vocabulary

GROUPS = {"scenes", "backgrounds", "materials", "textures", "colours", "objects", "people", "text and watermarks",
          "styles", "lighting", "viewpoints"}


def test_the_bundled_vocabulary_holds_a_thousand_phrases_in_the_issue_groups():
    vocab = load_vocabulary()
    assert len(vocab) >= MIN_BUNDLED_PHRASES
    assert set(vocab.groups) == GROUPS
    assert all(len(ix) >= 30 for ix in vocab.groups.values()), {g: len(ix) for g, ix in vocab.groups.items()}
    templates = [p.template for p in vocab.phrases]
    assert len(templates) == len(set(templates))
    # the world's cue templates are in it, so discovery can find a planted world cue nobody listed
    from probe.world.domain import world_cues

    assert {c.template for c in world_cues()} <= set(templates)
    assert repr(vocab).startswith(f"Vocabulary({len(vocab)} phrases from bundled: scenes ")


def test_a_users_vocabulary_file_extends_or_replaces_and_a_bad_one_gets_one_line(tmp_path):
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"groups": {"fabrics": {"template": "{} on {phrase}", "phrases": ["tweed", "grass"]}}}))
    both = load_vocabulary(mine)
    assert len(both) == len(load_vocabulary()) + 1  # "{} on grass" is already bundled: kept once
    alone = load_vocabulary(mine, replace=True)
    mine.write_bytes(b"\xef\xbb\xbf" + mine.read_bytes())  # saved with a BOM: read the same
    assert len(load_vocabulary(mine)) == len(both)
    assert [p.template for p in alone.phrases] == ["{} on tweed", "{} on grass"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"groups": {"x": {"template": "{} on grass", "phrases": ["a"]}}}))
    with pytest.raises(VocabularyError, match="needs a 'template' holding"):
        load_vocabulary(bad)
    with pytest.raises(VocabularyError, match="does not exist"):
        load_vocabulary(tmp_path / "missing.json")
    # found by review (7 December 2026): case and spacing variants were three phrases, "café" in its two Unicode forms
    # two look-alike ones, and a second "grass" in the bundled group "scenes" both the cue "grass (scenes)"
    grass = next(p for p in load_vocabulary().phrases if p.phrase == "grass")
    variants = tmp_path / "variants.json"
    variants.write_text(json.dumps({"groups": {
        "mine": {"template": "{} beside {phrase}", "phrases": ["grass", "Grass", "  GRASS ", "caf\u00e9", "cafe\u0301",
                                                                 "red   brick"]},
        grass.group: {"template": "{} in front of {phrase}", "phrases": ["grass", "tweed"]}}}))
    loaded = load_vocabulary(variants)
    mine = [p.phrase for p in loaded.phrases if p.group == "mine"]
    assert mine == ["grass", "caf\u00e9", "red brick"]
    assert [p.template for p in loaded.phrases if p.group == grass.group and "grass" in p.phrase.casefold()] == [
        grass.template]  # the bundled one, kept once: no second "grass" cue in that group
    assert "{} in front of tweed" in {p.template for p in loaded.phrases}


def test_paired_shift_is_the_mean_difference_and_its_z():
    before = np.array([[0.0, 1.0, 0.0], [0.0, 1.0, 1.0], [0.0, 1.0, 0.0]])
    after = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    mean, z = paired_shift(before, after)
    assert mean.tolist() == pytest.approx([1.0, -1 / 3, 0.0])
    assert z[0] == np.inf and z[1] < 0 and z[2] == pytest.approx(0.0)


class _Scores:
    """A check whose concept model returns a fixed matrix (one seam: the model's scores)."""

    def __init__(self, matrix):
        self.model = self
        self.matrix = matrix

    def score(self, images, texts):
        return self.matrix


def _vocab(tmp_path):
    f = tmp_path / "v.json"
    f.write_text(json.dumps({"groups": {
        "backgrounds": {"template": "{} on {phrase}", "phrases": ["grass", "sand", "snow", "a sofa"]},
        "colours": {"template": "{phrase} {}", "phrases": ["red", "blue", "green"]}}}))
    return load_vocabulary(f, replace=True)


def test_a_phrase_that_rises_is_proposed_with_counters_from_its_own_group_and_a_clean_shift_proposes_nothing(tmp_path):
    vocab = _vocab(tmp_path)
    rng = np.random.default_rng(0)
    before = rng.normal(size=(18, len(vocab)))
    after = before + rng.normal(scale=0.1, size=before.shape)
    found = Discovery(_Scores(None), vocab, k=3).propose_from(before, after)
    assert found == []  # no phrase rose: nothing to test
    after[:, 0] += 1.5  # "on grass" rises in every pair
    found = Discovery(_Scores(None), vocab, k=3).propose_from(before, after)
    assert [p.phrase for p in found] == ["grass"]
    cue = found[0].cue
    assert is_discovered(cue) and cue.category == f"{DISCOVERED}: backgrounds"
    assert cue.template == "{} on grass" and cue.attribute == "backgrounds" and cue.value == "grass"
    assert set(cue.counter_values) <= {"sand", "snow", "a sofa"} and len(cue.counters) == 2
    assert found[0].z > 3 and found[0].reason == "score shift"
    # a cue already tested is never proposed again
    listed = [Cue("grass", "{} on grass")]
    assert Discovery(_Scores(None), vocab, listed=listed).propose_from(before, after) == []
    # a listed cue of the same name and another template ("grass" as "{} in tall grass"): the proposal takes its
    # group in its name, since tests are matched by (class, cue name) and the two overwrote each other's
    (other,) = Discovery(_Scores(None), vocab, listed=[Cue("grass", "{} in tall grass")]).propose_from(before, after)
    assert other.cue.name == "grass (backgrounds)" and other.cue.template == "{} on grass"


def test_one_per_group_at_most_k_and_a_nearest_word_adds_its_phrase(tmp_path):
    vocab = _vocab(tmp_path)
    rng = np.random.default_rng(1)
    before = rng.normal(size=(12, len(vocab)))
    after = before + rng.normal(scale=0.05, size=before.shape)
    after[:, 0] += 2.0   # grass
    after[:, 1] += 1.5   # sand: same group, second
    after[:, 4] += 1.0   # red
    after[:, 3] += 0.2   # "a sofa": small but positive
    found = Discovery(_Scores(None), vocab, k=3, per_group=1).propose_from(before, after, nearest_words=["sofa", "a"])
    assert [(p.phrase, p.reason) for p in found] == [("grass", "score shift"), ("red", "score shift"),
                                                     ("a sofa", "nearest word 'sofa'")]
    assert len(Discovery(_Scores(None), vocab, k=1).propose_from(before, after)) == 1


def test_the_world_oracles_read_only_their_own_cues_and_keep_the_domains_counters(tmp_path):
    from probe.analysis.checks import OracleCheck
    from probe.world.domain import world_cues

    class Oracles:
        vocab = {"background": ["grass", "sand"], "shape": ["star"]}

        def __init__(self, backgrounds):
            self.backgrounds = backgrounds

        def predict(self, images):
            return {"background": self.backgrounds[: images.shape[0]], "shape": ["star"] * images.shape[0]}

    import torch

    vocab = _vocab(tmp_path)
    known = world_cues()
    listed = [c for c in known if c.attribute != "background"]  # the background family left out of the list
    images = torch.zeros(6, 3, 8, 8)
    before = Discovery(OracleCheck(Oracles(["sand"] * 3 + ["grass"] + ["sand"] * 2)), vocab, known=known).scores(images, "star")
    after = Discovery(OracleCheck(Oracles(["grass"] * 6)), vocab, known=known).scores(images, "star")
    assert np.isnan(before[:, 3]).all()  # "on a sofa" is not a world cue: the oracles cannot read it
    found = Discovery(OracleCheck(Oracles([])), vocab, listed=listed, known=known, min_z=2.0).propose_from(before, after)
    assert [p.phrase for p in found] == ["grass"]
    grass = next(c for c in known if c.value == "grass")
    assert found[0].cue.attribute == "background" and found[0].cue.counters == grass.counters


def test_a_planted_cue_left_off_the_list_is_discovered_tested_and_passes_and_a_clean_model_gets_none(tmp_path):
    """The engine end to end on the fake world (tests/analysis_fakes.py): the background family removed from the
    tested list, discovery proposes the star's planted grass from what its token added, and the proposal is
    screened, confirmed on fresh pairs and passes in the same FDR family; the clean classifier's grass does not."""
    from analysis_fakes import fake_cues
    from test_analysis_engine import CUE_TESTS_ONLY, STAR, _analysis, _audit

    listed = [c for c in fake_cues() if c.attribute != "background"]
    run, _, findings = _audit(tmp_path / "biased", True, config=CUE_TESTS_ONLY, cues=listed)
    proposed = _analysis(run)["cues"]["discovered"]
    assert "grass" in [p["phrase"] for p in proposed[str(STAR)]], proposed
    grass = [f for f in findings.for_class(STAR) if f.cue == "grass" and f.passes]
    assert grass, [(f.kind, f.cue, f.status) for f in findings.for_class(STAR)]
    assert all(f.details["category"] == "discovered: backgrounds" for f in grass)
    why = [f.details["proposed"] for f in grass]
    assert all((w["reason"] == "score shift" and w["z"] >= 3) or (w["reason"] == "goes with P(class)" and w["t"] >= 2.0)
               for w in why), why
    assert _analysis(run)["classes"][str(STAR)]["discovered"][0]["phrase"] == "grass"
    _, _, clean = _audit(tmp_path / "clean", False, config=CUE_TESTS_ONLY, cues=listed)
    assert not [f for f in clean if f.passes and str(f.details.get("category", "")).startswith("discovered")]


def test_discovery_off_proposes_nothing(tmp_path):
    from analysis_fakes import fake_cues
    from test_analysis_engine import CUE_TESTS_ONLY, _analysis, _audit

    listed = [c for c in fake_cues() if c.attribute != "background"]
    run, _, findings = _audit(tmp_path, True, config=CUE_TESTS_ONLY.replace(discover=0), cues=listed)
    assert _analysis(run)["cues"]["discovered"] == {}
    assert not [f for f in findings if f.cue == "grass"]


def test_a_missing_vocabulary_file_is_one_line_before_any_model_loads(tmp_path, monkeypatch, capsys):
    from conftest import run_main
    from probe.world import bundled_classifier_path

    code, out, err = run_main(monkeypatch, capsys, "audit", "--model", str(bundled_classifier_path("biased")),
                              "--generator", "world", "--out", str(tmp_path / "run"), "--vocabulary",
                              str(tmp_path / "nope.json"), "--quiet")
    assert code == 2 and "vocabulary file" in err and "does not exist" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()
    code, _, err = run_main(monkeypatch, capsys, "audit", "--model", str(bundled_classifier_path("biased")),
                            "--generator", "world", "--out", str(tmp_path / "run"), "--discover", "-1", "--quiet")
    assert code == 2 and "--discover -1 must not be negative" in err, err  # the flag the user typed


def test_a_phrase_that_goes_with_the_classifiers_probability_is_proposed_even_when_the_token_did_not_draw_it(tmp_path):
    """The class needs wood, but its token did not learn to draw wood (no shift): the images that happen to show
    wood get the higher P(class), and that association proposes it; with P(class) unrelated to wood, nothing."""
    vocab = _vocab(tmp_path)
    rng = np.random.default_rng(3)
    n = 24
    scores = rng.normal(size=(n, len(vocab)))
    shown = rng.random(n) < 0.4
    scores[:, 1] = np.where(shown, 2.0, -0.5) + rng.normal(scale=0.1, size=n)  # "on sand", shown on some images
    probs = np.where(shown, 0.95, 0.3) + rng.normal(scale=0.05, size=n)
    before, after = scores[: n // 2], scores[n // 2:]
    found = Discovery(_Scores(None), vocab).propose_from(before, before.copy(), scores=scores, probs=probs)
    assert [(p.phrase, p.reason) for p in found] == [("sand", "goes with P(class)")]
    assert found[0].r > 0.9 and found[0].t > 2.5 and found[0].to_dict()["t"] == round(found[0].t, 2)
    unrelated = rng.permutation(probs)
    quiet = Discovery(_Scores(None), vocab).propose_from(before, after, scores=scores, probs=unrelated)
    assert "sand" not in [p.phrase for p in quiet]


def test_discovery_draws_its_plain_prompt_images_only_when_something_unlisted_can_be_read(tmp_path):
    """With a family left off the list, each class gets ``discover_images`` plain-prompt images (stage "discovery",
    kept under analysis/discovery/); with the domain's whole cue list nothing unlisted is readable by the oracles,
    so discovery generates nothing (the demo's cost is unchanged)."""
    from analysis_fakes import fake_cues
    from test_analysis_engine import CUE_TESTS_ONLY, _analysis, _audit

    cfg = CUE_TESTS_ONLY.replace(discover_images=5)
    run, _, _ = _audit(tmp_path / "partial", True, config=cfg, cues=[c for c in fake_cues() if c.attribute != "background"])
    stages = _analysis(run)["images_by_stage"]
    assert stages.get("discovery") == 5 * 3, stages  # 3 classes in the fake run
    assert len(list((run / "analysis" / "discovery").rglob("*.png"))) == 15
    run, _, _ = _audit(tmp_path / "full", True, config=cfg)
    assert "discovery" not in _analysis(run)["images_by_stage"] and _analysis(run)["cues"]["discovered"] == {}


def test_what_the_attributions_mark_outside_the_object_is_proposed_and_nothing_without_it(tmp_path):
    """A phrase that scores higher on the marked half outside the object than on the unmarked half of the same
    images is proposed ("attributions outside the object"); with no such pairs, or a flat difference, it is not."""
    vocab = _vocab(tmp_path)
    sofa = [p.phrase for p in vocab.phrases].index("a sofa")
    rng = np.random.default_rng(1)
    before = rng.normal(size=(12, len(vocab)))
    after = before + rng.normal(scale=0.1, size=before.shape)  # the token drew nothing new
    unmarked = rng.normal(size=(10, len(vocab)))
    marked = unmarked + rng.normal(scale=0.1, size=unmarked.shape)
    marked[:, sofa] += 1.0  # where the classifier looks off the object, a sofa
    finder = Discovery(_Scores(None), vocab, k=3)
    found = finder.propose_from(before, after, outside=(marked, unmarked))
    assert [p.phrase for p in found] == ["a sofa"]
    assert found[0].reason.startswith("attributions outside the object (z ") and found[0].group == "backgrounds"
    assert finder.propose_from(before, after) == []
    assert finder.propose_from(before, after, outside=(unmarked + 0.0, unmarked)) == []
    # an already listed phrase is never proposed again
    listed = Discovery(_Scores(None), vocab, k=3, listed=[found[0].cue])
    assert listed.propose_from(before, after, outside=(marked, unmarked)) == []


def test_outside_pairs_keep_the_marked_and_unmarked_halves_off_the_object(tmp_path):
    """Step 1-3 of probe/analysis/outside.py on a scene whose left half is red, right half blue, with the object
    in the middle and the attribution on the left: the marked half keeps the red, the unmarked the blue, and the
    object is grey in both; an object covering the whole image gives no pair."""
    import torch

    from probe.analysis.outside import GREY, clear_outside_pairs, load_outside_pairs, save_outside_pairs

    n, size = 3, 64
    images = torch.zeros(n, 3, size, size)
    images[:, 0, :, : size // 2] = 1.0  # red left
    images[:, 2, :, size // 2:] = 1.0  # blue right
    heat = torch.zeros(n, 32, 32)
    heat[:, :, :16] = 1.0 + torch.rand(n, 32, 16)  # the classifier looks left
    attention = {i: np.zeros((16, 16), np.float32) for i in range(n)}
    for a in attention.values():
        a[6:10, 6:10] = 1.0  # the object, in the middle
    attention[2] = np.ones((16, 16), np.float32)
    attention[2][0, 0] = 0.0  # all object: nothing outside
    folder = tmp_path / "outside"
    assert save_outside_pairs(images, heat, attention, [0, 1, 2], ["a", "b", "c"], folder) == 2
    marked, unmarked = load_outside_pairs(folder)
    assert marked.shape == (2, 3, 224, 224)
    middle = (slice(None), slice(None), slice(100, 124), slice(100, 124))
    assert torch.allclose(marked[middle], torch.full_like(marked[middle], GREY), atol=0.01)
    assert torch.allclose(unmarked[middle], torch.full_like(unmarked[middle], GREY), atol=0.01)
    assert marked[:, 0, :, :100].mean() > 0.9 and marked[:, 2].mean() < GREY  # red kept, blue greyed
    assert unmarked[:, 2, :, 124:].mean() > 0.9 and unmarked[:, 0, :, :100].mean() < 0.6
    assert load_outside_pairs(tmp_path / "none") is None
    # Grad-CAM-like heat, zero on most of the image: the zeros tied at the median are the unmarked half
    sparse = torch.zeros(n, 32, 32)
    sparse[:, :4, :4] = 1.0
    assert save_outside_pairs(images, sparse, attention, [0, 1], ["a", "b"], tmp_path / "sparse") == 2
    marked, unmarked = load_outside_pairs(tmp_path / "sparse")
    assert marked[:, 0, :20, :20].mean() > 0.9 and marked[:, :, 60:].sub(GREY).abs().max() < 0.01
    clear_outside_pairs(folder)  # a re-analysis starts without the last one's pairs
    assert load_outside_pairs(folder) is None and not list(folder.glob("*marked_*"))


def test_what_clearly_goes_with_p_class_is_held_fixed_so_a_rare_cue_shows_and_a_confounded_one_does_not(tmp_path):
    """fresh7-biased-2's squares: P(square) falls on every square with a bar, and the generator draws a red square 5
    times in 36, so red (planted) goes with P(class) at t 1.7 only, under the bar of 2; with the bar held fixed it reads
    3.2. And a phrase that goes with P(class) only because it comes with a stronger one (yellow, drawn with the snow
    the class needs) reads low once that one is held fixed. The proposal says which reading chose it."""
    from probe.analysis.discovery import association, partial_association

    f = tmp_path / "v.json"
    f.write_text(json.dumps({"groups": {
        "colours": {"template": "{phrase} {}", "phrases": ["red", "yellow"]},
        "backgrounds": {"template": "{} on {phrase}", "phrases": ["snow"]},
        "tags": {"template": "{} with {phrase}", "phrases": ["a bar"]}}}))
    vocab = load_vocabulary(f, replace=True)
    n = 36
    bar, red, snow, yellow = (np.zeros(n) for _ in range(4))
    bar[:9], red[9:14], snow[14:20], yellow[14:19], yellow[30] = 1, 1, 1, 1, 1
    logit = 2.0 - 5 * bar + 2.0 * red + 3.0 * snow + np.random.default_rng(0).normal(0, 1.0, n)
    scores = np.column_stack([red, yellow, snow, bar])
    groups = [p.group for p in vocab.phrases]
    _, alone = association(scores, logit)
    _, held, marked = partial_association(scores, logit, groups, 2.0)
    assert alone[0] < 2.0 <= held[0]  # red: hidden by the bar, clear with it held fixed
    assert alone[1] >= 2.0 > held[1]  # yellow: only with the snow
    assert marked.all()
    found = Discovery(_Scores(None), vocab, k=3).propose_from(scores[:18], scores[:18].copy(), scores=scores,
                                                                probs=logit)
    assert ("red", "goes with P(class), other groups held fixed") in [(p.phrase, p.reason) for p in found], found
    assert "yellow" not in [p.phrase for p in found]
    # nothing clear to hold: the plain association, unmarked
    _, plain, none_held = partial_association(scores[:, :1], logit, ["colours"], 2.0)
    assert not none_held.any() and plain[0] == association(scores[:, :1], logit)[1][0]
