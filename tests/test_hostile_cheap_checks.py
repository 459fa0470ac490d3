"""Cheap checks before expensive work, and the low items of issue 23 (items 8 and 9), as a table of cases.

Each case runs the real CLI entry point (``probe.cli.main``) in this process with model loading replaced by a
tripwire (``no_models``): the promise is exit 2, one ``error:`` line naming the problem and the fix, no traceback,
nothing written, within seconds, and no model loaded. The runs the cases point at are two small analysed runs of
the fake world (tests/analysis_fakes.py, a few seconds), shared by the module.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import probe_script
from test_hostile_cli import CLEAN, FAST, _as_nobody, files_under, run_cli

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    """A local port nothing listens on (bound, then released): a connect there is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = _free_port()
HAS_GPU = importlib.util.find_spec("torch") is not None and __import__("torch").cuda.is_available()
HAS_RAY = importlib.util.find_spec("ray") is not None
HAS_RAY_CLIENT = importlib.util.find_spec("grpc") is not None
AUDIT = ["audit", "--model", CLEAN, "--out", "runs/x", *FAST]
RAY = [*AUDIT, "--backend", "ray"]
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="Ray is not installed (pip install -e '.[ray]')")


@pytest.fixture()
def no_models(monkeypatch):
    """A tripwire: loading a model fails the test (the checks under test must come first)."""
    import probe.auditing.class_run
    import probe.auditing.loop

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the cheap checks")

    monkeypatch.setattr(probe.auditing.class_run, "load_models", refuse)
    monkeypatch.setattr(probe.auditing.loop, "load_models", refuse)


@pytest.fixture(scope="module")
def silent_port():
    """A port whose connects hang, as a firewalled or wrong host's do: a listening socket whose accept queue is
    full (further SYNs are dropped). A routable address cannot stand in: some sandboxes answer any TCP connect."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port, held = server.getsockname()[1], []
    for _ in range(4):
        client = socket.socket()
        client.settimeout(0.5)
        try:
            client.connect(("127.0.0.1", port))
            held.append(client)
        except OSError:
            client.close()
            break
    yield port
    for client in held:
        client.close()
    server.close()


@pytest.fixture(scope="module")
def fake_runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two analysed runs of the fake world on the same seeds (A: planted cue, B: clean), as tests/test_compare.py
    makes them."""
    from test_compare import CUE_TESTS, _audit

    root = tmp_path_factory.mktemp("cheap")
    a, _ = _audit(root, "biased", True)
    b, _ = _audit(root, "clean", False, CUE_TESTS.replace(confirm_like=str(a)))
    return a, b


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]  # {A} and {B}: the two runs' paths
    message: str  # a fragment the one error line must contain
    env: dict = field(default_factory=dict)
    seconds: float = 20.0  # the check must answer within this (Ray's own retries take minutes)


