"""``load_classifier``: any supported spec -> a ready, frozen :class:`Classifier`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from probe.classifiers import data_config as dc
from probe.classifiers import folders, loaders
from probe.classifiers.classifier import Classifier, data_sidecar, freeze
from probe.classifiers.detect import detect_format, looks_like_factory, looks_like_hub_id
from probe.classifiers.failures import expected_channels, is_shape_error, summarize
from probe.devices import resolve_device
from probe.classifiers.labels import LABEL_SUFFIXES, load_labels
from probe.classifiers.outputs import extract_logits
from probe.errors import ClassifierError, LabelsError
from probe.files import file_sha256

_PROBE_BATCH = 2


def sidecar(path: Path, kind: str) -> Path | None:
    """``X.labels.txt`` / ``X.data.json`` next to the model file ``X.ext`` (or inside a model folder)."""
    stem = path.with_suffix("") if path.is_file() else path / "model"
    suffixes = LABEL_SUFFIXES if kind == "labels" else (".json",)
    candidates = [stem.parent / f"{stem.name}.{kind}{s}" for s in suffixes]
    if path.is_dir():
        candidates += [path / f"{kind}{s}" for s in suffixes]
    for cand in candidates:
        if cand.is_file():
            return cand
    return None


def _load(spec: Any, *, arch: str | None, trust_pickle: bool) -> tuple[loaders.Loaded, Path | None]:
    if isinstance(spec, Classifier):
        raise ClassifierError("model: already a probe Classifier; use it directly instead of load_classifier")
    if isinstance(spec, nn.Module):
        return loaders.load_module(spec), None
    if not isinstance(spec, (str, Path)):
        raise ClassifierError(
            f"model {spec!r}: expected a path, 'package.module:function' or an nn.Module, got {type(spec).__name__}"
        )
    if isinstance(spec, str) and looks_like_factory(spec):
        return loaders.load_factory(spec), None
    if looks_like_hub_id(str(spec)) and not Path(spec).expanduser().exists():
        from probe.classifiers.hub import hub_folder

        folder = hub_folder(str(spec))
        loaded, _ = _load(folder, arch=arch, trust_pickle=trust_pickle)
        loaded.name, loaded.source = str(spec).split("/", 1)[1], str(spec)
        return loaded, folder
    path = Path(spec).expanduser()
    fmt = detect_format(spec)
    if arch and fmt in ("export", "torchscript", "huggingface", "timm"):
        raise ClassifierError(
            f"arch {arch!r}: {path} is a {fmt} model that carries its own architecture; drop --arch"
        )
    if fmt == "export":
        return loaders.load_export(path, trust_pickle=trust_pickle), path
    if fmt == "torchscript":
        return loaders.load_torchscript(path, trust_pickle=trust_pickle), path
    if fmt == "safetensors":
        return loaders.load_safetensors(path, arch=arch), path
    if fmt == "huggingface":
        return folders.load_huggingface(path), path
    if fmt == "timm":
        return folders.load_timm_folder(path), path
    return loaders.load_torch_save(path, arch=arch, trust_pickle=trust_pickle), path


def _probe_forward(clf: Classifier, loaded: loaders.Loaded) -> int:
    """Run one small batch to learn the number of logits and catch unusable outputs early."""
    c, h, w = clf.data_config.input_size
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(_PROBE_BATCH, c, h, w, generator=gen).to(clf.device)
    with torch.no_grad():
        try:
            out = clf.model(clf.preprocess(x))
        except Exception as e:  # an exported program's fixed batch size was refused by loaders.load_export
            summary = summarize(e)
            channels = expected_channels(summary)
            if channels is not None and channels != c:  # --input-size sets the pixels, not the channels
                fix = (f"the model takes {channels}-channel images: write {data_sidecar(loaded.source)} with "
                       f'"input_size": [{channels}, H, W] and a mean and std of {channels} value(s) each')
            elif is_shape_error(summary):
                fix = "set the input size the model expects with --input-size (or a .data.json sidecar)"
            else:
                fix = f"the error comes from the model's own forward: fix the model, or check it runs on {clf.device}"
            raise ClassifierError(
                f"model {loaded.source or loaded.name}: a test forward pass on a {tuple(x.shape)} batch failed "
                f"({summary}); {fix}"
            ) from e
    logits = extract_logits(out, _PROBE_BATCH, f"model {loaded.source or loaded.name}")
    return int(logits.shape[1])


def _binary_names(names: list[str] | None, source: str | None) -> list[str] | None:
    """A single-logit classifier's two class names, negative first: one name is its positive class ("pneumonia" ->
    "not pneumonia", "pneumonia"); two are taken as they are."""
    if names is None or len(names) == 2:
        return names
    if len(names) == 1:
        return [f"not {names[0]}", names[0]]
    raise LabelsError(
        f"labels {source}: {len(names)} names but the classifier outputs one logit (a binary classifier: P(class) "
        "= sigmoid(logit)); give the positive class's name, or two names, the negative class first"
    )


def _names_channels(input_size: Any) -> bool:
    """Whether a given input size states its channels (3,224,224 / "1,512,512"), not only a side (224, "224,224")."""
    if isinstance(input_size, str):
        return len([p for p in input_size.replace("x", ",").split(",") if p.strip()]) == 3
    return isinstance(input_size, (tuple, list)) and len(input_size) == 3


def load_classifier(
    spec: str | Path | nn.Module,
    *,
    arch: str | None = None,
    labels: str | Path | Sequence[str] | None = None,
    trust_pickle: bool = False,
    input_size: Any = None,
    mean: Any = None,
    std: Any = None,
    crop_pct: float | None = None,
    interpolation: str | None = None,
    device: str | torch.device | None = "cpu",
    multi_label: bool = False,
    transform: Any = None,
) -> Classifier:
    """Load a classifier from a file, folder, factory or module; see :mod:`probe.classifiers`.

    Data config precedence per field: these arguments > ``transform`` (the evaluation transform a notebook has:
    a torchvision or timm pipeline, read by :func:`probe.classifiers.data_config.from_transform`) > ``X.data.json``
    > the model's own config (timm, Hugging Face, torchvision, export example input) > defaults.
    Labels: ``labels`` > ``X.labels.txt`` (or .json/.csv) > the model's ``id2label`` > indices.
    A forward pass on a batch of 2 at load time checks the outputs and the label count. A network that returns
    one logit per image is a binary classifier, read as two classes (see :class:`Classifier`); ``multi_label``
    reads each class's logit through its own sigmoid (a multi-label tagger; ``--multi-label``), as it is for a
    Hugging Face model whose config says ``problem_type: multi_label_classification``.
    """
    dev = resolve_device(device)
    loaded, path = _load(spec, arch=arch, trust_pickle=trust_pickle)

    # 1. Data config.
    explicit = dc.check_partial(
        {"input_size": input_size, "mean": mean, "std": std, "crop_pct": crop_pct, "interpolation": interpolation},
        "arguments",
    )
    from_transform = dc.from_transform(transform) if transform is not None else {}
    side_data: dict[str, Any] = {}
    side_path = sidecar(path, "data") if path is not None else None
    if side_path is not None:
        side_data = dc.read_data_sidecar(side_path)
    if "input_size" in explicit and not _names_channels(input_size):  # --input-size 512: the model's channel count
        channels = next((layer["input_size"][0] for layer in (from_transform, side_data, loaded.data)
                         if "input_size" in layer), 3)
        explicit["input_size"] = (channels, *explicit["input_size"][1:])
    config = dc.resolve(explicit, from_transform, side_data, loaded.data)
    sources = [s for s, layer in (("arguments", explicit), ("transform", from_transform), (str(side_path), side_data),
                                  (loaded.data_source, loaded.data)) if layer]
    data_source = ", ".join(str(s) for s in sources) if sources else "defaults"
    guessed = [f for f in ("mean", "std")
               if not any(f in layer for layer in (explicit, from_transform, side_data, loaded.data))]

    # 2. Labels.
    names: list[str] | None = None
    labels_source = None
    if labels is not None:
        names = load_labels(labels)
        labels_source = "list" if isinstance(labels, (list, tuple)) else str(labels)
    elif path is not None and (lab := sidecar(path, "labels")) is not None:
        names, labels_source = load_labels(lab), str(lab)
    elif loaded.labels is not None:
        names, labels_source = loaded.labels, loaded.labels_source

    # 3. Device, freeze, and a probe forward pass for the number of classes.
    model = loaded.model
    try:
        model = model.to(dev)
    except Exception as e:
        raise ClassifierError(f"model {loaded.name}: cannot move to {dev} ({e}); try --device cpu") from e
    freeze(model)
    clf = Classifier(model, num_classes=1, data_config=config, labels=["?"], format=loaded.format)
    clf.preprocess.to(dev)
    clf.name, clf.source = loaded.name, loaded.source
    num_classes = _probe_forward(clf, loaded)
    single_logit = num_classes == 1
    if single_logit:
        num_classes, names = 2, _binary_names(names, labels_source)

    if names is not None and len(names) != num_classes:
        raise LabelsError(
            f"labels {labels_source}: {len(names)} names but the classifier outputs {num_classes} logits; "
            "give one name per output, in index order (or omit the labels to use indices)"
        )
    extra: dict[str, Any] = {}
    if path is not None:
        extra["sha256"] = file_sha256(path)
    if trust_pickle and (loaded.format == "pickle" or loaded.trusted_pickle):
        extra["trust_pickle"] = True
    if guessed and config.input_size[0] == 3 and tuple(config.mean) == dc.IMAGENET_MEAN:
        extra["guessed"] = guessed  # nothing stated them: ImageNet's are used (Classifier.guess_note says so)
    result = Classifier(
        model,
        num_classes=num_classes,
        labels=names,
        data_config=config,
        format=loaded.format,
        name=loaded.name,
        source=loaded.source,
        arch=loaded.arch,
        supports_hooks=loaded.supports_hooks,
        labels_source=labels_source,
        data_source=data_source,
        extra=extra,
        single_logit=single_logit,
        multi_label=bool(multi_label or loaded.multi_label) and not single_logit,
    )
    result.preprocess.to(dev)
    return result
