"""The :class:`Classifier`: a frozen network behind differentiable preprocessing."""

from __future__ import annotations

import html
import json
from typing import Any, Sequence

import torch
from torch import nn

from probe.classifiers.data_config import DataConfig
from probe.classifiers.failures import is_shape_error, summarize
from probe.classifiers.labels import is_generic, split_synonyms
from probe.classifiers.outputs import extract_logits
from probe.classifiers.preprocess import Preprocess
from probe.errors import ClassifierError, LabelsError


def data_sidecar(source) -> str:
    """Where a model's data settings file goes, in words: "X.data.json beside it" for a file X.ext, "data.json
    inside it" for a model folder (probe.classifiers.load.sidecar reads both), "MODEL.data.json beside it" else."""
    from pathlib import Path

    if not source:
        return "MODEL.data.json beside it"
    path = Path(str(source)).expanduser()
    return "data.json inside it" if path.is_dir() else f"{path.stem}.data.json beside it"


class Classifier(nn.Module):
    """Images in [0, 1], shape (B, 3, H, W) -> logits (B, num_classes); differentiable in the images.

    The wrapped network (``.model``) is frozen: eval mode (``.train()`` does not
    change that) and ``requires_grad=False`` on every parameter, so it stays
    bit-identical while gradients flow to the input images.

    ``supports_hooks``: forward hooks on ``.model``'s named submodules fire during
    ``forward`` (eager modules, and exported programs, which load unflattened into
    their module tree). False for TorchScript, whose graph never calls Python hooks;
    Grad-CAM reads its layers from the graph instead.

    ``single_logit``: the network returns one logit per image (a binary classifier trained with a sigmoid). It is
    read as two classes whose logits are ``[0, z]``: their softmax is exactly ``[1 - sigmoid(z), sigmoid(z)]``, so
    class 1 is the network's positive class and every consumer of the logits sees a 2-class softmax classifier.

    ``multi_label``: the network scores each class with its own sigmoid (a multi-label tagger: an image may be
    several classes at once). P(class) is then ``sigmoid(logit)``, and an image "is" the class when it is above
    0.5, not when it is the largest; :func:`probabilities` and :func:`called` read a classifier's outputs either way.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        num_classes: int,
        labels: Sequence[str] | None = None,
        data_config: DataConfig | None = None,
        format: str = "module",
        name: str | None = None,
        source: str | None = None,
        arch: str | None = None,
        supports_hooks: bool = True,
        labels_source: str | None = None,
        data_source: str | None = None,
        extra: dict[str, Any] | None = None,
        single_logit: bool = False,
        multi_label: bool = False,
    ) -> None:
        super().__init__()
        if single_logit and int(num_classes) != 2:
            raise ClassifierError(f"a single-logit classifier is read as 2 classes, not {num_classes}")
        if single_logit and multi_label:
            raise ClassifierError("a single-logit classifier is already one sigmoid; it is not also multi-label")
        self.single_logit = bool(single_logit)
        self.multi_label = bool(multi_label)
        self.model = model
        self.data_config = data_config or DataConfig()
        self.preprocess = Preprocess(self.data_config)
        self.num_classes = int(num_classes)
        if labels is None or (len(labels) > 0 and all(n is None for n in labels)):
            # No names: each class is called by its index, never "None".
            labels = [str(i) for i in range(self.num_classes)]
            labels_source = None
        unnamed = [i for i, n in enumerate(labels) if n is None or not str(n).strip()]
        if unnamed:
            raise LabelsError(
                f"labels: class {unnamed[0]} has no name ({labels[unnamed[0]]!r}); give every class a "
                "non-empty name, or pass labels=None to call classes by their index"
            )
        if len(labels) != self.num_classes:
            raise LabelsError(
                f"labels: {len(labels)} names for {self.num_classes} classes; give one name per class"
            )
        self.raw_labels = [str(n) for n in labels]
        self.synonyms = [split_synonyms(n) for n in self.raw_labels]
        self.labels = [s[0] for s in self.synonyms]
        self.has_names = labels_source is not None and not is_generic(self.raw_labels)
        self.format = format
        self.name = name or type(model).__name__
        self.source = source
        self.arch = arch
        self.supports_hooks = supports_hooks
        self.labels_source = labels_source
        self.data_source = data_source
        self.extra = dict(extra or {})
        freeze(self.model)

    # ------------------------------------------------------------------ nn.Module behaviour

    def train(self, mode: bool = True) -> "Classifier":
        """Record the flag but keep the wrapped network in eval mode (it is audited, never trained)."""
        self.training = mode
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.preprocess(images)
        try:
            out = self.model(x)
        except (torch.cuda.OutOfMemoryError, KeyboardInterrupt):
            raise
        except ClassifierError:
            raise
        except Exception as e:
            summary = summarize(e)
            fix = (
                "check --input-size"
                if is_shape_error(summary)
                else "the error comes from the model's own forward: fix the model, or check that it runs on this device"
            )
            raise ClassifierError(
                f"classifier {self.name!r} failed on a preprocessed batch of shape {tuple(x.shape)} "
                f"({summary}); {fix}"
            ) from e
        logits = extract_logits(out, x.shape[0], f"classifier {self.name!r}")
        if self.single_logit:
            if logits.shape[1] != 1:
                raise ClassifierError(f"classifier {self.name!r} was loaded with one logit and returned "
                                      f"{logits.shape[1]}; load it again")
            logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
        return logits

    @torch.no_grad()
    def topk(self, images: torch.Tensor, k: int = 5) -> list[list[dict[str, Any]]]:
        """Per image, the ``k`` most probable classes as ``{"index", "label", "prob"}`` (run-format ``topk``)."""
        probs = probabilities(self, self(images))
        values, indices = probs.topk(min(int(k), self.num_classes), dim=1)
        return [
            [{"index": int(i), "label": self.labels[int(i)], "prob": float(v)} for v, i in zip(row_v, row_i)]
            for row_v, row_i in zip(values.tolist(), indices.tolist())
        ]

    @property
    def device(self) -> torch.device:
        for t in self.model.parameters():
            return t.device
        for t in self.model.buffers():
            return t.device
        return self.preprocess.mean.device

    @property
    def dtype(self) -> torch.dtype:
        for t in self.model.parameters():
            if t.is_floating_point():
                return t.dtype
        return self.preprocess.mean.dtype

    # ------------------------------------------------------------------ description

    @property
    def guess_note(self) -> str | None:
        """One line when nothing stated the classifier's normalisation (an exported program, TorchScript or a factory
        without flags or a MODEL.data.json): ImageNet's mean and std are a guess, silently wrong for a network that
        normalises otherwise or inside itself. None when the model, a sidecar or the caller stated them."""
        if not self.extra.get("guessed"):
            return None
        from pathlib import Path

        head = (f"classifier {self.name!r} states no mean or std, so ImageNet's are used "
                f"({', '.join(f'{m:g}' for m in self.data_config.mean)} / {', '.join(f'{v:g}' for v in self.data_config.std)});"
                " if it was trained with others, or normalises inside the network, ")
        if self.source is None:  # a module in memory (a notebook): no flags, no file to put a sidecar beside
            return head + ("pass its evaluation transform (load_classifier(model, transform=tf), or probe.Audit(..., "
                           "transform=tf)) or mean= and std= (0,0,0 and 1,1,1 for a network that takes [0, 1] pixels)")
        return head + ("pass --mean and --std (0,0,0 and 1,1,1 for a network that takes [0, 1] pixels) or write them "
                       f"in {data_sidecar(self.source)}")

    def describe(self) -> dict[str, Any]:
        """JSON-able description for a run's config.json."""
        d = {
            "name": self.name,
            "format": self.format,
            "source": self.source,
            "arch": self.arch,
            "num_classes": self.num_classes,
            "data_config": self.data_config.to_dict(),
            "data_config_source": self.data_source,
            "labels_source": self.labels_source,
            "has_names": self.has_names,
            "supports_hooks": self.supports_hooks,
            "model_class": getattr(self.model, "class_name", None) or type(self.model).__name__,
            "single_logit": self.single_logit,
            "multi_label": self.multi_label,
        }
        d.update(self.extra)
        json.dumps(d)  # fail here, not when the run writes config.json
        return d

    def __repr__(self) -> str:
        shown = ", ".join(repr(n) for n in self.labels[:4]) + (", ..." if self.num_classes > 4 else "")
        c = self.data_config
        return (
            f"Classifier(name={self.name!r}, format={self.format!r}, num_classes={self.num_classes}, "
            f"input_size={c.input_size}, crop_pct={c.crop_pct}, interpolation={c.interpolation!r}, "
            f"labels=[{shown}]{', single_logit=True' if self.single_logit else ''}"
            f"{', multi_label=True' if self.multi_label else ''})"
        )

    def _repr_html_(self) -> str:
        e = html.escape
        c = self.data_config
        rows = [
            ("name", self.name),
            ("format", self.format),
            ("source", self.source or "(in memory)"),
            ("arch", self.arch or ""),
            ("classes", f"{self.num_classes}" + (" (one logit z: P(class 1) = sigmoid(z))" * self.single_logit)
             + (" (multi-label: P(class) = sigmoid(its logit))" * self.multi_label)),
            ("input", f"{c.input_size}, resize {c.resize_size}, crop_pct {c.crop_pct}, {c.interpolation}"),
            ("mean / std", f"{c.mean} / {c.std}"),
            ("labels", ", ".join(self.labels[:8]) + (" ..." if self.num_classes > 8 else "")),
            ("layer hooks", "yes" if self.supports_hooks else
             "no (Grad-CAM taps the TorchScript graph)" if isinstance(self.model, torch.jit.ScriptModule) else "no"),
        ]
        body = "".join(f"<tr><th style='text-align:left'>{e(k)}</th><td>{e(str(v))}</td></tr>" for k, v in rows)
        return f"<table><caption>probe Classifier</caption>{body}</table>"


