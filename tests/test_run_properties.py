"""Property: whatever one field of one run file becomes, `probe check`, `probe compare` and `probe report` never
end in a traceback, `probe check` never exits 0 on a run that is certainly malformed, and nothing is written
outside the run and the comparison's --out (issue 23).

A small valid run (tests/run_files.py: synthetic, no models) is copied per example; hypothesis picks a file
(config.json, labels.json, a class's metrics.json and history.csv, findings.json, findings.parquet with
findings.json gone, analysis.json, summary.csv), a place in it and a hostile change: NaN, Infinity, text,
lists, objects, null, huge and negative numbers, a missing key, an extra key, a top level of the wrong type,
a truncated file. Derandomized and bounded, so CI sees the same examples every time (about a minute on two
cores).

"Certainly malformed" is decided here from the documented format (docs/run-format.md), independently of
probe's checks: a file that no longer parses or has the wrong top level, a NaN or Infinity in strict JSON, a
required field of a finding (or a pair entry) removed, an unknown field added to one, or a value of a JSON type
the format never uses at that place. Other changes may be valid (an effect of -1, a shorter label list) and
are held only to "no traceback, a documented exit code, nothing written outside". summary.csv and history.csv
are derived tables `probe check` does not read; the report reads them leniently.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from run_files import make_valid_run
from probe.run.records import FINDING_FIELDS

HOSTILE = [float("nan"), float("inf"), float("-inf"), "abc", "2", "", [1, "a"], {"a": 1}, None, 10 ** 30, -1,
           -1e300, True, "false"]
CSV_HOSTILE = ["nan", "inf", "-inf", "abc", "", "1e999", "-5", "9" * 400, "[1, 2]", '{"a": 1}', "\x00", "True"]
JSON_FILES = ("config.json", "labels.json", "metrics.json", "findings.json", "analysis.json")
FILES = (*JSON_FILES, "findings.parquet", "summary.csv", "history.csv")
CHECKED = ("config.json", "labels.json", "metrics.json", "findings.json", "findings.parquet", "analysis.json")

# the JSON types the format uses at each place ("*": any list index); "int+": a whole number >= 0 (bounded)
_FINDING = {"class_index": {"int+"}, "class_name": {"str"}, "cue": {"str"}, "kind": {"str"}, "effect": {"num", "null"},
            "ci_low": {"num", "null"}, "ci_high": {"num", "null"}, "n_images": {"int+"}, "evidence": {"list"},
            "passes": {"bool"}, "strength": {"str"}, "sentence": {"str"}, "details": {"dict"},
            "p": {"num", "null"}, "q": {"num", "null"}, "status": {"str"}, "unit": {"str"}, "excluded": {"int+"},
            "attempted": {"int+"}}
_STAGE = {"keys": {"list"}, "values": {"list"}, "attempted": {"int+"}, "excluded": {"int+"}}
TYPES = {
    "findings.json": {("*",): {"dict"}, ("*", "evidence", "*"): {"str"},
                      **{("*", k): v for k, v in _FINDING.items()}},
    "metrics.json": {("status",): {"str"}, ("class_index",): {"int+"}, ("class_name",): {"str", "null"},
                     ("error",): {"str", "null"}, ("baseline",): {"dict", "null"}, ("token",): {"dict", "null"},
                     ("eval_model",): {"dict", "null"}, ("images",): {"list"}, ("images", "*"): {"dict"},
                     ("images", "*", "path"): {"str"}, ("steps",): {"int+", "null"}, ("best_step",): {"int+", "null"},
                     ("seconds",): {"num", "null"},
                     **{(b, k): {"num", "null"} for b in ("baseline", "token") for k in ("accuracy", "mean_target_prob")}},
    "config.json": {("classes",): {"list"}, ("classes", "*"): {"int+"}, ("audit",): {"dict"},
                    ("generator",): {"dict", "null"}, ("format_version",): set()},
    "labels.json": {("*",): {"str"}},
    "analysis.json": {("pairs",): {"list"}, ("pairs", "*"): {"dict"}, ("pairs", "*", "kind"): {"str"},
                      ("pairs", "*", "class_index"): {"int+"}, ("pairs", "*", "cue"): {"str"},
                      ("pairs", "*", "class_name"): {"str", "null"}, ("pairs", "*", "screen"): {"dict"},
                      ("pairs", "*", "confirm"): {"dict", "null"}, ("config",): {"dict", "null"},
                      ("classes",): {"dict", "null"}, ("tests",): {"dict", "null"}, ("cues",): {"dict", "null"},
                      **{("pairs", "*", s, k): v for s in ("screen", "confirm") for k, v in _STAGE.items()},
                      **{("pairs", "*", s, "keys", "*"): {"str"} for s in ("screen", "confirm")},
                      **{("pairs", "*", s, "values", "*"): {"num", "null"} for s in ("screen", "confirm")}},
}
REQUIRED = {"findings.json": {("*", k) for k in FINDING_FIELDS[:12]},
            "metrics.json": {("status",), ("class_index",)}, "config.json": {("format_version",)},
            "analysis.json": {("pairs", "*", k) for k in ("kind", "class_index", "cue", "screen")}}
CLOSED = {"findings.json": {("*",)}, "analysis.json": {("pairs", "*"), ("pairs", "*", "screen"),
                                                      ("pairs", "*", "confirm")}}  # records without unknown keys


def _category(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int+" if 0 <= value <= 10 ** 6 else "num"
    if isinstance(value, float):
        return "num"
    return {str: "str", list: "list", dict: "dict"}.get(type(value), "other")


def _allowed(value, types: set[str]) -> bool:
    category = _category(value)
    return category in types or (category == "int+" and "num" in types)


def _pattern(path: tuple) -> tuple:
    return tuple("*" if isinstance(p, int) else p for p in path)


def _places(doc, prefix=(), depth=0) -> list[tuple]:
    out = [prefix] if prefix else []
    if depth < 5:
        items = doc.items() if isinstance(doc, dict) else enumerate(doc[:3]) if isinstance(doc, list) else []
        for key, value in items:
            out += _places(value, (*prefix, key), depth + 1)
    return out


def _get(doc, path):
    for p in path:
        doc = doc[p]
    return doc


def _mutate_json(doc, data, name: str) -> tuple[object, bool]:
    """(the changed document, certainly malformed?)"""
    places = _places(doc)
    op = data.draw(st.sampled_from(["replace", "replace", "replace", "delete", "extra"] if places else ["extra"]))
    if op == "extra":
        targets = [()] + [p for p in places if isinstance(_get(doc, p), (dict, list))]
        path = data.draw(st.sampled_from(targets))
        node = _get(doc, path)
        if isinstance(node, dict):
            node["zz_extra"] = data.draw(st.sampled_from(HOSTILE))
            return doc, _pattern(path) in CLOSED.get(name, set())
        node.append(data.draw(st.sampled_from(HOSTILE)))  # an extra element
        element = (*_pattern(path), "*")
        return doc, element in TYPES.get(name, {}) and not _allowed(node[-1], TYPES[name][element])
    path = data.draw(st.sampled_from(places))
    parent, key = _get(doc, path[:-1]), path[-1]
    pattern = _pattern(path)
    if op == "delete":
        del parent[key]
        return doc, pattern in REQUIRED.get(name, set())
    value = data.draw(st.sampled_from(HOSTILE))
    old = parent[key]
    parent[key] = value
    if isinstance(value, float) and not math.isfinite(value):
        return doc, True  # strict JSON never holds NaN or Infinity
    types = TYPES.get(name, {}).get(pattern)
    if pattern == ("format_version",):
        return doc, value != old
    return doc, types is not None and not _allowed(value, types)


def _mutate_parquet(run: Path, data) -> bool:
    (run / "findings.json").unlink()
    path = run / "findings.parquet"
    op = data.draw(st.sampled_from(["cell", "cell", "cell", "drop", "extra", "truncate", "garbage"]))
    if op == "truncate":
        raw = path.read_bytes()
        path.write_bytes(raw[: data.draw(st.integers(0, len(raw) - 1))])
        return True
    if op == "garbage":
        pd.DataFrame({"x": [1, 2]}).to_parquet(path)
        return True
    table = pd.read_parquet(path)
    column = data.draw(st.sampled_from(list(table.columns)))
    if op == "drop":
        table.drop(columns=[column]).to_parquet(path, index=False)
        return column in FINDING_FIELDS[:12]
    if op == "extra":
        table.assign(zz_extra=1).to_parquet(path, index=False)
        return True
    value = data.draw(st.sampled_from(HOSTILE))
    row = data.draw(st.integers(0, len(table) - 1))
    cells = [v.tolist() if hasattr(v, "tolist") else v for v in table[column]]
    cells[row] = value
    table[column] = pd.Series(cells, dtype=object)
    try:
        table.to_parquet(path, index=False)
        written = value
    except Exception:  # a column of mixed types: written as text, as a hostile table could be
        table[column] = [v if isinstance(v, str) else json.dumps(v) for v in cells]
        table.to_parquet(path, index=False)
        written = table[column][row]
    if column == "details":
        return False  # the table stores details as JSON text: any text may be valid
    if isinstance(written, float) and math.isnan(written):
        written = None  # a table stores a missing number as NaN
    if isinstance(written, float) and math.isinf(written):
        return True
    return not _allowed(written, _FINDING[column])


def _mutate_csv(path: Path, data) -> None:
    text = path.read_text(encoding="utf-8")
    op = data.draw(st.sampled_from(["cell", "cell", "drop", "extra", "truncate", "bytes"]))
    if op == "truncate":
        path.write_text(text[: data.draw(st.integers(0, max(0, len(text) - 1)))], encoding="utf-8")
        return
    if op == "bytes":
        path.write_bytes(b"\xff\xfe\x00garbage\n\x80")
        return
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    column = data.draw(st.sampled_from(list(table.columns)))
    if op == "drop":
        table = table.drop(columns=[column])
    elif op == "extra":
        table["zz_extra"] = data.draw(st.sampled_from(CSV_HOSTILE))
    elif len(table):
        table.loc[data.draw(st.integers(0, len(table) - 1)), column] = data.draw(st.sampled_from(CSV_HOSTILE))
    path.write_text(table.to_csv(index=False), encoding="utf-8")


def _damage(run: Path, name: str, data) -> bool:
    """Change one place of one file of ``run``; whether the run is now certainly malformed."""
    if name == "findings.parquet":
        return _mutate_parquet(run, data)
    classes = sorted(p for p in (run / "classes").iterdir() if (p / "metrics.json").is_file())
    folder = data.draw(st.sampled_from(classes))
    path = folder / name if name in ("metrics.json", "history.csv") else run / name
    if name.endswith(".csv"):
        _mutate_csv(path, data)
        return False
    text = path.read_text(encoding="utf-8")
    op = data.draw(st.sampled_from(["field"] * 6 + ["truncate", "top-level"]))
    if op == "truncate":
        path.write_text(text[: data.draw(st.integers(0, len(text.rstrip()) - 1))], encoding="utf-8")
        return True  # cut inside the document (a trailing newline cut off leaves it valid)
    doc = json.loads(text)
    if op == "top-level":
        path.write_text(json.dumps(data.draw(st.sampled_from([v for v in ([], {}, "text", 5, None)
                                                              if type(v) is not type(doc)]))))
        return True
    doc, malformed = _mutate_json(doc, data, name)
    path.write_text(json.dumps(doc))  # NaN and Infinity as JSON's tokens, as a hostile file would hold them
    return malformed


def _run_cli(args: list[str], cwd: Path) -> tuple[int, str]:
    """``probe ARGS`` in this process (as tests/test_hostile_cli.py's run_cli): (exit code, stderr + stdout)."""
    import io
    import os
    from contextlib import redirect_stderr, redirect_stdout

    from probe import cli

    out, err = io.StringIO(), io.StringIO()
    old_argv, old_cwd = sys.argv, os.getcwd()
    sys.argv = ["probe", *args]
    os.chdir(cwd)
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = old_argv
        os.chdir(old_cwd)
    return code, err.getvalue() + out.getvalue()


def _files_outside(root: Path, *inside: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")
            if not any(p == d or d in p.parents for d in inside)}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory) -> Path:
    return make_valid_run(tmp_path_factory.mktemp("base") / "run", n_classes=2)