GENERATE = ["generate", "{A}", "--out", "data"]
CASES = [
    # counts that size memory: bounded, the implied size in the message, before any model loads
    Case("generate --per-class 10^12", [*GENERATE, "--per-class", "1000000000000"], "10^12 images per class"),
    Case("generate --per-class names its bound", [*GENERATE, "--per-class", "1000001"], "use at most 1,000,000"),
    Case("generate --max-attempts 10^12", [*GENERATE, "--per-class", "5", "--min-prob", "0.5", "--max-attempts",
                                          "1000000000000"], "use at most 4,000,000"),
    Case("generate --batch-size 10^9", [*GENERATE, "--per-class", "5", "--batch-size", "1000000000"],
         "use at most 1024"),
    Case("audit --batch-size 10^9", [*AUDIT, "--batch-size", "1000000000"], "--batch-size 1000000000 asks for"),
    Case("audit --eval-images 10^9", [*AUDIT, "--eval-images", "1000000000"], "use at most 10,000"),
    Case("audit --max-batch 10^9", [*AUDIT, "--max-batch", "1000000000"], "--max-batch 1000000000"),
    # Ray: the address's form, the client extra, reachability and GPUs, before any model loads or config.json
    Case("ray address not HOST:PORT", [*RAY, "--address", "bogus"], "--address 'bogus' is not a Ray address"),
    Case("ray address port out of range", [*RAY, "--address", "head:99999"], "is not a Ray address"),
    Case("ray address with a path", [*RAY, "--address", "ray://head:10001/x"], "is not a Ray address"),
    Case("RAY_ADDRESS not an address", RAY, "RAY_ADDRESS 'not an address' is not a Ray address",
         env={"RAY_ADDRESS": "not an address"}),
    Case("ray address refused", [*RAY, "--address", f"127.0.0.1:{PORT}"], "cannot reach the Ray cluster"),
    Case("ray address unreachable", [*RAY, "--address", "127.0.0.1:{SILENT}"], "no answer within 3 s"),
    Case("ray client form", [*RAY, "--address", f"ray://127.0.0.1:{PORT}"],
         "cannot reach the Ray cluster" if HAS_RAY_CLIENT else "pip install 'ray[client]'"),
    # --out inside a run: a dataset or a comparison page never lands in a run's own files
    Case("generate --out in a run's classes", [*GENERATE[:3], "{A}/classes/7-evil", "--per-class", "1"],
         "lies inside the probe run"),
    Case("generate --out is the run", [*GENERATE[:3], "{A}", "--per-class", "1"], "lies inside the probe run"),
    Case("generate --out inside another run", [*GENERATE[:3], "{B}/dataset", "--per-class", "1"],
         "lies inside the probe run"),
    Case("compare --out B/report", ["compare", "{A}", "{B}", "--out", "{B}/report"], "would mix the comparison"),
    Case("compare --out A/report/sub", ["compare", "{A}", "{B}", "--out", "{A}/report/sub"], "would mix the comparison"),
    Case("compare --out is run A", ["compare", "{A}", "{B}", "--out", "{A}"], "would mix the comparison"),
    # messages name the flag the user typed, not the Python keyword
    Case("compare --fdr-q out of range", ["compare", "{A}", "{B}", "--fdr-q", "2"], "--fdr-q 2.0 must lie in (0, 1)"),
    Case("audit --fdr-q out of range", [*AUDIT, "--fdr-q", "0"], "--fdr-q 0.0 must lie in (0, 1)"),
    Case("audit --min-effect out of range", [*AUDIT, "--min-effect", "3"], "--min-effect 3.0 must lie in [0, 1]"),
    Case("audit --max-pairs below the deciding pairs", [*AUDIT, "--max-pairs", "8"], "--max-pairs 8 is below"),
    # found by review (7 December 2026): each was accepted, then cost the audit or was silently ignored
    Case("audit --concepts mistyped", [*AUDIT, "--analyze", "--concepts", "./my-clpi"], "--concepts: concept model './my-clpi' is "
         "neither a folder nor a hub id"),
    Case("audit --concepts not cached offline", [*AUDIT, "--analyze", "--concepts", "nobody/no-such-clip"], "not in the local cache",
         env={"HF_HUB_OFFLINE": "1"}),
    Case("audit --shard with --max-effect", [*AUDIT, "--analyze", "--shard", "0/2", "--max-effect", "0.3"],
         "--max-effect/--junit gate a whole run, and --shard 0/2"),
    Case("audit --val-data with --no-analyze", [*AUDIT, "--no-analyze", "--val-data", "{A}"],
         "--val-data confirms the findings of an analysed run, and --no-analyze"),
    Case("audit --val-data with --shard", [*AUDIT, "--analyze", "--shard", "1/2", "--val-data", "{A}"], "--shard 1/2 audits a part"),
    Case("audit --init-word empty", [*AUDIT, "--init-word", " "], "--init-word ' ' is empty"),
    Case("audit --max-pairs 0 names its flag", [*AUDIT, "--analyze", "--max-pairs", "0"], "--max-pairs 0 must be at least 1"),
    Case("audit --discover -1 names its flag", [*AUDIT, "--analyze", "--discover", "-1"], "--discover -1 must not be negative"),
    Case("audit --mean of two numbers", [*AUDIT, "--mean", "0.5,0.5"], "--mean '0.5,0.5' must be one number or three"),
    Case("audit --gpus-per-worker negative", [*AUDIT, "--backend", "ray", "--gpus-per-worker", "-1"],
         "--gpus-per-worker -1 must be >= 0"),
    Case("audit --max-retries without Ray", [*AUDIT, "--max-retries", "5"], "--max-retries belong to --backend ray"),
    Case("audit --eval-arch without --eval-model", [*AUDIT, "--eval-arch", "resnet18"], "--eval-model, which is not given"),
    Case("audit --min-steps not below --max-steps", [*AUDIT, "--min-steps", "5"], "--min-steps 5 must be 0, or below --max-steps 1"),
    Case("audit --threshold out of range", [*AUDIT, "--threshold", "2"], "--threshold 2.0 is out of range"),
    Case("audit --stop-metric unknown", [*AUDIT, "--stop-metric", "loss"], "--stop-metric 'loss' is unknown"),
    Case("audit --std not positive", [*AUDIT, "--std", "0,1,1"], "--std (0.0, 1.0, 1.0)"),
    Case("audit --input-size not a size", [*AUDIT, "--input-size", "0"], "--input-size (3, 0, 0) must be (C, H, W)"),
]
_RAY_CASES = {c.name for c in CASES if c.args[:len(RAY)] == RAY}


