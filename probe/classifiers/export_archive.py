"""Which entries of a ``.pt2`` archive would ``torch.export.load`` unpickle with code execution?

``torch.export.load`` is documented as unsafe for untrusted files: besides the graph
(JSON) and raw weight bytes it runs these loaders (torch 2.14:
``torch/export/__init__.py``, ``torch/export/pt2_archive/_package.py``,
``torch/_export/serde/serialize.py``):

=====================================================  =========================================
archive entry                                          how torch reads it
=====================================================  =========================================
weights config entry with ``use_pickle``               ``torch.load(weights_only=False)``
constants config entry ``tensor_*`` + ``use_pickle``   ``torch.load(weights_only=False)``
constants config entry ``custom_obj_*``                ``torch._C._pickle_load_obj`` (TorchScript
                                                       unpickler)
constants config entry ``opaque_obj_*``                ``pickle.loads``
``data/sample_inputs/<model>.pt``, legacy              ``deserialize_torch_artifact``:
``data/weights/<model>.pt``, ``data/constants/...pt``  ``weights_only=True``, then *falls back* to
                                                       ``weights_only=False``
``data/aotinductor/...``                               compiled shared libraries, loaded natively
pre-2.7 layout (root ``version`` + ``serialized_*``)   ``deserialize_torch_artifact`` (fallback
                                                       when the new layout fails to load)
=====================================================  =========================================

:func:`unsafe_entries` reads the zip itself and names every entry that would reach
one of those unsafe paths. A ``.pt`` entry is safe when ``torch.load(weights_only=True)``
reads it: torch then never takes the fallback, and even if it did (a device
mismatch), the pickle references only globals on torch's weights-only allowlist.
Names are compared case-insensitively and duplicates are refused, so the zip
reader torch uses (miniz) cannot be shown a different entry than the one checked.
"""

from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from pathlib import Path

import torch

from probe.errors import ClassifierError

_AOTI = "data/aotinductor/"
_CONFIG_DIRS = ("data/weights/", "data/constants/")
_PICKLED_PREFIXES = ("custom_obj_", "opaque_obj_")
_LEGACY_ROOT = "version"


def _relative(name: str) -> str:
    """Member name inside the archive's top folder, as torch's reader sees it (lower-cased)."""
    norm = name.replace("\\", "/").lower()
    return norm.split("/", 1)[1] if "/" in norm else norm


def _loads_weights_only(data: bytes) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        return True
    except Exception:
        return False


def _config_entries(path: Path, member: str, data: bytes) -> list[tuple[str, dict]]:
    try:
        cfg = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ClassifierError(
            f"model {path}: the archive entry {member} is not valid JSON ({e}); the file is corrupt, "
            "export it again with torch.export.save"
        ) from e
    entries = cfg.get("config") if isinstance(cfg, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(v, dict) for v in entries.values()):
        raise ClassifierError(
            f"model {path}: the archive entry {member} is not a torch.export payload config; the file is "
            "corrupt, export it again with torch.export.save"
        )
    return list(entries.items())


# Torch operators that reach the file system. A TorchScript archive's code (run by ``torch.jit.load`` itself, in
# ``__setstate__``, and by every forward) and an exported program's graph (run by probe's first forward) may call any
# registered operator; these read or write files (``aten::from_file`` maps a file of any path into a tensor that
# writes through to disk when filled), or raw memory. Found in torch 2.14's schemas
# (``torch._C._jit_get_all_schemas``): from_file, save, debugprims::load_tensor, symm_mem::*.
_IO_OPS = re.compile(rb"\bfrom_file\b|\baten(?:::|\.)save\b|\btorch\.save\b|\bload_tensor\b|\bsymm_mem\b")


def _open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ClassifierError(
            f"model {path}: the zip archive is truncated or corrupt ({e}); copy or save the file again"
        ) from e


def io_operators(path: Path) -> list[str]:
    """Entries of a TorchScript or ``.pt2`` archive whose code or graph names a file-system operator (:data:`_IO_OPS`),
    with the operator: loading or running such a model could read or write files. Tensor storages (``data/``,
    ``*/data/``, weights only) are not code and are not read."""
    zf = _open_zip(path)
    found: list[str] = []
    with zf:
        for info in zf.infolist():
            rel = _relative(info.filename)
            if info.is_dir() or (rel.startswith("data/") and not rel.endswith((".py", ".json", ".pkl"))):
                continue
            match = _IO_OPS.search(zf.read(info))
            if match:
                found.append(f"{info.filename} ({match.group(0).decode('ascii', 'replace')})")
    return found


def unsafe_entries(path: Path) -> list[str]:
    """Entries (with the reason) that ``torch.export.load`` would unpickle with code execution."""
    zf = _open_zip(path)
    found: list[str] = []
    with zf:
        infos = zf.infolist()
        seen: dict[str, str] = {}
        for info in infos:
            key = info.filename.replace("\\", "/").lower()
            if key in seen:
                raise ClassifierError(
                    f"model {path}: the archive holds the entry {info.filename} twice; the file is corrupt or "
                    "tampered with, export it again with torch.export.save"
                )
            seen[key] = _relative(key)
        rel_names = list(seen.values())
        if len(set(rel_names)) != len(rel_names):
            dup = next(n for n in rel_names if rel_names.count(n) > 1)
            raise ClassifierError(
                f"model {path}: the archive holds the entry {dup} in two folders; the file is corrupt or "
                "tampered with, export it again with torch.export.save"
            )
        legacy = _LEGACY_ROOT in seen  # torch.export.load's pre-2.7 fallback needs a root "version"
        for info in infos:
            name = info.filename
            full = name.replace("\\", "/").lower()
            rel = seen[full]
            if info.is_dir():
                continue
            if rel.startswith(_AOTI) or full.startswith(_AOTI):
                found.append(f"{name} (compiled AOTInductor code)")
            elif (
                rel.endswith(".pt")
                or rel.startswith("data/sample_inputs/")
                or (legacy and full.startswith("serialized_") and full != "serialized_exported_program.json")
            ):
                if not _loads_weights_only(zf.read(info)):
                    found.append(f"{name} (a pickle that is not plain tensors)")
            elif rel.endswith(".json") and rel.startswith(_CONFIG_DIRS):
                for fqn, entry in _config_entries(path, name, zf.read(info)):
                    path_name = entry.get("path_name")
                    if entry.get("use_pickle") or (
                        isinstance(path_name, str) and path_name.lower().startswith(_PICKLED_PREFIXES)
                    ):
                        found.append(f"{name}: {fqn} (marked use_pickle)")
    return found
