"""Domains: what a generator's world knows, handed in to probe through a registry.

A *domain* (the shapes world is one) offers what a plain generator cannot: its cue vocabulary, a concept
scorer that says what an image shows (``predict(images01) -> {attribute: [value per image]}``), the
attribute that names the object, and rendered scenes with true masks. The analysis uses a domain only
through this interface, and neither it nor ``probe.generators`` imports the world: a domain registers
itself under the entry-point group ``probe.domains`` (see pyproject.toml), or by calling
:func:`register_domain` (a notebook, a plugin), and is looked up by name or by the generator it matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from probe.errors import ProbeError

__all__ = ["Domain", "register_domain", "domains", "get_domain", "domain_for"]

ENTRY_POINT_GROUP = "probe.domains"


@dataclass(frozen=True)
class Domain:
    """What a world offers the analysis. Every field but ``name`` and ``generator_path`` is optional."""

    name: str
    generator_path: Callable[[], Path]  # the bundled pipeline folder (the generator alias of the same name)
    cues: Callable[[], list] | None = None  # -> list[probe.analysis.cues.Cue] with attribute/value set
    scorer: Callable[[], Any] | None = None  # -> object with predict(images01) -> {attribute: [value, ...]}
    object_attribute: str = "shape"  # the scorer's attribute that names the object (class)
    scenes: Callable[[str, int, int], tuple] | None = None  # (class name, n, seed) -> (images01, masks, prompts)
    description: str = ""
    # (loaded generator, options) -> the generator as ``--generator NAME:OPTIONS`` asks (e.g. "world:infidelity=0.15")
    variant: Callable[[Any, str], Any] | None = None
    concepts_path: Callable[[], Path] | None = None  # the domain's own concept model folder (``--concepts NAME``)

    def matches(self, generator) -> bool:
        """True when ``generator`` was loaded from this domain's pipeline folder."""
        source = getattr(generator, "source", None)
        if source is None:
            return False
        try:
            return Path(str(source)).resolve() == Path(self.generator_path()).resolve()
        except OSError:
            return False


_REGISTRY: dict[str, Domain] = {}
_LOADED = False


def register_domain(domain: Domain) -> Domain:
    """Make ``domain`` known to probe (replaces one of the same name)."""
    if not isinstance(domain, Domain):
        raise ProbeError(f"register_domain needs a probe.domains.Domain, got {type(domain).__name__}")
    _REGISTRY[domain.name] = domain
    return domain


def _load_entry_points() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            value = point.load()
        except Exception:  # a broken plugin must not break probe; it is simply not offered
            continue
        domain = value() if callable(value) and not isinstance(value, Domain) else value
        if isinstance(domain, Domain):
            _REGISTRY.setdefault(domain.name, domain)


def domains() -> dict[str, Domain]:
    """Every registered domain by name (entry points are loaded on first use)."""
    _load_entry_points()
    return dict(_REGISTRY)


def get_domain(name: str) -> Domain:
    known = domains()
    if name not in known:
        raise ProbeError(f"no domain named {name!r} is installed (known: {', '.join(sorted(known)) or 'none'}); "
                         "reinstall probe (pip install -e .) so its entry points are registered")
    return known[name]


def domain_for(generator) -> Domain | None:
    """The domain whose pipeline ``generator`` was loaded from, or None (a real-world generator)."""
    for domain in domains().values():
        if domain.matches(generator):
            return domain
    return None
