"""`probe confirm`: a run's findings checked on labelled real images (issue 20, item 1).

Fast tests build a small world run by hand (its labels, one planted-cue finding, an analysis checked by the world
oracles) and a rendered validation set from a bundled classifier's training distribution; the demo fixtures check
the same on real audits. Plumbing outside the world: a tiny random CLIP reads the cues for a classifier saved as a
torch.export program.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from conftest import run_main
from probe.confirm import ClassifierSource, ConfirmConfig, confirm_run, read_val_data
from probe.valdata import ValDataError
from probe.confirm.stats import fisher_exact, images_to_decide, mean_difference, newcombe, t_quantile
from probe.errors import ProbeError, RunError
from probe.run import RunDir
from probe.run.confirmation import Confirmation
from probe.run.types import Finding, RunConfig
from probe.world.scenes import SHAPES

GRASS = {"category": "background", "attribute": "background", "value": "grass",
         "counter_values": ["sand", "snow", "wood"]}


def _finding(cls: str, cue: str, details: dict, *, effect=0.3, passes=True, kind="necessity") -> Finding:
    return Finding(class_index=SHAPES.index(cls) if cls in SHAPES else 0, class_name=cls, cue=cue, kind=kind,
                   effect=effect, ci_low=effect - 0.15, ci_high=effect + 0.15, n_images=16, evidence=(), passes=passes,
                   strength="strong", sentence=f"{cls} leans on {cue}", details=details, p=0.001, q=0.01,
                   status="passes" if passes else "weak", checked_by="world oracles")


def _world_run(path: Path, model: str = "biased", findings=None) -> Path:
    """A world run as the audit leaves it, without the audit: labels, config, findings, an oracle-checked analysis."""
    from probe.world.assets import bundled_classifier_path

    run = RunDir(path)
    run.root.mkdir(parents=True)
    run.write_labels(list(SHAPES))
    findings = findings or [_finding("star", "grass", GRASS)]
    audited = sorted({f.class_index for f in findings})
    run.write_config(RunConfig(audit={"model": str(bundled_classifier_path(model)), "out": str(path)}, classes=tuple(audited)))
    for index in audited:
        run.write_metrics(run.class_dir(index, SHAPES[index]), {"status": "done", "class_index": index,
                                                               "class_name": SHAPES[index]})
    run.write_findings(findings)
    run.write_analysis({"domain": "world", "interventions_checked_by": "world oracles"})
    return run.root


@pytest.fixture(scope="module")
def world_val() -> dict:
    """Validation sets (in memory: a torch Dataset) from the biased and the clean classifier's training distributions:
    3000 biased scenes hold about 11 stars on sand, snow or wood (the star is on grass 97% of the time); 600 uniform
    scenes are plenty for the clean one."""
    from probe.world.valset import validation_images

    return {"biased": validation_images("biased", 3000, seed=5), "clean": validation_images("clean", 600, seed=6)}


# ------------------------------------------------------------------------------------------ statistics
def test_statistics_match_published_values():
    # Newcombe (1998) table II, example (a): 56/70 vs 48/80 -> 0.2000 (0.0524, 0.3339)
    d, low, high = newcombe(56, 70, 48, 80)
    assert (round(d, 4), round(low, 4), round(high, 4)) == (0.2, 0.0524, 0.3339)
    assert fisher_exact(8, 10, 1, 10) == pytest.approx(0.005477, abs=1e-5)  # scipy.stats.fisher_exact's value
    assert fisher_exact(3, 6, 3, 6) == pytest.approx(1.0)
    assert images_to_decide(0.9, 0.3) < images_to_decide(0.9, 0.1)  # smaller gaps need more images


def test_mean_gap_interval_is_welchs_t_and_widens_for_small_slices():
    # Student's t table: t(0.975; 1) = 12.7062, t(0.975; 6) = 2.4469, t(0.975; 30) = 2.0423, t(0.95; 10) = 1.8125
    for prob, df, table in ((0.975, 1, 12.7062), (0.975, 6, 2.4469), (0.975, 30, 2.0423), (0.95, 10, 1.8125)):
        assert t_quantile(prob, df) == pytest.approx(table, abs=1e-4)
    assert t_quantile(0.025, 6) == pytest.approx(-2.4469, abs=1e-4) and t_quantile(0.975, 1e7) == pytest.approx(1.96, abs=1e-3)
    # Welch's example (Wikipedia, "Welch's t-test", example 1): t = -2.46 on 24.9 degrees of freedom, p = 0.021
    a = [27.5, 21.0, 19.0, 23.6, 17.0, 17.9, 16.9, 20.1, 21.9, 22.6, 23.1, 19.6, 19.0, 21.7, 21.4]
    b = [27.1, 22.0, 20.8, 23.4, 23.4, 23.5, 25.8, 22.0, 24.8, 20.2, 21.9, 22.1, 22.9, 20.5, 24.4]
    d, low, high = mean_difference(a, b)
    se = (high - low) / 2 / t_quantile(0.975, 24.9)
    assert d / se == pytest.approx(-2.46, abs=0.01) and high < 0  # p = 0.021: the 95% interval excludes 0
    # 7 images against 456: about 6 degrees of freedom, so the interval is ~1.25x the normal one (2.45 / 1.96)
    few, many = [0.9, 0.5, 0.95, 0.3, 0.85, 0.9, 0.6], [0.6, 0.7] * 228
    d, low, high = mean_difference(few, many)
    m = sum(few) / 7
    normal = 1.96 * ((sum((v - m) ** 2 for v in few) / 6 / 7) + 0.01 / 4 * 456 / 455 / 456) ** 0.5
    assert (high - low) / 2 / normal == pytest.approx(2.4469 / 1.96, rel=0.02)
    assert mean_difference([0.5, 0.5], [0.2, 0.2]) == pytest.approx((0.3, 0.3, 0.3))  # no spread: no width


# ------------------------------------------------------------------------------------------ the data reader
def test_bad_val_data_fails_in_one_line_before_any_model_loads(tmp_path, monkeypatch):
    run = _world_run(tmp_path / "run")

    def no_models(*a, **k):
        raise AssertionError("a model was loaded before the data was checked")

    monkeypatch.setattr("probe.classifiers.load_classifier", no_models)
    monkeypatch.setattr("probe.world.oracles.load_oracles", no_models)
    with pytest.raises(ValDataError, match="does not exist"):
        confirm_run(run, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValDataError, match="no class subfolders with images"):
        confirm_run(run, tmp_path / "empty")
    for name in ("star", "lobster", "Tabby Cat"):
        (tmp_path / "wrong" / name).mkdir(parents=True)
        (tmp_path / "wrong" / name / "a.png").write_bytes(b"not decoded before the labels are checked")
    with pytest.raises(ValDataError, match=r"'Tabby Cat', 'lobster' are not the classifier's \(6 classes") as error:
        confirm_run(run, tmp_path / "wrong")
    assert "\n" not in str(error.value)
    (tmp_path / "list.csv").write_text("path,label\nimgs/a.png,star\nimgs/b.png,hexagon\n")
    with pytest.raises(ValDataError, match="'hexagon'"):
        confirm_run(run, tmp_path / "list.csv")


def _touch(root: Path, *names: str) -> None:
    """Files a CSV lists (their bytes are not read where labels and paths are checked)."""
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")


def test_labels_match_by_name_slug_and_index_and_csv_paths_are_relative_to_the_csv(tmp_path):
    labels = ["tabby, tabby cat", "golden retriever", "star"]
    (tmp_path / "data").mkdir()
    _touch(tmp_path / "data", "x/1.png", "x/2.png", "x/3.png")
    (tmp_path / "data" / "v.csv").write_text("path,label\nx/1.png,tabby\nx/2.png,golden-retriever\nx/3.png,2\n")
    data = read_val_data(tmp_path / "data" / "v.csv", labels)
    assert [i.class_index for i in data.items] == [0, 1, 2]
    assert data.items[0].path == tmp_path / "data" / "x" / "1.png"
    listed = read_val_data([(tmp_path / "p.png", "Golden Retriever")], labels)
    assert listed.items[0].class_index == 1
    # a run's labels.json keeps first names; a CSV may spell a class as ImageNet's lists do (it was refused)
    (tmp_path / "data" / "full.csv").write_text('path,label\nx/1.png,"goldfish, Carassius auratus"\nx/2.png,tench\n')
    assert [i.class_index for i in read_val_data(tmp_path / "data" / "full.csv", ["tench", "goldfish"]).items] == [1, 0]


@pytest.mark.parametrize("text", [
    "filename,class\nx/1.png,star\nx/2.JPG,heart\n",  # a header with its own column names (was: label 'class' unknown)
    "image_path,target,split\r\nx/1.png,0,val\r\nx/2.JPG,1,val\r\n",  # indices, Windows line ends, a third column
    "path;label\nx/1.png;star\nx/2.JPG;heart\n",  # a spreadsheet where the decimal mark is a comma (was: not path,label)
    "x/1.png\tstar\nx/2.JPG\theart\n",  # tab-separated, no header
    "x/1.png\tstar, the shape\nx/2.JPG\theart\n",  # a tab and a comma on one line: the tab separates (was: the comma)
])
def test_a_csv_as_spreadsheets_write_it_is_read(tmp_path, text):
    _touch(tmp_path, "x/1.png", "x/2.JPG")
    (tmp_path / "v.csv").write_text(text, encoding="utf-8-sig")  # Excel's UTF-8 CSV starts with a byte-order mark
    data = read_val_data(tmp_path / "v.csv", ["star", "heart"])
    assert [(i.name, i.class_index) for i in data.items] == [("x/1.png", 0), ("x/2.JPG", 1)]


def test_a_csv_header_is_told_from_a_row_with_an_unknown_label(tmp_path):
    _touch(tmp_path, "x/1.png", "x/2.png")
    (tmp_path / "v.csv").write_text("x/1.png,star\nx/2.png,hexagon\n")  # a data row, not a header: its label is named
    with pytest.raises(ValDataError, match="label\\(s\\) 'hexagon' are not the classifier's"):
        read_val_data(tmp_path / "v.csv", ["star", "heart"])
    (tmp_path / "w.csv").write_text("path,label\nx/1.png,label\n")  # the documented header, whatever the labels
    assert [i.class_index for i in read_val_data(tmp_path / "w.csv", ["star", "label"]).items] == [1]


def test_a_csv_whose_paths_are_relative_to_the_working_directory_is_read_and_one_listing_nothing_is_refused(
        tmp_path, monkeypatch, capsys):
    """A CSV written by a script run from the project's root lists paths from there (data/val.csv: data/img/1.png):
    read relative to the CSV only, every image was 'skipped' and the error came after the models loaded. Each file is
    found beside the CSV first, else from the working directory; a list whose files all are missing is one line from
    `probe audit --val-data`'s first check, before any model loads."""
    from probe.valdata import check_val_source

    monkeypatch.chdir(tmp_path)
    _touch(tmp_path, "data/img/1.png", "data/img/2.png", "data/near.png")
    Path("data/val.csv").write_text("path,label\ndata/img/1.png,star\ndata/img/2.png,heart\nnear.png,star\n")
    check_val_source("data/val.csv")
    items = read_val_data("data/val.csv", ["star", "heart"]).items
    # found from the working directory: kept absolute (a notebook may change directory before the images are read)
    assert [i.path for i in items] == [tmp_path / "data/img/1.png", tmp_path / "data/img/2.png", Path("data/near.png")]
    Path("data/gone.csv").write_text("path,label\nelsewhere/1.png,star\n")
    with pytest.raises(ValDataError, match=r"none of its 1 files exist \(the first: 'data/elsewhere/1.png'.*relative to the "
                                           r"CSV or absolute$"):
        check_val_source("data/gone.csv")
    from probe.world import bundled_classifier_path

    code, _, err = run_main(monkeypatch, capsys, "audit", "--model", str(bundled_classifier_path("biased")),
                            "--generator", "world", "--classes", "star", "--val-data", "data/gone.csv", "--out", "run")
    assert code == 2 and "none of its 1 files exist" in err and len(err.strip().splitlines()) == 1, err
    assert not Path("run").exists()  # refused before the run directory or any model


