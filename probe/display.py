"""HTML pieces for objects that display themselves in Jupyter: inline thumbnails, tables, figures; and
``terminal_safe``, the one guard for untrusted text (run paths, class names) printed to a terminal.

Everything shown is escaped: class names, cue names and sentences come from untrusted labels.
"""

from __future__ import annotations

import base64
import html
import io
import unicodedata
from pathlib import Path


def terminal_safe(text) -> str:
    """``text`` with every control or format character written as a visible escape (``\\x1b``, ``\\u202e``), so a
    run folder or label holding ESC sequences cannot retitle the terminal, clear the screen or reorder the line.
    Printable text (spaces and non-ASCII letters included) is kept as it is."""
    out = []
    for ch in str(text):
        if ch == " " or unicodedata.category(ch)[0] not in "CZ" or unicodedata.category(ch) == "Zs":
            out.append(ch)
        else:  # Cc (ESC, BEL, newline, DEL, C1), Cf (bidi overrides), Cs, Co, Cn, Zl, Zp
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out)

MAX_INLINE = 48  # thumbnails inlined in one display at most (a notebook cell stays small)


def data_uri(path: Path, size: int = 96) -> str | None:
    """A small PNG of the image at ``path`` as a data: URI, or None when it cannot be read."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
            scale = size / max(image.size)
            if scale < 1:
                image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
            else:  # the shapes world's images are tiny: enlarge without blurring
                image = image.resize((round(image.width * scale), round(image.height * scale)), Image.NEAREST)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnails(paths, size: int = 96, captions=None) -> str:
    """A row of inline thumbnails (missing files are skipped), each with its escaped caption."""
    cells = []
    captions = list(captions) if captions is not None else [None] * len(paths)
    for path, caption in list(zip(paths, captions))[:MAX_INLINE]:
        uri = data_uri(Path(path), size)
        if uri is None:
            continue
        text = caption if caption is not None else Path(path).stem
        cells.append(f"<figure style='display:inline-block;margin:2px;text-align:center'>"
                     f"<img src='{uri}' width='{size}' height='{size}' alt='{html.escape(str(text), quote=True)}' "
                     f"title='{html.escape(str(text), quote=True)}' style='image-rendering:pixelated'/>"
                     f"<figcaption style='font-size:10px;max-width:{size}px;overflow:hidden'>{html.escape(str(text))}"
                     f"</figcaption></figure>")
    return f"<div>{''.join(cells)}</div>" if cells else ""


def table(frame, max_rows: int = 20) -> str:
    """A DataFrame as escaped HTML (pandas escapes cell text by default; keep it so)."""
    return frame.head(max_rows).to_html(index=False, escape=True, na_rep="", float_format=lambda v: f"{v:.3g}",
                                        border=0)


def figure_html(figure) -> str:
    """A matplotlib figure as an inline PNG (the figure is closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return f"<img src='data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}'/>"


def escape(value) -> str:
    return html.escape(str(value))
