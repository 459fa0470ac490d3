"""Which format is this classifier file? Decided from the bytes, not the extension.

========================  =====================================================
format                    evidence
========================  =====================================================
``export``                zip archive with ``archive_format`` / ``models/*.json``
                          members (``torch.export.save``)
``torchscript``           zip archive with ``code/__torch__/`` or
                          ``constants.pkl`` members (``torch.jit.save``)
``torch_save``            zip archive with ``data.pkl`` but no code
                          (``torch.save``), or a raw pickle stream (protocol
                          byte ``0x80``); a state dict or a pickled module
``safetensors``           8-byte little-endian header length then a JSON object
``huggingface``           a folder with ``config.json``
========================  =====================================================
"""

from __future__ import annotations

import json
import re
import struct
import zipfile
from pathlib import Path

from probe.errors import ClassifierError

FORMATS = ("export", "torchscript", "torch_save", "safetensors", "huggingface", "timm")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_FILE_SUFFIXES = (
    ".pt", ".pt2", ".pth", ".ckpt", ".bin", ".safetensors", ".ts", ".jit", ".onnx", ".pkl", ".pickle",
    ".h5", ".keras", ".pb", ".tflite", ".json", ".txt", ".zip", ".tar", ".gz", ".npz", ".npy",
)
_SUGGEST = (
    "save it with torch.export.save (.pt2), torch.jit.save, torch.save(model.state_dict()) "
    "or safetensors, or point at a Hugging Face model folder"
)


def looks_like_hub_id(raw: str) -> bool:
    """``owner/name`` as typed: one slash, no model-file extension, not a path to a local folder."""
    if not _HUB_ID.match(raw) or raw.startswith(("./", "../", "~")) or "\\" in raw:
        return False
    owner = raw.split("/", 1)[0]
    if Path(raw).suffix.lower() in _FILE_SUFFIXES or owner in (".", ".."):
        return False
    return not Path(owner).expanduser().is_dir()  # "models/nope" next to a models/ folder is a local path


def missing(raw: str) -> ClassifierError:
    """The error for a local model path that does not exist (hub ids are fetched: probe.classifiers.hub)."""
    where = "" if Path(raw).expanduser().is_absolute() else f" (relative to {Path.cwd()})"
    return ClassifierError(f"model {raw}: no such file or folder (the file does not exist); check the path{where}")


def looks_like_factory(spec: str) -> bool:
    """``package.module:function`` (and not an existing path)."""
    return bool(_FACTORY.match(spec)) and not Path(spec).exists()


def _zip_format(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ClassifierError(
            f"model {path}: the zip archive is truncated or corrupt ({e}); copy or save the file again"
        ) from e
    if any(n.endswith("/archive_format") or n == "archive_format" for n in names) or any(
        "/models/" in n and n.endswith(".json") for n in names
    ):
        return "export"
    if any("/code/__torch__" in n or n.startswith("code/__torch__") for n in names) or any(
        n.endswith("constants.pkl") for n in names
    ):
        return "torchscript"
    if any(n.endswith("data.pkl") for n in names):
        return "torch_save"
    shown = ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")
    raise ClassifierError(
        f"model {path}: a zip archive that is not a PyTorch file (members: {shown or 'none'}); {_SUGGEST}"
    )


def _safetensors_header(path: Path, head: bytes, size: int) -> bool:
    """True if the file is safetensors; raises if it is one but truncated."""
    if len(head) < 9:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    if not head[8:9] == b"{" or n < 2:
        return False
    if n > 100_000_000:
        return False
    if 8 + n > size:
        raise ClassifierError(
            f"model {path}: the safetensors header is cut off (file is {size} bytes); the file is truncated, copy it again"
        )
    with open(path, "rb") as f:
        f.seek(8)
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClassifierError(f"model {path}: the safetensors header is not valid JSON ({e}); the file is corrupt") from e
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]
    needed = 8 + n + (max(ends) if ends else 0)
    if size < needed:
        raise ClassifierError(
            f"model {path}: safetensors file is truncated ({size} of {needed} bytes); copy or save it again"
        )
    return True


def _is_timm_config(path: Path) -> bool:
    """A timm hub folder's config.json (``timm.models.save_for_hf``: "architecture", no transformers "model_type")."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # left to the transformers loader, which names the problem
    return isinstance(config, dict) and isinstance(config.get("architecture"), str) and "model_type" not in config


def detect_format(path: str | Path) -> str:
    """Return one of :data:`FORMATS` for a file or folder, or raise :class:`ClassifierError`."""
    raw = path if isinstance(path, str) else str(path)
    path = Path(path).expanduser()
    if not path.exists():
        raise missing(raw)
    if path.is_dir():
        if (path / "config.json").is_file():
            return "timm" if _is_timm_config(path / "config.json") else "huggingface"
        files = sorted(p.name for p in path.iterdir())[:6]
        raise ClassifierError(
            f"model {path}: a folder without config.json is not a Hugging Face model (contains: "
            f"{', '.join(files) or 'nothing'}); pass the model file itself"
        )
    size = path.stat().st_size
    if size == 0:
        raise ClassifierError(f"model {path}: the file is empty; save the model again")
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return _zip_format(path)
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch_save"
    if _safetensors_header(path, head, size):
        return "safetensors"
    suffix = path.suffix.lower()
    if suffix == ".onnx" or b"onnx" in head.lower():
        raise ClassifierError(f"model {path}: ONNX models have no gradients in PyTorch and are not supported; {_SUGGEST}")
    if suffix in (".pt", ".pth", ".pt2", ".ckpt", ".bin", ".safetensors", ".ts", ".jit"):
        raise ClassifierError(
            f"model {path}: the {suffix} file is not a readable PyTorch or safetensors file (corrupt or "
            f"truncated?); {_SUGGEST}"
        )
    raise ClassifierError(f"model {path}: unknown format (starts with {head[:8]!r}); {_SUGGEST}")