def test_symlinked_class_folders_and_subfolders_are_followed_as_imagefolder_does_and_a_link_loop_ends(tmp_path):
    """A cluster's val/ often links its class folders, or folders inside them, to shared storage: torchvision's
    ImageFolder follows them (os.walk followlinks); probe's rglob did not enter a linked subfolder, so those images
    were silently left out of every slice."""
    _touch(tmp_path / "store", "stars/a.png", "hearts/b.png")
    (tmp_path / "val" / "heart").mkdir(parents=True)
    (tmp_path / "val" / "star").symlink_to(tmp_path / "store" / "stars", target_is_directory=True)
    (tmp_path / "val" / "heart" / "more").symlink_to(tmp_path / "store" / "hearts", target_is_directory=True)
    (tmp_path / "val" / "heart" / "up").symlink_to(tmp_path / "val", target_is_directory=True)  # a loop
    _touch(tmp_path / "val", "heart/c.png")
    data = read_val_data(tmp_path / "val", ["star", "heart"])
    assert sorted(i.name for i in data.items if i.class_index == 1) == ["heart/c.png", "heart/more/b.png"]
    assert [i.name for i in data.items if i.class_index == 0] == ["star/a.png"]


def test_imagenet_validation_folders_named_by_wordnet_id_match_an_imagenet_classifier(tmp_path):
    """ImageNet's own validation set is laid out by WordNet id (val/n01440764/*.JPEG): with ImageNet-1k's labels
    (``--labels imagenet``, a Hugging Face ImageNet config) those folders are its classes; with other labels the
    error says to pass --labels imagenet instead of 'rename them'."""
    from probe.classifiers import load_labels

    for wnid in ("n01440764", "n15075141"):  # tench (0) and toilet tissue (999)
        (tmp_path / "val" / wnid).mkdir(parents=True)
        (tmp_path / "val" / wnid / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"not decoded here")
    data = read_val_data(tmp_path / "val", load_labels("imagenet"))
    assert sorted(i.class_index for i in data.items) == [0, 999]
    respelled = ["Tench", *load_labels("imagenet")[1:]]  # another source's spelling of a few names
    assert sorted(i.class_index for i in read_val_data(tmp_path / "val", respelled).items) == [0, 999]
    _touch(tmp_path, "a.JPEG")
    (tmp_path / "v.csv").write_text("path,label\na.JPEG,n01443537\n")
    assert read_val_data(tmp_path / "v.csv", load_labels("imagenet")).items[0].class_index == 1  # goldfish
    with pytest.raises(ValDataError, match="'n01440764', 'n15075141' are not the classifier's .*pass --labels imagenet"):
        read_val_data(tmp_path / "val", [str(i) for i in range(1000)])  # a 1000-class model without its names
    with pytest.raises(ValDataError, match="rename them"):
        read_val_data(tmp_path / "val", ["tench", "toilet tissue"])


def test_imagenet_names_resolve_to_their_own_class_and_a_shared_name_is_refused(tmp_path):
    """Found by review (7 December 2026): class names were looked up over every synonym in class order, so a folder
    'cardigan' became 264 'Cardigan, Cardigan Welsh corgi' (474 is 'cardigan'), 'harp' became 593 'harmonica, ..., harp'
    (594 is 'harp'), and a Hugging Face dataset whose names are the classifier's own was read through those names;
    'crane' (134 and 517) went to the first. Names are now looked up whole label first, then first synonym, then
    the others, and a name two classes share is an error; a Dataset whose names are the classifier's keeps its
    integers."""
    import torch

    from probe.classifiers import load_labels

    imagenet = load_labels("imagenet")
    for name in ("cardigan", "harp", "partridge", "Cardigan Welsh corgi", "harmonica"):
        (tmp_path / "val" / name).mkdir(parents=True)
        (tmp_path / "val" / name / "a.JPEG").write_bytes(b"not decoded here")
    data = read_val_data(tmp_path / "val", imagenet)
    found = {item.name.split("/")[0]: item.class_index for item in data.items}
    assert found == {"cardigan": 474, "harp": 594, "partridge": 86, "Cardigan Welsh corgi": 264, "harmonica": 593}
    (tmp_path / "crane" / "crane").mkdir(parents=True)
    (tmp_path / "crane" / "crane" / "a.JPEG").write_bytes(b"")
    with pytest.raises(ValDataError, match=r"label 'crane' names 2 of the classifier's classes \(134 'crane', 517"):
        read_val_data(tmp_path / "crane", imagenet)

    class Rows(torch.utils.data.Dataset):  # a Hugging Face ImageNet split: ClassLabel names are the classifier's
        classes, targets = list(imagenet), [86, 474, 517, 134]

        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(3, 8, 8), self.targets[i]

    assert [i.class_index for i in read_val_data(Rows(), imagenet).items] == [86, 474, 517, 134]