@pytest.mark.parametrize("case", [pytest.param(c, marks=needs_ray) if c.name in _RAY_CASES else c for c in CASES],
                         ids=[c.name for c in CASES])
def test_cheap_checks_answer_in_one_line_before_any_model_loads(case, fake_runs, silent_port, tmp_path, capsys,
                                                                monkeypatch, no_models):
    a, b = fake_runs
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    args = [x.replace("{A}", str(a)).replace("{B}", str(b)).replace("{SILENT}", str(silent_port)) for x in case.args]
    before = (files_under(tmp_path), files_under(a.parent))
    start = time.perf_counter()
    code, text = run_cli(args, cwd, capsys, monkeypatch)
    seconds = time.perf_counter() - start
    assert code == 2, text
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), text  # one line: the problem and the fix
    assert case.message in lines[0], text
    assert seconds < case.seconds, f"{seconds:.1f} s: {text}"
    assert (files_under(tmp_path), files_under(a.parent)) == before, "a refused command wrote files"


@pytest.mark.parametrize("case", [c for c in CASES if c.args[0] == "audit" and c.name not in _RAY_CASES
                                  and "--dry-run" not in c.args], ids=lambda c: c.name)
def test_a_dry_run_refuses_what_the_audit_would(case, tmp_path, capsys, monkeypatch, no_models):
    """`probe audit ... --dry-run` printed a plan and exited 0 for settings the audit itself refuses (--std 0,1,1, a
    bad --budget): it now runs the same checks first."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    code, text = run_cli([*case.args, "--dry-run"], cwd, capsys, monkeypatch)
    lines = [line for line in text.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in text and case.message in lines[-1], text


@needs_ray
def test_ray_gpus_per_worker_without_a_gpu_is_refused_before_any_model_loads(tmp_path, capsys, monkeypatch, no_models):
    if HAS_GPU:
        pytest.skip("a GPU is visible: --gpus-per-worker 1 is valid here")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    code, text = run_cli([*RAY, "--gpus-per-worker", "1"], tmp_path, capsys, monkeypatch)
    assert code == 2 and "--gpus-per-worker 1" in text and "GPU" in text and "Traceback" not in text, text
    assert not (tmp_path / "runs").exists()


def test_ray_address_in_the_environment_joins_that_cluster_without_sizing_it(monkeypatch):
    """RAY_ADDRESS with --workers and no --address: the preflight checked RAY_ADDRESS's cluster, but the backend asked
    ray.init for a local cluster of num_cpus, which Ray refuses when it joins RAY_ADDRESS's (after the models had
    loaded). Both now read one address: RAY_ADDRESS's, as ray.init does, and a joined cluster is never sized."""
    from probe.auditing.backends.ray import effective_address, init_kwargs
    from probe.auditing.scale import ScaleConfig

    scale = ScaleConfig(backend="ray", workers=2)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert effective_address(scale) == (None, "--address") and init_kwargs(scale)["num_cpus"] == 2
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    kwargs = init_kwargs(scale)
    assert kwargs["address"] == "10.0.0.1:6379" and "num_cpus" not in kwargs
    assert effective_address(ScaleConfig(backend="ray", address="head:6379")) == ("10.0.0.1:6379", "RAY_ADDRESS")
    monkeypatch.delenv("RAY_ADDRESS")
    assert init_kwargs(ScaleConfig(backend="ray", address="head:6379", workers=2)) == {
        "include_dashboard": False, "log_to_driver": True, "configure_logging": False, "address": "head:6379"}


@needs_ray
def test_ray_auto_without_a_cluster_fails_fast(tmp_path, capsys, monkeypatch, no_models):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    from ray._private import services

    try:
        services.get_ray_address_from_environment("auto", None)
    except ConnectionError:
        pass  # no Ray cluster on this machine: the whole path is real
    else:  # one runs (the other pytest-xdist worker's Ray tests): Ray's discovery is made to see none
        monkeypatch.setattr(services, "find_gcs_addresses", lambda: [])
        monkeypatch.setattr(services, "find_bootstrap_address", lambda temp_dir: None)
        with pytest.raises(ConnectionError):
            services.get_ray_address_from_environment("auto", None)
    start = time.perf_counter()
    code, text = run_cli([*RAY, "--address", "auto"], tmp_path, capsys, monkeypatch)
    assert code == 2 and "no running Ray cluster" in text and "ray start --head" in text, text
    assert time.perf_counter() - start < 20 and not (tmp_path / "runs").exists()


