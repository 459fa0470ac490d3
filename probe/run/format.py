"""The one formatter of a finding's numbers: every surface (the HTML report, the notebook objects, `probe check`,
`probe compare` and its page, ``Findings``' own display) prints effects, intervals, p and q through these, so the
same q reads the same everywhere. Missing and non-finite values print as "–"."""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["as_float", "pq", "effect", "number", "interval", "template_phrase", "listing", "class_notes"]

MISSING = "–"


def as_float(value: Any) -> float | None:
    """A finite float, or None (None, NaN, infinities, text and booleans are not numbers here)."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


_EPS = 1e-9  # float noise: 0.29 * 100 is 28.999999999999996


def pq(value: Any) -> str:
    """A p- or q-value: 3 significant digits rounded up, "<0.001" below that. Up, so a printed value is never more
    significant than the value: a q of 0.05004 prints 0.0501, not 0.05 beside the rule "q ≤ 0.05"."""
    v = as_float(value)
    if v is None:
        return MISSING
    if v < 1e-3:
        return "<0.001"
    scale = 10.0 ** (2 - math.floor(math.log10(v)))
    return f"{min(math.ceil(v * scale - _EPS) / scale, 1.0):.3g}"


def _on_the_bar(v: float, digits: int, bars: tuple = ()) -> str:
    """``v``'s size at ``digits`` decimals, or with more (up to 8) where rounding would land it on a bar it is not on:
    carry it up onto a multiple of 0.05 (where the pass bars lie: 0.15, 0.05; an effect of 0.1496 prints 0.1496, not
    0.15 beside the rule "at least 0.15"), or onto or across one of ``bars`` (a gate's limit: an offender of 0.3004
    prints 0.3004, not 0.30 beside "above 0.30"; 0.3331 prints 0.3331 beside "above 0.333"). Past 8 decimals it prints its 10 significant digits."""
    size = abs(v)

    def lands(shown: float) -> bool:
        carried = shown > size + _EPS and abs(shown / 0.05 - round(shown / 0.05)) <= 1e-6
        # a named bar: the printed size on it, or on its other side, where the size is not (0.3331 is not "0.33"
        # beside a limit of 0.333)
        return carried or any(abs(size - b) > _EPS and (abs(shown - b) <= _EPS or (shown > b) != (size > b))
                              for b in bars)

    for d in range(digits, max(digits, 8) + 1):
        if not lands(round(size, d)):
            return f"{size:.{d}f}"
    return f"{size:.10g}"


def effect(value: Any, digits: int = 2, *, signed: bool = True, bars: tuple = ()) -> str:
    """An effect or a change in probability, signed: "+0.40"; ``signed=False`` for its size. Two decimals, more
    where rounding would land it on a bar (``_on_the_bar``; ``bars``: sizes besides the multiples of 0.05 it must not
    be printed as, e.g. a gate's limit)."""
    v = as_float(value)
    if v is None:
        return MISSING
    size = _on_the_bar(v, digits, tuple(abs(float(b)) for b in bars))
    return ("-" if v < 0 and float(size) != 0 else "+") + size if signed else size


def number(value: Any, digits: int = 2) -> str:
    """An accuracy, a probability, a share: "0.83"."""
    v = as_float(value)
    return MISSING if v is None else f"{v:.{digits}f}"


def interval(low: Any, high: Any, digits: int = 2, sep: str = " – ") -> str:
    """A 95% interval whose ends may be unbounded (null or infinite): "0.17 – 0.57", "−∞ – 0.20", "unbounded". Its
    ends are rounded outward, so the printed interval holds the computed one: a low end of 0.1496 prints 0.14, never
    0.15 beside a bar of 0.15 it does not clear."""
    lo, hi = as_float(low), as_float(high)
    if lo is None and hi is None:
        return "unbounded"
    scale = 10.0 ** digits
    lo_text = "−∞" if lo is None else f"{math.floor(lo * scale + _EPS) / scale + 0.0:.{digits}f}"
    hi_text = "+∞" if hi is None else f"{math.ceil(hi * scale - _EPS) / scale + 0.0:.{digits}f}"
    return f"{lo_text}{sep}{hi_text}"


def template_phrase(template: str) -> str:
    """A template's words without the object's slot: ``"{} on grass"`` -> ``"on grass"``, ``"toy {}"`` -> ``"toy"``.
    Counters are named by it in findings, notes and run files, and read back by it (``probe.analysis.retest``,
    ``AnalysisSummary.kept_counters``)."""
    return " ".join(template.replace("{}", " ").split()).strip(" ,")


def listing(items, limit: int = 12) -> str:
    """Items for a note, at most ``limit`` of them: "a, b, c" or "a, b, c and 147 more" (a note of an audit of 1000
    classes names a dozen, not every one; each test's own record says the rest)."""
    items = [str(i) for i in items]
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit:,} more"


_CLASS_NOTE = re.compile(r"class (\d+): (.+)", re.DOTALL)


def class_notes(notes) -> list[str]:
    """Notes with the per-class ones that say the same thing made one: "class 3: token unchanged (...)" written
    for 600 classes of a 1000-class audit becomes "classes 3, 5, 8, ... and 588 more: token unchanged (...)" where
    the first of them stood. Other notes, and a message only one class has, are kept as written, in their order."""
    parsed = [(str(n), _CLASS_NOTE.fullmatch(str(n))) for n in notes]
    classes: dict[str, dict[str, None]] = {}  # message -> its classes, in order, once each
    for _, match in parsed:
        if match:
            classes.setdefault(match.group(2), {})[match.group(1)] = None
    out = []
    for note, match in parsed:
        shared = match is not None and len(classes[match.group(2)]) > 1
        out.append(f"classes {listing(classes[match.group(2)])}: {match.group(2)}" if shared else note)
    return list(dict.fromkeys(out))  # a grouped note stands where its first class's stood