def test_a_name_spelled_exactly_wins_over_its_folded_forms_in_other_tiers(tmp_path):
    """Found by review (7 December 2026), a regression of the tiered lookup: the case-folded and slug forms of a name
    were looked up in the same tier as its exact spelling, so a folder 'Cardigan' (the exact first synonym of 264,
    Cardigan Welsh corgi) folded onto 474 'cardigan' in the whole-label tier. A name spelled exactly now wins in any
    tier before any folded form."""
    from probe.classifiers import load_labels

    imagenet = load_labels("imagenet")
    for name in ("Cardigan", "cardigan", "CARDIGAN"):
        (tmp_path / "val" / name).mkdir(parents=True)
        (tmp_path / "val" / name / "a.JPEG").write_bytes(b"not decoded here")
    found = {item.name.split("/")[0]: item.class_index for item in read_val_data(tmp_path / "val", imagenet).items}
    assert found == {"Cardigan": 264, "cardigan": 474, "CARDIGAN": 474}  # a spelling of neither folds to 474's


def test_labels_that_differ_in_case_each_take_their_own_exact_spelling(tmp_path):
    """Found by review (7 December 2026): with labels 'Cardigan' and 'cardigan' both spellings were refused as
    naming 2 classes, although each is one label exactly; a spelling of neither still is."""
    (tmp_path / "two" / "Cardigan").mkdir(parents=True)
    (tmp_path / "two" / "cardigan").mkdir(parents=True)
    _touch(tmp_path / "two", "Cardigan/a.png", "cardigan/b.png")
    data = read_val_data(tmp_path / "two", ["Cardigan", "cardigan"])
    assert {item.name: item.class_index for item in data.items} == {"Cardigan/a.png": 0, "cardigan/b.png": 1}
    _touch(tmp_path, "c.png")
    (tmp_path / "v.csv").write_text("path,label\nc.png,CARDIGAN\n")  # a spelling of neither: still refused
    with pytest.raises(ValDataError, match=r"label 'CARDIGAN' names 2 of the classifier's classes"):
        read_val_data(tmp_path / "v.csv", ["Cardigan", "cardigan"])


def test_a_label_named_like_another_class_s_index_is_refused_not_guessed(tmp_path):
    """Found by review (7 and 8 December 2026): index strings won over names, so with labels '1', '2', '3' the folder
    '2' became index 2 (label '3'); names first then mixed folders silently ('0' index 0, '1' the class named '1',
    both class 0). A string that is one class's name and another's index is refused, naming both; a name that is its
    own index ('0'..'9' of a digit classifier), and an index no label is named, read one way and are taken."""
    for name in ("0", "1", "2"):
        _touch(tmp_path / "mixed", f"{name}/a.png")
    with pytest.raises(ValDataError, match=r"label '1' is the name of class 0 \('1'\) and also class index 1"):
        read_val_data(tmp_path / "mixed", ["1", "2", "3"])
    for name in ("0", "1", "2"):
        _touch(tmp_path / "digits", f"{name}/a.png")
    data = read_val_data(tmp_path / "digits", ["0", "1", "2"])  # names that are their own indices
    assert {item.name: item.class_index for item in data.items} == {"0/a.png": 0, "1/a.png": 1, "2/a.png": 2}
    _touch(tmp_path / "named", "3/a.png")  # '3' names class 2 and is no class index of 3 labels: one reading
    assert [item.class_index for item in read_val_data(tmp_path / "named", ["1", "2", "3"]).items] == [2]


def test_a_subset_of_an_imagefolder_keeps_its_names_and_duplicate_rows_count_once(tmp_path):
    """Found by review (7 December 2026): a torch Subset of an ImageFolder lost its class names, so folder-order
    integers were read as the classifier's indices (490 of 600 images relabelled); a CSV listing an image twice
    ('x.png' and './x.png') counted it twice in every slice; a list of (image, label) pairs raised TypeError."""
    import torch
    from torchvision.datasets import ImageFolder

    from probe.files import save_png

    labels = ["circle", "square", "star"]
    for name in ("square", "star"):  # folder order: square 0, star 1; the classifier's: square 1, star 2
        for k in range(2):
            save_png(tmp_path / "val" / name / f"{k}.png", torch.rand(3, 8, 8))
    folder = ImageFolder(str(tmp_path / "val"))
    subset = torch.utils.data.Subset(folder, [3, 0])
    assert [i.class_index for i in read_val_data(subset, labels).items] == [2, 1]
    both = torch.utils.data.ConcatDataset([folder, subset])
    assert [i.class_index for i in read_val_data(both, labels).items] == [1, 1, 2, 2, 2, 1]
    (tmp_path / "v.csv").write_text("path,label\nval/star/0.png,star\n./val/star/0.png,star\nval/square/1.png,square\n")
    data = read_val_data(tmp_path / "v.csv", labels)
    assert len(data) == 2 and data.duplicates == 1 and data.describe()["duplicates"] == 1
    (tmp_path / "w.csv").write_text("path,label\nval/star/0.png,star\nval/star/0.png,circle\n")
    with pytest.raises(ValDataError, match="is labelled 'star' and 'circle'"):
        read_val_data(tmp_path / "w.csv", labels)
    pairs = read_val_data([(torch.rand(3, 8, 8), "star"), (torch.rand(3, 8, 8), 0)], labels)
    assert [i.class_index for i in pairs.items] == [2, 0] and pairs.source == "dataset"


