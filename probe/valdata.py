"""The user's labelled validation images: ``read_val_data(spec, labels) -> ValData``.

``spec`` is one of:

- a folder in ImageFolder layout (``DIR/<label>/<image>``; images by extension: png, jpg, jpeg, bmp, gif, webp,
  tif, tiff; other files, and hidden ones such as macOS's ``._x.jpg`` or ``.ipynb_checkpoints/``, are ignored);
- a CSV file of ``path,label`` rows (paths relative to the CSV's folder, or to the working directory where only that
  finds the file; a header row naming the columns is
  skipped, and a semicolon, tab or bar separates the columns as well as a comma);
- from Python, a list of ``(path, label)`` pairs, or a torch ``Dataset`` of ``(image, label)`` items (a PIL image,
  a (3,H,W) float tensor in [0,1], uint8 or uint16, or a numpy (H,W,3) array as OpenCV and albumentations give;
  a label as a name or a class index), or items that are dicts (``{"image": ..., "label": ...}``), as a Hugging
  Face ``datasets.Dataset`` gives them (its labels read from the label column, named by its ``ClassLabel``).

Images are decoded as torchvision's ImageFolder loader does (``convert("RGB")``), except 16-bit greyscale (X-rays,
microscopy: PIL's I;16 and I modes), which is scaled by its own range instead of clipped at 255.

Everything here is checked before any model loads, each problem one line naming it and the fix: a missing folder
or file, no images at all, labels that are not the classifier's (the first few unknown ones named). An image that
does not decode is not fatal: :meth:`ValData.load` raises :class:`Unreadable`, and the caller skips and counts it.
Labels match a classifier's label exactly, its first synonym (``"tabby, tabby cat"`` -> ``tabby``), the file-safe
slug of either (folders are often slugs), its class index written as a number, or for an ImageNet-1k classifier
its WordNet id (ImageNet's validation folders: ``n01440764`` is ``tench``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from probe.classifiers.labels import SYNSET_ID
from probe.errors import ProbeError
from probe.files import slugify

__all__ = ["ValDataError", "Unreadable", "ValItem", "ValData", "read_val_data", "check_val_source", "IMAGE_EXTENSIONS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


class ValDataError(ProbeError):
    """The validation data cannot be used: missing, empty, or labelled with classes the classifier does not have."""


class Unreadable(Exception):
    """One image did not decode (skipped and counted by the caller, never fatal)."""


@dataclass(frozen=True)
class ValItem:
    """One labelled image: ``name`` (its path relative to the data, or ``#i`` in a Dataset: shown, never opened from a
    run), ``class_index`` (the classifier's), ``path`` (a file) or ``index`` (a Dataset item)."""

    name: str
    class_index: int
    path: Path | None = None
    index: int | None = None


@dataclass(frozen=True)
class ValData:
    """The labelled images, checked against the classifier's labels; ``load(item)`` decodes one as (3,H,W) in [0,1]."""

    items: tuple[ValItem, ...]
    source: str  # "folder", "csv", "list" or "dataset"
    root: str
    labels: tuple[str, ...]
    dataset: Any = field(default=None, repr=False, compare=False)
    duplicates: int = 0  # rows that named a file listed before, dropped (_unique)

    def __post_init__(self):
        if not self.items:
            raise ValDataError(f"the validation data {self.root!r} holds no images; give a folder with one subfolder "
                               "of images per class (ImageFolder), or a CSV of path,label rows")

    def __len__(self) -> int:
        return len(self.items)

    def per_class(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for item in self.items:
            counts[item.class_index] = counts.get(item.class_index, 0) + 1
        return dict(sorted(counts.items()))

    def describe(self) -> dict:
        """What confirmation.json records of the data (before decoding: ``listed``)."""
        return {"source": self.source, "root": self.root, "listed": len(self.items), "duplicates": self.duplicates,
                "per_class": {self.labels[i]: n for i, n in self.per_class().items()}}

    def load(self, item: ValItem):
        """The image as a float tensor (3,H,W) in [0,1]; :class:`Unreadable` when it does not decode."""
        import torch

        if item.path is not None:
            return _decode(item.path)
        try:
            image = _item_parts(self.dataset[item.index])[0]
        except Exception as e:  # the user's Dataset failed on this item: skipped and counted like a bad file
            raise Unreadable(f"{type(e).__name__}: {e}") from e
        return _as_tensor(image, torch)

    def __repr__(self) -> str:
        counts = ", ".join(f"{self.labels[i]} {n}" for i, n in list(self.per_class().items())[:8])
        return f"ValData({self.source} {self.root!r}: {len(self.items)} images; {counts})"


def _decode(path: Path):
    from PIL import Image, UnidentifiedImageError

    if not Path(path).is_file():  # a FIFO or device listed in a CSV would block Image.open for ever
        raise Unreadable("no such file" if not os.path.lexists(path) else "not a regular file (a folder, FIFO or device)")
    try:
        with Image.open(path) as im:
            im.load()
            return _pil_tensor(im)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # damaged
        # files, and a header claiming more pixels than PIL will decode
        raise Unreadable(f"{type(e).__name__}: {str(e)[:120]}") from e


#: PIL modes of one channel deeper than 8 bits, and the value that is white in each: 16-bit PNGs and TIFFs (X-rays,
#: microscopy) open as I;16 or, in some Pillow versions and for 32-bit integer files, as I. ``convert("RGB")`` clips
#: them at 255, so a 16-bit scan would read as a white image.
_DEEP_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0}


def _pil_tensor(im):
    """A PIL image as (3,H,W) float32 in [0,1]: 8-bit modes through ``convert("RGB")`` (what torchvision's
    ImageFolder loader gives a classifier), 16-bit greyscale scaled by its own range, float images taken as [0,1]."""
    import numpy as np
    import torch

    if im.mode in _DEEP_MODES:
        grey = np.asarray(im, dtype=np.float32) / _DEEP_MODES[im.mode]
        arr = np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    elif im.mode == "F":
        grey = np.asarray(im, dtype=np.float32)
        if not np.isfinite(grey).all() or grey.min() < -1e-3 or grey.max() > 1 + 1e-3:
            raise Unreadable(f"a floating-point image with values in [{grey.min():.3g}, {grey.max():.3g}], not [0, 1]; "
                             "save it as an 8- or 16-bit image")
        arr = np.repeat(np.clip(grey, 0.0, 1.0)[..., None], 3, axis=2)
    else:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise Unreadable(f"decoded to an empty image {arr.shape}")
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()


def _as_tensor(image, torch):
    import numpy as np

    if hasattr(image, "convert"):  # a PIL image
        return _pil_tensor(image)
    if isinstance(image, np.ndarray):  # OpenCV / albumentations: (H,W,3), (H,W,1) or (H,W); (3,H,W) taken as it is
        array = image[..., None] if image.ndim == 2 else image
        if array.ndim == 3 and array.shape[-1] in (1, 3) and array.shape[0] not in (1, 3):
            array = np.moveaxis(array, -1, 0)
        if array.dtype == np.uint16:
            array = array.astype(np.int32)  # torch reads int32, and _as_tensor scales it as 16 bits
        image = torch.from_numpy(np.ascontiguousarray(array))
    if isinstance(image, torch.Tensor) and image.ndim == 3 and image.shape[0] in (1, 3):
        white = 1.0 if image.is_floating_point() else 65535.0 if image.dtype in (torch.uint16, torch.int32) else 255.0
        x = image.detach().float() / white
        if float(x.min()) < -1e-3 or float(x.max()) > 1 + 1e-3:
            raise Unreadable(f"a tensor image with values in [{float(x.min()):.3g}, {float(x.max()):.3g}], not [0, 1]: "
                             "give the images unnormalised (drop transforms.Normalize; probe applies the classifier's "
                             "own resize and normalisation)")
        return x.expand(3, -1, -1).contiguous().cpu()
    raise Unreadable(f"a {type(image).__name__} image of shape {tuple(getattr(image, 'shape', ()))}, not a PIL image, "
                     "a (3,H,W) tensor or an (H,W,3) array")


def _keys(name: str) -> tuple[str, ...]:
    """The case-folded and slug forms a name is also found by (the name itself included)."""
    return tuple(dict.fromkeys((name, name.strip().lower(), slugify(name))))


class _Labels:
    """The classifier's labels, matched by name, then by index or WordNet id. A name is looked up exactly as spelled
    first, then by its case-folded and slug forms (``_keys``), each in tiers: the whole label, its first synonym, any
    other synonym. So "cardigan" is the class labelled "cardigan", never the corgi whose second synonym it is; a
    folder "Cardigan" is the corgi, whose first synonym it spells exactly, not 474 "cardigan" that it case-folds to;
    a name that two classes share within its tier ("crane": 134 and 517) is an error naming both, never a guess. A
    class index ("2") is read as one only where no label is named so: with labels "1", "2", "3" the folder "2" is the
    class named "2"."""

    def __init__(self, labels: Sequence[str]):
        from probe.classifiers.labels import imagenet_synsets, split_synonyms

        self.labels = tuple(str(x) for x in labels)
        self.ids: dict[str, int] = {str(i): i for i in range(len(self.labels))}
        self.synsets = imagenet_synsets(self.labels)
        for i, synset in enumerate(self.synsets or ()):
            self.ids.setdefault(synset, i)
        # per tier (whole label, first synonym, other synonyms): the names as spelled, and their folded forms
        self.exact: list[dict[str, set[int]]] = [{}, {}, {}]
        self.folded: list[dict[str, set[int]]] = [{}, {}, {}]
        for i, raw in enumerate(self.labels):
            synonyms = split_synonyms(raw) or []
            for tier, names in enumerate(([raw], synonyms[:1], synonyms[1:])):
                for name in names:
                    self.exact[tier].setdefault(name, set()).add(i)
                    for key in _keys(name):
                        self.folded[tier].setdefault(key, set()).add(i)

    def index(self, label: Any) -> int | None:
        if isinstance(label, bool):
            return None
        if isinstance(label, int) or (hasattr(label, "item") and not isinstance(label, str)):
            try:
                value = int(label)
            except (TypeError, ValueError):
                return None
            return value if 0 <= value < len(self.labels) else None
        text = str(label)
        from probe.classifiers.labels import split_synonyms

        first = (split_synonyms(text) or [text])[0]  # "goldfish, Carassius auratus", as ImageNet's lists spell it
        # the name as spelled in every tier before any folded form; the name as given before its first synonym
        for tiers, keys in ((self.exact, (text,)), (self.exact, (first,)),
                            (self.folded, _keys(text)), (self.folded, _keys(first))):
            for tier in tiers:
                hits = sorted({i for key in keys for i in tier.get(key, ())})
                if len(hits) == 1:
                    index = self.ids.get(text)
                    if index is not None and index != hits[0]:  # "2" names class 1 and is class index 2: folders
                        # of names and of indices would be mixed silently ("0" index 0, "1" the class named "1")
                        raise ValDataError(
                            f"label {text!r} is the name of class {hits[0]} ({self.labels[hits[0]]!r}) and also class "
                            f"index {index} ({self.labels[index]!r}); with class names that are numbers, name the "
                            "folders (or CSV labels) so that each reads one way: by WordNet id, or a CSV of path,label "
                            "with the classes' names as --labels gives them, none of them another class's number")
                    return hits[0]
                if hits:
                    shown = ", ".join(f"{i} {self.labels[i]!r}" for i in hits[:4])
                    raise ValDataError(f"label {text!r} names {len(hits)} of the classifier's classes ({shown}); name "
                                       "its folder (or CSV label) by the class index or WordNet id instead")
        return self.ids.get(text)

    def check(self, found: Sequence[Any], where: str) -> list[int]:
        out, unknown = [], []
        for label in found:
            index = self.index(label)
            if index is None:
                if str(label) not in unknown:
                    unknown.append(str(label))
            out.append(index)
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:4]) + (f" and {len(unknown) - 4} more" if len(unknown) > 4 else "")
            known = ", ".join(self.labels[:6]) + (" ..." if len(self.labels) > 6 else "")
            fix = "rename them to the classifier's labels (or their class indices)"
            if self.synsets is None and len(self.labels) == 1000 and all(SYNSET_ID.match(u) for u in unknown):
                fix = ("they are ImageNet's WordNet ids: for an ImageNet-1k classifier pass --labels imagenet (from "
                       "Python, labels='imagenet') so that its classes carry ImageNet's names")
            raise ValDataError(f"{where}: label(s) {shown} are not the classifier's ({len(self.labels)} classes: {known}); "
                               f"{fix}")
        return out


