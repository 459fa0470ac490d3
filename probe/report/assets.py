"""Report assets: downscaled thumbnails, optimisation curves, data URIs.

Every file the report writes lands under the report folder with a name built
from a hash (never from a class name), so untrusted labels cannot steer where
bytes go. Sources must resolve inside the run directory.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from probe.files import write_bytes, write_text
from probe.run import RunDir

__all__ = ["AssetStore", "atomic_write_bytes", "atomic_write_text"]

_ASSET_NAME = re.compile(r"^[0-9a-f]{20}\.(png|jpg|jpeg|webp|gif)$")
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp", ".gif": "image/gif"}


def atomic_write_bytes(path: Path, data: bytes) -> None:
    write_bytes(path, data)


def atomic_write_text(path: Path, text: str) -> None:
    write_text(path, text)


class Thumb(dict):
    """``{"src": url, "w": width, "h": height}``; truthy when the image exists."""


class AssetStore:
    """Makes report-local copies of run images (downscaled) and curve plots.

    ``url`` values are relative to the report root, or ``data:`` URIs when
    ``embed`` is set (single-file export: nothing is written to ``assets/``).
    """

    def __init__(self, run_dir: Path, out_dir: Path, *, embed: bool, thumb_px: int = 256, workers: int | None = None):
        self._run = RunDir(run_dir)
        self.run_dir = self._run.root
        self.out_dir = out_dir
        self.embed = embed
        self.thumb_px = int(thumb_px)
        self.warnings: list[str] = []
        self._cache: dict[tuple[str, int], Thumb | None] = {}
        self.n_written = 0
        self.used: set[str] = set()  # report-relative asset paths referenced by this render
        self.workers = workers if workers is not None else min(8, os.cpu_count() or 1)
        self._pool = None

    def prefetch(self, sources: list[Path], max_px: int | None = None) -> None:
        """Make thumbnails for ``sources`` in parallel threads (Pillow releases the GIL while
        decoding and resampling); later ``image()`` calls for them are cache hits."""
        todo = [s for s in dict.fromkeys(sources) if (str(s), int(max_px or self.thumb_px)) not in self._cache]
        if self.workers <= 1 or len(todo) < 4:
            return
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="probe-thumbs")
        list(self._pool.map(lambda s: self.image(s, max_px), todo))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    # -- paths ------------------------------------------------------------------------------
    def inside_run(self, path: str | Path, base: Path | None = None) -> Path | None:
        """Resolve ``path`` (relative to ``base`` or the run dir); None if it escapes the run dir."""
        return self._run.resolve(path, base)

    def _dest(self, key: str, ext: str) -> tuple[Path, str]:
        h = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()[:20]
        rel = f"assets/img/{h[:2]}/{h}{ext}"
        return self.out_dir / rel, rel

    # -- images -----------------------------------------------------------------------------
    def image(self, src: Path, max_px: int | None = None) -> Thumb | None:
        """A thumbnail of ``src``, at most ``max_px`` wide; None, with a warning, when ``src`` resolves outside the run
        directory (a symlink out of it): nothing from outside the run is read, copied or embedded."""
        max_px = int(max_px or self.thumb_px)
        real = self._run.inside(src)
        if real is None:
            self.warnings.append(f"image {os.path.basename(src)!r} resolves outside the run directory (a symlink?); skipped")
            return None
        src = real
        key = (str(src), max_px)
        if key not in self._cache:
            self._cache[key] = self._make_image(src, max_px)
        return self._cache[key]

    def _make_image(self, src: Path, max_px: int) -> Thumb | None:
        try:
            st = src.stat()
            with Image.open(src) as im:
                w, h = im.size
                if Image.MAX_IMAGE_PIXELS and w * h > Image.MAX_IMAGE_PIXELS:  # PIL only warns below twice the limit
                    raise Image.DecompressionBombError(f"{w}x{h} pixels")
                big = max(w, h) > max_px
                if big:
                    scale = max_px / max(w, h)
                    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
                    has_alpha = im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info)
                    ext = ".png" if has_alpha else ".jpg"
                else:
                    tw, th = w, h
                    ext = src.suffix.lower() if src.suffix.lower() in _MIME else ".png"
                dest, rel = self._dest(f"{src.relative_to(self.run_dir)}@{max_px}", ext)
                fresh = not self.embed and dest.exists() and dest.stat().st_mtime >= st.st_mtime
                if fresh:
                    self.used.add(rel)
                    return Thumb(src=rel, w=tw, h=th)
                if big:
                    im2 = im.convert("RGBA" if ext == ".png" else "RGB").resize(
                        (tw, th), Image.Resampling.LANCZOS, reducing_gap=2.0)
                    buf = io.BytesIO()
                    if ext == ".png":
                        im2.save(buf, format="PNG", optimize=False)
                    else:
                        im2.save(buf, format="JPEG", quality=84)
                    data = buf.getvalue()
                elif src.suffix.lower() in _MIME:
                    data = src.read_bytes()
                else:
                    buf = io.BytesIO()
                    im.save(buf, format="PNG")
                    data = buf.getvalue()
        except FileNotFoundError:
            self.warnings.append(f"image {src.relative_to(self.run_dir)} is missing")
            return None
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:  # the last: a header
            # that claims more pixels than any run image has, which decoding would turn into gigabytes
            self.warnings.append(f"image {src.relative_to(self.run_dir)} cannot be read ({type(e).__name__})")
            return None
        return self._emit(data, dest, rel, ext, tw, th)

    def _emit(self, data: bytes, dest: Path, rel: str, ext: str, w: int, h: int) -> Thumb:
        if self.embed:
            return Thumb(src=f"data:{_MIME[ext]};base64,{base64.b64encode(data).decode('ascii')}", w=w, h=h)
        atomic_write_bytes(dest, data)
        self.n_written += 1
        self.used.add(rel)
        return Thumb(src=rel, w=w, h=h)

    def prune(self) -> int:
        """Delete thumbnails and curves of earlier renders that this render no longer references.

        Only files named like our assets (``assets/img/xx/<20 hex>.<ext>``) are touched."""
        root = self.out_dir / "assets" / "img"
        if self.embed or not root.is_dir():
            return 0
        removed = 0
        for sub in root.iterdir():
            if not (sub.is_dir() and re.fullmatch(r"[0-9a-f]{2}", sub.name)):
                continue
            for f in sub.iterdir():
                if f.is_file() and _ASSET_NAME.match(f.name) and f"assets/img/{sub.name}/{f.name}" not in self.used:
                    f.unlink()
                    removed += 1
        return removed

    # -- generated figures -----------------------------------------------------------------
    def figure(self, key: str, sources: list[Path], make_png) -> Thumb | None:
        """A generated PNG (``make_png() -> (bytes, w, h)``), cached on the sources' mtimes."""
        dest, rel = self._dest(f"figure:{key}", ".png")
        newest = max((s.stat().st_mtime for s in sources if s.exists()), default=0.0)
        if not self.embed and dest.exists() and dest.stat().st_mtime >= newest:
            try:
                with Image.open(dest) as im:
                    w, h = im.size
                self.used.add(rel)
                return Thumb(src=rel, w=w, h=h)
            except (OSError, UnidentifiedImageError):
                pass
        data, w, h = make_png()
        return self._emit(data, dest, rel, ".png", w, h)