def test_16_bit_scans_read_as_their_8_bit_copies_and_hidden_files_are_not_images(tmp_path):
    """A 16-bit greyscale PNG (an X-ray, a microscope frame) decodes to its own range, as its 8-bit copy does, not
    clipped white as PIL's convert("RGB") leaves it; a Dataset's uint16 tensors likewise. macOS's ``._x.png`` and a
    notebook's ``.ipynb_checkpoints/`` inside a class folder are not listed (they were skipped as undecodable)."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    folder = tmp_path / "val" / "star"
    (folder / ".ipynb_checkpoints").mkdir(parents=True)
    Image.fromarray(ramp).save(folder / "scan16.png")
    Image.fromarray((ramp // 257).astype(np.uint8)).save(folder / "scan8.png")
    Image.fromarray((ramp // 257).astype(np.uint8)).save(folder / ".ipynb_checkpoints" / "scan8-checkpoint.png")
    (folder / "._scan16.png").write_bytes(b"\0\5\x16\7AppleDouble")
    data = read_val_data(tmp_path / "val", list(SHAPES))
    assert [i.name for i in data.items] == ["star/scan16.png", "star/scan8.png"]
    deep, shallow = (data.load(i) for i in data.items)
    assert deep.shape == shallow.shape == (3, 48, 64)
    assert (deep - shallow).abs().max() < 1.5 / 255 and 0.45 < float(deep.mean()) < 0.55

    class Scans(torch.utils.data.Dataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return (Image.fromarray(ramp) if i == 0 else torch.from_numpy(ramp.astype(np.int32)).to(torch.uint16)[None]), "star"

    scans = read_val_data(Scans(), list(SHAPES))
    for item in scans.items:
        assert (scans.load(item) - shallow).abs().max() < 1.5 / 255

    class Arrays(Scans):  # OpenCV / albumentations hand over numpy arrays: (H,W,3) uint8, (H,W) uint16
        def __getitem__(self, i):
            return (np.repeat((ramp // 257).astype(np.uint8)[..., None], 3, axis=2) if i == 0 else ramp), "star"

    arrays = read_val_data(Arrays(), list(SHAPES))
    for item in arrays.items:
        assert (arrays.load(item) - shallow).abs().max() < 1.5 / 255

    class Normalised(Scans):  # a Dataset built with the training transform, Normalize included
        def __getitem__(self, i):
            return (torch.rand(3, 8, 8) - 0.485) / 0.229, "star"

    normalised = read_val_data(Normalised(), list(SHAPES))
    from probe.valdata import Unreadable

    with pytest.raises(Unreadable, match=r"not \[0, 1\]: give the images unnormalised \(drop transforms.Normalize"):
        normalised.load(normalised.items[0])


def test_a_hugging_face_style_dataset_of_dict_rows_is_read_by_its_columns(tmp_path):
    """A ``datasets.Dataset`` (load_dataset("beans")["validation"]) is no torch Dataset: rows are dicts, labels are
    integers named by the label column's ClassLabel. It was refused ("validation data of type Dataset is not
    supported"); a torch Dataset of dict items failed on item 0. Here a stand-in with the same surface (``datasets``
    itself is not a dependency): its labels come from the column, no image decoded for them."""
    from PIL import Image

    class ClassLabel:
        def __init__(self, names):
            self.names = names

    class Rows:  # datasets.Dataset's surface: len, rows as dicts, a column by name, features
        column_names = ["image", "label"]
        features = {"image": None, "label": ClassLabel(["heart", "star"])}
        opened: list = []

        def __len__(self):
            return 4

        def __getitem__(self, key):
            if isinstance(key, str):
                return [i % 2 for i in range(4)]
            self.opened.append(key)
            return {"image": Image.new("RGB", (8, 6), (200, 0, 0)), "label": key % 2}

    rows = Rows()
    data = read_val_data(rows, list(SHAPES))
    assert [i.class_index for i in data.items] == [SHAPES.index(n) for n in ("heart", "star", "heart", "star")]
    assert rows.opened == []  # the labels came from the column: no row (no image) read
    assert data.load(data.items[1]).shape == (3, 6, 8)

    class Dicts(torch.utils.data.Dataset):  # a torch Dataset of dict items (cifar10's keys)
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return {"img": torch.rand(3, 8, 8), "label": "star"}

    assert [i.class_index for i in read_val_data(Dicts(), list(SHAPES)).items] == [SHAPES.index("star")] * 2

    class Targets(Dicts):  # torchvision's ImageFolder keeps targets and classes apart: no item is read for them
        targets, classes = [1, 0], ["star", "heart"]

        def __getitem__(self, i):
            raise AssertionError("an image was decoded to read the labels")

    assert [i.class_index for i in read_val_data(Targets(), list(SHAPES)).items] == [SHAPES.index("heart"), 3]

    class Unnamed(Dicts):
        def __getitem__(self, i):
            return {"picture": torch.rand(3, 8, 8), "y": "star"}

    with pytest.raises(ValDataError, match=r"keys \['picture', 'y'\], none of them the label; name the image one of"):
        read_val_data(Unnamed(), list(SHAPES))


# ------------------------------------------------------------------------------------------ the world
SNOW = {**GRASS, "value": "snow", "counter_values": ["wood", "sand"]}


@pytest.fixture(scope="module")
def biased_confirmed(tmp_path_factory, world_val) -> tuple[Path, Confirmation]:
    """A biased-star world run with the planted grass finding and a false snow one (as the demo's audit found),
    confirmed once on the biased classifier's validation set (the tests below read it; none changes it)."""
    run = _world_run(tmp_path_factory.mktemp("confirmed") / "run",
                     findings=[_finding("star", "grass", GRASS), _finding("star", "snow", SNOW, effect=0.32)])
    return run, confirm_run(run, world_val["biased"], source=ClassifierSource(device="cpu"))


def test_planted_cue_is_confirmed_on_its_training_distribution_and_not_for_the_clean_classifier(tmp_path, world_val,
                                                                                                 biased_confirmed):
    run, biased = biased_confirmed
    star = biased.finding(SHAPES.index("star"), "necessity", "grass")
    assert star.verdict == "confirmed", star.reason
    assert star.own.cue.n > 100 and star.own.counter.n >= 5  # grass stars vs stars on sand, snow or wood
    assert star.own.gap > 0 and star.own.low > 0 and star.q < 0.05
    assert biased.checked_by == "world oracles" and biased.data["used"] == 3000
    # the false finding (the demo's star/snow) is not confirmed: too few snow stars to decide, and it says so
    snow = biased.finding(SHAPES.index("star"), "necessity", "snow")
    assert snow.verdict != "confirmed" and (snow.verdict == "contradicted" or snow.images_to_decide), snow.reason
    # the record is what the run holds, read back through its one owner; its thumbnails lie inside the run
    assert RunDir(run).read_confirmation() == biased
    assert star.own.counter.examples and all((run / e.path).is_file() for e in star.own.counter.examples)
    assert biased.by_class(SHAPES.index("star")).confirmed == ("grass (necessity)",)
    clean = confirm_run(_world_run(tmp_path / "clean", "clean"), world_val["clean"], source=ClassifierSource(device="cpu"))
    assert clean.findings[0].verdict != "confirmed", clean.findings[0].reason
    assert clean.findings[0].own.counter.n >= 20  # the uniform distribution has the stars to decide it


def test_a_finding_without_counters_is_compared_with_neutral_values_not_the_class_favourite(tmp_path, world_val):
    """A token shift has no counters of its own. Compared with every other value, the demo heart's "the token draws
    fewer bars" (-0.17) read as confirmed: hearts with a bar against the dotted hearts the classifier prefers (the dot
    is the heart's planted cue; the generated necessity test of the bar against no tag gives 0.00). It is compared with
    the counters a necessity test of the bar keeps for the heart (the dot dropped by the counter rule: no tag), and a
    star's token shift on water with the star's counters less its passing grass."""
    tag = {"name": "bar", "cue": "bar", "template": "{} with a bar in the corner", "attribute": "tag", "value": "bar",
           "counters": ["{} with a dot in the corner", "{} with no tag"], "counter_values": ["dot", "none"]}
    water = {"name": "water", "cue": "water", "template": "{} on water", "attribute": "background", "value": "water",
             "counters": [f"{{}} on {v}" for v in ("grass", "sand", "snow", "wood")],
             "counter_values": ["grass", "sand", "snow", "wood"]}
    findings = [_finding("star", "grass", GRASS),
                _finding("heart", "bar", {"attribute": "tag", "value": "bar"}, effect=-0.17, passes=False,
                         kind="token-shift"),
                _finding("star", "water", {"attribute": "background", "value": "water"}, effect=-0.17, passes=False,
                         kind="token-shift")]
    run = _world_run(tmp_path / "run", findings=findings)
    RunDir(run).write_analysis({"domain": "world", "interventions_checked_by": "world oracles",
                                "cues": {"list": [tag, water]}, "dropped_counters": {"heart": ["with a dot in the corner"]}})
    record = confirm_run(run, world_val["biased"], source=ClassifierSource(device="cpu"))
    bar = record.finding(SHAPES.index("heart"), "token-shift", "bar")
    assert bar.counter_values == ("none",), bar.counter_values  # not the dotted hearts
    assert bar.verdict != "confirmed", bar.reason
    assert bar.own.counter.n < 60, bar.own.counter  # the few undotted hearts, not ~500 dotted ones
    star = record.finding(SHAPES.index("star"), "token-shift", "water")
    assert star.counter_values == ("sand", "snow", "wood"), star.counter_values  # the passing grass left out
    assert star.verdict != "confirmed", star.reason
    # a necessity finding keeps its own counters
    assert record.finding(SHAPES.index("star"), "necessity", "grass").counter_values == ("sand", "snow", "wood")


def test_small_slices_say_how_many_images_would_decide_and_a_bad_image_is_skipped_and_counted(tmp_path, world_val):
    from probe.files import save_png

    data = tmp_path / "few"
    (data / "star").mkdir(parents=True)
    stars = [i for i, t in enumerate(world_val["biased"].targets) if t == SHAPES.index("star")][:40]
    for i in stars:  # 40 stars: about one on sand, snow or wood
        save_png(data / "star" / f"{i:05d}.png", world_val["biased"][i][0])
    (data / "star" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    record = confirm_run(_world_run(tmp_path / "run"), data, source=ClassifierSource(device="cpu"))
    assert record.data["skipped"] == 1 and record.data["used"] == 40
    assert record.data["skipped_names"][0].startswith("star/broken.png")
    [star] = record.findings
    assert star.verdict == "not seen"
    assert star.images_to_decide is not None and star.images_to_decide > star.own.counter.n
    assert f"about {star.images_to_decide} per slice would decide" in star.reason


def test_gate_on_confirmed_findings_only(tmp_path, biased_confirmed):
    from probe import open_run
    from probe.gate import GateError, check_run

    run, record = biased_confirmed
    bare = _world_run(tmp_path / "bare", findings=[_finding("star", "grass", GRASS)])
    with pytest.raises(GateError, match="probe confirm"):
        check_run(bare, max_effect=0.1, confirmed_only=True)
    assert sorted(f.cue for f in check_run(run, max_effect=0.1).offenders) == ["grass", "snow"]
    assert [f.cue for f in check_run(run, max_effect=0.1, confirmed_only=True).offenders] == ["grass"]
    # a passing finding the data could not judge decides nothing: its class was a *passed* case, the gate exit 0
    # (found by review, 7 December 2026)
    import json
    import shutil

    unseen = tmp_path / "unseen"
    shutil.copytree(run, unseen)
    data = json.loads((unseen / "confirmation.json").read_text())
    for f in data["findings"]:
        f["verdict"] = "not seen"
    (unseen / "confirmation.json").write_text(json.dumps(data))
    result = check_run(unseen, max_effect=0.1, confirmed_only=True)
    star = next(c for c in result.cases if c.class_name == "star")
    assert star.status == "undecided" and "not judged on your data" in star.reason and not result.offenders
    assert result.exit_code != 0
    data["findings"] = []  # a confirmation.json that judged none of them
    (unseen / "confirmation.json").write_text(json.dumps(data))
    assert next(c for c in check_run(unseen, max_effect=0.1, confirmed_only=True).cases
                if c.class_name == "star").status == "undecided"
    # a passing finding no real image can test (off-object: an attribution share) is undecided under --confirmed-only
    # for good, and says so: the advice to add images and confirm again could never work (review, 8 December 2026)
    shares = tmp_path / "shares"
    shutil.copytree(run, shares)
    RunDir(shares).write_findings([_finding("star", "off-object", {}, kind="off-object")])
    (shares / "analysis.json").write_text(json.dumps({**json.loads((shares / "analysis.json").read_text()),
                                                      "n_findings": 1, "n_passing": 1}))
    case = next(c for c in check_run(shares, max_effect=0.1, confirmed_only=True, kinds=("off-object",)).cases
                if c.class_name == "star")
    assert case.status == "undecided" and "no real image can test" in case.reason and "--kinds" in case.reason
    assert "run `probe confirm` again" not in case.reason, case.reason
    # the notebook's findings table carries the verdicts
    table = open_run(run).findings.set_index("cue")
    assert table.loc["grass", "real_verdict"] == "confirmed" and table.loc["grass", "real_n_cue"] > 100
    strength = record.strength(record.finding(SHAPES.index("star"), "necessity", "grass"))
    assert table.loc["grass", "real_strength"] == strength in ("strong", "moderate")
    # the class page's confirmation table gives it the chip a passing finding's card has
    from probe.report import render_report

    index = render_report(run, out=tmp_path / "report")
    page = (index.parent / "classes" / "3-star.html").read_text()
    assert f'class="bar-strength bs-{strength}"' in page
    # and every card of a tested finding says what your data said, the index's included
    assert 'class="real-verdict rv-confirmed"' in index.read_text()
    assert f"on your data: confirmed ({strength})" in page
    assert table.loc["snow", "real_verdict"] == record.finding(SHAPES.index("star"), "necessity", "snow").verdict


def test_report_shows_the_real_images_with_escaped_names(tmp_path):
    from probe.files import save_png
    from probe.report import render_report
    from probe.world.scenes import render

    data = tmp_path / "data"
    for k in range(12):
        shape = ("star", "circle")[k % 2]
        (data / shape).mkdir(parents=True, exist_ok=True)
        scene = render(shape=shape, background="grass" if k < 8 else "sand", seed=k)
        save_png(data / shape / f"<b>x{k}.png", scene.image01())
    run = _world_run(tmp_path / "run")
    circle = RunDir(run).class_dir(0, "circle")  # a class the audit finished with no finding
    RunDir(run).write_metrics(circle, {"status": "done", "class_index": 0, "class_name": "circle"})
    confirm_run(run, data, source=ClassifierSource(device="cpu"), config=ConfirmConfig(min_slice=2))
    pages = render_report(run).parent / "classes"
    page = (pages / "3-star.html").read_text()
    assert "On your data" in page and "&lt;b&gt;x" in page and "<b>x" not in page
    # a class without findings says so, instead of an empty table
    page = (pages / "0-circle.html").read_text()
    assert "On your data" in page and "no cue finding for this class" in page and "real gap (measure)" not in page


def test_the_overview_counts_what_your_data_confirmed_and_names_cues_the_audit_did_not_pass(tmp_path):
    """The report's "on your data" card: passing findings confirmed of those tested, and the cues only the data
    confirmed (one per class and cue, however many kinds), escaped; no card without a confirmation."""
    from probe.report import render_report
    from probe.run.confirmation import ClassConfirmation, Comparison, FindingConfirmation, Slice

    hostile = "<img src=x onerror=alert(1)>"
    run = _world_run(tmp_path / "run", findings=[_finding("star", "grass", GRASS),
                                                 _finding("heart", hostile, GRASS, effect=0.07, passes=False),
                                                 _finding("heart", hostile, GRASS, effect=0.08, passes=False,
                                                          kind="sufficiency")])
    assert "real-card" not in render_report(run).read_text()

    def row(cls, cue, kind, passes, verdict):
        return FindingConfirmation(SHAPES.index(cls), cls, kind, cue, "background", "grass", ("sand",),
                                   "passes" if passes else "weak", passes, 0.3, 0.1, 0.5,
                                   Comparison("accuracy", Slice(400, 398), Slice(23, 17), gap=0.26, low=0.1, high=0.4,
                                              p=1e-6), Comparison("called the class", Slice(0, 0), Slice(0, 0)), "own",
                                   1, verdict, "", None, 0.001)

    record = Confirmation(data={"source": "folder", "root": "val", "listed": 900, "used": 900, "skipped": 0},
                          checked_by="world oracles", classifier="net", settings={"alpha": 0.05},
                          findings=(row("star", "grass", "necessity", True, "confirmed"),
                                    row("heart", hostile, "necessity", False, "confirmed"),
                                    row("heart", hostile, "sufficiency", False, "confirmed")),
                          classes=(ClassConfirmation(SHAPES.index("star"), "star", 150, 0.9, ("grass",)),))
    RunDir(run).write_confirmation(record)
    page = render_report(run).read_text()
    card = page[page.index('class="card real-card"'):]
    card = card[:card.index("</div></div>")]
    assert ">1 of 1<" in card and "on 900 labelled images" in card, card
    assert "1 cue the audit did not pass confirmed (heart: &lt;img" in card and hostile not in page, card


def test_damaged_confirmation_is_one_line_naming_the_field(tmp_path, biased_confirmed):
    _, record = biased_confirmed
    data = record.to_dict()
    data["findings"][0]["verdict"] = "proven"
    with pytest.raises(RunError, match=r"findings\[0\]\.verdict is 'proven'"):
        Confirmation.from_dict(data)
    data = record.to_dict()
    data["findings"][0]["own"]["cue"]["hits"] = 10 ** 6
    run = _world_run(tmp_path / "run")
    (run / "confirmation.json").write_text(json.dumps(data))
    with pytest.raises(RunError, match=r"own\.cue\.hits") as error:
        RunDir(run).read_confirmation()
    assert "\n" not in str(error.value)
    # the bar a confirmation's strength is read against is checked too: a crafted one cannot make every gap strong
    for bad, message in ((-1, r"settings\.bar is -1, outside 0\.\.1"), ("0.15", r"settings\.bar is .*not a number")):
        data = record.to_dict()
        data["settings"]["bar"] = bad
        with pytest.raises(RunError, match=message):
            Confirmation.from_dict(data)


# ------------------------------------------------------------------------------------------ the CLI
def test_cli_confirm_and_world_valset(tmp_path, monkeypatch, capsys):
    code, out, err = run_main(monkeypatch, capsys, "world", "valset", "--out", str(tmp_path / "val"), "--n", "60")
    assert code == 0, err
    assert "planted star: background=grass" in out and (tmp_path / "val" / "attributes.csv").is_file()
    run = _world_run(tmp_path / "run")
    code, out, err = run_main(monkeypatch, capsys, "confirm", str(run), "--val-data", str(tmp_path / "nowhere"))
    assert code == 2 and "does not exist" in err and len(err.strip().splitlines()) == 1
    code, out, err = run_main(monkeypatch, capsys, "confirm", str(run), "--val-data", str(tmp_path / "val"),
                              "--min-slice", "0")
    assert code == 2 and "--min-slice 0" in err and "pass 1" in err and len(err.strip().splitlines()) == 1
    assert not (run / "confirmation.json").exists()
    code, out, err = run_main(monkeypatch, capsys, "confirm", str(run), "--val-data", str(tmp_path / "val"),
                              "--device", "cpu", "--no-report")
    assert code == 0, err
    assert "cues read by world oracles" in out and (run / "confirmation.json").is_file()
    # the headline once, on stdout as the table's first line: it was also repeated on stderr as a progress line
    assert "cues read by world oracles" not in err and out.count("cues read by world oracles") == 1, (out, err)


def test_world_valset_reads_a_dotted_classifiers_own_bias_and_bounds_n(tmp_path, monkeypatch, capsys):
    """`probe world valset --classifier biased.v2.pt2` read biased.bias.json (the wrong file, or none) where
    save_world_classifier writes biased.v2.bias.json; --n past what memory holds was a traceback (7 TiB)."""
    import shutil

    from probe.world import bundled_classifier_path
    from probe.world.valset import classifier_bias

    source = bundled_classifier_path("biased")
    for suffix in (".pt2", ".labels.txt", ".data.json", ".bias.json"):
        shutil.copy(f"{source.with_suffix('')}{suffix}", tmp_path / f"biased.v2{suffix}")
    bias, strength, path = classifier_bias(tmp_path / "biased.v2.pt2")
    assert (bias, strength) == classifier_bias("biased")[:2] and path == tmp_path / "biased.v2.pt2"
    code, out, err = run_main(monkeypatch, capsys, "world", "valset", "--out", str(tmp_path / "big"), "--n",
                              "1000000000000")
    assert code == 2 and "more than 200,000 scenes" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "big").exists()


def test_audit_val_data_with_labels_the_classifier_lacks_fails_before_any_token(tmp_path, monkeypatch, capsys):
    """`probe audit --val-data` checks the folder's labels once the classifier is loaded, before the tokens: a class
    folder the classifier does not have fails in one line and nothing is learned or written (it failed after the
    tokens and the whole analysis, 1 min 39 s into a tiny audit); `Audit.run(val_data=...)` likewise."""
    import probe
    from probe.world.assets import bundled_classifier_path, bundled_generator_path

    def no_tokens(*a, **k):
        raise AssertionError("a token was learned before the validation data's labels were checked")

    monkeypatch.setattr("probe.tokens.optimize_class_token", no_tokens)
    for name in ("star", "lobster"):
        (tmp_path / "val" / name).mkdir(parents=True)
        (tmp_path / "val" / name / "a.png").write_bytes(b"not decoded before the labels are checked")
    model, generator = str(bundled_classifier_path("biased")), str(bundled_generator_path())
    code, out, err = run_main(monkeypatch, capsys, "audit", "--model", model, "--generator", generator, "--classes",
                              "star", "--out", str(tmp_path / "run"), "--device", "cpu", "--val-data",
                              str(tmp_path / "val"), "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "'lobster' are not the classifier's" in err and "--val-data" in err
    assert not (tmp_path / "run").exists()
    audit = probe.Audit(model, generator, device="cpu")
    with pytest.raises(ValDataError, match="'lobster'"):
        audit.run(["star"], out=tmp_path / "nb", progress=False, val_data=[(str(tmp_path / "a.png"), "lobster")])
    assert not (tmp_path / "nb").exists()


# ------------------------------------------------------------------------------------------ plumbing outside the world
def test_tiny_clip_reads_the_cues_for_an_exported_classifier(tmp_path):
    from tiny_concepts import save_tiny_clip

    from probe.files import save_png

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.head = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.conv(x).mean(dim=(2, 3)))

    torch.manual_seed(0)
    model_path = tmp_path / "cls.pt2"
    program = torch.export.export(Net().eval(), (torch.rand(2, 3, 24, 24),),
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=64)},))
    torch.export.save(program, str(model_path))
    (tmp_path / "cls.labels.txt").write_text("cat\ndog\n")
    (tmp_path / "cls.data.json").write_text(json.dumps({"input_size": [3, 24, 24], "mean": [0.5] * 3, "std": [0.5] * 3}))
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.write_labels(["cat", "dog"])
    run.write_config(RunConfig(audit={"model": str(model_path), "out": str(run.root)}))
    cue = {"name": "grass", "template": "{} on grass", "counters": ["{} on sand"], "category": "background",
           "attribute": "background", "value": "grass", "counter_values": ["sand"]}
    run.write_findings([Finding(0, "cat", "grass", "necessity", 0.3, 0.1, 0.5, 16, (), True, "strong", "s",
                                details={**cue}, p=0.01, q=0.02, status="passes", checked_by="concepts: tiny")])
    run.write_analysis({"cues": {"source": "curated default", "list": [cue]}, "interventions_checked_by": "concepts: tiny"})
    generator = torch.Generator().manual_seed(1)
    for k in range(16):  # images of two sizes: each size is one batch through the classifier's preprocessing
        size = 40 if k % 2 else 28
        folder = run.root.parent / "data" / ("cat" if k < 10 else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        save_png(folder / f"{k}.png", torch.rand(3, size, size, generator=generator))
    clip = save_tiny_clip(tmp_path / "clip")
    with pytest.raises(Exception, match="--concepts"):  # a real run has no oracles: the concept model is named
        confirm_run(run.root, run.root.parent / "data", source=ClassifierSource(device="cpu"))
    record = confirm_run(run.root, run.root.parent / "data", source=ClassifierSource(device="cpu"), concepts=str(clip),
                         config=ConfirmConfig(min_slice=1))
    assert record.checked_by.startswith("concepts: ") and record.data["used"] == 16
    [f] = record.findings
    assert f.own.cue.n + f.own.counter.n == 10  # every cat image read as on grass or on sand
    assert f.others.cue.n + f.others.counter.n == 6
    assert RunDir(run.root).read_confirmation() == record


# ------------------------------------------------------------------------------------------ the demo audits
@pytest.mark.parametrize("concepts, checked_by", [("auto", "world oracles"), ("world", "concepts: world")])
def test_demo_runs_biased_star_grass_confirmed_clean_not(clean_demo, world_val, tmp_path, concepts, checked_by):
    """The same verdicts whoever reads the cues on the images: the world's oracles, or the world's own CLIP through
    the concept-model path a user's CLIP takes (``probe confirm RUN --val-data DIR --concepts world``)."""
    biased, clean, _ = clean_demo
    results = {}
    for name, run in (("biased", biased), ("clean", clean)):
        copy = tmp_path / name
        shutil.copytree(run, copy, ignore=shutil.ignore_patterns(".probe*", "report"))
        record = confirm_run(copy, world_val[name], source=ClassifierSource(device="cpu"), concepts=concepts)
        assert record.checked_by == checked_by
        results[name] = {(f.kind, f.cue): f for f in record.findings if f.class_name == "star"}
    grass = results["biased"].get(("necessity", "grass"))
    assert grass is not None and grass.passes and grass.verdict == "confirmed", grass
    assert not any(f.verdict == "confirmed" and f.cue == "grass" for f in results["clean"].values())
    assert not any(f.passes and f.verdict == "confirmed" for f in results["clean"].values())


def test_the_demos_heart_dot_the_audit_missed_is_seen_in_the_classifiers_own_data(readme_demo, tmp_path):
    """The README: the demo's planted heart/dot is missed by the audit (the generator's hearts carry less of the
    dependence than the classifier's own images); on the hearts of 10,000 scenes drawn as the classifier's training
    data (about 1600, some 23 of them without the dot) `probe confirm` sees it, a significant gap of its sign: *confirmed*
    or, since its truth in that population is +0.156, at the bar, *weaker*. Only the hearts are rendered (``classes``):
    the necessity verdict reads the class's own images."""
    from probe import open_run
    from probe.world.valset import validation_images

    with pytest.raises(ProbeError, match=r"\['hexagon'\] are not shapes of the world; pass some of circle"):
        validation_images("biased", 10000, classes=["heart", "hexagon"])
    hearts = validation_images("biased", 10000, classes=["heart"])
    assert set(hearts.targets) == {SHAPES.index("heart")} and 1400 < len(hearts) < 1800
    copy = tmp_path / "demo"
    shutil.copytree(readme_demo / "runs" / "demo", copy, ignore=shutil.ignore_patterns(".probe*", "report"))
    record = confirm_run(copy, hearts, source=ClassifierSource(device="cpu"))
    dot = next(f for f in record.findings if (f.class_name, f.kind, f.cue) == ("heart", "necessity", "dot"))
    assert dot.verdict in ("confirmed", "weaker"), dot.verdict_text
    assert dot.decisive.counter.n < 60 and dot.decisive.p < 1e-4 and dot.decisive.gap > 0.1
    summary = str(open_run(copy).classes["heart"].summary)
    if dot.verdict == "confirmed":  # the summary names it and offers the balance step, passing or not
        assert "dot (necessity) confirmed" in summary if dot.passes else \
            "confirmed although the audit did not pass them: dot (necessity)" in summary, summary
        assert "--balance heart:dot" in summary, summary
    elif dot.passes:  # weaker, on a CPU whose audit passed it (bf16 sampling): the summary gives that verdict
        assert "dot (necessity) seen, weaker than the audit's bar" in summary, summary


def _crafted(hits, counter_hits, prob_gap):
    from probe.run.confirmation import Comparison, Slice

    return Comparison("accuracy", Slice(hits[1], hits[0], 0.8), Slice(counter_hits[1], counter_hits[0], 0.8 - prob_gap),
                      *newcombe(*hits, *counter_hits), fisher_exact(*hits, *counter_hits), prob_gap, prob_gap - 0.04,
                      prob_gap + 0.04)


def _decided(*, passes: bool, prob_gap: float, effect: float = 0.17, hits=(180, 200), counter_hits=(120, 200),
             prob_gap_without_one: float | None = None):
    """One necessity finding decided by :func:`probe.confirm.confirm._decide` on crafted slices (accuracy 0.90 with the
    cue vs 0.60 with its counters: a clear real gap) whose mean-P(class) gap is ``prob_gap``; the comparison without
    the smaller slice's most favourable image drops one of its misses (the counter slice is never the larger here)."""
    from probe.confirm.confirm import _decide
    from probe.run.confirmation import Comparison, FindingConfirmation, Slice

    own = _crafted(hits, counter_hits, prob_gap)
    right, n = counter_hits
    without_one = None if n < 2 else _crafted(hits, (right, n - 1) if right < n else (right - 1, n - 1),
                                              prob_gap if prob_gap_without_one is None else prob_gap_without_one)
    finding = FindingConfirmation(SHAPES.index("square"), "square", "necessity", "snow", "background", "snow",
                                  ("grass", "sand"), "passes" if passes else "weak", passes, effect, effect - 0.15,
                                  effect + 0.15, own, Comparison("called the class", Slice(0, 0), Slice(0, 0)), "own", 1,
                                  "not seen", "")
    return _decide([(finding, (without_one, None))], ConfirmConfig(), list(SHAPES), bar=0.15)[0]


def test_a_finding_is_confirmed_only_when_the_real_gap_reaches_the_audits_bar():
    """The audit's rule on the real data: a real gap that is clearly there but, in mean P(class), below the pass bar
    (the held-out benchmark's square/snow: claimed +0.17, true +0.10, real +0.09) is "weaker", not "confirmed", for
    a passing finding and for one that did not pass (a clean classifier's small real preferences); a gap at the bar
    confirms either."""
    weaker = _decided(passes=True, prob_gap=0.10)
    assert weaker.verdict == "weaker" and "below the audit's bar of 0.15" in weaker.reason, weaker.reason
    assert weaker.verdict_text == "seen in your data, weaker than the audit's bar"
    assert _decided(passes=True, prob_gap=0.16).verdict == "confirmed"
    assert _decided(passes=False, prob_gap=0.10).verdict == "weaker"
    assert _decided(passes=False, prob_gap=0.16).verdict == "confirmed"
    # the per-class record keeps the new verdict, and a file written before it existed still reads
    from probe.run.confirmation import ClassConfirmation

    record = ClassConfirmation(3, "square", 500, 0.9, weaker=("snow (necessity)",))
    assert ClassConfirmation.from_dict(record.to_dict(), "classes[0]") == record
    old = {k: v for k, v in record.to_dict().items() if k != "weaker"}
    assert ClassConfirmation.from_dict(old, "classes[0]").weaker == ()
    assert "weaker than the audit's bar: snow (necessity)" in record.sentence


def test_a_confirmation_is_strong_only_when_the_real_gaps_whole_interval_clears_the_bar():
    """As the audit says of its passing findings: a confirmed real gap whose 95% interval in mean P(class) lies beyond
    the bar is *strong*; one that only its estimate clears is *moderate* (near-bar real gaps, where the benchmark's
    few false confirmations lie); the agreement table, the text and the per-class sentence say which."""
    from probe.run.confirmation import Confirmation

    near, clear = _decided(passes=True, prob_gap=0.16), _decided(passes=True, prob_gap=0.40)
    assert near.verdict == clear.verdict == "confirmed"
    assert near.strength(0.15) == "moderate" and clear.strength(0.15) == "strong"
    assert _decided(passes=True, prob_gap=0.10).strength(0.15) is None  # weaker: no strength
    assert clear.strength(None) is None
    record = Confirmation({"listed": 2, "used": 2, "skipped": 0}, "world oracles", "m", {"bar": 0.15}, (near, clear))
    assert list(record.agreement()["strength"]) == ["moderate", "strong"]
    assert "2 confirmed (1 strong)" in record.headline() and record.headline().endswith("of 2 cue findings")
    assert "confirmed on your data (moderate)" in record.table() and "confirmed on your data (strong)" in record.table()
    # a negative finding: the interval's upper end must lie at or below -bar
    import dataclasses

    down = dataclasses.replace(clear, direction=-1, own=dataclasses.replace(clear.own, prob_gap=-0.4, prob_low=-0.44,
                                                                          prob_high=-0.36))
    assert down.strength(0.15) == "strong"
    assert dataclasses.replace(down, own=dataclasses.replace(down.own, prob_high=-0.1)).strength(0.15) == "moderate"


def test_large_photos_are_classified_a_few_at_a_time_and_give_what_one_batch_gives(tmp_path):
    """Memory stays bounded by pixels, not by batch_size × the photos' size; the verdict inputs do not change."""
    import numpy as np
    from PIL import Image

    from probe.confirm.confirm import _read_all

    for k, (h, w) in enumerate([(300, 400)] * 3 + [(64, 64)] * 4 + [(300, 400)] * 2):
        (tmp_path / "val" / "star").mkdir(parents=True, exist_ok=True)
        pixels = np.random.default_rng(k).integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "val" / "star" / f"{k}.png")
    data = read_val_data(tmp_path / "val", ["circle", "star"])
    seen = []

    def classifier(batch):
        seen.append(int(batch.shape[-1]) * int(batch.shape[-2]) * int(batch.shape[0]))
        return torch.stack([batch.mean(dim=(1, 2, 3)), batch.std(dim=(1, 2, 3))], dim=1)

    class Check:
        def read(self, batch):
            return [{} for _ in batch]

    whole, _ = _read_all(data, classifier, Check(), batch_size=64)
    assert max(seen) == 5 * 300 * 400  # unbounded: every large photo in one batch
    seen.clear()
    bounded, _ = _read_all(data, classifier, Check(), batch_size=64, pixels=2 * 300 * 400)
    assert max(seen) <= 2 * 300 * 400 and len(seen) >= 4
    key = lambda im: im.item.name  # noqa: E731
    assert [im.item.name for im in sorted(whole, key=key)] == [im.item.name for im in sorted(bounded, key=key)]
    assert all(np.allclose(a.probs, b.probs) for a, b in zip(sorted(whole, key=key), sorted(bounded, key=key)))
    heard: list[str] = []  # a long read says how far it got (every_s=0: after every batch)
    _read_all(data, classifier, Check(), batch_size=4, say=heard.append, every_s=0)
    assert heard[0] == "confirm: 4 of 9 images read" and heard[-1] == "confirm: 9 of 9 images read", heard


