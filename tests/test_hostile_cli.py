"""Hostile and careless input at the command line: a table of cases, so the count can only grow.

Each case runs the real CLI entry point (``probe.cli.main``) from a fresh working directory and checks the
promise: the expected exit code, a one-line error naming the problem and the fix, no traceback, and nothing
written anywhere but the run directory (for input errors: nothing at all). Model files that would run code
are in tests/test_hostile_models.py.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_main
from probe.world import bundled_classifier_path

CLEAN = str(bundled_classifier_path("clean"))
# the smallest real audit: the bundled world, one class, one step, one evaluation image, no analysis or report
FAST = ["--generator", "world", "--classes", "star", "--steps", "2", "--max-steps", "1", "--batch-size", "1",
        "--eval-images", "1", "--no-analyze", "--no-report", "--device", "cpu", "-q"]


def run_cli(args: list[str], cwd: Path, capsys, monkeypatch) -> tuple[int, str]:
    """``probe ARGS`` in ``cwd``, in this process: (exit code, stderr + stdout)."""
    monkeypatch.chdir(cwd)
    capsys.readouterr()
    code, out, err = run_main(monkeypatch, capsys, *args)
    return code, err + out


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    code: int
    message: str  # a fragment the error must contain
    setup: str | None = None  # what to put into the working directory first


def _write(cwd: Path, setup: str | None) -> None:
    if setup == "cues-missing":
        return
    files = {
        "cues-empty": ("cues.txt", "# nothing here\n"),
        "cues-badjson": ("cues.json", "{not json"),
        "cues-dup": ("cues.txt", "{} on grass\n{} on grass\n"),
        "out-is-file": ("taken", "a file\n"),
        "labels-nul": ("labels.txt", "circle\nsq\x00uare\ntriangle\nstar\ncross\nheart\n"),
    }
    if setup in files:
        name, text = files[setup]
        (cwd / name).write_text(text)


CASES = [
    Case("no arguments", [], 2, "Usage"),
    Case("missing --model", ["audit"], 2, "Missing option '--model'"),
    Case("unknown flag", ["audit", "--model", CLEAN, "--bogus"], 2, "No such option: --bogus"),
    Case("non-integer --steps", ["audit", "--model", CLEAN, "--steps", "abc"], 2, "Invalid value for '--steps'"),
    Case("--input-size as a tuple", ["audit", "--model", CLEAN, "--input-size", "1,28,28"], 2,
         "Invalid value for '--input-size'"),
    Case("report without a run", ["report"], 2, "Missing argument"),
    Case("unknown command", ["nope"], 2, "No such command 'nope'"),
    Case("cues file missing", ["audit", "--model", CLEAN, "--cues", "nowhere.txt"], 2,
         "cues file 'nowhere.txt' does not exist", "cues-missing"),
    Case("cues file empty", ["audit", "--model", CLEAN, "--cues", "cues.txt"], 2, "holds no cues", "cues-empty"),
    Case("cues file not JSON", ["audit", "--model", CLEAN, "--cues", "cues.json"], 2, "is not valid JSON",
         "cues-badjson"),
    Case("cues with duplicate names", ["audit", "--model", CLEAN, "--cues", "cues.txt"], 2, "repeats cue names",
         "cues-dup"),
    Case("unknown scheduler", ["audit", "--model", CLEAN, "--scheduler", "bogus"], 2, "--scheduler 'bogus' is unknown"),
    Case("grad steps above steps", ["audit", "--model", CLEAN, "--steps", "10", "--grad-steps", "100"], 2,
         "--grad-steps 100 exceeds --steps 10"),
    Case("grad steps above the generator's steps", ["audit", "--model", CLEAN, "--generator", "world",
                                                    "--grad-steps", "100", "--device", "cpu"], 2,
         "--grad-steps 100 exceeds the"),
    Case("negative steps", ["audit", "--model", CLEAN, "--steps", "-3"], 2, "--steps -3 must be at least 1"),
    Case("zero steps", ["audit", "--model", CLEAN, "--steps", "0"], 2, "--steps 0 must be at least 1"),
    Case("NaN guidance", ["audit", "--model", CLEAN, "--guidance-scale", "nan"], 2, "--guidance-scale nan"),
    Case("NaN learning rate", ["audit", "--model", CLEAN, "--lr", "nan"], 2, "--lr nan"),
    Case("crop outside (0, 1]", ["audit", "--model", CLEAN, "--crop-pct", "1.5"], 2, "--crop-pct 1.5 must be in (0, 1]"),
    Case("unknown dtype", ["audit", "--model", CLEAN, "--dtype", "fp8"], 2, "--dtype 'fp8' is unknown"),
    Case("--out is a file", ["audit", "--model", CLEAN, "--out", "taken", *FAST], 2, "is a file, not a run directory",
         "out-is-file"),
    Case("--out below a file", ["audit", "--model", CLEAN, "--out", "taken/run", *FAST], 2,
         "cannot create --out 'taken/run': ", "out-is-file"),
    Case("missing model file", ["audit", "--model", "models/nope.pt2", *FAST], 2, "does not exist"),
    Case("superscript class index", ["audit", "--model", CLEAN, "--generator", "world", "--classes", "²", "--device", "cpu"], 2, "unknown class"),
    Case("report of a folder that is no run", ["report", "."], 2, "not a probe run directory"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_line_and_writes_nothing(case, tmp_path, capsys, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    _write(cwd, case.setup)
    before = files_under(tmp_path)
    code, text = run_cli(case.args, cwd, capsys, monkeypatch)
    assert code == case.code, text
    assert case.message in " ".join(text.split()), text
    assert "Traceback" not in text
    if case.code == 2 and case.args:
        errors = [line for line in text.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, text  # one line: the problem and the fix
    assert files_under(tmp_path) == before, "an input error wrote files"


def test_sampling_options_are_checked_before_any_model_loads(tmp_path, capsys, monkeypatch):
    """A bad option is reported even when the model cannot be loaded at all: nothing was loaded first."""
    code, text = run_cli(["audit", "--model", "missing.pt2", "--scheduler", "bogus"], tmp_path, capsys, monkeypatch)
    assert code == 2 and "--scheduler 'bogus'" in text, text


def test_a_wrong_attribution_layer_is_refused_before_any_token_is_learned(tmp_path, capsys, monkeypatch):
    """--attribution-layer net.bogus was found only by the analysis, after every token, and "run the same command
    again" failed the same way (found by review, 7 December 2026): it is checked once the classifier loads."""
    code, text = run_cli(["audit", "--model", CLEAN, "--out", "runs/r", *FAST, "--analyze", "--attribution-layer",
                          "net.bogus"], tmp_path, capsys, monkeypatch)
    lines = [line for line in text.splitlines() if line.strip()]
    assert code == 2 and lines[-1].startswith("error: --attribution-layer: attribution layer 'net.bogus' is not a "
                                              "module"), text
    assert "Traceback" not in text and not (tmp_path / "runs").exists()


