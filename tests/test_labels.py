"""load_labels in every format and select_classes for every --classes form."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from probe.classifiers import load_classifier, load_labels, select_classes, split_synonyms
from probe.errors import LabelsError

SHAPES = ["circle", "square", "star, five-pointed star", "heart", "triangle"]


def test_txt_json_csv_agree(tmp_path):
    (tmp_path / "l.txt").write_text("\ufeffcircle\nsquare\r\nstar, five-pointed star\nheart\ntriangle\n\n")
    (tmp_path / "l.json").write_text(json.dumps(SHAPES))
    (tmp_path / "d.json").write_text(json.dumps({str(i): n for i, n in reversed(list(enumerate(SHAPES)))}))
    (tmp_path / "hf.json").write_text(json.dumps({"model_type": "vit", "id2label": dict(enumerate(SHAPES))}))
    (tmp_path / "inv.json").write_text(json.dumps({n: i for i, n in enumerate(SHAPES)}))
    (tmp_path / "ix.csv").write_text(
        'index,name\n4,triangle\n0,circle\n1,square\n2,"star, five-pointed star"\n3,heart\n'
    )
    (tmp_path / "names.csv").write_text('name\ncircle\nsquare\n"star, five-pointed star"\nheart\ntriangle\n')
    for name in ("l.txt", "l.json", "d.json", "hf.json", "inv.json", "ix.csv", "names.csv"):
        assert load_labels(tmp_path / name) == SHAPES, name
    assert load_labels(SHAPES) == SHAPES


def test_txt_lines_keyed_by_index_or_wordnet_id_give_the_names(tmp_path):
    """``0 circle`` / ``1: square`` index files and ImageNet's ``synset_words.txt`` (Kaggle's LOC_synset_mapping.txt)
    kept the key in every name, so ``--classes circle`` and a validation folder ``circle/`` matched nothing."""
    (tmp_path / "ix.txt").write_text("".join(f"{i}{sep}{n}\n" for (i, n), sep in zip(
        reversed(list(enumerate(SHAPES))), [" ", ": ", "\t", ",", " "])))
    assert load_labels(tmp_path / "ix.txt") == SHAPES
    (tmp_path / "synset_words.txt").write_text("n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n")
    assert load_labels(tmp_path / "synset_words.txt") == ["tench, Tinca tinca", "goldfish, Carassius auratus"]
    # names that only look keyed stay whole: indices not 0..n-1, or a line without a key
    (tmp_path / "one.txt").write_text("1 square\n2 circle\n")
    (tmp_path / "mixed.txt").write_text("0 circle\nsquare\n")
    assert load_labels(tmp_path / "one.txt") == ["1 square", "2 circle"]
    assert load_labels(tmp_path / "mixed.txt") == ["0 circle", "square"]


def test_imagenet_names_offline():
    names = load_labels("imagenet")
    assert len(names) == 1000
    assert split_synonyms(names[281]) == ["tabby", "tabby cat"]
    assert split_synonyms(names[0])[0] == "tench"


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("gap.json", json.dumps({"0": "a", "2": "c"}), "missing 1"),
        ("blank.txt", "a\n\nc\n", "line 2 is empty"),
        ("empty.txt", "\n\n", "no names"),
        ("bad.json", "{not json", "invalid JSON"),
        ("obj.json", json.dumps({"x": "a", "y": "b"}), "integer indices"),
        ("dup.csv", "0,a\n0,b\n1,c\n", "index 0 appears twice"),
        ("mixed.csv", "0,a,b\nc\n", "index,name"),
        ("labels.yaml", "- a\n", "unknown extension"),
        ("emptyname.json", json.dumps(["a", ""]), "class 1 has no name"),
    ],
)
def test_bad_label_files(tmp_path, name, content, match):
    (tmp_path / name).write_text(content)
    with pytest.raises(LabelsError, match=match):
        load_labels(tmp_path / name)


def test_missing_labels_file(tmp_path):
    with pytest.raises(LabelsError, match="not found.*'imagenet'"):
        load_labels(tmp_path / "nope.txt")


# ---------------------------------------------------------------- select_classes


@pytest.fixture()
def clf():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 5))
    return load_classifier(net, input_size=16, labels=SHAPES)


def test_classifier_labels_use_first_synonym(clf):
    assert clf.labels == ["circle", "square", "star", "heart", "triangle"]
    assert clf.synonyms[2] == ["star", "five-pointed star"]
    assert clf.has_names


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("all", [0, 1, 2, 3, 4]),
        ("star,heart", [2, 3]),
        ("Five-Pointed  Star", [2]),  # any synonym, case and spacing ignored
        ("3,1", [3, 1]),  # order kept
        ("0-2", [0, 1, 2]),
        ("1-3, heart, 0", [1, 2, 3, 0]),  # duplicates dropped
        (["triangle", 0], [4, 0]),
    ],
)
def test_select_classes(clf, spec, expected):
    assert select_classes(spec, clf) == expected


def test_select_from_file(clf, tmp_path):
    (tmp_path / "c.txt").write_text("heart\n# a comment line\n0-1  # trailing comment\n\n")
    assert select_classes(f"@{tmp_path / 'c.txt'}", clf) == [3, 0, 1]
    assert select_classes(f"star,@{tmp_path / 'c.txt'}", clf) == [2, 3, 0, 1]


@pytest.mark.parametrize(
    "spec, match",
    [
        ("hart", r"unknown class name 'hart'; did you mean 'heart'"),
        ("zebra", "unknown class name 'zebra'; check --labels"),
        ("", "no classes selected"),
        (" , ,", "no classes selected"),
        ("7", "index 7 is out of range.*0-4"),
        ("3-1", "runs backwards; write 1-3"),
        ("2-9", "ends past the last class"),
        ("@/nonexistent/classes.txt", "not found"),
    ],
)
def test_select_errors(clf, spec, match):
    with pytest.raises(LabelsError, match=match):
        select_classes(spec, clf)


def test_select_empty_file(clf, tmp_path):
    (tmp_path / "empty.txt").write_text("# nothing here\n")
    with pytest.raises(LabelsError, match="no classes selected"):
        select_classes(f"@{tmp_path / 'empty.txt'}", clf)


def test_select_imagenet_synonyms_and_ambiguity():
    names = load_labels("imagenet")
    assert select_classes("tabby cat, tiger cat", names) == [281, 282]
    assert select_classes("tabby", names) == [281]
    with pytest.raises(LabelsError, match="names several classes.*134.*517.*index"):
        select_classes("crane", names)
    with pytest.raises(LabelsError, match="did you mean 'goldfish'"):
        select_classes("goldfsh", names)


def test_select_imagenet_classes_by_wordnet_id_as_its_folders_name_them():
    """ImageNet tooling names classes by WordNet id (val/n01440764/); --classes took them only as unknown names while
    --val-data matched them. A classifier whose own labels are ids (trained on ImageNet's folders) matches by name."""
    names = load_labels("imagenet")
    assert select_classes("n01443537, N01440764, tench, n15075141", names) == [1, 0, 999]
    with pytest.raises(LabelsError, match=r"'crane' names several classes \(134, 517\); select one by its index or "
                                          r"WordNet id \(n02012849, n03126707\)"):
        select_classes("crane", names)
    with pytest.raises(LabelsError, match="'n99999999' is a WordNet id and not one of ImageNet-1k's classes"):
        select_classes("n99999999", names)
    with pytest.raises(LabelsError, match="not ImageNet-1k's; pass --labels imagenet"):
        select_classes("n01440764", [str(i) for i in range(1000)])
    assert select_classes("n01443537", ["n01440764", "n01443537"]) == [1]


def test_select_without_names_uses_indices():
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    unnamed = load_classifier(net, input_size=8, crop_pct=1.0)
    assert unnamed.labels == ["0", "1", "2", "3"] and not unnamed.has_names
    assert select_classes("2,0-1", unnamed) == [2, 0, 1]
    with pytest.raises(LabelsError, match=r"unknown class name 'tench'; the classifier has no class names \(4 classes, "
                                          r"indices 0-3\): pass --labels with a file of its names, or select by index"):
        select_classes("tench", unnamed)