def test_a_read_only_out_is_refused_before_any_model_loads(tmp_path):
    """`probe audit` and `probe demo` into a folder the user cannot write: one line, before the models load (the
    command runs as an unprivileged user: root ignores permissions)."""
    prefix = _as_nobody()
    if prefix is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    for p in tmp_path.parents[:3]:
        p.chmod(0o755)
    tmp_path.chmod(0o755)
    try:
        for args in (["audit", "--model", CLEAN, "--out", str(locked / "run"), *FAST],
                     ["demo", "--out", str(locked / "run"), "--classes", "star", "-q"]):
            start = time.perf_counter()
            done = subprocess.run([*prefix, probe_script(), *args], capture_output=True, text=True, timeout=120,
                                  cwd="/", env={**os.environ, "HOME": "/tmp"})
            text = done.stderr + done.stdout
            assert done.returncode == 2, (args, text)
            assert "Traceback" not in text and "cannot write --out" in text and "read-only" in text, (args, text)
            assert [line for line in text.splitlines() if line.strip()] == [text.strip()], text  # one line
            assert time.perf_counter() - start < 60, text  # no model loaded (the demo's take longer)
            assert not any(locked.iterdir())
    finally:
        locked.chmod(0o755)


def test_check_writable_names_the_blocking_file(tmp_path):
    from probe.errors import RunError
    from probe.files import check_writable

    (tmp_path / "taken").write_text("a file")
    with pytest.raises(RunError, match="'.*taken' is a file, not a folder"):
        check_writable(tmp_path / "taken" / "run", "--out")
    check_writable(tmp_path / "new" / "deeper", "--out")  # a new folder under a writable one: fine
    assert not (tmp_path / "new").exists()  # nothing created by the check


# ------------------------------------------------------------- checks that waited for the analysis or the gate
@pytest.fixture()
def models_would_load(monkeypatch):
    """Every check passed: loading a model ends the command there, with a line saying so (exit 2)."""
    import probe.auditing.loop
    from probe.errors import ProbeError

    def reached(*args, **kwargs):
        raise ProbeError("every setting passed; the models would load now")

    monkeypatch.setattr(probe.auditing.loop, "load_models", reached)
    monkeypatch.setattr(probe.auditing.loop, "load_classifiers", reached)


def _one_error_line(code: int, text: str) -> str:
    assert code == 2 and "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), text  # one line: the problem and the fix
    return lines[0]


GATE = ["--analyze", "--max-effect", "0.3"]


@pytest.mark.parametrize("junit", ["runs/x/gate.xml", "link/gate.xml"], ids=["in --out", "through a link into --out"])
def test_a_junit_file_inside_an_empty_out_is_refused_before_any_model_loads(junit, tmp_path, capsys, monkeypatch,
                                                                            no_models):
    """`--out runs/x --junit runs/x/gate.xml` with runs/x empty (not yet a run) passed the checks; after the whole
    audit the gate's write refused the path ("lies inside the probe run"), the verdict was lost and the audit exited
    1. The same rule now answers before anything loads."""
    (tmp_path / "runs" / "x").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "runs" / "x")
    before = files_under(tmp_path)
    code, text = run_cli([*AUDIT, *GATE, "--junit", junit], tmp_path, capsys, monkeypatch)
    line = _one_error_line(code, text)
    assert f"--junit '{junit}' lies inside the probe run 'runs/x'" in line and "--junit gate.xml" in line, text
    assert files_under(tmp_path) == before


def test_a_junit_file_beside_an_empty_out_passes(tmp_path, capsys, monkeypatch, models_would_load):
    (tmp_path / "runs" / "x").mkdir(parents=True)
    code, text = run_cli([*AUDIT, *GATE, "--junit", "runs/gate.xml"], tmp_path, capsys, monkeypatch)
    assert code == 2 and "the models would load now" in text, text


