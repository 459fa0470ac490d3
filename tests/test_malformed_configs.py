"""Malformed configuration files of models and data get one line naming the file, never a traceback or a hang
(found by reading the loaders, 7 December 2026; each case below was a TypeError, ValueError, OverflowError or a
blocked read before)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from probe.errors import ProbeError


@pytest.mark.parametrize("settings,named", [
    (["x"], "not a JSON object"),
    (b"\xff\xfe", "not valid JSON"),
    ({"default_steps": "many"}, "default_steps is 'many'"),
    ({"default_steps": 0}, "default_steps is 0"),
    ({"guidance_scale": None}, "guidance_scale is None"),
])
def test_a_generator_folders_probe_settings_are_checked_before_the_pipeline_loads(tiny_sd_path, tmp_path, settings,
                                                                                 named):
    from probe.generators.load import SETTINGS_FILE, load_generator

    folder = Path(shutil.copytree(tiny_sd_path, tmp_path / "gen"))
    file = folder / SETTINGS_FILE
    file.write_bytes(settings if isinstance(settings, bytes) else json.dumps(settings).encode())
    with pytest.raises(ProbeError, match=named) as info:
        load_generator(str(folder), device="cpu")
    assert "\n" not in str(info.value)


def test_a_pipeline_class_given_as_a_list_is_refused_in_one_line(tiny_sd_path, tmp_path):
    """diffusers writes ["module", "Class"] for a custom pipeline's own code; probe named it by a TypeError."""
    from probe.generators.load import load_generator

    folder = Path(shutil.copytree(tiny_sd_path, tmp_path / "gen"))
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = ["evil_pipe", "Evil"]
    (folder / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ProbeError, match="probe loads .*layouts"):
        load_generator(str(folder), device="cpu")


@pytest.mark.parametrize("preprocessor", [
    {"size": {"height": None, "width": 224}},
    {"size": 224, "crop_size": 224, "do_center_crop": True, "crop_pct": "x"} | {"size": 0},
    {"size": {"shortest_edge": "wide"}},
])
def test_a_damaged_hugging_face_preprocessor_config_falls_back_instead_of_a_traceback(tmp_path, preprocessor):
    from probe.classifiers.data_config import from_hf_preprocessor

    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps(preprocessor))
    assert from_hf_preprocessor(path) == {}  # the folder's other configs, or the defaults, decide


def test_an_infinite_input_size_in_a_sidecar_is_one_line(tmp_path):
    from probe.classifiers.data_config import check_partial

    with pytest.raises(ProbeError, match="is not a size"):
        check_partial({"input_size": [3, float("inf"), 224]}, "model.data.json")


def test_a_model_folder_whose_auto_map_is_no_mapping_is_still_refused_in_one_line(tmp_path):
    from probe.classifiers import load_classifier

    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "auto_map": 1}))
    with pytest.raises(ProbeError, match="own Python code") as info:
        load_classifier(str(folder))
    assert "\n" not in str(info.value)


def test_a_concept_model_whose_model_type_is_no_name_is_one_line(tmp_path):
    from probe.concepts import load_concepts

    folder = tmp_path / "concept"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": ["clip"]}))
    with pytest.raises(ProbeError, match="is a \\['clip'\\] model"):
        load_concepts(str(folder))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_listed_in_a_val_data_csv_is_skipped_not_a_hang(tmp_path):
    import numpy as np
    from PIL import Image

    from probe.valdata import Unreadable, read_val_data

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    os.mkfifo(tmp_path / "f.png")
    (tmp_path / "v.csv").write_text("path,label\nok.png,cat\nf.png,cat\n")
    data = read_val_data(tmp_path / "v.csv", ["cat", "dog"])
    signal.alarm(20)  # before the fix, reading the FIFO blocked for ever
    try:
        data.load(data.items[0])
        with pytest.raises(Unreadable, match="not a regular file"):
            data.load(data.items[1])
    finally:
        signal.alarm(0)
