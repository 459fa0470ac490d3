"""Every generator alias states its sampling (scheduler, steps, guidance) in the registry; loading the alias applies
exactly that, wherever its weights come from (no path heuristic); explicit flags still win; the README's
generator table states the same values. Offline: aliases are pointed at tiny local folders (PROBE_<ALIAS>_BASE)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from probe.generators import DEFAULT_GENERATOR, GENERATORS, alias_spec, load_generator
from probe.generators.load import SETTINGS_FILE, sampling_for
from probe.generators.registry import OWN_SCHEDULER, SCHEDULERS

README = Path(__file__).resolve().parents[1] / "README.md"
SD_ALIASES = [name for name, spec in GENERATORS.items()
              if spec.pipeline == "StableDiffusionPipeline" and spec.lora is None]


def _env(name: str) -> str:
    return "PROBE_" + name.upper().replace("-", "_") + "_BASE"


def _stated(name: str) -> tuple[str, int, float]:
    spec = GENERATORS[name]
    return spec.scheduler, spec.default_steps, spec.guidance_scale


@pytest.fixture(scope="module")
def pndm_sd_path(tiny_sd_path, tmp_path_factory) -> Path:
    """The tiny SD folder with PNDM as its own scheduler (as SD 1.4 ships) and a probe_generator.json that says
    4 steps at guidance 3.0; its path holds no "turbo"."""
    from diffusers import PNDMScheduler

    folder = tmp_path_factory.mktemp("pndm_sd") / "pipe"
    shutil.copytree(tiny_sd_path, folder)
    config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
    config.pop("_class_name", None)
    PNDMScheduler.from_config(config, skip_prk_steps=True).save_pretrained(folder / "scheduler")
    index = json.loads((folder / "model_index.json").read_text())
    index["scheduler"] = ["diffusers", "PNDMScheduler"]
    (folder / "model_index.json").write_text(json.dumps(index))
    assert "turbo" not in str(folder).lower()
    return folder


def test_every_alias_states_scheduler_steps_and_guidance():
    for name, spec in GENERATORS.items():
        assert spec.scheduler == OWN_SCHEDULER or spec.scheduler in SCHEDULERS, name
        assert isinstance(spec.default_steps, int) and spec.default_steps > 0, name
        assert isinstance(spec.guidance_scale, float) and spec.guidance_scale >= 0, name
    for name in ("sd14", "sd15", "sd21"):
        assert _stated(name) == ("ddim", 15, 7.5), name
    assert _stated("sd-turbo") == (OWN_SCHEDULER, 2, 0.0)
    assert _stated("sd15-lcm") == ("lcm", 4, 1.0)
    assert _stated("sdxl") == (OWN_SCHEDULER, 15, 5.0)
    assert _stated("sdxl-turbo") == (OWN_SCHEDULER, 2, 0.0)
    assert DEFAULT_GENERATOR == "sd14"  # no --generator: the alias, with its DDIM sampling


@pytest.mark.parametrize("name", list(GENERATORS))
def test_the_loader_applies_each_alias_s_stated_sampling_whatever_the_folder_says(name, tmp_path, monkeypatch):
    # a base folder whose path says "turbo" and whose probe_generator.json says otherwise: the alias wins over both
    folder = tmp_path / "not-a-turbo-model"
    folder.mkdir()
    (folder / SETTINGS_FILE).write_text(json.dumps({"default_steps": 9, "guidance_scale": 9.0}))
    monkeypatch.setenv(_env(name), str(folder))
    alias = alias_spec(name)
    assert alias.base == str(folder)
    scheduler, steps, guidance = _stated(name)
    expected = None if scheduler == OWN_SCHEDULER else scheduler
    assert sampling_for(alias, alias.base, folder) == (expected, {"default_steps": steps,
                                                                  "guidance_scale": guidance})
    # and without a folder (the hub id), the same
    monkeypatch.delenv(_env(name))
    assert sampling_for(alias_spec(name), GENERATORS[name].base, None)[1] == {"default_steps": steps,
                                                                              "guidance_scale": guidance}
    # an explicit --scheduler wins
    assert sampling_for(alias_spec(name), GENERATORS[name].base, None, "euler")[0] == "euler"


def test_a_folder_that_is_not_an_alias_keeps_its_scheduler_and_the_documented_fallback(tmp_path):
    plain, turbo = tmp_path / "plain", tmp_path / "My-Turbo-copy"
    for folder in (plain, turbo):
        folder.mkdir()
    assert sampling_for(None, str(plain), plain) == (None, {"default_steps": 15, "guidance_scale": 7.5})
    assert sampling_for(None, str(turbo), turbo) == (None, {"default_steps": 2, "guidance_scale": 0.0})
    assert sampling_for(None, "stabilityai/sd-turbo", None)[1] == {"default_steps": 2, "guidance_scale": 0.0}
    (turbo / SETTINGS_FILE).write_text(json.dumps({"default_steps": 3, "guidance_scale": 1.5}))
    assert sampling_for(None, str(turbo), turbo)[1] == {"default_steps": 3, "guidance_scale": 1.5}


@pytest.mark.parametrize("name", SD_ALIASES)
def test_loading_an_alias_samples_as_stated(name, pndm_sd_path, monkeypatch):
    monkeypatch.setenv(_env(name), str(pndm_sd_path))
    generator = load_generator(name, device="cpu")
    scheduler, steps, guidance = _stated(name)
    cls = "PNDMScheduler" if scheduler == OWN_SCHEDULER else SCHEDULERS[scheduler]
    assert type(generator.scheduler).__name__ == cls
    assert (generator.defaults.steps, generator.defaults.guidance_scale) == (steps, guidance)
    described = generator.describe()
    assert (described["alias"], described["scheduler"], described["default_steps"], described["guidance_scale"]) == (
        name, cls, steps, guidance)
    sampling = generator.start_sampling([0])
    assert type(sampling.scheduler).__name__ == cls and sampling.guidance == guidance


def test_the_default_generator_is_the_sd14_alias_with_ddim(pndm_sd_path, monkeypatch):
    monkeypatch.setenv("PROBE_SD14_BASE", str(pndm_sd_path))
    generator = load_generator(None, device="cpu")
    assert generator.alias == "sd14" and type(generator.scheduler).__name__ == "DDIMScheduler"
    assert (generator.defaults.steps, generator.defaults.guidance_scale) == (15, 7.5)


def test_explicit_scheduler_steps_and_guidance_win_over_the_alias(pndm_sd_path, monkeypatch):
    monkeypatch.setenv("PROBE_SD14_BASE", str(pndm_sd_path))
    generator = load_generator("sd14", device="cpu", scheduler="euler")
    assert type(generator.scheduler).__name__ == "EulerDiscreteScheduler"
    sampling = generator.start_sampling([0], steps=3, guidance_scale=2.0)  # --steps 3 --guidance-scale 2
    assert sampling.calls == 3 and sampling.guidance == 2.0


def test_a_plain_folder_keeps_today_s_behaviour(pndm_sd_path):
    generator = load_generator(pndm_sd_path, device="cpu")
    assert generator.alias is None and type(generator.scheduler).__name__ == "PNDMScheduler"
    assert (generator.defaults.steps, generator.defaults.guidance_scale) == (4, 3.0)  # its probe_generator.json


# ------------------------------------------------------------------ the README's generator table

_CELL = re.compile(r"^(?P<scheduler>model's own|[A-Za-z][\w -]*?)(?: \((?P<cls>[A-Za-z]+)\))?, "
                   r"(?P<steps>\d+) steps?, guidance (?P<guidance>\d+(?:\.\d+)?)$")


def _readme_table() -> dict[str, dict]:
    """alias -> {scheduler, steps, guidance, cls} from the README's generator table (the one with `sd14`)."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| alias |") and "sampling" in line)
    header = [c.strip() for c in lines[start].strip("|").split("|")]
    column = next(i for i, c in enumerate(header) if c.startswith("sampling"))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = re.match(r"`([^`]+)`", cells[0]).group(1)
        match = _CELL.match(cells[column])
        assert match, f"README row {name!r}: sampling cell {cells[column]!r} is not 'SCHEDULER, N steps, guidance G'"
        scheduler = match["scheduler"]
        rows[name] = {"scheduler": OWN_SCHEDULER if scheduler == "model's own" else scheduler.lower().replace(" ", "-"),
                      "steps": int(match["steps"]), "guidance": float(match["guidance"]), "cls": match["cls"]}
    return rows


def test_readme_generator_table_states_each_alias_s_registry_sampling():
    table = _readme_table()
    assert set(GENERATORS) <= set(table), f"aliases missing from the README table: {set(GENERATORS) - set(table)}"
    for name in GENERATORS:
        scheduler, steps, guidance = _stated(name)
        row = table[name]
        assert (row["scheduler"], row["steps"], row["guidance"]) == (scheduler, steps, guidance), name


def test_readme_world_row_states_the_bundled_folder_s_sampling():
    from probe.world.assets import bundled_generator_path

    folder = bundled_generator_path()
    row = _readme_table()["world"]
    settings = json.loads((folder / SETTINGS_FILE).read_text())
    own = json.loads((folder / "model_index.json").read_text())["scheduler"][1]
    assert row["scheduler"] == OWN_SCHEDULER and f"{row['cls']}Scheduler" == own
    assert (row["steps"], row["guidance"]) == (settings["default_steps"], settings["guidance_scale"])
    applied = sampling_for(None, str(folder), folder)[1]
    assert (applied["default_steps"], applied["guidance_scale"]) == (row["steps"], row["guidance"])