def check_val_source(spec: Any) -> None:
    """The checks that need no labels, for ``probe audit --val-data`` before any model loads: a missing folder or
    CSV, a CSV that cannot be read or whose listed files all are missing."""
    _check_exists(spec)
    path = Path(spec).expanduser() if isinstance(spec, (str, os.PathLike)) else None
    if path is not None and path.is_file() and path.suffix.lower() in (".csv", ".txt"):
        _csv_paths(path, _csv_rows(path, None))


def _check_exists(spec: Any) -> None:
    if isinstance(spec, (str, os.PathLike)) and not Path(spec).expanduser().exists():
        raise ValDataError(f"--val-data {str(spec)!r} does not exist; pass a folder of class subfolders (ImageFolder) "
                           "or a CSV of path,label rows")


def read_val_data(spec: Any, labels: Sequence[str]) -> ValData:
    """The labelled images of ``spec`` (see the module docstring), checked against ``labels``; no image is decoded."""
    import torch

    known = _Labels(labels)
    if isinstance(spec, (str, os.PathLike)):
        _check_exists(spec)
        path = Path(spec).expanduser()
        if path.is_dir():
            return _folder(path, known)
        if path.suffix.lower() in (".csv", ".txt"):
            return _csv(path, known)
        raise ValDataError(f"--val-data {str(spec)!r} is a file but not a CSV; pass a folder of class subfolders "
                           "(ImageFolder) or a .csv of path,label rows")
    if isinstance(spec, torch.utils.data.Dataset) or _map_style(spec):
        return _dataset(spec, known)
    if isinstance(spec, (list, tuple)):
        pairs = list(spec)
        bad = next((p for p in pairs if not (isinstance(p, (list, tuple)) and len(p) == 2)), None)
        if bad is not None:
            raise ValDataError(f"validation data as a list must hold (path, label) pairs, not {bad!r}")
        if pairs and not isinstance(pairs[0][0], (str, os.PathLike)):  # (image, label) pairs: a map-style dataset
            return _dataset(pairs, known)
        indices = known.check([label for _, label in pairs], "validation data list")
        items = tuple(ValItem(str(p), i, path=Path(p).expanduser()) for (p, _), i in zip(pairs, indices))
        items, duplicates = _unique(items, known.labels, "the validation data list")
        return ValData(items, "list", f"{len(pairs)} paths", known.labels, duplicates=duplicates)
    raise ValDataError(f"validation data of type {type(spec).__name__} is not supported; pass a folder, a CSV file, a "
                       "list of (path, label) pairs or a torch Dataset of (image, label)")


