"""Scale-out (issue 12): --shard slices merged by `probe report` (the Ray backend: tests/test_backend_ray.py).

Every audit here is the shapes world at a reduced size (2 optimisation steps, 2 evaluation images), so the
comparisons are about *where* classes ran, not about the method.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from probe.errors import RunError
from probe.auditing.scale import ScaleConfig, parse_shard


# ---------------------------------------------------------------------- settings
def test_shard_settings_are_checked_and_slices_cover_every_class_once():
    assert parse_shard("0/3") == (0, 3) and parse_shard(" 2 / 3 ") == (2, 3) and parse_shard(None) is None
    for bad in ("3/3", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(RunError, match="--shard"):
            parse_shard(bad)
    targets = list(range(10))
    slices = [ScaleConfig(shard=f"{i}/3").select(targets) for i in range(3)]
    assert sorted(sum(slices, [])) == targets and slices[0] == [0, 3, 6, 9]
    assert ScaleConfig(shard="1/3").lock_name() == ".probe-shard-1-of-3.lock" and ScaleConfig().lock_name() is None
    with pytest.raises(RunError, match="belong to --backend ray"):
        ScaleConfig(workers=2)
    with pytest.raises(RunError, match="unknown"):
        ScaleConfig(backend="slurm")


def _config(out: Path, classes: str, *, analyze: bool = False, **scale):
    from conftest import world_cue_file
    from probe.analysis import AnalysisConfig
    from probe.world.demo import demo_config

    # plumbing, not findings: 3 sampling steps, and a necessity screen of 3 cues on 2 seeds without extension or
    # discovery (all 12 world cues made this test 90 s, a third of it topping up screens the 3-step images lost)
    cues = world_cue_file(Path(out).parent / "scale-cues.json", "grass", "water", "dot") if analyze else "auto"
    config = demo_config(out=out, classes=classes, max_steps=4, eval_images=2, analyze=analyze, report=analyze,
                         analysis=AnalysisConfig(attributions=False, off_object=False, sufficiency=False, confirm=False,
                                                 iou_images=0, nearest_k=3, necessity_screen_seeds=2,
                                                 screen_extend=(), discover=0, cues=cues))
    # 2 images per token step, not 5: the tokens only have to move and be reproducible (Ray vs local), ~35% less work
    return replace(config, token=replace(config.token, steps=3, batch_size=2), scale=ScaleConfig(**scale))


def _tokens(run_dir: Path) -> dict[int, torch.Tensor]:
    from safetensors.torch import load_file

    from probe.run import TOKEN, RunDir

    out = {}
    for directory, metrics in RunDir(run_dir).finished_classes():
        data = load_file(str(directory / TOKEN))
        out[metrics["class_index"]] = torch.cat([v.flatten().float() for _, v in sorted(data.items())])
    return out


def _metrics(run_dir: Path) -> dict[int, dict]:
    from probe.run import RunDir

    return {m["class_index"]: m for _, m in RunDir(run_dir).finished_classes()}


def _findings(run_dir: Path) -> list[tuple]:
    from probe.run import RunDir

    return sorted((f["class_index"], f["cue"], f["kind"], round(f["effect"], 4), f["passes"])
                  for f in RunDir(run_dir).read_findings() or [])


# ---------------------------------------------------------------------- shards
def test_two_shards_and_probe_report_equal_one_full_run(tmp_path, monkeypatch, capsys):
    """SLURM-style: each shard runs its slice into the one run directory; `probe report` analyses once all are done."""
    from conftest import run_main

    from probe.auditing.loop import audit

    full = tmp_path / "full"
    audit(_config(full, "star,heart", analyze=True), progress=False)
    sharded = tmp_path / "sharded"
    audit(_config(sharded, "star,heart", analyze=True, shard="0/2"), progress=False)
    assert not (sharded / "analysis.json").exists()  # one slice cannot be analysed alone
    code, out, err = run_main(monkeypatch, capsys, "report", str(sharded))
    assert code == 2 and "1 of 2 classes" in err and "finish every --shard" in err  # shard 1 has not run
    config = _config(sharded, "star,heart", analyze=True, shard="1/2")
    audit(config, progress=False)
    # each shard measured its own classes' analysis (steps 3-5) where it learned their tokens ...
    from probe.run import RunDir

    records = {i: RunDir(sharded).read_class_analysis(d) for d, m in RunDir(sharded).finished_classes()
               for i in [m["class_index"]]}
    assert sorted(records) == [3, 5] and all(r is not None and r.unit == (i,) for i, r in records.items())
    # ... so `probe report` alone decides over every class (steps 6-7) and renders, loading no model
    # (this test said "not analysed" before the shards measured their analysis; changed with issue 21 item 2)
    import probe.auditing.loop as loop

    monkeypatch.setattr(loop, "load_models", lambda *a, **k: pytest.fail("probe report loaded a model"))
    code, out, err = run_main(monkeypatch, capsys, "report", str(sharded))
    assert code == 0 and "not analysed" not in err, err
    assert (sharded / "report" / "index.html").is_file() and (sharded / "analysis.json").is_file()
    monkeypatch.undo()
    # the models on the command line (never taken from the run's config.json): nothing is pending any more
    code, out, err = run_main(monkeypatch, capsys, "report", str(sharded), "--model", config.model,
                              "--generator", config.generator, "--device", "cpu")
    assert code == 0, err
    a, b = _tokens(full), _tokens(sharded)
    assert sorted(a) == sorted(b) == [3, 5]
    for i in a:
        assert torch.equal(a[i], b[i]), i  # same process settings, same seeds: the very same tokens
    ma, mb = _metrics(full), _metrics(sharded)
    for i in ma:
        assert ma[i]["token"] == mb[i]["token"] and ma[i]["baseline"] == mb[i]["baseline"]
    assert _findings(full) and _findings(full) == _findings(sharded)
    # `probe report` again: nothing pending, no model is loaded, the report renders
    code, out, err = run_main(monkeypatch, capsys, "report", str(sharded))
    assert code == 0 and "report:" in out


def test_the_backend_names_checked_up_front_are_the_registered_ones():
    import probe.auditing.backends
    import probe.auditing.scale

    assert set(probe.auditing.scale.BACKENDS) == set(probe.auditing.backends.BACKENDS)
    assert probe.auditing.backends.get_backend("local") is probe.auditing.backends.LocalBackend
    with pytest.raises(RunError, match="unknown"):
        probe.auditing.backends.get_backend("slurm")


def test_without_ray_the_ray_backend_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    import sys

    from probe.auditing.backends import get_backend

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    backend = get_backend("ray")(replace(_config(Path("unused"), "star"), scale=ScaleConfig(backend="ray")), None,
                                 None, ["star"])
    with pytest.raises(RunError, match=r"pip install 'probe-audit\[ray\]'"):
        backend.run([0], bar=None)
    from probe.auditing.loop import audit

    out = tmp_path / "never"
    with pytest.raises(RunError, match=r"pip install 'probe-audit\[ray\]'"):  # checked before any model loads
        audit(replace(_config(out, "star"), scale=ScaleConfig(backend="ray")), progress=False)
    assert not out.exists()
