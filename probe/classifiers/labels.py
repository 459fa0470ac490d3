"""Class names: reading label files and splitting synonyms.

Label strings are untrusted text: they are kept as given and only split on
commas into synonyms ("tabby, tabby cat" -> ["tabby", "tabby cat"]); the first
synonym is the display name used in prompts.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Sequence

from probe.errors import LabelsError

LABEL_SUFFIXES = (".txt", ".json", ".csv")
_GENERIC = re.compile(r"^(label|class)[_ ]?\d+$", re.IGNORECASE)
_CSV_HEADERS = {"index", "idx", "id", "class_index", "class_id", "label_id", "name", "label", "class",
                "class_name", "classname", "label_name", "names", "labels"}


def split_synonyms(label: str) -> list[str]:
    """``"tabby, tabby cat"`` -> ``["tabby", "tabby cat"]``; never empty."""
    parts = [p.strip() for p in str(label).split(",")]
    parts = [p for p in parts if p]
    return parts or [str(label).strip()]


def object_name(label: str) -> str:
    """A class label as the object a prompt names: its first synonym (``"tabby, tabby cat"`` -> ``"tabby"``)."""
    return split_synonyms(label)[0]


def is_generic(labels: Sequence[str]) -> bool:
    """True for placeholder names ("LABEL_0", "class_3", "7") that carry no meaning."""
    return all(_GENERIC.match(str(n).strip()) or str(n).strip() == str(i) for i, n in enumerate(labels))


def _imagenet() -> list[str]:
    try:
        from timm.data import ImageNetInfo

        return list(ImageNetInfo("imagenet-1k").label_descriptions())
    except Exception as e:  # pragma: no cover - depends on the timm install
        raise LabelsError(
            f"labels 'imagenet': timm could not provide the ImageNet-1k names ({e}); pip install 'timm>=1.0'"
        ) from e


SYNSET_ID = re.compile(r"^n\d{8}$")  # a WordNet synset id, as ImageNet's folders are named ("n01440764")


def imagenet_synsets(labels: Sequence[str]) -> list[str] | None:
    """The WordNet ids of ImageNet-1k's classes ("n01440764", ...) in class order when ``labels`` are its names (as
    ``--labels imagenet`` or a Hugging Face ImageNet config gives them, spellings of a few classes aside: at least
    95% of the first synonyms agree, index by index), else None: ImageNet's own validation folders are named by
    these ids."""
    if len(labels) != 1000:
        return None
    try:
        from timm.data import ImageNetInfo

        info = ImageNetInfo("imagenet-1k")
        same = sum(object_name(a).lower() == object_name(b).lower()
                   for a, b in zip(labels, info.label_descriptions()))
        return list(info.label_names()) if same >= 950 else None
    except Exception:  # pragma: no cover - depends on the timm install: names then match as given
        return None


def _from_mapping(mapping: dict, source: str) -> list[str]:
    if "id2label" in mapping and isinstance(mapping["id2label"], dict):  # a Hugging Face config.json
        mapping = mapping["id2label"]
    items = list(mapping.items())
    if not items:
        raise LabelsError(f"labels {source}: the mapping is empty; give one name per class index")

    def as_int(v: Any) -> int | None:
        if isinstance(v, bool):
            return None
        if isinstance(v, int):
            return v
        if isinstance(v, str) and re.fullmatch(r"\s*\d+\s*", v):
            return int(v)
        return None

    if all(as_int(k) is not None for k, _ in items):
        pairs = {as_int(k): v for k, v in items}
    elif all(as_int(v) is not None for _, v in items):  # {name: index}, e.g. label2id
        pairs = {as_int(v): k for k, v in items}
    else:
        raise LabelsError(
            f"labels {source}: expected {{index: name}} with integer indices, e.g. {{\"0\": \"cat\"}}"
        )
    return _dense(pairs, source)


def _dense(pairs: dict[int, Any], source: str) -> list[str]:
    n = max(pairs) + 1
    missing = [i for i in range(n) if i not in pairs]
    if missing or min(pairs) < 0:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise LabelsError(
            f"labels {source}: indices must run 0..{n - 1} without gaps; missing {shown or 'negative index'}"
        )
    names = [pairs[i] for i in range(n)]
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise LabelsError(f"labels {source}: class {i} has no name ({name!r}); give every class a non-empty name")
    return [str(n) for n in names]


def _from_txt(text: str, source: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for i, line in enumerate(lines):
        if not line:
            raise LabelsError(
                f"labels {source}: line {i + 1} is empty; one name per line, in class-index order"
            )
    if not lines:
        raise LabelsError(f"labels {source}: the file has no names; one name per line, in class-index order")
    return _without_line_keys(lines, source)


_INDEXED_LINE = re.compile(r"(\d+)\s*[:,\t ]\s*(\S.*)")
_SYNSET_LINE = re.compile(r"(n\d{8})\s+(\S.*)")


def _without_line_keys(lines: list[str], source: str) -> list[str]:
    """Names from lines that lead with a key every line has: a class index (``0 tench``, ``0: tench``, 0..n-1 in any
    order) or a WordNet id (ImageNet's ``synset_words.txt`` and Kaggle's ``LOC_synset_mapping.txt``:
    ``n01440764 tench, Tinca tinca``, listed in class-index order). Other lines are names as they are."""
    synsets = [_SYNSET_LINE.fullmatch(line) for line in lines]
    if all(synsets):
        return [m.group(2).strip() for m in synsets]
    indexed = [_INDEXED_LINE.fullmatch(line) for line in lines]
    if all(indexed) and sorted(int(m.group(1)) for m in indexed) == list(range(len(lines))):
        return _dense({int(m.group(1)): m.group(2).strip() for m in indexed}, source)
    return lines


def _from_csv(text: str, source: str) -> list[str]:
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise LabelsError(f"labels {source}: the file has no rows; give index,name or name per row")
    rows = [[c.strip() for c in r] for r in rows]
    if all(c.lower() in _CSV_HEADERS for c in rows[0]):
        rows = rows[1:]
    if not rows:
        raise LabelsError(f"labels {source}: only a header; give index,name or name per row")
    if all(len(r) >= 2 and re.fullmatch(r"\d+", r[0]) for r in rows):
        pairs: dict[int, str] = {}
        for r in rows:
            idx = int(r[0])
            if idx in pairs:
                raise LabelsError(f"labels {source}: index {idx} appears twice; give each index once")
            pairs[idx] = ",".join(r[1:]) if len(r) > 2 else r[1]
        return _dense(pairs, source)
    if all(len(r) == 1 for r in rows):
        return _from_txt("\n".join(r[0] for r in rows), source)
    raise LabelsError(
        f"labels {source}: rows must be 'index,name' (index an integer) or a single 'name' column; "
        "quote names that contain commas"
    )


def load_labels(source: str | Path | Sequence[str]) -> list[str]:
    """Read class names, one per class index, as given (synonyms not yet split).

    ``source``: a ``.txt`` file (one name per line), ``.json`` (a list, or
    ``{index: name}``, or a Hugging Face config with ``id2label``), ``.csv``
    (``index,name`` rows or one ``name`` column, optional header), the string
    ``"imagenet"`` (ImageNet-1k names shipped with timm, offline), or a list.
    """
    if isinstance(source, (list, tuple)):
        if not source:
            raise LabelsError("labels: the list is empty; give one name per class index")
        return _dense(dict(enumerate(source)), "list")
    if isinstance(source, str) and source.strip().lower() in ("imagenet", "imagenet-1k", "imagenet1k"):
        return _imagenet()
    path = Path(source)
    if not path.exists():
        raise LabelsError(
            f"labels {source}: file not found; give a .txt/.json/.csv file or 'imagenet'"
        )
    if path.is_dir():
        raise LabelsError(f"labels {source}: is a folder; give a .txt/.json/.csv file")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise LabelsError(f"labels {path}: not readable as UTF-8 text ({e}); save it as UTF-8") from e
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise LabelsError(f"labels {path}: invalid JSON ({e.msg} at line {e.lineno}); fix the file") from e
        if isinstance(data, list):
            if not data:
                raise LabelsError(f"labels {path}: the list is empty; give one name per class index")
            return _dense(dict(enumerate(data)), str(path))
        if isinstance(data, dict):
            return _from_mapping(data, str(path))
        raise LabelsError(f"labels {path}: expected a JSON list of names or {{index: name}}, got {type(data).__name__}")
    if suffix == ".csv":
        return _from_csv(text, str(path))
    if suffix in (".txt", ".names", ".labels", ""):
        return _from_txt(text, str(path))
    raise LabelsError(f"labels {path}: unknown extension {suffix!r}; use .txt, .json or .csv")