def _unique(items: tuple[ValItem, ...], labels: Sequence[str], where: str) -> tuple[tuple[ValItem, ...], int]:
    """``items`` with each file once (by its real path: "x.png" and "./x.png" are one image, which counted twice in
    every slice and test), and how many rows were dropped; a file given two labels is a one-line error."""
    seen: dict[str, ValItem] = {}
    for item in items:
        key = os.path.realpath(item.path) if item.path is not None else item.name
        first = seen.setdefault(key, item)
        if first.class_index != item.class_index:
            raise ValDataError(f"{where}: {item.name!r} is labelled {labels[first.class_index]!r} and "
                               f"{labels[item.class_index]!r}; give each image one label")
    return tuple(seen.values()), len(items) - len(seen)


def _folder(root: Path, known: _Labels) -> ValData:
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    others = {os.path.realpath(root), *(os.path.realpath(p) for p in subfolders)}
    found = [(p, sorted(f for f in _files_under(p, others) if f.suffix.lower() in IMAGE_EXTENSIONS
                        and not _hidden(f.relative_to(p))))
             for p in subfolders]
    found = [(p, files) for p, files in found if files]
    if not found:
        loose = any(f.suffix.lower() in IMAGE_EXTENSIONS for f in root.iterdir() if f.is_file())
        raise ValDataError(f"--val-data {str(root)!r} has no class subfolders with images"
                           f"{' (its images lie directly in it)' if loose else ''}; lay it out as DIR/<label>/<image> "
                           "with the classifier's labels as folder names")
    indices = known.check([p.name for p, _ in found], f"--val-data {str(root)!r}")
    items = tuple(ValItem(f.relative_to(root).as_posix(), i, path=f) for (_, files), i in zip(found, indices)
                  for f in files)
    return ValData(items, "folder", str(root), known.labels)


