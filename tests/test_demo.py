"""probe demo end to end at reduced size: the bundled world, the real CLI path, and the planted cue found."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import probe_script
from probe.world import bundled_bias


def referenced_files(page: Path) -> list[Path]:
    """Every local file a report page points at (images, styles, scripts, links)."""
    text = page.read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"#:]+)"', text)
    return [page.parent / ref for ref in refs if ref and not ref.startswith(("http", "data"))]


def test_the_readme_demo_leaves_a_report_with_every_image(readme_demo):
    run = readme_demo / "runs" / "demo"
    index = run / "report" / "index.html"
    assert index.is_file()
    pages = [index, *sorted((run / "report" / "classes").glob("*.html"))]
    star_page = next(p for p in pages if p.name == "3-star.html")
    assert "attribution" in star_page.read_text(encoding="utf-8").lower()
    for page in pages:
        missing = [str(p) for p in referenced_files(page) if not p.is_file()]
        assert not missing, (page, missing[:5])
    stored = json.loads((run / "analysis.json").read_text())
    assert not any(str(readme_demo) in json.dumps(v) for v in stored.get("classes", {}).values())
    findings = json.loads((run / "findings.json").read_text())
    for finding in findings:
        for path in finding["evidence"]:
            assert not Path(path).is_absolute() and (run / path).is_file(), path


def test_the_demo_finds_the_planted_grass_cue_of_star(readme_demo):
    run = readme_demo / "runs" / "demo"
    metrics = json.loads((run / "classes" / "3-star" / "metrics.json").read_text())
    assert metrics["status"] == "done"
    assert metrics["token"]["mean_target_prob"] > metrics["baseline"]["mean_target_prob"]
    findings = [f for f in json.loads((run / "findings.json").read_text()) if f["class_name"] == "star"]
    passing = [f for f in findings if f["passes"]]
    # grass passes; snow may rank above it: the classifier truly prefers snow for stars too (true_effects +0.26)
    assert any(f["cue"] == "grass" and f["n_images"] >= 16 for f in passing), [f["sentence"] for f in findings[:6]]
    assert bundled_bias("biased")["star"] == {"background": "grass"}


def test_a_moved_run_rerenders_from_another_directory(readme_demo, tmp_path):
    """Runs travel: move the run anywhere, re-render with a relative path from another working directory."""
    moved = tmp_path / "elsewhere" / "moved-run"
    shutil.copytree(readme_demo / "runs" / "demo", moved)
    shutil.rmtree(moved / "report")
    done = subprocess.run([probe_script(), "report", "elsewhere/moved-run"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    index = moved / "report" / "index.html"
    assert index.is_file()
    for page in [index, *(moved / "report" / "classes").glob("*.html")]:
        assert all(p.is_file() for p in referenced_files(page)), page
    assert "attribution" in (moved / "report" / "classes" / "3-star.html").read_text(encoding="utf-8").lower()


def test_planted_cue_recovery_needs_a_passing_top_finding_with_the_planted_value():
    from probe.analysis import Finding
    from probe.world.demo import planted_cue_recovery

    def finding(index, value, passes, kind="necessity"):
        return Finding(class_index=index, class_name=["circle", "star"][index], cue=value, kind=kind, effect=0.5,
                       ci_low=0.2, ci_high=0.8, n_images=8, evidence=(), passes=passes, strength="strong",
                       sentence=value, details={"value": value})

    labels = ["circle", "star"]
    planted = {"star": {"background": "grass"}}
    off_object_first = [finding(1, "off-object", True, kind="off-object"), finding(1, "grass", True)]
    assert planted_cue_recovery(off_object_first, labels, planted)[0].recovered
    assert not planted_cue_recovery([finding(1, "snow", True), finding(1, "grass", True)], labels, planted)[0].recovered
    assert not planted_cue_recovery([finding(1, "grass", False)], labels, planted)[0].recovered
    assert not planted_cue_recovery([finding(0, "grass", True)], labels, planted)[0].recovered
