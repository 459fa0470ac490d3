"""File-name-safe slugs for untrusted class names: the run directory's own ``probe.files.slugify``.

Class names come from a labels file or a model and may contain anything (``<script>``, ``../../x``,
NUL bytes); the class index is always prefixed in names that must be unique, because different
names can share a slug.
"""

from __future__ import annotations

from probe.files import slugify

__all__ = ["slugify", "MAX_SLUG_LEN"]

MAX_SLUG_LEN = 40