def _files_under(folder: Path, others: set[str]) -> list[Path]:
    """Every file under a class folder, through symlinked folders as torchvision's ImageFolder goes (a class folder
    that links to shared storage, a subfolder linked in), each real folder once. A link into ``others`` (the real
    paths of the data's root and its class folders) or above the root is not followed: its images are another
    class's, or a loop."""
    seen, out = set(), []
    for top, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(top)
        inside = Path(top) != folder
        if real in seen or (inside and (real in others or any(o.startswith(real + os.sep) for o in others))):
            dirs[:] = []
            continue
        seen.add(real)
        out += [Path(top) / name for name in files if (Path(top) / name).is_file()]
    return out


def _hidden(relative: Path) -> bool:
    """A file under a hidden name or folder: macOS's ``._photo.jpg`` resource forks, ``.ipynb_checkpoints/``, ``.git/``
    (torchvision's ImageFolder trips on them too); never the user's images."""
    return any(part.startswith(".") for part in relative.parts)


def _csv(path: Path, known: _Labels) -> ValData:
    rows = _csv_rows(path, known)
    indices = known.check([r[1].strip() for r in rows], f"--val-data {str(path)!r}")
    items = tuple(ValItem(r[0].strip(), i, path=p) for r, i, p in zip(rows, indices, _csv_paths(path, rows)))
    items, duplicates = _unique(items, known.labels, str(path))
    return ValData(items, "csv", str(path), known.labels, duplicates=duplicates)


