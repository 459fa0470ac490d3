"""A crafted run directory stays data (issue "run is data"): links in the folders probe writes into, links and FIFOs
where it reads its records, images whose header claims billions of pixels, values of the wrong type where the
report reads them, and damaged journal files. Each was found by reading the code and reproduced on a small run
(7 December 2026); before the fixes the report and the comparison wrote into (and pruned files of) a folder outside
the run, labels.json was read from outside it, a FIFO hung `probe report`, and the rest ended in a traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import probe_script, run_main
from run_files import make_valid_run


@pytest.fixture(scope="module")
def valid_run(tmp_path_factory) -> Path:
    return make_valid_run(tmp_path_factory.mktemp("links") / "run")


@pytest.fixture()
def run(valid_run, tmp_path) -> Path:
    return Path(shutil.copytree(valid_run, tmp_path / "run", symlinks=True))


def _victim(tmp_path: Path, name: str = "victim") -> Path:
    """A folder outside the run holding a file named like a report page (what the report's pruning removes)."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "7-notes.html").write_text("mine")
    return folder


def test_a_report_subfolder_linked_out_of_the_run_is_refused_and_nothing_outside_changes(run, tmp_path, capsys,
                                                                                           monkeypatch):
    code, _, err = run_main(monkeypatch, capsys, "report", str(run))
    assert code == 0, err
    victim = _victim(tmp_path)
    shutil.rmtree(run / "report" / "classes")
    (run / "report" / "classes").symlink_to(victim, target_is_directory=True)
    code, _, err = run_main(monkeypatch, capsys, "report", str(run))
    assert code == 2 and "is a link to" in err and "remove the link" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in victim.iterdir()) == ["7-notes.html"]  # nothing written, nothing pruned
    # a link deeper down (the thumbnails' folder) likewise
    (run / "report" / "classes").unlink()
    assets = _victim(tmp_path, "assets-victim")
    shutil.rmtree(run / "report" / "assets")
    (run / "report" / "assets").symlink_to(assets, target_is_directory=True)
    code, _, err = run_main(monkeypatch, capsys, "report", str(run))
    assert code == 2 and "assets" in err and "is a link to" in err, err
    assert sorted(p.name for p in assets.iterdir()) == ["7-notes.html"]
    # --out elsewhere is the user's own folder: the crafted links in the run's report/ do not matter there
    code, _, err = run_main(monkeypatch, capsys, "report", str(run), "--out", str(tmp_path / "mine"))
    assert code == 0 and (tmp_path / "mine" / "index.html").is_file(), err


def test_the_comparisons_default_folder_linked_out_of_run_b_is_refused(run, tmp_path, capsys, monkeypatch):
    other = Path(shutil.copytree(run, tmp_path / "other"))
    victim = _victim(tmp_path)
    (other / f"compare-{run.name}").symlink_to(victim, target_is_directory=True)
    code, _, err = run_main(monkeypatch, capsys, "compare", str(run), str(other))
    assert code == 2 and "is a link to" in err and "remove the link" in err, err
    assert sorted(p.name for p in victim.iterdir()) == ["7-notes.html"]


