"""probe.domains: the registry through which a world (the shapes world) hands its cues, scorer and masks to the
analysis, without the analysis or the generators importing it."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

import probe.domains as registry
from probe.domains import Domain, domain_for, domains, get_domain, register_domain
from probe.errors import ProbeError


@pytest.fixture()
def empty_registry(monkeypatch):
    """A registry with no domains and its entry points marked loaded (restored afterwards)."""
    monkeypatch.setattr(registry, "_REGISTRY", {})
    monkeypatch.setattr(registry, "_LOADED", True)
    return registry


def _domain(name, folder, **kw):
    return Domain(name=name, generator_path=lambda: folder, **kw)


def test_register_get_and_match_by_generator_folder(empty_registry, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    da = register_domain(_domain("alpha", a, object_attribute="animal"))
    register_domain(_domain("beta", b))
    assert get_domain("alpha") is da and set(domains()) == {"alpha", "beta"}
    # a generator matches the domain whose pipeline folder it was loaded from (paths compared resolved)
    assert domain_for(SimpleNamespace(source=str(tmp_path / "b" / ".." / "a"))) is da
    assert domain_for(SimpleNamespace(source=str(b))).name == "beta"
    assert domain_for(SimpleNamespace(source=str(tmp_path / "other"))) is None  # a real-world generator
    assert domain_for(SimpleNamespace(source="runwayml/stable-diffusion-v1-5")) is None
    assert domain_for(object()) is None  # no source at all
    # registering again under the same name replaces
    newer = register_domain(_domain("alpha", b))
    assert get_domain("alpha") is newer
    domains()["alpha"] = None  # domains() hands out a copy
    assert get_domain("alpha") is newer


def test_register_refuses_what_is_not_a_domain(empty_registry):
    with pytest.raises(ProbeError, match="needs a probe.domains.Domain, got dict"):
        register_domain({"name": "x"})


def test_unknown_domain_is_a_one_line_error_with_the_next_step(empty_registry, tmp_path):
    register_domain(_domain("beta", tmp_path))
    register_domain(_domain("alpha", tmp_path))
    with pytest.raises(ProbeError) as info:
        get_domain("wrold")
    message = str(info.value)
    assert "\n" not in message
    assert "'wrold'" in message and "known: alpha, beta" in message and "pip install -e ." in message
    registry._REGISTRY.clear()
    with pytest.raises(ProbeError, match="known: none"):
        get_domain("world")


def test_entry_points_load_once_and_a_broken_plugin_is_skipped(monkeypatch, tmp_path):
    import importlib.metadata

    monkeypatch.setattr(registry, "_REGISTRY", {"mine": _domain("mine", tmp_path)})
    monkeypatch.setattr(registry, "_LOADED", False)
    loads = []

    class Point:
        def __init__(self, value):
            self.value = value

        def load(self):
            loads.append(self)
            if isinstance(self.value, Exception):
                raise self.value
            return self.value

    points = [Point(ImportError("missing dependency")), Point(lambda: _domain("factory", tmp_path)),
              Point(_domain("instance", tmp_path)), Point("not a domain"), Point(lambda: _domain("mine", tmp_path / "x"))]

    def entry_points(group=None):
        assert group == "probe.domains"
        return points

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    assert set(domains()) == {"mine", "factory", "instance"}
    assert get_domain("mine").generator_path() == tmp_path  # a plugin never overrides a domain registered in code
    domains()
    assert len(loads) == len(points)  # loaded once


def test_the_shapes_world_is_found_through_its_entry_point_without_being_imported():
    script = """
import json, sys
import probe.analysis, probe.analysis.engine, probe.generators
imported_early = sorted(m for m in sys.modules if m == "probe.world" or m.startswith("probe.world."))
from probe.domains import domains, domain_for, get_domain
names = sorted(domains())
world = get_domain("world")
from types import SimpleNamespace
folder = world.generator_path()
print(json.dumps({"early": imported_early, "names": names, "object": world.object_attribute,
                  "has": [world.cues is not None, world.scorer is not None, world.scenes is not None],
                  "match": getattr(domain_for(SimpleNamespace(source=str(folder))), "name", None),
                  "folder_name": folder.name}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["early"] == []  # the analysis and the generator aliases never import the world
    assert "world" in out["names"] and out["object"] == "shape"
    assert out["has"] == [True, True, True]
    assert out["match"] == "world"


def test_the_world_domain_offers_cues_with_attributes_and_counter_values():
    from probe.world.domain import domain, world_cues

    cues = world_cues()
    assert cues and all(c.attribute in ("background", "color", "tag") and c.value for c in cues)
    assert all(len(c.counter_values) == len(c.counters) for c in cues)
    assert {c.category for c in cues} == {"background", "color", "tag"}
    d = domain()
    assert d.name == "world" and d.cues is world_cues
