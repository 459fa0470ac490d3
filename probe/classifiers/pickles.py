"""Reading a ``torch.save`` file without running it: what kind of pickle it is, its weights through torch's
weights-only unpickler, a training checkpoint's weights beside inert stand-ins for its other objects, and the one-line
errors for a pickled model (which only ``--trust-pickle`` unpickles), a truncated file or a corrupt one."""

from __future__ import annotations

import io
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from probe.classifiers.failures import first_line
from probe.errors import ClassifierError

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "state_dict_ema", "model_ema", "net", "weights", "params")
_PICKLE_FIX = (
    "unpickling runs arbitrary code, so probe loads whole pickled models only with --trust-pickle "
    "(trust_pickle=True) for files you trust; safer: save it with torch.export.save (.pt2) or torch.jit.save, "
    "or save model.state_dict() and pass --arch timm:NAME or torchvision:NAME"
)


_MAGIC = getattr(torch.serialization, "MAGIC_NUMBER", 0x1950A86A20F9469CFC6C)
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_LIBRARY_MODULES = ("torch", "collections", "builtins", "copyreg", "_codecs", "numpy")


class _Truncated(Exception):
    pass


def _scan(stream: Any) -> list[tuple[str, Any]]:
    """Opcodes of one pickle up to its STOP (reads, never executes); :class:`_Truncated` if it ends early."""
    try:
        # Large byte payloads (tensor data in a plain pickle) are not kept: only names and small arguments.
        return [
            (op.name, None if isinstance(arg, (bytes, bytearray)) and len(arg) > 256 else arg)
            for op, arg, _pos in pickletools.genops(stream)
        ]
    except ValueError as e:
        if any(w in str(e) for w in ("exhausted", "not enough data", "remain")):
            raise _Truncated(str(e)) from e
        raise
    except EOFError as e:
        raise _Truncated(str(e)) from e


def raw_pickle_kind(path: Path) -> str:
    """``"legacy"`` (torch.save with _use_new_zipfile_serialization=False) or ``"plain"`` (pickle.dumps)."""
    try:
        with open(path, "rb") as f:
            ops = _scan(f)
    except _Truncated as e:
        raise ClassifierError(
            f"model {path}: the pickle data ends early, so the file is truncated or corrupt; save or copy it again"
        ) from e
    except (ValueError, OSError) as e:
        raise ClassifierError(
            f"model {path}: not a valid pickle stream ({e}); the file is corrupt, save or copy it again"
        ) from e
    values = [arg for name, arg in ops if name not in ("PROTO", "FRAME", "STOP", "MEMOIZE", "PUT", "BINPUT")]
    return "legacy" if values == [_MAGIC] else "plain"


def first_global(path: Path) -> str:
    """The first non-library class or function a plain pickle refers to (for the error message)."""
    try:
        with open(path, "rb") as f:
            ops = _scan(f)
    except Exception:
        return ""
    strings: list[str] = []
    for name, arg in ops:
        if name in _STRING_OPS and isinstance(arg, (str, bytes)):
            strings.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
        ref = None
        if name in ("GLOBAL", "INST") and isinstance(arg, str):
            ref = arg.replace(" ", ".")
        elif name == "STACK_GLOBAL" and len(strings) >= 2:
            ref = f"{strings[-2]}.{strings[-1]}"
        if ref and ref.split(".", 1)[0] not in _LIBRARY_MODULES:
            return ref
    return ""


def _pickle_streams_complete(path: Path) -> bool:
    """True if every pickle in the file parses to its STOP opcode (a truncated file does not)."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                member = next(n for n in zf.namelist() if n.endswith("data.pkl"))
                streams = [io.BytesIO(zf.read(member))]
                count = 1
        else:
            streams = [open(path, "rb")]  # noqa: SIM115 - closed below
            count = 5  # legacy torch.save: magic, protocol, sys info, object, storage keys
        for stream in streams:
            try:
                for _ in range(count):
                    _scan(stream)
            finally:
                stream.close()
        return True
    except Exception:
        return False


def torch_load_file(path: Path, *, weights_only: bool) -> Any:
    # An open file, not the path: torch.load reads any "*.safetensors" path as safetensors, whatever its bytes.
    with open(path, "rb") as f, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*pickle protocol.*")
        return torch.load(f, map_location="cpu", weights_only=weights_only)


def weights_only_load(path: Path) -> Any:
    try:
        return torch_load_file(path, weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "weights only load failed" in text.lower() or "weights_only" in text.lower():
            if not _pickle_streams_complete(path):
                raise ClassifierError(
                    f"model {path}: the pickle data ends early, so the file is truncated or corrupt; "
                    "save or copy it again"
                ) from e
            found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            raise NeedsPickle(found.group(1) if found else "") from e
        raise corrupt_file(path, e) from e
    except Exception as e:
        raise corrupt_file(path, e) from e


class NeedsPickle(Exception):
    pass


class _Inert:
    """What a training checkpoint's non-tensor object becomes when only its weights are read (see
    :func:`weights_beside_objects`): an ``argparse.Namespace`` of hyper-parameters (timm's train.py and torchvision's
    reference scripts save one beside the state dict), a Lightning ``AttributeDict``, a numpy scalar. It takes
    whatever the pickle hands it and runs nothing: the class the file names is never imported, its code never
    called."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:  # a dict subclass's items, set one by one
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value: Any) -> None:  # a list subclass's items
        self.__dict__.setdefault("values", []).append(value)

    def extend(self, values: Any) -> None:
        self.__dict__.setdefault("values", []).extend(values)


