"""probe generate on the shapes world: an ImageFolder of token images, a manifest, resume, and untrusted names."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_main
import torch
from PIL import Image

from probe.generate import GENERATE_SEED, GenerateError, check_template

STAR = 3


def _cli(monkeypatch, capsys, *args) -> tuple[int, list[str], list[str]]:
    return run_main(monkeypatch, capsys, *args, lines=True)


def _manifest(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _new(lines: list[str]) -> int:
    return int(re.search(r"\((\d+) new\)", next(line for line in lines if "kept of" in line)).group(1))


def test_kept_images_form_an_imagefolder_of_their_class_and_a_resume_finishes_only_the_rest(readme_demo, tmp_path,
                                                                                            monkeypatch, capsys):
    from probe.classifiers import load_classifier
    from probe.world import bundled_classifier_path

    run, out = tmp_path / "run", tmp_path / "data"
    shutil.copytree(readme_demo / "runs" / "demo", run)  # the shared demo run is never changed
    command = ["generate", str(run), "--classes", "star", "--per-class", "3", "--min-prob", "0.5", "--batch-size", "4",
               "--out", str(out), "--quiet"]
    code, stdout, err = _cli(monkeypatch, capsys, *command)
    assert code == 0, err
    rows = _manifest(out)
    kept = [r for r in rows if r["kept"] == "True"]
    assert len(kept) == 3, rows  # the star token makes stars: 3 kept within the cap of 12 attempts
    assert all(r["class_index"] == str(STAR) and r["class_name"] == "star" for r in rows)
    assert all(r["prompt"] == "a photo of a <probe-3> star" for r in rows)  # the run's first template
    assert all(int(r["seed"]) >= GENERATE_SEED for r in rows)
    assert all(r["path"] == "" for r in rows if r["kept"] != "True")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == sorted(r["path"] for r in kept)
    assert all(r["path"] == f"star/{r['seed']}.png" for r in kept)
    table = pd.read_parquet(out / "manifest.parquet")
    assert list(table.columns) == list(rows[0]) and len(table) == len(rows) and table["kept"].sum() == 3
    # re-classify the saved PNGs: each is its class, with the probability the manifest recorded
    classifier = load_classifier(str(bundled_classifier_path("biased")))
    images = torch.stack([torch.from_numpy(np.array(Image.open(out / r["path"]).convert("RGB"))).permute(2, 0, 1)
                          for r in kept]).float() / 255
    with torch.no_grad():
        probs = classifier(images).softmax(-1)
    assert probs.argmax(-1).tolist() == [STAR] * 3
    assert np.allclose(probs[:, STAR].numpy(), [float(r["target_prob"]) for r in kept], atol=1e-4)
    assert all(float(r["target_prob"]) >= 0.5 for r in kept)

    # resume: one kept file deleted, another kept row deleted; the rest must not be generated again
    gone_file, gone_row, stays = kept
    (out / gone_file["path"]).unlink()
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if r["seed"] != gone_row["seed"])
    before = (out / stays["path"]).stat().st_mtime_ns
    code, stdout, err = _cli(monkeypatch, capsys, *command)
    assert code == 0, err
    assert _new(stdout) == 2, stdout  # only the two missing seeds, regenerated
    assert (out / stays["path"]).stat().st_mtime_ns == before
    again = _manifest(out)
    assert sorted(r["seed"] for r in again if r["kept"] == "True") == sorted(r["seed"] for r in kept)
    assert len(again) == len(rows)

    # the same folder with another prompt is refused, naming the flag, before any model loads
    code, stdout, err = _cli(monkeypatch, capsys, *command, "--prompt", "a picture of a {token} {name}")
    assert code == 2 and len(err) == 1 and "--prompt" in err[0] and "to resume" in err[0], err


def test_a_dataset_resumes_from_another_working_directory(tmp_path, monkeypatch):
    """The dataset's settings record the run's model as an absolute path: `probe generate runs/r --out d` begun in
    the audit's folder resumes from any other (a relative --model read from the run comes back absolute from
    elsewhere, and was refused as "a different --model"); one recorded relative before still resumes from where it
    was begun, and another model is still refused."""
    from probe.generate import SETTINGS, _absolute, _open_output

    audit_dir, elsewhere, out = tmp_path / "audit", tmp_path / "elsewhere", tmp_path / "data"
    for folder in (audit_dir, elsewhere, out):
        folder.mkdir()
    (audit_dir / "m.pt2").write_bytes(b"model")
    (elsewhere / "other.pt2").write_bytes(b"another model")
    identity = {"run": "t0", "prompt": "a photo of a {token} {name}", "min_prob": None, "generator": "world",
                "sampling": {}, "seed_base": GENERATE_SEED}
    monkeypatch.chdir(audit_dir)
    (out / SETTINGS).write_text(json.dumps({**identity, "model": _absolute("m.pt2")}))
    monkeypatch.chdir(elsewhere)  # RunConfig.source gives the run's relative model from here as an absolute path
    assert _open_output(out, {**identity, "model": _absolute(str(audit_dir / "m.pt2"))}) == {}
    with pytest.raises(GenerateError, match="different --model"):
        _open_output(out, {**identity, "model": _absolute("other.pt2")})
    (out / SETTINGS).write_text(json.dumps({**identity, "model": "m.pt2"}))  # recorded relative, by an older probe
    monkeypatch.chdir(audit_dir)
    assert _open_output(out, {**identity, "model": _absolute("m.pt2")}) == {}


def test_a_hostile_class_name_stays_inside_out(readme_demo, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    shutil.copytree(readme_demo / "runs" / "demo", run, ignore=shutil.ignore_patterns("report", "analysis*", "findings*"))
    hostile = "../../escaped/<b>\nstar"
    labels = json.loads((run / "labels.json").read_text())
    labels[STAR] = hostile
    (run / "labels.json").write_text(json.dumps(labels))
    out = tmp_path / "sub" / "data"
    code, stdout, err = _cli(monkeypatch, capsys, "generate", str(run), "--classes", str(STAR), "--per-class", "2",
                             "--out", str(out), "--quiet")
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "sub"] and [p.name for p in (tmp_path / "sub").iterdir()] == ["data"]
    folders = [p.name for p in out.iterdir() if p.is_dir()]
    assert folders == ["escaped-b-star"], folders
    rows = _manifest(out)
    assert [r["class_name"] for r in rows] == [hostile, hostile] and all(r["kept"] == "True" for r in rows)
    assert all((out / r["path"]).resolve().is_relative_to(out.resolve()) for r in rows)
    assert any("'../../escaped/<b>\\nstar'" in line for line in stdout), stdout  # one line, escaped


@pytest.mark.parametrize("template, message", [
    ("a photo of a {name}", "has no {token}"),
    ("a photo of a {token} {colour}", "unknown placeholder {colour}"),
    ("a photo of a {token} {}", "unknown placeholder {}"),
    ("a photo of a {token!r}", "unknown placeholder {token!r}"),
    ("a photo of a {token", "not a valid template"),
])
def test_prompt_templates_need_token_and_know_only_token_and_name(template, message):
    with pytest.raises(GenerateError, match=re.escape(message)):
        check_template(template)
    assert check_template("{token} {name} at night, {{literal}}")


def test_bad_settings_are_one_line_before_anything_loads(tmp_path, monkeypatch, capsys):
    code, _, err = _cli(monkeypatch, capsys, "generate", str(tmp_path / "nope"), "--per-class", "0", "--out",
                        str(tmp_path / "d"))
    assert code == 2 and len(err) == 1 and "--per-class" in err[0]
    code, _, err = _cli(monkeypatch, capsys, "generate", str(tmp_path / "nope"), "--per-class", "2", "--out",
                        str(tmp_path / "d"))
    assert code == 2 and len(err) == 1 and "not a probe run directory" in err[0]
    assert not (tmp_path / "d").exists()