def test_a_wrong_attribution_layer_is_refused_with_attributions_off(tmp_path, capsys, monkeypatch):
    """`--attributions none --attribution-layer net.bogus`: the check returned early with attributions off, but the
    off-object measure runs Grad-CAM on the named layer there (commit 57cc2bf), so the analysis failed after every
    token. The layer is checked whenever something will use it."""
    code, text = run_cli(["audit", "--model", CLEAN, "--out", "runs/r", *FAST, "--analyze", "--attributions", "none",
                          "--attribution-layer", "net.bogus"], tmp_path, capsys, monkeypatch)
    lines = [line for line in text.splitlines() if line.strip()]
    assert code == 2 and lines[-1].startswith("error: --attribution-layer: attribution layer 'net.bogus' is not a "
                                              "module"), text
    assert "Traceback" not in text and not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------------- resume
def _audit(cwd, capsys, monkeypatch, *extra):
    return run_cli(["audit", "--model", CLEAN, "--out", "runs/r", *FAST, *extra], cwd, capsys, monkeypatch)


@pytest.fixture()
def finished_run(tmp_path, capsys, monkeypatch) -> Path:
    code, text = _audit(tmp_path, capsys, monkeypatch)
    assert code == 0, text
    return tmp_path / "runs" / "r"


def _star(run: Path) -> Path:
    return run / "classes" / "3-star" / "metrics.json"


@pytest.mark.parametrize("damage", ["metrics-list", "baseline-number"])
def test_resume_redoes_a_class_whose_metrics_have_the_wrong_shape(damage, finished_run, capsys, monkeypatch):
    metrics = json.loads(_star(finished_run).read_text())
    _star(finished_run).write_text(json.dumps([metrics] if damage == "metrics-list" else {**metrics, "baseline": 5}))
    code, text = _audit(finished_run.parents[1], capsys, monkeypatch)
    assert code == 0, text
    assert json.loads(_star(finished_run).read_text())["status"] == "done"


def test_resume_refuses_a_config_of_the_wrong_shape(finished_run, capsys, monkeypatch):
    (finished_run / "config.json").write_text("[1, 2]")
    code, text = _audit(finished_run.parents[1], capsys, monkeypatch)
    assert code == 2 and "is not a probe run config" in text, text
    assert _star(finished_run).is_file()  # nothing computed is lost