def test_records_linked_out_of_the_run_are_refused_and_class_folders_linked_out_are_no_classes(run, tmp_path, capsys,
                                                                                                 monkeypatch):
    from probe.errors import RunError
    from probe.run import RunDir

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "labels.json").write_text(json.dumps(["SECRET-from-outside"] * 3))
    (run / "labels.json").unlink()
    (run / "labels.json").symlink_to(elsewhere / "labels.json")
    with pytest.raises(RunError, match="outside the run"):
        RunDir(run).read_labels()
    code, out, err = run_main(monkeypatch, capsys, "check", str(run), "--max-effect", "0.3")
    assert code == 2 and "labels.json" in err and "outside the run" in err, (out, err)
    # a class folder that is a link out of the run is not one of its classes
    (run / "labels.json").unlink()
    shutil.copy(elsewhere / "labels.json", run / "labels.json")
    stolen = elsewhere / "cls"
    shutil.copytree(next((run / "classes").iterdir()), stolen)
    (run / "classes" / "9-stolen").symlink_to(stolen, target_is_directory=True)
    assert all(d.name != "9-stolen" for d in RunDir(run).class_dirs())


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_in_place_of_a_record_is_one_line_not_a_hang(run):
    (run / "labels.json").unlink()
    os.mkfifo(run / "labels.json")
    # subprocesses with a timeout: before the fix, opening the FIFO blocked for ever
    done = subprocess.run([probe_script(), "check", str(run), "--max-effect", "0.3"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2 and "labels.json" in done.stderr and "not a regular file" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    done = subprocess.run([probe_script(), "report", str(run)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # the report is lenient: it renders and names the file on the page
    page = (run / "report" / "index.html").read_text()
    assert "labels.json" in page and "not a regular file" in page


def test_an_image_whose_header_claims_a_billion_pixels_is_a_warning_not_a_failed_report(run, capsys, monkeypatch):
    import struct
    import zlib

    image = next(run.glob("classes/*/images/*.png"))
    data = bytearray(image.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", 30000, 30000)  # 900 million pixels, above twice PIL's limit: it refuses
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # a valid header, so only its size is wrong
    image.write_bytes(bytes(data))
    code, out, err = run_main(monkeypatch, capsys, "report", str(run))
    assert code == 0 and "Traceback" not in out + err, err
    page = (run / "report" / "index.html").read_text()  # the report's warnings, on its first page
    assert image.name in page and "cannot be read (DecompressionBombError)" in page


def test_gallery_records_of_mixed_types_still_render(run, capsys, monkeypatch):
    metrics = next(run.glob("classes/*/metrics.json"))
    data = json.loads(metrics.read_text())
    baseline = [r for r in data["images"] if r["kind"] == "baseline"]
    data["images"] += [dict(baseline[0], prompt_index="x"), dict(baseline[0], prompt_index=1, seed="7")]
    metrics.write_text(json.dumps(data))
    code, out, err = run_main(monkeypatch, capsys, "report", str(run))
    assert code == 0 and "Traceback" not in out + err, err


def test_a_null_bar_in_analysis_json_compares_at_the_default_bar(run, tmp_path, capsys, monkeypatch):
    analysis = json.loads((run / "analysis.json").read_text())
    analysis["config"]["thresholds"]["min_effect"] = None
    (run / "analysis.json").write_text(json.dumps(analysis))
    other = Path(shutil.copytree(run, tmp_path / "other"))
    code, out, err = run_main(monkeypatch, capsys, "compare", str(run), str(other), "--out", str(tmp_path / "cmp"))
    assert code == 0 and "Traceback" not in out + err, err


def test_damaged_or_foreign_journal_files_are_skipped_and_counted(tmp_path):
    """A resumed analysis reads back what the journal holds and skips the rest; these files crashed it."""
    import numpy as np

    from probe.run.journal import Journal, Journalled

    folder = tmp_path / "journal"
    kept = Journalled((np.array([0.1, 0.2, 0.7], np.float32),), {"background": "grass"}, None, None)
    Journal(folder, (3,)).append([("a photo of a star", 1, None, kept)])
    (folder / "0000007.npz").write_bytes(b"")  # empty: np.load raised EOFError through the resume
    (folder / "0000008.npz").write_bytes(b"PK\x03\x04 not a zip")  # BadZipFile
    (folder / "\u00b2.npz").write_bytes(b"")  # "²".isdigit() is True, and int("²") raised ValueError
    damaged = 3
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "0000009.npz")  # np.load would block on it for ever
        damaged += 1
    reread = Journal(folder, (3,))
    got = reread.get("a photo of a star", 1, None)
    assert got is not None and got.reading == {"background": "grass"} and len(reread) == 1
    assert reread.skipped_files == damaged


def test_lock_files_and_the_claims_folder_linked_out_of_the_run_are_refused(run, tmp_path):
    """A writer wrote its pid through a linked .probe.lock, and created claim files in a linked .probe-claims."""
    from probe.errors import RunError
    from probe.run import RunDir

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("mine")
    (run / ".probe.lock").symlink_to(outside / "victim.txt")
    with pytest.raises(RunError, match="is a link to .*remove the link"):
        with RunDir(run).lock():
            pass
    (run / ".probe.lock").unlink()
    (run / ".probe-claims").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RunError, match="is a link to .*remove the link"):
        with RunDir(run).claim(3):
            pass
    assert sorted(p.name for p in outside.iterdir()) == ["victim.txt"] and (outside / "victim.txt").read_text() == "mine"


def test_a_class_is_never_rewritten_through_a_linked_classes_folder(tmp_path):
    """An audit resumed into a run whose classes/ links elsewhere would have deleted the class's folder there
    (shutil.rmtree refuses a link itself, not a path through a linked parent)."""
    from probe.auditing.class_run import _run_claimed
    from probe.errors import RunError
    from probe.run import RunDir

    outside, run = tmp_path / "outside", tmp_path / "run"
    (outside / "3-star").mkdir(parents=True)
    (outside / "3-star" / "keep.txt").write_text("mine")
    run.mkdir()
    (run / "classes").symlink_to(outside, target_is_directory=True)
    with pytest.raises(RunError, match="outside the run"):
        _run_claimed(RunDir(run), run / "classes" / "3-star", None, None, None, None, None, 3, "star", on_step=None,
                     worker=None)
    assert (outside / "3-star" / "keep.txt").read_text() == "mine"


def test_probe_confirm_refuses_a_linked_thumbnail_folder_before_reading_anything(run, tmp_path, capsys, monkeypatch):
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "confirmation").symlink_to(outside, target_is_directory=True)
    val = tmp_path / "val" / "class-0"
    val.mkdir(parents=True)
    code, out, err = run_main(monkeypatch, capsys, "confirm", str(run), "--val-data", str(tmp_path / "val"),
                              "--no-report")
    assert code == 2 and "confirmation" in err and "remove the link" in err and len(err.strip().splitlines()) == 1, err
    assert list(outside.iterdir()) == []


def test_a_class_named_by_its_token_only_shows_its_label_not_none(run, capsys, monkeypatch):
    """metrics.json's class_name is null for a class the audit prompted by its token alone: the report named it
    "None"; it takes the run's label."""
    metrics = next(run.glob("classes/*/metrics.json"))
    data = json.loads(metrics.read_text())
    label = json.loads((run / "labels.json").read_text())[data["class_index"]]
    data["class_name"] = None
    metrics.write_text(json.dumps(data))
    code, out, err = run_main(monkeypatch, capsys, "report", str(run))
    assert code == 0, err
    index = (run / "report" / "index.html").read_text()
    assert label in index and ">None<" not in index and " None " not in index


def test_labels_reach_the_terminal_without_escape_codes_in_the_progress_lines():
    """The progress bar's class line, the Ray line and a failed class's line printed labels (and error text) with
    rich markup escaped but terminal escape codes live: an OSC title change or a screen clear from a label."""
    import io

    from rich.console import Console

    from probe.progress import AuditProgress

    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, width=200)
    hostile = "\x1b]0;pwned\x1b\\dog\x1b[2J"
    with AuditProgress(1, 0, 3, console=console) as bar:
        bar.start_class(0, hostile)
        bar.in_flight([(0, hostile)])
        bar.finish_class(0, hostile, ok=False, detail=hostile)
        bar.note(hostile)
    shown = buffer.getvalue()
    assert "\x1b]0;pwned" not in shown and "\x1b[2J" not in shown and "dog" in shown


def test_the_notebook_view_shows_no_evidence_from_outside_the_run(run, tmp_path):
    """Run._repr_html_ embedded a finding's evidence images as data: URIs from wherever findings.json pointed (an
    absolute path, ../): a shared run could pull any image on the reader's disk into a notebook they publish."""
    import numpy as np
    from PIL import Image

    import probe

    secret = tmp_path / "secret.png"
    Image.fromarray(np.full((8, 8, 3), 7, np.uint8)).save(secret)
    inside = next(run.glob("classes/*/images/*.png")).relative_to(run).as_posix()
    findings = json.loads((run / "findings.json").read_text())
    for f in findings:
        f["evidence"] = [str(secret), "../secret.png"]
    next(f for f in findings if f["passes"])["evidence"].append(inside)  # the run's own image is still shown
    (run / "findings.json").write_text(json.dumps(findings))
    (run / "findings.parquet").unlink(missing_ok=True)
    assert probe.open_run(run)._repr_html_().count("data:image/png") == 1


def test_a_comparisons_text_form_carries_no_escape_codes_and_its_links_no_scheme(run, tmp_path):
    from probe.comparison import compare
    from probe.report.compare_page import relative_link

    hostile = "\x1b]0;pwned\x1b\\x"
    labels = json.loads((run / "labels.json").read_text())
    labels[0] = hostile
    (run / "labels.json").write_text(json.dumps(labels))
    metrics = next(run.glob("classes/0-*/metrics.json"))
    metrics.write_text(json.dumps({**json.loads(metrics.read_text()), "class_name": hostile}))
    other = Path(shutil.copytree(run, tmp_path / "other"))
    for folder in other.glob("classes/0-*"):  # class 0 finished in A only: the text form names it as skipped
        shutil.rmtree(folder)
    text = repr(compare(run, other))
    assert "skipped" in text and "pwned" in text and "\x1b" not in text, text
    page = tmp_path / "cmp"
    page.mkdir()
    assert relative_link(page / "javascript:alert(1)" / "report" / "index.html", page).startswith("./javascript:")
    assert relative_link(tmp_path / "run" / "report" / "index.html", page).startswith("../")
