"""File-name-safe slugs for untrusted class names.

Class names come from a labels file or a model and may contain anything:
``<script>``, ``../../x``, NUL bytes, 10 kB of emoji. ``slugify`` maps them to
``[a-z0-9_-]`` of bounded length so they can appear in file names; the class
index is always prefixed in names that must be unique, because different names
can share a slug.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["slugify", "MAX_SLUG_LEN"]

MAX_SLUG_LEN = 40

_INVALID = re.compile(r"[^a-z0-9_-]+")
_DASHES = re.compile(r"-{2,}")


def slugify(name: object, max_len: int = MAX_SLUG_LEN) -> str:
    """The project's one slug function (``probe.files.slugify``, the run directory's), else ``_local_slugify``."""
    if max_len < 1:
        raise ValueError(f"max_len={max_len!r} must be >= 1; pass a positive length")
    try:
        from probe.files import slugify as shared
    except ImportError:
        return _local_slugify(name, max_len)
    return shared(str(name), max_len)


def _local_slugify(name: object, max_len: int = MAX_SLUG_LEN, fallback: str = "class") -> str:
    """Return ``name`` as a slug of ``[a-z0-9_-]``, at most ``max_len`` characters.

    Accents are folded to ASCII, every other run of characters outside the
    alphabet becomes one ``-``, leading/trailing ``-``/``_`` are stripped, and an
    empty result becomes ``fallback``. ``..``, ``/`` and ``\\`` can never survive.
    """
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii")
    text = _INVALID.sub("-", text.lower())
    text = _DASHES.sub("-", text).strip("-_")
    text = text[:max_len].strip("-_")
    return text or fallback
