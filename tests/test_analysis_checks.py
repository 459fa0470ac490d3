"""The intervention checks: a concept model judges each arm against its own alternatives (object against its
confusers, cue against its counters, counter against its cue); curated cues become checkable."""

from __future__ import annotations

import numpy as np
import torch

from probe.analysis.checks import ConceptModelCheck, concept_cues
from probe.analysis.cues import Cue
from probe.analysis.lab import Arm


class TableModel:
    """A concept model whose score for (image i, phrase) is read from a table: image i "shows" the phrases
    listed for it (score 5), everything else scores 0; text embeddings are one-hot per phrase."""

    name = "table-model"

    def __init__(self, shows: list[set[str]]):
        self.shows = shows
        self.text_calls = 0

    def score(self, images01, phrases):
        return np.array([[5.0 if p in self.shows[int(img[0, 0, 0])] else 0.0 for p in phrases] for img in images01],
                        np.float32)

    def embed_texts(self, phrases):
        self.text_calls += 1
        return np.eye(len(phrases), dtype=np.float32)


def _images(n: int) -> torch.Tensor:
    x = torch.zeros(n, 3, 4, 4)
    for i in range(n):
        x[i, 0, 0, 0] = i  # the table's row
    return x


CUES = concept_cues([Cue("grass", "{} on grass", ("{} on sand", "{} in the snow"), category="background"),
                     Cue("snow", "{} in the snow", ("{} on grass",), category="background")])


def test_curated_cues_get_their_category_as_attribute_and_counters_named_after_their_cue():
    grass, snow = CUES
    assert (grass.attribute, grass.value, grass.counter_values) == ("background", "grass", ("on sand", "snow"))
    assert (snow.attribute, snow.value, snow.counter_values) == ("background", "snow", ("grass",))
    world = Cue("grass", "{} on grass", ("{} on sand",), attribute="bg", value="g", counter_values=("s",))
    assert concept_cues([world]) == [world]  # a domain's cue keeps its own attribute


def test_a_cue_arm_must_show_its_cue_more_than_its_counters_and_a_counter_arm_its_counter_more_than_the_cue():
    grass_phrase, sand_phrase = "a photo of something on grass", "a photo of something on sand"
    model = TableModel([{grass_phrase, "a photo of a star"}, {sand_phrase, "a photo of a star"}, {"a photo of a star"}])
    check = ConceptModelCheck(model, ["star", "heart"], CUES)
    readings = check.read(_images(3))
    assert readings[0]["background"] == "grass" and readings[1]["background"] == "on sand"
    cue_arm = Arm.of("a star on grass", 0, object="star", background="grass", against={"background": ("on sand", "snow")})
    counter_arm = Arm.of("a star on sand", 0, object="star", background="on sand", against={"background": ("grass",)})
    assert check.valid(cue_arm, readings[0]) and not check.valid(cue_arm, readings[1])
    assert check.valid(counter_arm, readings[1]) and not check.valid(counter_arm, readings[0])
    # an image that shows neither: the cue arm fails (grass does not beat its counters) and so does the counter arm
    assert not check.valid(cue_arm, readings[2]) and not check.valid(counter_arm, readings[2])


def test_the_object_must_beat_its_nearest_confusers():
    objects = [f"class{i}" for i in range(12)]
    model = TableModel([{"a photo of a class3"}, {"a photo of a class3", "a photo of a class5"}, set()])
    check = ConceptModelCheck(model, objects, CUES, confusers=4)
    assert all(len(v) == 4 and k not in v for k, v in check.confusers.items())
    readings = check.read(_images(3))
    arm = Arm.of("a photo of a class3", 0, object="class3")
    assert check.valid(arm, readings[0])
    assert not check.valid(arm, readings[2])  # a tie with every confuser is no win
    other = Arm.of("a photo of a class5", 0, object="class5")
    assert not check.valid(other, readings[0])
    # an object the check does not know cannot be checked (it passes unjudged); nor can an unknown value
    assert check.valid(Arm.of("a photo of a tench", 0, object="tench"), readings[2])


def test_the_check_is_named_after_its_model_and_reads_what_token_shift_counts():
    check = ConceptModelCheck(TableModel([{"a photo of something in the snow"}]), ["star"], CUES)
    assert check.name == "concepts: table-model"
    assert check.predict(_images(1)) == {"object": ["star"], "background": ["snow"]}


def test_the_curated_lists_co_occurring_objects_are_not_read_as_the_class_object():
    """The curated list's "object" category (a plate, a car beside the subject) becomes the attribute "objects":
    the check reads the class under "object", and its object vocabulary holds the class names only."""
    import pytest

    from probe.analysis.checks import CONCEPT_OBJECT
    from probe.analysis.cues import load_cues
    from probe.errors import AnalysisError

    curated = load_cues()
    cues = concept_cues(curated)
    assert sum(c.category == "object" for c in curated) >= 10
    assert all(c.attribute != CONCEPT_OBJECT for c in cues)
    assert {c.attribute for c in cues if c.category == "object"} == {"objects"}
    check = ConceptModelCheck(TableModel([set()]), ["tabby", "tiger"], cues, confusers=1)
    assert check.vocab[CONCEPT_OBJECT] == ["tabby", "tiger"] and "plate" in check.vocab["objects"]
    with pytest.raises(AnalysisError, match="reads the class's own object"):
        ConceptModelCheck(TableModel([set()]), ["tabby"], [Cue("plate", "{} on a plate", ("{} on a rock",),
                                                               attribute=CONCEPT_OBJECT, value="plate")])