def test_a_small_slice_decides_when_its_images_do_but_never_on_one_image():
    """fresh7's planted triangle/sand: 4 triangles off sand, all misclassified, against 496 on sand (true effect
    +0.96). Fisher's exact p is 4e-10, yet a floor of 5 images per slice called it "not seen"; the exact test needs no
    floor. What it must not do is rest on one image: a lone counter image, or a gap that one image carries (0 of 3
    against 350 of 500: p=0.03; 0 of 2: p=0.09), is not seen, and says how many images would decide."""
    small = _decided(passes=True, prob_gap=0.9, effect=0.92, hits=(496, 496), counter_hits=(0, 4))
    assert small.verdict == "confirmed" and small.strength(0.15) == "strong", small.reason
    assert _decided(passes=True, prob_gap=0.9, effect=0.92, hits=(496, 496), counter_hits=(0, 2)).verdict == "confirmed"

    lone = _decided(passes=True, prob_gap=0.9, effect=0.92, hits=(496, 496), counter_hits=(0, 1))
    assert lone.verdict == "not seen" and "one image decides it" in lone.reason, lone.reason
    assert lone.images_to_decide >= 2 and f"about {lone.images_to_decide} images per slice" in lone.reason

    carried = _decided(passes=True, prob_gap=0.5, effect=0.3, hits=(350, 500), counter_hits=(0, 3))
    assert carried.own.p < 0.05 and carried.verdict == "not seen", carried.reason
    assert "without its most favourable image: gap" in carried.reason and carried.images_to_decide > 3

    lifted = _decided(passes=True, prob_gap=0.17, effect=0.3, hits=(480, 500), counter_hits=(5, 20),
                      prob_gap_without_one=0.13)
    assert lifted.verdict == "weaker" and "reaches the audit's bar of 0.15 only with one image" in lifted.reason
    assert _decided(passes=True, prob_gap=0.17, effect=0.3, hits=(480, 500), counter_hits=(5, 20)).verdict == "confirmed"

    floor = _decide_with(ConfirmConfig(min_slice=5), hits=(496, 496), counter_hits=(0, 4))
    assert floor.verdict == "not seen" and "at least 5 per slice" in floor.reason
    assert floor.images_to_decide >= 5 and f"about {floor.images_to_decide} per slice" in floor.reason