def test_resume_refuses_another_precision_or_held_out_classifier(finished_run, capsys, monkeypatch):
    """A resume with --dtype bf16, or with another --eval-model, was accepted: later classes learned in another
    precision, or evaluated by another classifier, than config.json records (found by review, 7 December 2026)."""
    before = _star(finished_run).read_bytes()
    code, text = _audit(finished_run.parents[1], capsys, monkeypatch, "--classes", "star,heart", "--dtype", "bf16")
    assert code == 2 and "was started with the generator in float32, and it loaded in bfloat16 here" in text, text
    code, text = _audit(finished_run.parents[1], capsys, monkeypatch, "--classes", "star,heart", "--eval-model", CLEAN)
    assert code == 2 and "holds a run with a different eval_model" in text, text
    assert _star(finished_run).read_bytes() == before  # nothing computed is lost


def test_a_second_audit_into_a_locked_run_is_refused(finished_run, capsys, monkeypatch):
    from probe.run import RunDir

    before = _star(finished_run).read_bytes()
    with RunDir(finished_run).lock():
        code, text = _audit(finished_run.parents[1], capsys, monkeypatch, "--retry-failed")
    assert code == 2 and "in use by another probe audit" in text and ".probe.lock" in text, text
    assert _star(finished_run).read_bytes() == before


def test_the_lock_is_released_when_the_holder_dies(finished_run):
    """An OS file lock: a killed audit leaves no stale lock behind."""
    from probe.run import RunDir

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from probe.run import RunDir\n"
                               f"with RunDir({str(finished_run)!r}).lock():\n print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    from probe.errors import RunError

    with pytest.raises(RunError, match="in use"):
        with RunDir(finished_run).lock():
            pass
    holder.kill()
    holder.wait()
    with RunDir(finished_run).lock():
        pass


def test_a_report_failure_after_an_audit_exits_nonzero_and_names_the_retry(finished_run, capsys, monkeypatch):
    (finished_run / "report").write_text("a file where the report folder goes")
    args = [a for a in FAST if a != "--no-report"]
    code, text = run_cli(["audit", "--model", CLEAN, "--out", "runs/r", *args], finished_run.parents[1], capsys,
                         monkeypatch)
    assert code == 1, text
    assert "report failed" in text and "probe report runs/r" in text, text