def _csv_rows(path: Path, known: _Labels | None) -> list[list[str]]:
    """The path,label rows of a CSV, header dropped; ``known`` None: before the classifier's labels are known."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            text = f.read()
        rows = [r for r in csv.reader(text.splitlines(), delimiter=_delimiter(text)) if r and any(c.strip() for c in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ValDataError(f"--val-data {str(path)!r} cannot be read as CSV ({type(e).__name__}: {e}); save it as "
                           "UTF-8 text with path,label rows") from e
    if rows and _is_header(rows[0], known):
        rows = rows[1:]
    short = next((n for n, r in enumerate(rows) if len(r) < 2), None)
    if short is not None:
        raise ValDataError(f"--val-data {str(path)!r}: row {short + 1} ({','.join(rows[short])!r}) is not path,label; "
                           "write one image per row as path,label")
    if not rows:
        raise ValDataError(f"--val-data {str(path)!r} lists no images; write one image per row as path,label")
    return rows


def _csv_paths(path: Path, rows: list[list[str]]) -> list[Path]:
    """Each row's file: relative to the CSV's folder, or, where only that exists, to the working directory (a CSV
    written by a script run from the project's root). A file missing both ways is kept (skipped and counted when
    read); when no listed file exists at all, one line says so before any model loads."""
    out, found = [], 0
    for r in rows:
        given = Path(r[0].strip()).expanduser()
        beside = path.parent / given  # the given path itself when it is absolute
        exists = beside.exists()  # one stat a row, a second only where the CSV's folder lacks a relative one
        chosen = beside
        if not exists and not given.is_absolute() and given.exists():
            chosen, exists = Path.cwd() / given, True
        found += exists
        out.append(chosen)
    if not found:
        raise ValDataError(f"--val-data {str(path)!r}: none of its {len(rows)} files exist (the first: {str(out[0])!r}, "
                           f"read relative to the CSV's folder); write paths relative to the CSV or absolute")
    return out


def _delimiter(text: str) -> str:
    """The separator of a path,label file: a comma, or what spreadsheets and shells also write (a semicolon where the
    decimal mark is a comma, a tab in .tsv/.txt exports, a bar), read off the first line that holds one."""
    for line in text.splitlines():
        if "\t" in line:  # a tab is never part of a path or a label written by hand: a TSV ("a, b/x.png<TAB>circle")
            return "\t"
        counts = {d: line.count(d) for d in (",", ";", "|")}
        best = max(counts, key=counts.get)
        if counts[best]:
            return best
    return ","


def _is_header(row: list[str], known: _Labels | None) -> bool:
    """A first row that names its columns (``path,label``, ``filename,class``, ``image,target`` ...): its first cell
    is not an image file name and its second is not one of the classifier's labels."""
    first = row[0].strip()
    label = row[1].strip() if len(row) > 1 else ""
    if [first.lower(), label.lower()] == ["path", "label"]:
        return True  # the documented header, also for a classifier with a class called "label"
    return not first.lower().endswith(IMAGE_EXTENSIONS) and (known is None or known.index(label) is None)


#: the keys a dict item names its image and its label by: Hugging Face ``datasets`` rows ({"image", "label"} on
#: imagenet-1k, beans, food101; {"img", "label"} on cifar10; {"img", "fine_label"} on cifar100) and dict Datasets
IMAGE_KEYS = ("image", "img", "pixel_values", "images", "jpg", "png")
LABEL_KEYS = ("label", "labels", "target", "fine_label", "class", "cls")


def _map_style(spec: Any) -> bool:
    """Not a torch Dataset but indexable by position with a length, as a Hugging Face ``datasets.Dataset`` is."""
    from collections.abc import Mapping

    return (not isinstance(spec, (str, bytes, list, tuple, Mapping)) and hasattr(spec, "__len__")
            and hasattr(spec, "__getitem__"))


