"""Explaining an exception raised inside the user's model in one line.

TorchScript wraps the model's own exception: ``str(e)`` starts with "The following
operation failed in the TorchScript interpreter." and ends with the original
``builtins.ValueError: <the user's message>``. The user needs that last line, and
a hint about the input size only when the error is about shapes.
"""

from __future__ import annotations

import re

_RAISED = re.compile(r"^(?:builtins\.)?([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt)):\s?(.*)$")
_TORCHSCRIPT_HEADER = "The following operation failed in the TorchScript interpreter"
_SHAPE = re.compile(
    r"shape|size|dimension|\bdims?\b|channels|mat1 and mat2|expected input|spatial|out of range|"
    r"must match|broadcast|\bview\b|reshape",
    re.IGNORECASE,
)


def summarize(e: BaseException, limit: int = 200) -> str:
    """``"ValueError: the user's message"``: the model's own error type and the first line of its message."""
    text = str(e).strip()
    kind = type(e).__name__
    if text.startswith(_TORCHSCRIPT_HEADER) or "Traceback of TorchScript" in text:
        for line in reversed(text.splitlines()):
            m = _RAISED.match(line.strip())
            if m:
                kind, text = m.group(1).rsplit(".", 1)[-1], m.group(2)
                break
    first = text.splitlines()[0].strip() if text else ""
    return f"{kind}: {first[:limit]}" if first else kind


_CHANNELS = re.compile(r"to have (\d+) channels, but got (\d+) channels")


def expected_channels(summary: str) -> int | None:
    """The number of input channels a convolution's error says the model takes ("expected input[2, 3, 224, 224] to
    have 1 channels, but got 3 channels instead"), or None."""
    m = _CHANNELS.search(summary)
    return int(m.group(1)) if m else None


def is_shape_error(summary: str) -> bool:
    """True when the message is about tensor shapes or sizes (so the input size is worth checking)."""
    return bool(_SHAPE.search(summary))


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def first_line(e: BaseException, limit: int = 200) -> str:
    text = _ANSI.sub("", str(e)).strip()
    return text.splitlines()[0][:limit] if text else ""
