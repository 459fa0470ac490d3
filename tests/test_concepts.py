"""The concept model: tiny CLIP and SigLIP folders load and score like the transformers model itself, text
embeddings are cached, ``choose`` returns each image's winning index, and every loading failure is one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from probe.concepts import KNOWN_CONCEPT_MODELS, ConceptError, ConceptModel, default_concepts, load_concepts
from tiny_concepts import save_tiny_clip, save_tiny_siglip

PHRASES = ["a photo of a cat", "a red star on grass", "zebra crossing", "a photo of a cat"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("concepts")
    return {"clip": save_tiny_clip(root / "clip"), "siglip": save_tiny_siglip(root / "siglip")}


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 40, 48, generator=torch.Generator().manual_seed(seed))


def _by_hand(concepts: ConceptModel, image: torch.Tensor, phrase: str) -> float:
    """The logit transformers' own forward gives one image and one phrase, preprocessed as its docs say."""
    model, processor = concepts.model, concepts.processor
    siglip = concepts.kind.startswith("SigLIP")
    pixels = processor.image_processor(images=[image.permute(1, 2, 0).numpy()], return_tensors="pt", do_rescale=False)
    tokens = processor.tokenizer([phrase], padding="max_length" if siglip else True, truncation=True,
                                 max_length=model.config.text_config.max_position_embeddings, return_tensors="pt")
    with torch.no_grad():
        return float(model(**tokens, **pixels).logits_per_image[0, 0])


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_a_tiny_folder_loads_and_scores_like_the_model_itself(folders, kind):
    folder = folders[kind]
    assert sum(f.stat().st_size for f in folder.iterdir()) < 1_000_000
    concepts = load_concepts(folder)
    assert concepts.name == kind
    assert repr(concepts) == f"ConceptModel({'CLIP' if kind == 'clip' else 'SigLIP'} '{kind}' on cpu, float32)"
    images = _images(5)
    scores = concepts.score(images, PHRASES)
    assert scores.shape == (5, len(PHRASES)) and scores.dtype == np.float32
    for i, p in [(0, 0), (3, 1), (4, 2)]:
        assert scores[i, p] == pytest.approx(_by_hand(concepts, images[i], PHRASES[p]), abs=1e-4)
    assert scores[:, 0] == pytest.approx(scores[:, 3])  # a repeated phrase scores the same
    if kind == "siglip":  # the bias is part of SigLIP's logit: leaving it out moves every score by 2.5
        assert float(concepts.model.logit_bias.detach()) == pytest.approx(-2.5)


def test_precision_is_float32_on_a_cpu_and_half_precision_asks_for_a_gpu(folders):
    assert load_concepts(folders["clip"]).dtype == torch.float32
    with pytest.raises(ConceptError, match=r"dtype float16 needs a GPU \(device 'cpu'\); use float32 on a CPU"):
        load_concepts(folders["clip"], dtype="float16")
    with pytest.raises(ConceptError, match="dtype 'int8' is not one of float32, float16, bfloat16"):
        load_concepts(folders["clip"], dtype="int8")


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_embeddings_are_unit_vectors_and_batching_changes_nothing(folders, kind):
    images = _images(5, seed=1)
    one_batch = load_concepts(folders[kind], batch_size=16)
    small_batches = load_concepts(folders[kind], batch_size=2)
    e = one_batch.embed_images(images)
    assert e.shape == (5, one_batch.dim) and e.dtype == torch.float32
    assert e.norm(dim=1) == pytest.approx(torch.ones(5), abs=1e-5)
    assert small_batches.embed_images(images) == pytest.approx(e, abs=1e-5)
    t = one_batch.embed_texts(PHRASES)
    assert t.shape == (len(PHRASES), one_batch.dim)
    assert t.norm(dim=1) == pytest.approx(torch.ones(len(PHRASES)), abs=1e-5)
    assert small_batches.embed_texts(PHRASES) == pytest.approx(t, abs=1e-5)
    assert one_batch.score(images[:0], PHRASES).shape == (0, len(PHRASES))
    assert one_batch.score(images, []).shape == (5, 0)


