"""Symlinks: a run reached through a link works everywhere; nothing outside the run is read or written through one.

The README's demo run is copied (its attribution overlays included) so that each test may plant links in it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import run_main
from probe.world import bundled_classifier_path

SECRET = b"\x89PNG-not-really: bytes from outside the run"


@pytest.fixture()
def demo_copy(readme_demo, tmp_path) -> Path:
    run = tmp_path / "real" / "run"
    shutil.copytree(readme_demo / "runs" / "demo", run)
    shutil.rmtree(run / "report")
    return run


def _outside_png(tmp_path: Path) -> Path:
    from PIL import Image

    secret = tmp_path / "elsewhere" / "secret.png"
    secret.parent.mkdir()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(secret)
    return secret


def test_a_run_reached_through_a_symlinked_parent_renders(demo_copy, tmp_path, capsys, monkeypatch):
    link = tmp_path / "link"
    link.symlink_to(demo_copy.parent, target_is_directory=True)
    overlays = list((demo_copy / "classes").glob("*/attributions/*/*.png"))
    assert overlays, "the demo run has attribution overlays (the case that failed through a link)"
    for extra in ([], ["--single-file"]):
        code, out, err = run_main(monkeypatch, capsys, "report", str(link / "run"), *extra)
        assert code == 0, err
        assert "outside" not in err, err
    html = (demo_copy / "report" / "index.html").read_text()
    assert "<img" in html and len(list((demo_copy / "report" / "assets").rglob("*.*"))) > 10


def test_an_audit_into_a_symlinked_parent_writes_and_renders(tmp_path, capsys, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_main(monkeypatch, capsys, "audit", "--model", str(bundled_classifier_path("clean")),
                              "--generator", "world", "--classes", "star", "--steps", "2", "--max-steps", "1",
                              "--batch-size", "1", "--eval-images", "1", "--no-analyze", "--device", "cpu", "-q",
                              "--out", "link/run")
    assert code == 0, err
    assert (real / "run" / "report" / "index.html").is_file()
    import json

    metrics = json.loads(next((real / "run" / "classes").glob("*/metrics.json")).read_text())
    assert all(not r["path"].startswith(("/", "..")) for r in metrics["images"])  # stored relative to the class


def test_an_overlay_linked_to_a_file_outside_is_never_copied_or_embedded(demo_copy, tmp_path, capsys, monkeypatch):
    secret = _outside_png(tmp_path)
    overlay = next((demo_copy / "classes").glob("*/attributions/*/*.png"))
    overlay.unlink()
    overlay.symlink_to(secret)
    image = next((demo_copy / "classes").glob("3-star/images/token_*.png"))  # the class read below
    image.unlink()
    image.symlink_to(secret)
    code, out, err = run_main(monkeypatch, capsys, "report", str(demo_copy))
    assert code == 0, err
    copied = [p for p in (demo_copy / "report" / "assets").rglob("*") if p.is_file()]
    assert all(p.read_bytes() != secret.read_bytes() for p in copied)
    code, out, err = run_main(monkeypatch, capsys, "report", str(demo_copy), "--single-file", "--out",
                              str(tmp_path / "single"))
    assert code == 0, err
    import base64

    page = (tmp_path / "single" / "report.html").read_text()
    assert base64.b64encode(secret.read_bytes()).decode() not in page

    import probe

    star = probe.open_run(demo_copy).classes["star"]
    assert all(secret.resolve() != p.resolve() for p in star.images("token"))
    assert image.name not in {p.name for p in star.images("token")}


def test_a_report_folder_linked_out_of_the_run_is_refused(demo_copy, tmp_path, capsys, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    (demo_copy / "report").symlink_to(outside, target_is_directory=True)
    code, out, err = run_main(monkeypatch, capsys, "report", str(demo_copy))
    assert code == 2 and "outside the run" in err and "remove the link" in err, err
    assert [p.name for p in outside.iterdir()] == ["keep.txt"]