def weights_beside_objects(path: Path) -> Any:
    """The file read by an unpickler that resolves only what torch's own weights-only unpickler allows (tensors,
    storages, dtypes, OrderedDict ...) and turns every other class or function it names into an inert
    :class:`_Inert` subclass: nothing the file names is imported or called. Unlike torch's weights-only mode it can
    fill a dict or list subclass (a Lightning AttributeDict). None when it cannot read the file."""
    import types

    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        allowed = dict(_get_allowed_globals())
    except Exception:  # pragma: no cover - a torch without the (private) allowlist: no inert reading
        return None

    class InertUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            found = allowed.get(f"{module}.{name}")
            return found if found is not None else type(str(name)[:100], (_Inert,), {"__module__": str(module)[:100]})

    inert = types.ModuleType("probe_inert_pickle")
    inert.Unpickler = InertUnpickler  # type: ignore[attr-defined]
    inert.load = lambda f, **kw: InertUnpickler(f, **kw).load()  # type: ignore[attr-defined]
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(f, map_location="cpu", weights_only=False, pickle_module=inert)
    except Exception:
        return None


def corrupt_file(path: Path, e: BaseException) -> ClassifierError:
    msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
    return ClassifierError(
        f"model {path}: could not read the torch.save file ({type(e).__name__}: {msg}); it is truncated or "
        "corrupt, save or copy it again"
    )


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(
        isinstance(k, str) and torch.is_tensor(v) for k, v in obj.items()
    )


def state_dict_inside(obj: Any) -> bool:
    """A tensor dict, at the top or under one of the checkpoint keys (never a module: that is a whole pickled model)."""
    return _is_tensor_dict(obj) or (isinstance(obj, Mapping) and any(_is_tensor_dict(obj.get(k)) for k in _WRAPPER_KEYS))


def unwrap_checkpoint(obj: Any, path: Path) -> Any:
    """A state dict, an nn.Module, or an error for anything else."""
    if isinstance(obj, nn.Module) or _is_tensor_dict(obj):
        return obj
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, nn.Module) or _is_tensor_dict(inner):
                return inner
        # Some checkpoints store tensors next to a few scalars (e.g. an epoch counter).
        tensors = {k: v for k, v in obj.items() if torch.is_tensor(v)}
        if tensors and len(tensors) >= 0.9 * len(obj):
            return dict(tensors)
        keys = ", ".join(map(str, list(obj)[:6]))
        raise ClassifierError(
            f"model {path}: a checkpoint dict (keys: {keys}) without a state dict inside; "
            "save model.state_dict() itself"
        )
    raise ClassifierError(
        f"model {path}: holds a {type(obj).__name__}, not a model or state dict; save model.state_dict() "
        "and pass --arch"
    )


def needs_code(path: Path, err: BaseException) -> ClassifierError:
    return ClassifierError(
        f"model {path}: unpickling needs the model's code ({type(err).__name__}: {first_line(err)}); make its "
        "package importable (PYTHONPATH), or save a TorchScript / torch.export / state dict file instead"
    )


def untrusted_pickle(path: Path, refs: str, what: str = "a pickled Python object") -> ClassifierError:
    shown = f" (it references {refs})" if refs else ""
    return ClassifierError(f"model {path}: is {what}, not plain weights{shown}; {_PICKLE_FIX}")


def trusted_pickle_load(path: Path) -> Any:
    """A bare ``pickle.dumps`` stream (not torch.save): only plain pickle reads it. Runs code: trusted only."""
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pickle.load(f)
    except (AttributeError, ModuleNotFoundError, ImportError) as err:
        raise needs_code(path, err) from err
    except Exception as err:
        raise ClassifierError(
            f"model {path}: unpickling the file failed ({type(err).__name__}: {first_line(err, 160)}); "
            "save the model again, preferably with torch.export.save or as a state dict"
        ) from err