def _decide_with(config, *, hits, counter_hits):
    from probe.confirm.confirm import _decide
    from probe.run.confirmation import Comparison, FindingConfirmation, Slice

    own = _crafted(hits, counter_hits, 0.9)
    finding = FindingConfirmation(SHAPES.index("square"), "square", "necessity", "snow", "background", "snow",
                                  ("grass",), "passes", True, 0.9, 0.8, 1.0, own,
                                  Comparison("called the class", Slice(0, 0), Slice(0, 0)), "own", 1, "not seen", "")
    return _decide([(finding, (None, None))], config, list(SHAPES), bar=0.15)[0]


def test_the_image_left_out_is_the_smaller_slices_most_favourable_one():
    """For a finding that says the cue helps the class, the counter slice's most favourable image is a miss with the
    lowest P(class); for one that says the cue hurts, a hit with the highest. Left out, the gap shrinks toward 0."""
    import numpy as np

    from probe.confirm.confirm import _Image, _without_one

    def im(predicted, p):
        return _Image(item=None, label=0, predicted=predicted, prob_label=p, probs=np.array([p, 1 - p]), reading={})

    cue = [im(0, 0.9)] * 20
    counter = [im(1, 0.30), im(1, 0.05), im(0, 0.80)]
    helps = _without_one("accuracy", cue, counter, 0, +1, 0.95)
    assert (helps.counter.n, helps.counter.hits) == (2, 1) and abs(helps.counter.mean_prob - 0.55) < 1e-9
    hurts = _without_one("accuracy", cue, counter, 0, -1, 0.95)
    assert (hurts.counter.n, hurts.counter.hits) == (2, 0) and abs(hurts.counter.mean_prob - 0.175) < 1e-9
    assert _without_one("accuracy", cue, counter[:1], 0, +1, 0.95) is None  # one image: nothing left to decide