def _key(item: Any, keys: Sequence[str], what: str) -> str:
    found = next((k for k in keys if k in item), None)
    if found is None:
        raise ValDataError(f"a validation Dataset item is a dict with keys {sorted(map(str, item))}, none of them "
                           f"{what}; name the image one of {', '.join(IMAGE_KEYS)} and the label one of "
                           f"{', '.join(LABEL_KEYS)}")
    return found


def _item_parts(item: Any) -> tuple[Any, Any]:
    """(image, label) of one Dataset item: a pair, or a dict with an image key and a label key."""
    from collections.abc import Mapping

    if isinstance(item, Mapping):
        return item[_key(item, IMAGE_KEYS, "the image")], item[_key(item, LABEL_KEYS, "the label")]
    return item[0], item[1]


def _label_column(dataset: Any) -> tuple[Any, Sequence[str] | None]:
    """A Hugging Face ``datasets.Dataset``'s labels read off its label column (no image decoded), and the names its
    ``ClassLabel`` feature gives them; (None, None) for any other Dataset."""
    columns = getattr(dataset, "column_names", None)
    key = next((k for k in LABEL_KEYS if k in (columns or ())), None)
    if key is None:
        return None, None
    feature = (getattr(dataset, "features", None) or {}).get(key)
    return dataset[key], getattr(feature, "names", None)


def _names_and_targets(dataset) -> tuple[Any, Any]:
    """(class names, targets) of a Dataset, through torch's Subset and ConcatDataset (which keep neither: a Subset of
    an ImageFolder had its folder-order integers read as the classifier's indices), or (None, None)."""
    names, targets = getattr(dataset, "classes", None), getattr(dataset, "targets", None)
    if names is not None or targets is not None:
        return names, targets
    inner, indices = getattr(dataset, "dataset", None), getattr(dataset, "indices", None)
    if inner is not None and indices is not None:  # torch.utils.data.Subset
        names, targets = _names_and_targets(inner)
        return names, (None if targets is None else [targets[int(i)] for i in indices])
    parts = getattr(dataset, "datasets", None)
    if parts is not None:  # torch.utils.data.ConcatDataset: one list of names for all of its parts, or none
        found = [_names_and_targets(part) for part in parts]
        kinds = {None if nm is None else tuple(map(str, nm)) for nm, _ in found}
        if len(kinds) == 1 and all(t is not None for _, t in found):
            return found[0][0], [t for _, ts in found for t in ts]
        if len(kinds) > 1:
            raise ValDataError("the validation ConcatDataset joins Datasets with different class lists; give each its "
                               "own probe confirm, or one Dataset whose labels are the classifier's")
    return None, None


def _dataset(dataset, known: _Labels) -> ValData:
    from collections.abc import Mapping

    try:
        n = len(dataset)
    except TypeError as e:
        raise ValDataError("a torch Dataset given as validation data must have a length (a map-style Dataset)") from e

    def label(i: int):
        try:
            row = dataset[i]
            return row[_key(row, LABEL_KEYS, 'the label')] if isinstance(row, Mapping) else row[1]
        except ValDataError:
            raise
        except (IndexError, KeyError, TypeError) as e:
            raise ValDataError(f"the validation Dataset's item {i} is not (image, label) or a dict of them "
                               f"({type(e).__name__}: {e})") from e
        except Exception as e:
            raise ValDataError(f"the validation Dataset failed on item {i} ({type(e).__name__}: {e}); each item must "
                               "be (image, label) or a dict of them") from e

    # labels without decoding an image where the Dataset keeps them apart (torchvision's targets, a label column)
    names, targets = _names_and_targets(dataset)
    if targets is None:
        targets, column_names = _label_column(dataset)
        names = names if names is not None else column_names
    if names is not None and [str(x) for x in names] == list(known.labels):
        names = None  # the classifier's own label list: its integers are the classifier's indices, as they are
    if targets is not None and len(targets) == n:
        labels = [names[int(t)] if names is not None else t for t in targets]
    else:
        labels = [label(i) for i in range(n)]
        if names is not None:
            labels = [names[int(t)] if not isinstance(t, str) else t for t in labels]
    indices = known.check(labels, "the validation Dataset")
    items = tuple(ValItem(f"#{i}", c, index=i) for i, c in enumerate(indices))
    return ValData(items, "dataset", type(dataset).__name__, known.labels, dataset)