def test_check_junit_path_refuses_a_path_inside_the_out_an_audit_will_write(tmp_path):
    from probe.gate import GateError, check_junit_path

    (tmp_path / "out" / "sub").mkdir(parents=True)
    for inside in ("out/gate.xml", "out/sub/gate.xml", "out"):
        with pytest.raises(GateError, match="lies inside the probe run"):
            check_junit_path(tmp_path / inside, tmp_path / "out")
    assert check_junit_path(tmp_path / "gate.xml", tmp_path / "out") == tmp_path / "gate.xml"
    assert check_junit_path(tmp_path / "out-gate.xml", tmp_path / "out") == tmp_path / "out-gate.xml"  # a prefix only


def _without_pairs(run: Path, to: Path) -> Path:
    import json

    shutil.copytree(run, to)
    analysis = json.loads((to / "analysis.json").read_text())
    analysis.pop("pairs", None)
    (to / "analysis.json").write_text(json.dumps(analysis))
    return to


@pytest.mark.parametrize("other, extra, message", [
    ("A", ["--prompt", "a painting of a {}"], "was analysed with carrier_template='a photo of a {}', this analysis "
                                              "uses 'a painting of a {}'; use the same analysis settings"),
    ("no pairs", [], "has no per-pair data in analysis.json"),
], ids=["other pairing settings", "no per-pair data"])
def test_a_confirm_like_run_that_cannot_pair_is_refused_before_any_model_loads(other, extra, message, fake_runs,
                                                                                tmp_path, capsys, monkeypatch,
                                                                                no_models):
    """`--confirm-like RUN`: the analysis checked the other run's pairing settings (seeds, carriers, templates) and
    per-pair data only after every token was learned; preflight checked only that RUN/analysis.json exists. The
    analysis's own check (probe.analysis.engine._like_run) now runs in preflight."""
    a, _ = fake_runs
    like = a if other == "A" else _without_pairs(a, tmp_path / "nopairs")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    before = (files_under(tmp_path), files_under(a.parent))
    code, text = run_cli([*AUDIT, "--analyze", *extra, "--confirm-like", str(like)], cwd, capsys, monkeypatch)
    line = _one_error_line(code, text)
    assert line.startswith("error: --confirm-like: ") and message in line, text
    assert (files_under(tmp_path), files_under(a.parent)) == before, "a refused command wrote files"


def test_a_confirm_like_run_on_the_same_settings_passes_preflight(fake_runs, tmp_path, capsys, monkeypatch,
                                                                 models_would_load):
    a, _ = fake_runs
    code, text = run_cli([*AUDIT, "--analyze", "--confirm-like", str(a)], tmp_path, capsys, monkeypatch)
    assert code == 2 and "the models would load now" in text, text


def test_a_confirm_like_run_of_other_classes_is_refused_before_any_token_is_learned(fake_runs, tmp_path, capsys,
                                                                                    monkeypatch):
    """The labels of the --confirm-like run need the classifier: checked (the same function) once it loads, before
    any token (the fake runs audit circle/square/star, the bundled world classifier other classes)."""
    import probe.auditing.loop

    a, _ = fake_runs

    def no_tokens(*args, **kwargs):
        raise AssertionError("the audit went on to the tokens")

    monkeypatch.setattr(probe.auditing.loop, "_audit_locked", no_tokens)
    code, text = run_cli([*AUDIT, "--analyze", "--confirm-like", str(a)], tmp_path, capsys, monkeypatch)
    lines = [line for line in text.splitlines() if line.strip()]
    assert code == 2 and "Traceback" not in text, text
    assert lines[-1].startswith("error: --confirm-like: ") and "has other class labels" in lines[-1], text
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_prints_one_interrupted_line_and_exits_130(tmp_path, capsys, monkeypatch):
    """Ctrl-C while the models load (typer turns KeyboardInterrupt into a silent 130)."""
    import probe.auditing.loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(probe.auditing.loop, "load_models", interrupted)
    code, text = run_cli(AUDIT, tmp_path, capsys, monkeypatch)
    assert code == 130, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("interrupted"), text
    assert "Traceback" not in text


# ------------------------------------------------------------------------------------------ demo
def test_demo_max_steps_below_its_min_steps_runs_with_min_steps_lowered(tmp_path, capsys, monkeypatch):
    """`probe demo --max-steps 2` passes its settings' checks (it failed on the demo's own min_steps=3)."""
    import probe.auditing.loop
    from probe.errors import ProbeError
    from probe.world.demo import demo_config

    assert demo_config(max_steps=2).token.min_updates == 1
    assert demo_config(max_steps=1).token.min_updates == 0
    assert demo_config(max_steps=8).token.min_updates == 3

    def reached(*args, **kwargs):
        raise ProbeError("every setting passed; the models would load now")

    monkeypatch.setattr(probe.auditing.loop, "load_models", reached)
    code, text = run_cli(["demo", "--max-steps", "2", "--out", "runs/d", "-q"], tmp_path, capsys, monkeypatch)
    assert code == 2 and "the models would load now" in text, text