def test_text_embeddings_are_encoded_once_per_phrase(folders, monkeypatch):
    concepts = load_concepts(folders["siglip"])
    encoded: list[int] = []
    text_tower = concepts.model.get_text_features

    def counting(input_ids, **kwargs):
        encoded.append(input_ids.shape[0])
        return text_tower(input_ids=input_ids, **kwargs)

    monkeypatch.setattr(concepts.model, "get_text_features", counting)
    images = _images(2)
    first = concepts.score(images, PHRASES)
    assert encoded == [3]  # three distinct phrases, one batch
    again = concepts.score(images, PHRASES)
    assert encoded == [3]
    np.testing.assert_array_equal(first, again)
    concepts.score(images, ["zebra crossing", "a blue heart"])
    assert encoded == [3, 1]  # only the new phrase
    # bounded (found by review, 7 December 2026: discovery's ~1000 phrases per class were all kept, ~3 GB of CLIP-L
    # embeddings over 1000 classes): the most recently used are kept, and an evicted phrase scores the same again
    concepts.TEXT_CACHE = 4
    many = [f"a photo of thing {i}" for i in range(7)]
    scored = concepts.score(images, many)
    assert len(concepts._text) == 4 and list(concepts._text) == many[3:]
    concepts.score(images, ["zebra crossing"])  # evicted: encoded again
    assert encoded[-1] == 1 and list(concepts._text)[-1] == "zebra crossing" and len(concepts._text) == 4
    np.testing.assert_allclose(concepts.score(images, many[:2]), scored[:, :2], rtol=1e-5, atol=1e-5)


def test_choose_returns_each_images_winning_candidate(folders, monkeypatch):
    concepts = load_concepts(folders["clip"])
    texts = torch.eye(4)  # candidate k is the unit vector e_k
    images = torch.nn.functional.normalize(torch.tensor([[0.1, 0.2, 0.9, 0.0],   # image 0 -> candidate 2
                                                         [0.8, 0.3, 0.0, 0.1],   # image 1 -> candidate 0
                                                         [0.0, 0.1, 0.2, 0.7]]), dim=1)  # image 2 -> candidate 3
    seen: list[list[str]] = []
    monkeypatch.setattr(concepts, "embed_images", lambda x: images)
    monkeypatch.setattr(concepts, "embed_texts", lambda phrases: seen.append(list(phrases)) or texts)
    candidates = ["cat", "dog", "tiger", "tabby"]
    assert concepts.choose(_images(3), candidates) == [2, 0, 3]
    assert seen[-1] == ["a photo of cat", "a photo of dog", "a photo of tiger", "a photo of tabby"]
    assert concepts.choose(_images(3), candidates, template="{} on sand") == [2, 0, 3]
    assert seen[-1][0] == "cat on sand"
    with pytest.raises(ConceptError, match="template"):
        concepts.choose(_images(3), candidates, template="a photo")
    with pytest.raises(ConceptError, match="candidate"):
        concepts.choose(_images(3), [])


def test_images_must_be_n_3_h_w_in_0_1(folders):
    concepts = load_concepts(folders["clip"])
    with pytest.raises(ConceptError, match=r"\[0, 1\]"):
        concepts.score(_images(2) * 255, ["a cat"])
    with pytest.raises(ConceptError, match=r"\(N, 3, H, W\)"):
        concepts.score(_images(2)[:, :1], ["a cat"])


def test_an_offline_hub_id_is_one_line_naming_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConceptError) as e:
        load_concepts("probe-tests/no-such-concept-model")
    message = str(e.value)
    assert "\n" not in message
    assert "HF_HUB_OFFLINE=1" in message and "--concepts DIR" in message
    assert "hf download probe-tests/no-such-concept-model --local-dir DIR" in message


def test_a_folder_of_another_model_type_names_it(tmp_path):
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16)
    config.save_pretrained(tmp_path / "bert")
    with pytest.raises(ConceptError, match="'bert' model.*CLIP, SigLIP"):
        load_concepts(tmp_path / "bert")
    with pytest.raises(ConceptError, match="'bert' model"):
        ConceptModel(BertModel(config), None, name="bert")


def test_a_folder_without_config_or_a_bad_spec_is_a_concept_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConceptError, match="empty.*no config.json"):
        load_concepts(tmp_path / "empty")
    with pytest.raises(ConceptError, match="neither a folder nor a hub id"):
        load_concepts(str(tmp_path / "missing" / "clip"))


def test_default_concepts_share_the_generators_text_tower():
    assert default_concepts("sd1") == "openai/clip-vit-large-patch14"
    assert default_concepts("sdxl") == "openai/clip-vit-large-patch14"
    assert default_concepts("sd2") == "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    assert default_concepts(None) == default_concepts("world") == "openai/clip-vit-large-patch14"
    assert {default_concepts(f) for f in ("sd1", "sd2", "sdxl")} <= set(KNOWN_CONCEPT_MODELS)
    assert "google/siglip-so400m-patch14-384" in KNOWN_CONCEPT_MODELS