def test_a_contradiction_never_rests_on_one_image():
    """A slice of one missed image against 496 hits was *contradicted* (found by review, 7 December 2026): the
    leave-one-out rule guarded confirmations only. A contradiction now holds without its least favourable image."""
    import numpy as np

    from probe.confirm.confirm import _compare, _decide, _Image, _without_one
    from probe.run.confirmation import Comparison, FindingConfirmation

    def members(hits, n):
        return [_Image(item=None, label=0, predicted=0 if i < hits else 1, prob_label=0.5,
                       probs=np.array([0.9 if i < hits else 0.1, 0.1]), reading={}) for i in range(n)]

    def decided(cue, counter):
        own = _compare("accuracy", *(_slice(m) for m in (cue, counter)), cue, counter, 0, 0.95)
        finding = FindingConfirmation(0, "circle", "token-shift", "wood", "background", "wood", ("sand",), "passes",
                                      True, 0.2, 0.1, 0.3, own, Comparison("called the class", *(_slice([]),) * 2),
                                      "own", 1, "not seen", "")
        pair = (_without_one("accuracy", cue, counter, 0, 1, 0.95), _without_one("accuracy", cue, counter, 0, -1, 0.95))
        return _decide([(finding, pair)], ConfirmConfig(), ["circle", "x"], bar=0.15)[0]

    one = decided(members(0, 1), members(496, 496))
    assert one.verdict == "not seen" and "one image decides it" in one.reason, one.reason
    many = decided(members(0, 40), members(496, 496))  # forty misses against 496 hits: contradicted
    assert many.verdict == "contradicted", many.reason


