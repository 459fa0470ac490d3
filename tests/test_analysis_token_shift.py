"""probe.analysis.token_shift: what did the token add (concept reads on paired images), and which words is it near?"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from analysis_fakes import BACKGROUNDS, FakeGenerator, FakeOracles, fake_cues
from probe.analysis import AnalysisError, Cue, nearest_words, read_concepts, shift_samples
from probe.analysis.token_shift import cue_concept

CUES = fake_cues()


def _reads(backgrounds, shape="star"):
    return [{"shape": shape, "background": b, "tag": "none"} for b in backgrounds]


def test_paired_proportions_from_known_concept_reads():
    base = _reads(["sand", "snow", "grass", "water", "sand", "snow", "grass", "sand"])
    tok = _reads(["grass"] * 7 + ["sand"])
    out = shift_samples(2, CUES, base, tok, object_attribute="shape", object_value="star", evidence=["a.png"])
    grass = out["grass"]
    assert grass.kind == "token-shift" and grass.n == 8 and grass.excluded == 0 and grass.attempted == 8
    assert grass.before.tolist() == [False, False, True, False, False, False, True, False]
    assert grass.after.tolist() == [True] * 7 + [False]
    assert grass.mean == pytest.approx(7 / 8 - 2 / 8)
    assert grass.extra["freq_baseline"] == pytest.approx(0.25) and grass.extra["freq_token"] == pytest.approx(7 / 8)
    effect = grass.effect()
    assert effect.mean == pytest.approx(0.625) and effect.method == "newcombe-mcnemar" and effect.ci_low > 0
    assert effect.p == pytest.approx(2 / 2 ** 5)  # 5 discordant pairs, all one way: exact McNemar
    assert out["sand"].mean == pytest.approx(1 / 8 - 3 / 8)  # the token removes sand
    assert out["dot"].mean == 0 and out["dot"].before.sum() == 0
    assert grass.evidence == ["a.png"]


def test_pairs_whose_object_changed_are_excluded():
    base = _reads(["sand"] * 6)
    tok = _reads(["grass"] * 6)
    tok[1]["shape"] = "circle"  # the token turned the star into a circle
    base[4]["shape"] = "square"  # the baseline image was not a star to begin with
    out = shift_samples(2, CUES, base, tok, object_attribute="shape", object_value="star")
    g = out["grass"]
    assert g.attempted == 6 and g.excluded == 2 and g.n == 4 and g.mean == 1.0
    # without the class's object (a scorer that cannot tell), every pair counts
    assert shift_samples(2, CUES, base, tok)["grass"].n == 6
    assert shift_samples(2, CUES, base, tok, object_attribute="colour", object_value="star")["grass"].n == 6


def test_cues_the_scorer_cannot_read_are_left_out():
    base, tok = _reads(["sand"] * 3), _reads(["grass"] * 3)
    colour = Cue("red", "red {}", ("blue {}",), attribute="color", value="red")
    out = shift_samples(2, [colour, *CUES], base, tok)
    assert "red" not in out and "grass" in out
    assert shift_samples(2, CUES, [], []) == {}


def test_a_clip_style_cue_is_read_under_its_own_name():
    cue = Cue("a plate", "{} on a plate", ("{} on a table",))
    assert cue_concept(cue) == ("a plate", "a plate")
    assert cue_concept(CUES[0]) == ("background", CUES[0].value)
    base = [{"a plate": ""}, {"a plate": ""}, {"a plate": "a plate"}]
    tok = [{"a plate": "a plate"}] * 3
    assert shift_samples(0, [cue], base, tok)["a plate"].mean == pytest.approx(2 / 3)


def test_unpaired_images_are_refused():
    with pytest.raises(AnalysisError, match="paired"):
        shift_samples(2, CUES, _reads(["sand"] * 3), _reads(["grass"] * 2))


def test_read_concepts_on_generated_images_and_scorer_failures():
    gen = FakeGenerator({"<t>": "on grass"})
    seeds = list(range(8))
    base = read_concepts(FakeOracles(), gen.generate(["a photo of a star"] * 8, seeds))
    tok = read_concepts(FakeOracles(), gen.generate(["a photo of a <t> star"] * 8, seeds))
    assert all(t == {"shape": "star", "background": "grass", "tag": "none"} for t in tok)
    expected = sum(gen.scene("a photo of a star", s)[2]["background"] != "grass" for s in seeds) / 8
    out = shift_samples(2, CUES, base, tok, object_attribute="shape", object_value="star")
    assert out["grass"].mean == pytest.approx(expected) and out["grass"].extra["freq_token"] == 1.0
    for b in BACKGROUNDS:  # every other background loses exactly its share of the plain images
        if b != "grass":
            share = sum(gen.scene("a photo of a star", s)[2]["background"] == b for s in seeds) / 8
            assert out[b].mean == pytest.approx(-share), b
    assert read_concepts(FakeOracles(), torch.zeros(0, 3, 16, 16)) == []

    class Broken:
        def predict(self, images):
            raise RuntimeError("weights missing")

    with pytest.raises(AnalysisError, match="concept scorer failed.*weights missing"):
        read_concepts(Broken(), torch.zeros(1, 3, 16, 16))


def test_nearest_words_rank_by_cosine_and_skip_added_tokens():
    gen = FakeGenerator()
    emb = gen.text_encoder.get_input_embeddings().weight
    grass = gen.tokenizer.encoder["grass</w>"]
    words = nearest_words(gen.tokenizer, gen.text_encoder, emb[grass] * 3.0, k=3)
    assert words[0]["word"] == "grass" and words[0]["cosine"] == pytest.approx(1.0, abs=1e-4)
    assert len(words) == 3 and words[0]["cosine"] >= words[1]["cosine"] >= words[2]["cosine"]
    cos = torch.nn.functional.cosine_similarity(emb.detach(), emb[grass].detach()[None], dim=1)
    assert words[1]["id"] == int(torch.argsort(cos, descending=True)[1])
    gen.tokenizer.added = {"grass": grass}  # another class's learned token is no vocabulary word
    assert nearest_words(gen.tokenizer, gen.text_encoder, emb[grass], k=3)[0]["word"] != "grass"
    with pytest.raises(AnalysisError, match="dimension"):
        nearest_words(gen.tokenizer, gen.text_encoder, torch.zeros(5))


def test_a_concept_model_check_reads_the_cue_whose_phrase_is_closest_to_the_image(tmp_path):
    """Token shift through a real (tiny) CLIP loaded as a user's folder would be: the check reads, per cue
    attribute, the value whose phrase the model puts closest to the image."""
    from tiny_concepts import save_tiny_clip

    from probe.analysis.checks import ConceptModelCheck, concept_cues
    from probe.concepts import load_concepts

    cues = concept_cues([Cue("grass", "{} on grass", ("{} on sand", "{} in the snow"), category="background")])
    model = load_concepts(save_tiny_clip(tmp_path / "clip"))
    check = ConceptModelCheck(model, ["star"], cues)
    images = torch.rand(2, 3, 32, 32)
    f = model.embed_images(images)
    # the phrase of "grass" points at image 0, the phrase of "on sand" at image 1
    grass, sand, snow = (check.phrases[check._index[("background", v)]] for v in ("grass", "on sand", "in the snow"))
    model._text.update({grass: f[0], sand: f[1], snow: -f[0]})
    assert check.predict(images)["background"] == ["grass", "on sand"]
    reads = read_concepts(check, images)
    assert shift_samples(0, cues, reads[1:], reads[:1])["grass"].mean == 1.0
