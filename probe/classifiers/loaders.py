"""One loader per format; each returns a :class:`Loaded` (the network and what it says about itself)."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import logging
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
from torch import nn

from probe.classifiers import data_config as dc
from probe.classifiers.classifier import detached_view
from probe.classifiers.export_archive import io_operators, unsafe_entries
from probe.classifiers.failures import first_line
from probe.classifiers.pickles import (corrupt_file, first_global, NeedsPickle, needs_code, raw_pickle_kind, state_dict_inside,
                                       torch_load_file, trusted_pickle_load, unwrap_checkpoint, untrusted_pickle,
                                       weights_beside_objects, weights_only_load)
from probe.classifiers.labels import is_generic
from probe.errors import ClassifierError

_PREFIXES = ("module.", "model.", "_orig_mod.")


@dataclass
class Loaded:
    """What a loader found: the network plus the metadata the file carries."""

    model: nn.Module
    format: str
    name: str
    source: str | None = None
    arch: str | None = None
    labels: list[str] | None = None
    labels_source: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    data_source: str | None = None
    supports_hooks: bool = True
    trusted_pickle: bool = False  # loading ran pickled code, allowed by trust_pickle
    multi_label: bool = False  # the model says it is a multi-label tagger (transformers' problem_type)


@contextlib.contextmanager
def _quiet_torchscript() -> Iterator[None]:
    """The user chose TorchScript; torch's deprecation warnings are noise to them."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated.*")
        warnings.filterwarnings("ignore", message=r".*TorchScript.*deprecated.*")
        yield


def introspect(model: nn.Module) -> tuple[dict[str, Any], list[str] | None, str | None, str | None]:
    """Data config, labels and their sources from a timm or Hugging Face model object."""
    data: dict[str, Any] = {}
    source = None
    if isinstance(getattr(model, "pretrained_cfg", None), Mapping):
        data = dc.from_timm_model(model)
        source = "timm pretrained_cfg" if data else None
    labels = None
    labels_source = None
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if isinstance(id2label, Mapping) and id2label:
        try:
            raw = [id2label[i] for i in range(len(id2label))]
            # A missing or empty name (None, "") leaves the classes to be called by their index.
            names = [str(n) for n in raw] if all(isinstance(n, str) and n.strip() for n in raw) else None
        except KeyError:
            names = None
        if names and not is_generic(names):
            labels, labels_source = names, "config.id2label"
    return data, labels, source, labels_source


# --------------------------------------------------------------------------- module / factory


def load_module(model: nn.Module) -> Loaded:
    # a notebook's torch.compile(model): audited as the module it wraps (its name, timm/HF metadata and layers),
    # since the audit's batches change size and each new size would compile again
    model = getattr(model, "_orig_mod", model) if type(model).__name__ == "OptimizedModule" else model
    model = detached_view(model)  # the caller's module keeps its training mode and gradients
    data, labels, data_src, labels_src = introspect(model)
    if not data:
        from probe.classifiers.hf_processor import folder_of, processor_data

        folder = folder_of(model)  # a transformers model from from_pretrained: its processor, as for its folder
        if folder is not None:
            data, data_src, model = processor_data(folder, model)
    return Loaded(
        model=model,
        format="module",
        name=type(model).__name__,
        labels=labels,
        labels_source=labels_src,
        data=data,
        data_source=data_src,
        supports_hooks=not isinstance(model, torch.jit.ScriptModule),
    )


def _timm_hub_hint(name: str) -> str:
    """", or its pretrained weights by hub id (--model timm/NAME.TAG)" where timm knows a default tag for NAME."""
    try:
        import timm.models

        cfg = timm.models.get_pretrained_cfg(name)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    except Exception:  # noqa: BLE001 - only a hint
        hub_id = None
    return f", or timm's pretrained weights by their hub id (--model {hub_id})" if hub_id else ""