def _slice(members):
    from probe.run.confirmation import Slice

    probs = [float(m.probs[0]) for m in members]
    return Slice(len(members), sum(m.predicted == m.label for m in members), sum(probs) / len(probs) if probs else None)


def test_the_comparisons_intervals_have_the_coverage_alpha_names():
    """``ConfirmConfig.alpha`` is the test's level and 1 - the intervals' coverage: at alpha 0.01 a gap of 12/40
    against 20/40 is not ruled out at 99% (the 95% interval, used whatever alpha said, ends below 0.05 and made the
    finding *contradicted*)."""
    import numpy as np

    from probe.confirm.confirm import _compare, _Image
    from probe.run.confirmation import Slice

    def members(hits, n):
        return [_Image(item=None, label=0, predicted=0 if i < hits else 1, prob_label=0.5,
                       probs=np.array([0.9 if i < hits else 0.2, 0.1]), reading={}) for i in range(n)]

    cue, counter = members(12, 40), members(20, 40)
    at = {c: _compare("accuracy", Slice(40, 12), Slice(40, 20), cue, counter, 0, c) for c in (0.95, 0.99)}
    assert at[0.95].high < 0.05 < at[0.99].high and at[0.99].low < at[0.95].low
    assert at[0.99].prob_low < at[0.95].prob_low and at[0.99].prob_high > at[0.95].prob_high  # Welch's likewise


def test_a_class_whose_images_nearly_all_show_the_cue_is_named_as_a_bias_of_the_data():
    """fresh2's stars: 3 of 500 off water in 3000 scenes, against a fifth of the other classes' images on water. Not
    seen for want of counter images, and the reason says why: the data carry the bias. A balanced class does not."""
    from dataclasses import replace

    from probe.confirm.confirm import _decide
    from probe.run.confirmation import Comparison, Slice

    def finding(own_cue, own_counter, others_cue, others_counter):
        f = _decided(passes=True, prob_gap=0.9, effect=0.9, hits=(own_cue, own_cue), counter_hits=(0, own_counter))
        return replace(f, others=Comparison("called the class", Slice(others_cue, 0), Slice(others_counter, 0)))

    skewed = finding(497, 1, 500, 2000)
    assert skewed.data_bias() == ("497 of the 498 'square' images with snow or grass/sand show snow, against 20% of "
                                  "the other classes'")
    [decided] = _decide([(skewed, (None, None))], ConfirmConfig(), list(SHAPES), bar=0.15)
    assert decided.verdict == "not seen" and "your data carry the bias: 497 of the 498" in decided.reason, decided.reason
    assert finding(300, 200, 500, 2000).data_bias() is None
    assert finding(497, 1, 2400, 100).data_bias() is None  # every class shows it: a bias of the world, not the class


def test_the_image_left_out_comes_from_the_comparison_that_decides_the_finding():
    """A sufficiency finding is decided on the other classes' images: its one-image check leaves one of those out
    (here the 3 sand scenes of other classes, 2 called 'star'), never one of the class's own."""
    from types import SimpleNamespace

    import numpy as np

    from probe.confirm.confirm import ConfirmConfig, _confirm_finding, _Image

    star = SHAPES.index("star")

    def im(label, background, predicted, p):
        probs = np.full(len(SHAPES), (1 - p) / (len(SHAPES) - 1))
        probs[star] = p
        return _Image(item=None, label=label, predicted=predicted, prob_label=float(probs[label]), probs=probs,
                      reading={"background": background})

    own = [im(star, "grass", star, 0.9) for _ in range(30)] + [im(star, "sand", star, 0.9) for _ in range(30)]
    others = ([im(0, "sand", star, 0.7), im(0, "sand", star, 0.6), im(0, "sand", 0, 0.1)]
              + [im(0, "grass", 0, 0.05) for _ in range(200)])
    finding = SimpleNamespace(details={"attribute": "background", "value": "sand", "counter_values": ["grass"]},
                              class_index=star, class_name="star", kind="sufficiency", cue="sand", status="passes",
                              passes=True, effect=0.4, ci_low=0.2, ci_high=0.6)
    record, (without_one, _) = _confirm_finding(0, finding, own + others, list(SHAPES), None, ConfirmConfig(examples=0),
                                           None, [])
    assert record.decides == "others" and (record.others.cue.n, record.others.cue.hits) == (3, 2)
    assert without_one.measure == "called the class"
    assert (without_one.cue.n, without_one.cue.hits) == (2, 1) and without_one.counter.n == 200