def probabilities(classifier: Any, logits: torch.Tensor) -> torch.Tensor:
    """P(class) for each image and class from ``classifier``'s logits: the softmax, or each class's sigmoid for a
    multi-label classifier (``Classifier.multi_label``). Float32."""
    logits = logits.float()
    return logits.sigmoid() if getattr(classifier, "multi_label", False) else logits.softmax(dim=-1)


def called(classifier: Any, probs: Any, target: int) -> Any:
    """Per image, whether ``classifier`` calls it ``target`` given its :func:`probabilities` (torch or numpy, (N, K)):
    the most probable class, or, multi-label, P(target) above 0.5."""
    if getattr(classifier, "multi_label", False):
        return probs[:, target] > 0.5
    return probs.argmax(-1) == target


def detached_view(model: nn.Module) -> nn.Module:
    """A copy of a caller's module that shares its weights (the same storage, nothing duplicated) but not its state:
    :func:`freeze` then sets eval mode and no gradients on the copy, and the caller's module keeps its training mode
    and ``requires_grad`` (a notebook that audits its model and then trains it again). Modules that cannot be copied
    so (TorchScript, lazy layers not yet shaped, attributes deepcopy refuses) are returned as they are."""
    import copy

    if isinstance(model, torch.jit.ScriptModule) or any(nn.parameter.is_lazy(p) for p in model.parameters()):
        return model
    memo: dict[int, Any] = {id(p): nn.Parameter(p.detach(), requires_grad=False) for p in model.parameters()}
    memo.update({id(b): b for b in model.buffers()})
    try:
        return copy.deepcopy(model, memo)
    except Exception:  # noqa: BLE001 - an uncopyable attribute: the module itself, frozen in place as before
        return model


def freeze(model: nn.Module) -> None:
    """Eval mode and no parameter gradients; exported programs refuse ``.eval()`` but are traced in eval."""
    try:
        model.eval()
    except (NotImplementedError, RuntimeError):
        pass
    for p in model.parameters():
        if not nn.parameter.is_lazy(p):  # lazy layers are frozen again after the probe forward
            p.requires_grad_(False)
