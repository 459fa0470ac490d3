"""``--classes``: turn a selection string into class indices."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any, Sequence

from probe.classifiers.labels import SYNSET_ID, imagenet_synsets, split_synonyms
from probe.errors import LabelsError

_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$", re.ASCII)  # ASCII: "²" or "３" are not indices


def _norm(name: str) -> str:
    return " ".join(str(name).replace("_", " ").lower().split())


def _synonyms_of(target: Any) -> list[list[str]]:
    if hasattr(target, "synonyms"):
        return [list(s) for s in target.synonyms]
    if isinstance(target, (list, tuple)):
        return [split_synonyms(str(n)) for n in target]
    raise LabelsError(
        f"select_classes: expected a Classifier or a list of labels, got {type(target).__name__}"
    )


def _synsets_of(target: Any) -> list[str] | None:
    """ImageNet-1k's WordNet ids in class order when ``target``'s labels are its names (its validation folders and
    most ImageNet tooling name classes so: ``n01440764`` is tench), else None."""
    labels = getattr(target, "labels", None) if not isinstance(target, (list, tuple)) else target
    return imagenet_synsets([str(x) for x in labels]) if labels is not None and len(labels) == 1000 else None


def _items(spec: str, depth: int = 0) -> list[str]:
    items: list[str] = []
    for part in spec.replace("\n", ",").split(","):
        part = part.strip()
        if not part:
            continue
        if part.startswith("@"):
            if depth > 0:
                raise LabelsError(f"classes {part}: a class file cannot include another file; list classes directly")
            path = Path(part[1:]).expanduser()
            if not path.is_file():
                raise LabelsError(f"classes {part}: file {path} not found; give @path/to/classes.txt")
            try:
                text = path.read_text(encoding="utf-8-sig")
            except (OSError, UnicodeDecodeError) as e:
                raise LabelsError(f"classes {part}: cannot read {path} ({e}); save it as UTF-8 text") from e
            lines = [ln.split("#", 1)[0] for ln in text.splitlines()]
            items.extend(_items("\n".join(lines), depth + 1))
        else:
            items.append(part)
    return items


def select_classes(spec: str | Sequence[int | str], classifier: Any) -> list[int]:
    """Class indices selected by ``spec``, in the given order, without duplicates.

    ``spec`` is ``"all"``, or comma-separated items, each an index (``"3"``), an
    inclusive range (``"0-9"``), a name matching any synonym case-insensitively
    (``"tabby cat"``), for an ImageNet-1k classifier its WordNet id (``"n02123045"``), or
    ``@file`` with one item per line. Pure numbers are read as indices. ``classifier`` is a
    :class:`Classifier` or a list of label strings.
    """
    synonyms = _synonyms_of(classifier)
    synsets = None
    n = len(synonyms)
    if isinstance(spec, (list, tuple)):
        raw_items = [str(s).strip() for s in spec]
        if any(s.lower() == "all" for s in raw_items):
            return list(range(n))
        raw_items = [s for s in raw_items if s]
    else:
        if not isinstance(spec, str):
            raise LabelsError(f"classes {spec!r}: expected a string like 'all', '0-9' or 'cat,dog'")
        if spec.strip().lower() == "all":
            return list(range(n))
        raw_items = _items(spec)
        if any(s.lower() == "all" for s in raw_items):
            return list(range(n))
    if not raw_items:
        raise LabelsError(f"classes {spec!r}: no classes selected; give 'all', names, indices or ranges like 0-9")

    index: dict[str, list[int]] = {}
    original: dict[str, str] = {}
    for i, syns in enumerate(synonyms):
        for s in syns:
            original.setdefault(_norm(s), s)
            bucket = index.setdefault(_norm(s), [])
            if i not in bucket:
                bucket.append(i)

    out: list[int] = []
    for item in raw_items:
        if item.isascii() and item.isdigit():
            i = int(item)
            if i >= n:
                raise LabelsError(f"classes: index {i} is out of range; the classifier has classes 0-{n - 1}")
            chosen = [i]
        elif m := _RANGE.match(item):
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise LabelsError(f"classes: range {item!r} runs backwards; write {hi}-{lo}")
            if hi >= n:
                raise LabelsError(f"classes: range {item!r} ends past the last class; use at most {lo}-{n - 1}")
            chosen = list(range(lo, hi + 1))
        elif _norm(item) not in index and SYNSET_ID.match(item.strip().lower()):  # a class named so matches by name
            if synsets is None:
                synsets = _synsets_of(classifier) or []
            key = item.strip().lower()
            if key not in synsets:
                raise LabelsError(f"classes: {item!r} is a WordNet id and "
                                  + ("not one of ImageNet-1k's classes; check the id" if synsets else
                                     "the classifier's labels are not ImageNet-1k's; pass --labels imagenet for an "
                                     "ImageNet-1k classifier, or select by name or index"))
            chosen = [synsets.index(key)]
        else:
            key = _norm(item)
            hits = index.get(key, [])
            if len(hits) > 1:
                # Prefer the class whose display name (first synonym) is the item.
                first = [i for i in hits if _norm(synonyms[i][0]) == key]
                if len(first) == 1:
                    hits = first
                else:
                    if synsets is None:
                        synsets = _synsets_of(classifier) or []
                    ids = f" or WordNet id ({', '.join(synsets[i] for i in hits)})" if synsets else ""
                    raise LabelsError(
                        f"classes: {item!r} names several classes ({', '.join(map(str, hits))}); "
                        f"select one by its index{ids}"
                    )
            if not hits:
                close = difflib.get_close_matches(key, list(index), n=3, cutoff=0.6)
                if getattr(classifier, "has_names", True) is False:  # a state dict or export that carries no names
                    hint = (f"the classifier has no class names ({n} classes, indices 0-{n - 1}): pass --labels with "
                            f"a file of its names{' (--labels imagenet for an ImageNet-1k classifier)' if n == 1000 else ''}"
                            ", or select by index")
                elif close:
                    hint = f"did you mean {', '.join(repr(original[c]) for c in close)}?"
                else:
                    hint = f"check --labels or use indices (0-{n - 1})"
                raise LabelsError(f"classes: unknown class name {item!r}; {hint}")
            chosen = hits
        for i in chosen:
            if i not in out:
                out.append(i)
    return out
