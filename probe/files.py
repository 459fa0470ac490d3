"""Files: the one atomic writer, the one image saver, and safe names.

Every artifact probe writes goes to a temporary file in the same folder and is renamed into place
(rename is atomic on POSIX and Windows), so a file either exists complete or not at all. Files get
the permissions the user's umask asks for (``tempfile.mkstemp`` alone would leave them at 0600, so a
colleague on a shared machine could not re-render a run). A folder that cannot be written is a
``RunError`` naming the folder, never a raw ``OSError``.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import unicodedata
from contextlib import contextmanager
from pathlib import Path

from probe.errors import RunError


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _unwritable(path: Path, error: OSError) -> RunError:
    reason = error.strerror or type(error).__name__
    return RunError(f"cannot write {str(path)!r} ({reason}); choose a writable folder (e.g. --out runs/NAME) "
                    "or fix its permissions")


def check_writable(path: str | Path, flag: str = "--out") -> None:
    """Refuse, before any work, a folder that could not be created or written: its nearest existing ancestor must
    be a writable folder. Checked with ``os.access`` (nothing is created or left behind)."""
    target = Path(os.path.abspath(Path(path).expanduser()))
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    shown = "it" if existing == target else repr(str(existing))
    if not existing.is_dir():
        raise RunError(f"cannot create {flag} {str(path)!r}: {shown} is a file, not a folder; choose another {flag}")
    if not os.access(existing, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        raise RunError(f"cannot write {flag} {str(path)!r}: {shown} is read-only for this user; choose a writable "
                       f"{flag} (e.g. under your home folder) or fix its permissions")


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as e:  # read-only folder, a file where a folder should be, a full disk
        raise _unwritable(path.parent, e) from e
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and not isinstance(e, FileNotFoundError):
            raise _unwritable(path, e) from e
        raise


def linked_folder(folder: str | Path) -> Path | None:
    """The first folder at or below ``folder`` that is a symbolic link, or None. A folder probe writes pages into and
    prunes (a run's report/, a comparison's page) must hold none: a crafted link there would steer the writes, and the
    pruning of stale files, to wherever it points."""
    folder = Path(folder)
    if folder.is_symlink():
        return folder
    for top, dirs, _ in os.walk(folder):  # does not descend into linked folders; they are named here instead
        for name in dirs:
            if os.path.islink(os.path.join(top, name)):
                return Path(top, name)
    return None


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def _finite(value):
    """NaN and infinities are not JSON: store them as null (strict JSON readers reject ``NaN``)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_default(value):
    for attr in ("tolist", "item"):  # numpy arrays and scalars, torch tensors
        if hasattr(value, attr):
            return getattr(value, attr)()
    return str(value)


def dumps_json(data) -> str:
    """Strict JSON (no NaN), numpy/torch values converted, indented, with a final newline."""
    plain = json.loads(json.dumps(data, default=_json_default))
    return json.dumps(_finite(plain), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def file_sha256(path: str | Path) -> str | None:
    """The SHA-256 of a file's bytes (hex), or None when ``path`` is not a file."""
    import hashlib

    path = Path(path)
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: str | Path, data) -> Path:
    return write_text(path, dumps_json(data))


def to_uint8(image):
    """(3,H,W) float tensor in [0,1] -> (H,W,3) uint8 numpy array; an (H,W,3) uint8 array passes through."""
    import numpy as np

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (3, 4):
            raise ValueError(f"an image array must be (H,W,3) uint8, got {image.dtype} {image.shape}")
        return image
    return (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)


def save_png(path: str | Path, image) -> Path:
    """Save an image atomically as PNG: a (3,H,W) tensor in [0,1] or an (H,W,3) uint8 array."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format="PNG")
    return Path(path)


_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(1, 10)), *(f"lpt{i}" for i in range(1, 10))}


def slugify(name: str, max_length: int = 40) -> str:
    """A file-name-safe form of an untrusted label: [a-z0-9-] only, never empty, never '.' or '..'."""
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode("ascii").lower()
    text = re.sub(r"[^a-z0-9]+", "-", text).strip("-_")[:max_length].strip("-_")
    if text in _WINDOWS_RESERVED:
        text = f"{text}-class"
    return text or "class"


def class_folders(labels) -> list[str]:
    """One distinct folder name per class of a dataset (``probe generate``, ``--balance``): its slug where no other
    label has it, else the slug and the class index, lengthened until no other class has the name. (Appending the
    index alone let "circle" twice give "circle-1" beside a class named "circle-1": two classes in one folder, the
    later one's images replacing the earlier one's, both written on the same seeds.)"""
    slugs = [slugify(n) for n in labels]
    plain = {s for s in slugs if slugs.count(s) == 1}
    names: list[str] = []
    for i, slug in enumerate(slugs):
        name = slug
        if slug not in plain:
            name = f"{slug}-{i}"
            while name in plain or name in names:
                name = f"{name}-{i}"
        names.append(name)
    return names