# --------------------------------------------------------------------------- the terminal is not the run's
ESC_NAME = "r\x1b]0;pwned\x07\x1b[2J\u202e"


def test_terminal_safe_makes_control_characters_visible():
    from probe.display import terminal_safe

    assert terminal_safe("a b\x1b[2J\x07\u202e\n\x9bé") == "a b\\x1b[2J\\x07\\u202e\\x0a\\x9bé"
    assert terminal_safe("runs/демо 7") == "runs/демо 7"


@pytest.mark.parametrize("command", ["compare", "check"])
def test_a_run_folder_name_with_escape_sequences_never_reaches_the_terminal_raw(command, fake_runs, tmp_path, capsys,
                                                                               monkeypatch):
    a, b = fake_runs
    evil_a, evil_b = tmp_path / f"a{ESC_NAME}", tmp_path / f"b{ESC_NAME}"
    shutil.copytree(a, evil_a)
    shutil.copytree(b, evil_b)
    args = (["compare", str(evil_a), str(evil_b), "--out", str(tmp_path / "page")] if command == "compare"
            else ["check", str(evil_a), "--max-effect", "0.01"])
    code, text = run_cli(args, tmp_path, capsys, monkeypatch)
    assert code in ((0,) if command == "compare" else (0, 3)), text
    for raw in ("\x1b]", "\x07", "\x1b[2J", "\u202e"):
        assert raw not in text, repr(text)  # control characters only as visible escapes
    if command == "compare":  # the run names and the page's path are printed, escaped
        assert "pwned" in text and "\\x1b" in text and (tmp_path / "page" / "index.html").is_file()


def test_an_error_line_never_carries_escape_sequences(tmp_path, capsys, monkeypatch):
    from probe.cli import _error_line

    _error_line(f"{ESC_NAME} is not a run")
    err = capsys.readouterr().err
    assert "\x1b]" not in err and "\x07" not in err and "\\x1b" in err


# ------------------------------------------------------------------------------------------ the lock
def test_a_second_generate_into_a_busy_dataset_folder_names_probe_generate(tmp_path):
    from probe.generate import GenerateError, out_dir_lock

    with out_dir_lock(tmp_path / "data"):
        with pytest.raises(GenerateError, match="in use by another `probe generate`") as caught:
            with out_dir_lock(tmp_path / "data"):
                pass
    assert "probe audit" not in str(caught.value)
    with out_dir_lock(tmp_path / "data"):  # released
        pass


# ---------------------------------------------------------------------------------------- install name
WRONG = re.compile(r"(?:pip|uv pip|pipx)\s+install[^\n]*?(?<![\w.-])" + "probe" + r"\[")
SCANNED = ("probe", "README.md", "docs", "notebooks", "examples", "scripts", "benchmarks", "tests")


def test_no_install_command_names_the_wrong_distribution():
    """The distribution is probe-audit; PyPI's `probe` is an unrelated project (issue 17 item 5)."""
    found = []
    for top in SCANNED:
        path = ROOT / top
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else []
        for file in files:
            if file.suffix not in (".py", ".md", ".ipynb", ".txt", ".sh", ".toml", ".cfg", ".rst", ".html", ""):
                continue
            try:
                text = file.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            found += [f"{file.relative_to(ROOT)}: {m.group(0)}" for m in WRONG.finditer(text)]
    assert not found, found
    assert WRONG.search("run `pip install 'probe" + "[ray]'`") and not WRONG.search("pip install 'probe-audit[ray]'")


def test_the_ray_messages_name_probe_audit(monkeypatch):
    from probe.auditing.backends.ray import import_ray
    from probe.errors import RunError

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(RunError, match=r"pip install 'probe-audit\[ray\]'"):
        import_ray()


def test_one_mean_or_std_number_is_every_channels():
    """`--mean 0.5` was refused as "must be three numbers" while a data config's single number is read for every
    channel (found by review, 7 December 2026)."""
    from probe.cli import _floats3

    assert _floats3("0.5", "--mean") == (0.5, 0.5, 0.5) and _floats3("0.1,0.2,0.3", "--std") == (0.1, 0.2, 0.3)
