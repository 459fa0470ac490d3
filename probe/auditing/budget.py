"""``--budget``: how much device time (or how many images) the analysis may spend, parsed once.

The cost model (probe/auditing/cost.py) turns a time budget into an image cap with its measured throughput; the
audit config parses the flag when it is built, so that a bad ``--budget`` is one line before any model loads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from probe.errors import RunError

__all__ = ["Budget", "UnmeasuredBudget"]


class UnmeasuredBudget(RunError):
    """A device-time budget where no measured throughput turns time into images: ``probe audit`` then measures this
    machine once the models load (probe/auditing/measure.py); ``--dry-run`` needs ``--measure`` for it."""

_BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(h|hr|hrs|hours?|m|min|mins|minutes?|s|sec|secs|seconds?|img|imgs|images?)\s*$",
                     re.IGNORECASE)
_SECONDS = {"h": 3600, "m": 60, "s": 1}


@dataclass(frozen=True)
class Budget:
    """``--budget``: device time for the analysis (``2h``, ``90m``, ``600s``) or an image count (``5000img``)."""

    text: str
    images: int | None = None
    seconds: float | None = None

    def __post_init__(self):
        if (self.images is None) == (self.seconds is None):
            raise RunError(f"--budget {self.text!r}: give either images or device time")

    @classmethod
    def parse(cls, text: str | None) -> "Budget | None":
        if text is None:
            return None
        match = _BUDGET.match(str(text))
        value = float(match.group(1)) if match else 0.0
        if not match or value <= 0:
            raise RunError(f"--budget {text!r} is not a budget; give device hours, minutes or seconds for the analysis "
                           "(2h, 90m, 600s) or an image count (5000img)")
        unit = match.group(2).lower()
        if unit.startswith("i"):
            if value != int(value):
                raise RunError(f"--budget {text!r}: an image count is a whole number; give device time (2h, 90m, "
                               "600s) or whole images (5000img)")
            return cls(str(text), images=int(value))
        return cls(str(text), seconds=value * _SECONDS[unit[0]])

    def max_images(self, seconds_per_image: float | None, where: str = "") -> int:
        """The analysis's image cap this budget means, at ``seconds_per_image`` (device time per no-gradient image)."""
        if self.images is not None:
            return self.images
        if seconds_per_image is None:
            raise UnmeasuredBudget(f"--budget {self.text}: no measured throughput{' for ' + where if where else ''} "
                                   "turns time into images; add --measure to time this machine, or give an image count "
                                   "instead, e.g. --budget 5000img")
        return max(1, int(self.seconds / seconds_per_image))