def load_factory(spec: str) -> Loaded:
    module_name, _, attr = spec.partition(":")
    if module_name in ("timm", "torchvision"):  # --arch's spelling, typed as --model: a model name, not a factory
        raise ClassifierError(
            f"model {spec!r}: {module_name}:NAME is an architecture, not weights; pass the trained weights with it "
            f"(--model WEIGHTS.pth --arch {spec}){_timm_hub_hint(attr) if module_name == 'timm' else ''}"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise ClassifierError(
            f"model {spec!r}: cannot import module {module_name!r} ({type(e).__name__}: {e}); "
            "install the package or add its folder to PYTHONPATH"
        ) from e
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(module) if not n.startswith("_")]
            close = difflib.get_close_matches(part, public, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "check the function name"
            raise ClassifierError(f"model {spec!r}: {module_name} has no attribute {attr!r}; {hint}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ClassifierError(f"model {spec!r}: {attr} is not callable; point at a function that returns an nn.Module")
    try:
        model = obj()
    except Exception as e:
        raise ClassifierError(f"model {spec!r}: the factory raised {type(e).__name__}: {e}; fix the factory") from e
    if not isinstance(model, nn.Module):
        raise ClassifierError(
            f"model {spec!r}: the factory returned {type(model).__name__}, not a torch.nn.Module; return the model"
        )
    loaded = load_module(model)
    loaded.format, loaded.name, loaded.source = "factory", spec, spec
    return loaded


# --------------------------------------------------------------------------- TorchScript / torch.export


def _refuse_io(path: Path, trust_pickle: bool) -> None:
    """A model whose code calls a file-system operator (export_archive.io_operators) is refused unless trusted:
    ``torch.jit.load`` runs a TorchScript archive's code while loading, and probe runs a program once to check it."""
    found = [] if trust_pickle else io_operators(path)
    if found:
        shown = "; ".join(found[:3]) + (f"; ... ({len(found)} in all)" if len(found) > 3 else "")
        raise ClassifierError(
            f"model {path}: its code calls operators that read or write files ({shown}), which would run when the "
            "model loads or classifies; save the model again from a trusted source, or pass --trust-pickle "
            "(trust_pickle=True) only if you trust this file"
        )


def load_torchscript(path: Path, *, trust_pickle: bool = False) -> Loaded:
    _refuse_io(path, trust_pickle)
    try:
        with _quiet_torchscript():
            model = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise ClassifierError(
            f"model {path}: TorchScript archive could not be loaded ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
            "the file may be truncated or saved by a newer torch, save it again"
        ) from e
    return Loaded(model=model, format="torchscript", name=path.stem, source=str(path), supports_hooks=False)


_EXPORT_LOGGERS = ("torch.export", "torch._export")


class _Collect(logging.Handler):
    """Keeps torch's log records instead of printing them (some of its format strings are broken)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:  # no formatting: nothing can fail here
        self.records.append(record)


@contextlib.contextmanager
def _collect_export_logs() -> Iterator[_Collect]:
    """torch.export.load logs tracebacks (and, on its pickle fallback, a malformed message) to stderr."""
    handler = _Collect()
    saved = []
    # torch gives some of its loggers their own stderr handler (propagate=False): take over each one.
    names = set(_EXPORT_LOGGERS) | {
        n for n in list(logging.root.manager.loggerDict) if n.startswith(tuple(f"{b}." for b in _EXPORT_LOGGERS))
    }
    for name in sorted(names):
        logger = logging.getLogger(name)
        saved.append((logger, logger.propagate, list(logger.handlers)))
        logger.handlers = [handler]
        logger.propagate = False
    try:
        yield handler
    finally:
        for logger, propagate, handlers in saved:
            logger.handlers = handlers
            logger.propagate = propagate


def _hookable_program(program: Any) -> tuple[nn.Module, bool]:
    """The program as a module tree with the original submodule names, on which forward hooks fire.

    ``program.module()`` is one flat graph: its submodules only hold parameters and are never
    called, so hooks on them stay silent. ``torch.export.unflatten`` rebuilds the call hierarchy
    (``net.layer4`` runs as a module of its own), which is what Grad-CAM's layer hooks need; the
    same ops run in the same order, so the logits are unchanged. A program that cannot be
    unflattened is used flat (no layer hooks). The unflattened modules run their generated code
    rather than an fx interpreter where torch allows it (as fast as the flat program).
    """
    try:
        unflatten_module = importlib.import_module("torch.export.unflatten")
        codegen = getattr(unflatten_module, "_disable_interpreter", contextlib.nullcontext)
        with codegen():
            return torch.export.unflatten(program), True
    except Exception:
        return program.module(), False


def _fixed_batch_size(program: Any) -> int | None:
    """The batch size an exported program's image input is fixed to, or None where it is dynamic (or unreadable)."""
    try:
        names = set(program.graph_signature.user_inputs)
        for node in program.graph.nodes:
            value = node.meta.get("val") if node.op == "placeholder" and node.name in names else None
            if torch.is_tensor(value) and value.dim() == 4:
                return value.shape[0] if type(value.shape[0]) is int else None
    except Exception:  # noqa: BLE001 - an unusual program is left to the load's test forward pass
        return None
    return None


def load_export(path: Path, *, trust_pickle: bool = False) -> Loaded:
    # 1. torch.export.load unpickles some entries with code execution, and the graph may call file-system operators
    # that probe's first forward would run: check the archive first.
    _refuse_io(path, trust_pickle)
    unsafe = unsafe_entries(path)
    if unsafe and not trust_pickle:
        shown = "; ".join(unsafe[:3]) + (f"; ... ({len(unsafe)} in all)" if len(unsafe) > 3 else "")
        raise ClassifierError(
            f"model {path}: the archive contains pickled entries that would run code when loaded ({shown}); "
            "re-export the model with torch.export.save from a trusted source, or pass --trust-pickle "
            "(trust_pickle=True) only if you trust this file"
        )
    # 2. Load, keeping torch's log output (tracebacks of its fallbacks) off the user's terminal.
    with _collect_export_logs() as logs:
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=r".*buffer is not writable.*")
                program = torch.export.load(str(path))
                model, hooks = _hookable_program(program)
        except Exception as e:
            cause = next(
                (r.exc_info[1] for r in logs.records if r.exc_info and r.exc_info[1] is not None), None
            )
            detail = f"{type(e).__name__}: {first_line(e)}"
            if cause is not None:
                detail += f"; first error: {type(cause).__name__}: {first_line(cause, 160)}"
            raise ClassifierError(
                f"model {path}: torch.export program could not be loaded ({detail}); the file may be "
                "truncated or saved by a newer torch, export it again with torch.export.save"
            ) from e
    # 3. probe sends batches of every size; torch.export keeps its example's batch size unless told otherwise.
    fixed = _fixed_batch_size(program)
    if fixed is not None:
        raise ClassifierError(
            f"model {path}: the exported program accepts only batch size {fixed}; export it with a dynamic batch "
            "dimension: dynamic_shapes=({0: torch.export.Dim('batch')},)"
        )
    data: dict[str, Any] = {}
    try:
        args = program.example_inputs[0] if program.example_inputs else ()
        if args and torch.is_tensor(args[0]) and args[0].dim() == 4:
            data = dc.check_partial({"input_size": tuple(args[0].shape[1:])}, str(path))
    except Exception:
        data = {}
    return Loaded(
        model=model,
        format="export",
        trusted_pickle=bool(unsafe),
        name=path.stem,
        source=str(path),
        data=data,
        data_source="export example input" if data else None,
        supports_hooks=hooks,
    )


# --------------------------------------------------------------------------- state dicts


def load_torch_save(path: Path, *, arch: str | None, trust_pickle: bool) -> Loaded:
    if not zipfile.is_zipfile(path) and raw_pickle_kind(path) == "plain":
        # pickle.dumps(model) rather than torch.save: torch.load cannot read it, and reading it runs code.
        if not trust_pickle:
            raise untrusted_pickle(path, first_global(path), "a raw Python pickle (pickle.dumps)")
        obj = trusted_pickle_load(path)
    else:
        try:
            obj = weights_only_load(path)
        except NeedsPickle as e:
            refs = e.args[0] if e.args else ""
            # a training checkpoint: a state dict beside hyper-parameters in an argparse.Namespace (timm's train.py,
            # torchvision's references) or a Lightning AttributeDict: its weights are read, its objects stay inert
            beside = weights_beside_objects(path) if not trust_pickle else None
            if beside is not None and state_dict_inside(beside):
                return load_state_dict(dict(unwrap_checkpoint(beside, path)), path=path, arch=arch, fmt="state_dict")
            if not trust_pickle:
                raise untrusted_pickle(path, refs) from e
            try:
                obj = torch_load_file(path, weights_only=False)
            except (AttributeError, ModuleNotFoundError, ImportError) as err:
                raise needs_code(path, err) from err
            except Exception as err:
                raise corrupt_file(path, err) from err
    obj = unwrap_checkpoint(obj, path)
    if isinstance(obj, nn.Module):
        loaded = load_module(obj)
        loaded.format, loaded.name, loaded.source = "pickle", path.stem, str(path)
        if arch:
            loaded.arch = arch
        return loaded
    return load_state_dict(dict(obj), path=path, arch=arch, fmt="state_dict")


def load_safetensors(path: Path, *, arch: str | None) -> Loaded:
    try:
        from safetensors.torch import load_file

        sd = load_file(str(path), device="cpu")
    except Exception as e:
        raise ClassifierError(
            f"model {path}: safetensors file could not be read ({type(e).__name__}: {e}); it is truncated or "
            "corrupt, save or copy it again"
        ) from e
    return load_state_dict(sd, path=path, arch=arch, fmt="safetensors")


def _parse_arch(arch: str) -> tuple[str, str]:
    kind, sep, name = arch.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in ("timm", "torchvision") or not name.strip():
        bare = (name if sep else kind).strip()
        example = f"timm:{bare} or torchvision:{bare}" if bare and " " not in bare else "timm:resnet50 or torchvision:resnet18"
        raise ClassifierError(
            f"arch {arch!r}: give the library and model name, e.g. {example}"
        )
    return kind, name.strip()


def _builder(arch: str) -> tuple[Callable[..., nn.Module], Callable[[nn.Module], dict[str, Any]]]:
    kind, name = _parse_arch(arch)
    if kind == "timm":
        import timm

        base = name.split(".", 1)[0]
        if not timm.is_model(base):
            close = difflib.get_close_matches(base, timm.list_models(), n=3)
            hint = f"did you mean {', '.join('timm:' + c for c in close)}?" if close else "see timm.list_models()"
            raise ClassifierError(f"arch {arch!r}: timm has no model {base!r}; {hint}")

        def build(**kw: Any) -> nn.Module:
            return timm.create_model(name, pretrained=False, **kw)

        return build, dc.from_timm_model
    import torchvision

    known = torchvision.models.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"did you mean {', '.join('torchvision:' + c for c in close)}?" if close else "see torchvision.models.list_models()"
        raise ClassifierError(f"arch {arch!r}: torchvision has no classification model {name!r}; {hint}")

    def build_tv(**kw: Any) -> nn.Module:
        return torchvision.models.get_model(name, weights=None, **kw)

    return build_tv, lambda _m: dc.from_torchvision(name)


def _strip_prefixes(sd: dict[str, torch.Tensor], model_keys: set[str]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes ("module.", "model.", ...) when that makes more keys match."""
    best, best_hits = sd, len(model_keys & set(sd))
    frontier = [sd]
    for _ in range(3):
        nxt = []
        for cand in frontier:
            for p in _PREFIXES:
                if any(k.startswith(p) for k in cand):
                    stripped = {(k[len(p):] if k.startswith(p) else k): v for k, v in cand.items()}
                    hits = len(model_keys & set(stripped))
                    if hits > best_hits:
                        best, best_hits = stripped, hits
                    nxt.append(stripped)
        frontier = nxt
    return best


def _shown(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" ... ({len(keys)} in all)" if len(keys) > n else "")


def load_state_dict(sd: dict[str, torch.Tensor], *, path: Path, arch: str | None, fmt: str) -> Loaded:
    if not arch:
        raise ClassifierError(
            f"model {path}: is a state dict ({len(sd)} tensors) without the architecture; pass --arch "
            "timm:NAME or torchvision:NAME (arch=...), or save a torch.export (.pt2) file that needs none"
        )
    build, data_of = _builder(arch)
    # 1. Build once on the meta device (no memory, no init cost) to learn the key names and head size.
    try:
        with torch.device("meta"):
            meta = build()
    except Exception:
        meta = build()
    meta_sd = meta.state_dict()
    default_nc = getattr(meta, "num_classes", None) or 1000
    sd = _strip_prefixes(sd, set(meta_sd))
    # 2. The head's rows give the number of classes.
    head_sizes = {
        sd[k].shape[0]
        for k, v in meta_sd.items()
        if k in sd and v.dim() >= 1 and v.shape[0] == default_nc and sd[k].dim() == v.dim()
        and tuple(sd[k].shape[1:]) == tuple(v.shape[1:])
    }
    num_classes = head_sizes.pop() if len(head_sizes) == 1 else default_nc
    kwargs: dict[str, Any] = {"num_classes": num_classes} if num_classes != default_nc else {}
    # 2b. The stem's input channels: a greyscale model (an X-ray, in_chans=1) trained from a timm architecture; the
    #     first convolution's weights say so (timm builds any channel count; torchvision's stems are fixed at 3)
    stem = next((k for k, v in meta_sd.items() if v.dim() == 4), None)
    in_chans = None
    if (arch.startswith("timm:") and stem in sd and sd[stem].dim() == 4 and sd[stem].shape[1] != meta_sd[stem].shape[1]
            and sd[stem].shape[0] == meta_sd[stem].shape[0] and sd[stem].shape[2:] == meta_sd[stem].shape[2:]):
        in_chans = int(sd[stem].shape[1])
        kwargs["in_chans"] = in_chans
    try:
        model = build(**kwargs)
    except Exception as e:
        raise ClassifierError(f"arch {arch!r}: building the model failed ({type(e).__name__}: {e}); check --arch") from e
    # 3. Every key and shape must match.
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    mismatched = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys ({_shown(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys ({_shown(unexpected)})")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches ({_shown(mismatched, 3)})")
        fix = "pass the architecture the weights were trained with"
        if (stem in sd and stem in own and sd[stem].dim() == 4 and sd[stem].shape[1] != own[stem].shape[1]
                and sd[stem].shape[0] == own[stem].shape[0]):
            # a torchvision model whose first convolution was replaced (a greyscale X-ray model): torchvision
            # builds its stems for 3 channels only
            name = arch.partition(":")[2].strip()
            try:
                import timm

                twin = f"--arch timm:{name} (timm builds any channel count; its ResNet layers are named as "\
                       "torchvision's), or " if arch.startswith("torchvision:") and timm.is_model(name) else ""
            except ImportError:  # pragma: no cover
                twin = ""
            fix = (f"its first convolution takes {sd[stem].shape[1]} channel(s) where {arch} builds "
                   f"{own[stem].shape[1]}: try {twin}save the model as a torch.export program (.pt2), which needs "
                   "no --arch")
        raise ClassifierError(
            f"model {path}: the state dict does not fit --arch {arch}: {'; '.join(parts)}; {fix}"
        )
    model.load_state_dict(sd, strict=False)
    data = data_of(model)
    if in_chans is not None and data.get("input_size") is not None and data["input_size"][0] != in_chans:
        # the architecture's pretrained config describes its RGB weights: one channel gets the grey average
        data = {**data, "input_size": (in_chans, *data["input_size"][1:])}
        for key in ("mean", "std"):
            if key in data and in_chans == 1:
                data[key] = (sum(data[key]) / len(data[key]),)
            elif key in data:
                data.pop(key)
    return Loaded(
        model=model,
        format=fmt,
        name=path.stem,
        source=str(path),
        arch=arch,
        data=data,
        data_source=(f"{arch} defaults" if data else None),
    )