def _one_line_error(text: str) -> bool:
    return len([line for line in text.splitlines() if line.startswith("error:")]) == 1


@settings(max_examples=int(os.environ.get('PROBE_PROPERTY_EXAMPLES', 45)), deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(name=st.sampled_from(FILES), data=st.data())
def test_a_damaged_run_file_never_tracebacks_never_passes_the_gate_and_writes_nothing_outside(base_run, name, data):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        run, other, out, cwd = root / "run", root / "other", root / "cmp", root / "cwd"
        shutil.copytree(base_run, run)
        shutil.copytree(base_run, other)
        cwd.mkdir()
        malformed = _damage(run, name, data)
        before = _files_outside(root, run, out)

        code, text = _run_cli(["check", str(run), "--max-effect", "0.3"], cwd)
        assert "Traceback" not in text and code in (0, 2, 3, 4), (name, code, text)
        assert code != 2 or _one_line_error(text), text
        if malformed and name in CHECKED:  # never 0, nor a verdict: one line naming the damage
            assert code == 2, f"probe check gave a verdict on a malformed {name}: {text}"
        event(f"{name}: {'malformed' if malformed else 'maybe valid'}, check exit {code}")

        code, text = _run_cli(["compare", str(run), str(other), "--out", str(out)], cwd)
        assert "Traceback" not in text and code in (0, 2), (name, code, text)
        assert code != 2 or _one_line_error(text), text

        code, text = _run_cli(["report", str(run)], cwd)
        assert "Traceback" not in text and code in (0, 2), (name, code, text)
        assert code != 2 or _one_line_error(text), text

        assert _files_outside(root, run, out) == before, "something was written outside the run and --out"