def test_probe_report_failure_is_one_line_with_exit_2(finished_run, capsys, monkeypatch):
    code, text = run_cli(["report", "runs/r", "--out", "runs/r/classes/x"], finished_run.parents[1], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in text and "mix report pages" in text, text


# ------------------------------------------------------------------------------------ files and folders
def test_run_files_follow_the_umask(tmp_path, capsys, monkeypatch):
    old = os.umask(0o027)
    try:
        code, text = _audit(tmp_path, capsys, monkeypatch)
    finally:
        os.umask(old)
    assert code == 0, text
    run = tmp_path / "runs" / "r"
    for path in (run / "config.json", _star(run), run / "summary.csv", run / "classes" / "3-star" / "token.safetensors"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


def test_write_json_is_strict_json_and_honours_the_umask(tmp_path):
    from probe.files import write_json

    old = os.umask(0o022)
    try:
        path = write_json(tmp_path / "x.json", {"a": float("nan"), "b": [float("inf"), 1.5]})
    finally:
        os.umask(old)
    assert json.loads(path.read_text()) == {"a": None, "b": [None, 1.5]}
    assert "NaN" not in path.read_text() and stat.S_IMODE(path.stat().st_mode) == 0o644


def _as_nobody() -> list[str] | None:
    """A command prefix that drops root (root ignores file permissions), or None where that is impossible."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]


def test_a_read_only_run_directory_gets_one_line(finished_run):
    prefix = _as_nobody()
    if prefix is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    for path in [finished_run, *finished_run.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    for p in finished_run.parents[:3]:
        p.chmod(0o755)
    probe = str(Path(sys.executable).with_name("probe"))
    try:
        for args in (["report", str(finished_run)], ["audit", "--model", CLEAN, "--out", str(finished_run), *FAST],
                     ["audit", "--model", CLEAN, "--out", str(finished_run / "new"), *FAST]):
            done = subprocess.run([*prefix, probe, *args], capture_output=True, text=True, timeout=120,
                                  cwd="/", env={**os.environ, "HOME": "/tmp"})
            text = done.stderr + done.stdout
            assert done.returncode == 2, (args, text)
            # report: the run's files cannot be written; audit: the run (or the folder it goes in) is read-only
            assert "Traceback" not in text, (args, text)
            assert any(w in text for w in ("read-only", "cannot write", "Permission denied")), (args, text)
    finally:
        for path in [finished_run, *finished_run.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_an_input_error_leaves_no_run_directory(tmp_path, capsys, monkeypatch):
    code, text = run_cli(["audit", "--model", "models/nope.pt2", "--out", "runs/x", *FAST], tmp_path, capsys, monkeypatch)
    assert code == 2 and not (tmp_path / "runs").exists(), text


def test_a_nul_byte_in_a_label_never_reaches_the_html(tmp_path, capsys, monkeypatch):
    _write(tmp_path, "labels-nul")
    args = [a for a in FAST if a not in ("--no-report",)]
    code, text = run_cli(["audit", "--model", CLEAN, "--labels", "labels.txt", "--classes", "1", "--out", "runs/r",
                          *[a for a in args if a not in ("--classes", "star")]], tmp_path, capsys, monkeypatch)
    assert code == 0, text
    pages = list((tmp_path / "runs" / "r" / "report").rglob("*.html"))
    assert pages and all("\x00" not in p.read_text(encoding="utf-8") for p in pages)
    assert any("sq\ufffduare" in p.read_text(encoding="utf-8") for p in pages)


def test_a_bug_in_the_analysis_keeps_the_run_and_says_how_to_see_its_traceback(finished_run, capsys, monkeypatch):
    """An unexpected error after the tokens is one warning that keeps the run and names PROBE_DEBUG=1; with it set,
    the traceback follows (it used to be swallowed: PROBE_DEBUG=1 printed the same line, and a user could not tell
    where it happened)."""
    import probe.analysis

    def boom(*args, **kwargs):
        raise RuntimeError("boom in the analysis")

    monkeypatch.setattr(probe.analysis, "analyze_run", boom)
    args = [a for a in FAST if a != "--no-analyze"]
    code, text = run_cli(["audit", "--model", CLEAN, "--out", "runs/r", *args], finished_run.parents[1], capsys,
                         monkeypatch)
    assert code == 1 and "analysis failed (RuntimeError: boom in the analysis)" in text, text
    assert "PROBE_DEBUG=1 shows the traceback" in text and "Traceback" not in text, text
    assert _star(finished_run).is_file()  # the token is kept
    monkeypatch.setenv("PROBE_DEBUG", "1")
    code, text = run_cli(["audit", "--model", CLEAN, "--out", "runs/r", *args], finished_run.parents[1], capsys,
                         monkeypatch)
    assert code == 1 and "Traceback (most recent call last)" in text and "in boom" in text, text


def test_the_analysis_says_what_it_runs_next_unless_quiet(finished_run, capsys, monkeypatch):
    """The analysis can run longer than the tokens (an hour on a GPU for many classes): without -q each of its steps
    is one line on stderr, where it used to be silent after the classes' bar; -q keeps it quiet."""
    import probe.analysis

    def steps(*args, progress=None, **kwargs):
        assert callable(progress) or progress is None
        if progress is not None:
            progress("analysis: screening necessity, 2 cues x 1 classes x 4 seeds")

    monkeypatch.setattr(probe.analysis, "analyze_run", steps)
    args = [a for a in FAST if a not in ("--no-analyze", "-q")]
    code, text = run_cli(["audit", "--model", CLEAN, "--out", "runs/r", *args], finished_run.parents[1], capsys,
                         monkeypatch)
    assert code == 0 and "analysis: screening necessity, 2 cues x 1 classes x 4 seeds" in text, text
    code, text = run_cli(["audit", "--model", CLEAN, "--out", "runs/r", *args, "-q"], finished_run.parents[1], capsys,
                         monkeypatch)
    assert code == 0 and "analysis:" not in text, text


def test_balance_progress_lines_print_class_names_as_text_not_markup(tmp_path, capsys, monkeypatch):
    """`probe generate --balance` printed its progress lines through rich markup: a class named "[/]" (a label is
    the user's data) raised rich's MarkupError, and "[red]x" was coloured. Now every progress line is escaped text."""
    from types import SimpleNamespace

    import probe.balance

    def fake(run_dir, out, config, progress=None):
        progress("balance: class '[/]' with its cue: 2 of 4 kept; '[red]x' without it")
        return SimpleNamespace(lines=lambda: [], out=str(out), kept=2, dropped=2, checked_by="world oracles",
                               manifest=str(out / "manifest.csv"))

    monkeypatch.setattr(probe.balance, "generate_balance", fake)
    code, text = run_cli(["generate", str(tmp_path / "run"), "--balance", "x:y", "--per-class", "2", "--out",
                          str(tmp_path / "data")], tmp_path, capsys, monkeypatch)
    assert code == 0, text
    assert "balance: class '[/]' with its cue: 2 of 4 kept; '[red]x' without it" in text, text
    # the result line stays one line (it broke at 80 columns): paths are copied from it
    assert any(line.startswith("balance dataset: ") and "manifest: " in line for line in text.splitlines()), text
