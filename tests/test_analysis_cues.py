"""probe.analysis.cues: the curated default list, users' cue files, and a domain's vocabulary as cues."""

from __future__ import annotations

import json

import pytest

from probe.analysis import AnalysisError, Cue, cues_from_vocabulary, default_cues, load_cues


def test_default_cue_list_is_curated_and_valid():
    cues = default_cues()
    assert len(cues) >= 40
    cats = {c.category for c in cues}
    assert {"background", "scene", "object", "people", "text", "style", "lighting"} <= cats
    for c in cues:
        assert c.counters, c.name
        assert c.apply("dog") != "dog" and "dog" in c.apply("dog")


def test_user_cue_files_text_and_json(tmp_path):
    txt = tmp_path / "cues.txt"
    txt.write_text("# my cues\n{} on a plate | {} on a rock; {} in the sea\nwith a watermark\n")
    cues = load_cues(txt)
    assert [c.name for c in cues] == ["on a plate", "with a watermark"]
    assert cues[0].counter_prompts("lobster") == ["lobster on a rock", "lobster in the sea"]
    assert cues[1].apply("cat") == "cat with a watermark"
    js = tmp_path / "cues.json"
    js.write_text(json.dumps([{"name": "snow", "template": "{} in snow", "counters": ["{} on grass"]}]))
    assert load_cues(js)[0].template == "{} in snow"
    js.write_text(json.dumps([{"name": "a", "template": "x"}, {"name": "a", "template": "y"}]))
    with pytest.raises(AnalysisError, match="repeats cue names"):
        load_cues(js)
    js.write_text("{not json")
    with pytest.raises(AnalysisError, match="not valid JSON"):
        load_cues(js)
    with pytest.raises(AnalysisError, match="does not exist"):
        load_cues(tmp_path / "missing.txt")
    with pytest.raises(AnalysisError, match="exactly once"):
        Cue(name="bad", template="{} and {}")
    # as Windows editors save them: a BOM before a comment line was read as a cue named '\ufeff', CRLF endings
    txt.write_bytes(b"\xef\xbb\xbf# my cues\r\n{} in a hospital\r\n\r\nwith a watermark\r\n")
    assert [c.name for c in load_cues(txt)] == ["in a hospital", "with a watermark"]
    js.write_bytes(b"\xef\xbb\xbf" + json.dumps([{"name": "snow", "template": "{} in snow"}]).encode())
    assert [c.name for c in load_cues(js)] == ["snow"]
    txt.write_bytes("caf\u00e9 scene\n".encode("latin-1"))  # not UTF-8: one line, not a traceback
    with pytest.raises(AnalysisError, match="not readable as UTF-8 text .*save it as UTF-8"):
        load_cues(txt)


def test_world_vocabulary_cues_follow_the_caption_grammar():
    cues = cues_from_vocabulary(["grass", "sand", "snow"], ["red", "blue"], ["none", "dot", "bar"],
                                {"none": "with no tag", "dot": "with a dot in the corner", "bar": "with a bar in the corner"})
    by = {c.name: c for c in cues}
    assert by["grass"].apply("star") == "star on grass" and by["grass"].attribute == "background"
    assert by["red"].apply("star") == "red star"
    assert by["dot"].apply("star") == "star with a dot in the corner"
    assert "star with no tag" in by["dot"].counter_prompts("star")
    assert "none" not in by


def test_counter_values_stay_aligned_with_their_counters():
    cues = {c.name: c for c in cues_from_vocabulary(["grass", "sand", "snow"], ["red", "grass"], ["none", "dot"],
                                                     {"none": "with no tag", "dot": "with a dot in the corner"})}
    grass = cues["grass"]
    assert grass.counters == ("{} on sand", "{} on snow") and grass.counter_values == ("sand", "snow")
    assert cues["dot"].counters == ("{} with no tag",) and cues["dot"].counter_values == ("none",)
    assert "grass object" in cues and cues["grass object"].attribute == "color"  # a colour named like a background
    kept = grass.without_counters({"{} on sand"})
    assert kept.counters == ("{} on snow",) and kept.counter_values == ("snow",)
    assert grass.to_dict()["counter_values"] == ["sand", "snow"]
    with pytest.raises(AnalysisError, match="one value per counter"):
        Cue("x", "{} x", ("{} y", "{} z"), counter_values=("y",))
    with pytest.raises(AnalysisError, match="empty"):
        Cue(" ", "{} x")


def test_a_template_is_named_by_one_phrase_wherever_it_is_written_or_read_back():
    from probe.analysis.cues import template_phrase

    assert template_phrase("{} on grass") == "on grass"
    assert template_phrase("toy {}") == "toy"
    assert template_phrase("a {} on  grass,") == "a on grass"  # the slot leaves no double space or trailing comma
    # the run's owner reads the dropped counters back (for the balance dataset and probe confirm) with the same phrase
    # the analysis wrote
    from probe.run import types
    from probe.run.format import template_phrase as owned

    assert owned is template_phrase and types.template_phrase is template_phrase
    summary = types.AnalysisSummary(cues={"list": [{"name": "bar", "counters": ["{} with a dot in the corner", "{} with no tag"],
                                                    "counter_values": ["dot", "none"]}]},
                                    dropped_counters={"heart": ["with a dot in the corner"]})
    assert summary.kept_counters(5, "heart", "bar") == (("{} with no tag", "none"),)
    assert summary.kept_counters(0, "circle", "bar") == (("{} with a dot in the corner", "dot"), ("{} with no tag", "none"))
    assert summary.kept_counters(5, "heart", "snow") == ()  # a cue the analysis did not list


def test_a_note_names_a_dozen_items_and_counts_the_rest():
    """An audit of 1000 classes whose every screen was drawn with the class's name must not write a note naming 53,000
    class/cue pairs into analysis.json and the report: a dozen, then the count (each test's record says the rest)."""
    from probe.run.format import listing

    assert listing(["star/grass", "heart/dot"]) == "star/grass, heart/dot"
    pairs = [f"class {i}/on grass" for i in range(1000)]
    text = listing(pairs)
    assert text.startswith("class 0/on grass, class 1/on grass") and text.endswith(" and 988 more")
    assert text.count("/on grass") == 12 and listing([]) == ""


def test_per_class_notes_that_say_the_same_are_one_note_naming_a_dozen_classes():
    """"class 7: token unchanged (...)" for 600 classes of a 1000-class audit is one note; a message only one class
    has, and every other note, stays as written and where it stood."""
    from probe.run.format import class_notes

    unchanged = "token unchanged (the classifier already accepts the baseline images)"
    notes = ["interventions unchecked", *[f"class {i}: {unchanged}" for i in range(0, 1200, 2)],
             "class 3: attention IoU skipped (ValueError: bad)", "adaptive screening: 4 ambiguous screens got more pairs",
             "class 1: off-object skipped (no mask)", "class 9: off-object skipped (no mask)"]
    grouped = class_notes(notes)
    assert grouped == ["interventions unchecked",
                       f"classes 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22 and 588 more: {unchanged}",
                       "class 3: attention IoU skipped (ValueError: bad)",
                       "adaptive screening: 4 ambiguous screens got more pairs",
                       "classes 1, 9: off-object skipped (no mask)"]
    assert class_notes(["class 3: x", "class 3: x"]) == ["class 3: x"]  # the same note twice is one class, once
