"""Attribution heatmaps for generated images, with captum.

Three methods, all for the target class and w.r.t. the [0,1] image the
generator produced (the classifier's own preprocessing is inside the model):

- ``integrated_gradients``: captum ``IntegratedGradients`` from a black image;
  heat = |attribution| summed over colour channels.
- ``grad_cam``: captum ``LayerGradCam`` on an automatically chosen layer (the
  last convolutional stage of a CNN; for a ViT, the input of its last
  transformer block, because the last block's patch tokens carry no gradient
  when the classifier pools the class token) or ``layer=`` by module name.
  ViT token maps are reshaped to their patch grid (same Grad-CAM formula).
  Layers are read with forward hooks; exported programs (``.pt2``) load as
  their unflattened module tree, where hooks fire. TorchScript runs its own
  graph, where Python hooks never fire, so there the layer's output is tapped
  in a copy of the inlined graph (modules are named by the graph's call stack)
  and its gradient read through a zero perturbation added to it. Skipped only
  when neither works (``classifier.supports_hooks`` False on a network that is
  not TorchScript).
- ``occlusion``: captum ``Occlusion`` with non-overlapping square patches of 1/8 of the image;
  heat = drop of the target logit when a patch is greyed out.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from probe.devices import module_device
from probe.files import save_png, to_uint8
from probe.analysis.errors import AnalysisError
from probe.classifiers.failures import summarize
from probe.classifiers.outputs import extract_logits

__all__ = [
    "METHODS",
    "AttributionConfig",
    "AttributionResult",
    "LayerChoice",
    "choose_layer",
    "attribute",
    "overlay",
    "save_overlays",
]

from probe.analysis.config import METHODS  # noqa: E402 (one list of methods)
HOOK_METHODS = ("grad_cam",)


@dataclass(frozen=True)
class AttributionConfig:
    """Which methods to run and their knobs."""

    methods: tuple[str, ...] = METHODS
    layer: str | None = None
    ig_steps: int = 16
    occlusion_window: int | None = None  # pixels; default max(2, min(H, W) // 8)
    occlusion_stride: int | None = None  # default: the window (non-overlapping patches)
    batch_size: int = 8
    overlay_min_size: int = 128

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", tuple(self.methods))
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise AnalysisError(f"attribution methods {bad} are unknown; choose from {list(METHODS)}.")
        if self.ig_steps < 2:
            raise AnalysisError(f"ig_steps={self.ig_steps} must be at least 2 (default 16).")
        if self.batch_size < 1:
            raise AnalysisError(f"batch_size={self.batch_size} must be at least 1.")
        for name in ("occlusion_window", "occlusion_stride"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise AnalysisError(f"{name}={v} must be a positive number of pixels or None for the default.")


@dataclass(frozen=True)
class LayerChoice:
    name: str
    module: nn.Module | None  # None: a module a frozen TorchScript graph names but no longer holds
    kind: str  # "conv" (B,C,h,w) or "tokens" (B,N,D)
    prefix_tokens: int = 0
    grid: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"LayerChoice({self.name!r}, kind={self.kind!r})"


@dataclass
class AttributionResult:
    """Heatmaps per method, (B,H,W) float32; methods skipped with the reason; timings."""

    maps: dict[str, np.ndarray] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    layer: str | None = None

    def __repr__(self) -> str:
        ran = ", ".join(f"{m} {self.seconds.get(m, 0):.2f}s" for m in self.maps)
        sk = "; ".join(f"{m}: {r}" for m, r in self.skipped.items())
        return f"AttributionResult(ran=[{ran}], layer={self.layer!r}" + (f", skipped=[{sk}])" if sk else ")")


def _net(classifier) -> nn.Module:
    m = getattr(classifier, "model", None)
    return m if isinstance(m, nn.Module) else classifier


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return None


def _square_split(n: int) -> tuple[int, int] | None:
    """Split a token count into (prefix tokens, grid side) with a square grid and a small prefix."""
    for prefix in range(0, 9):
        g = math.isqrt(n - prefix) if n - prefix > 0 else 0
        if g >= 2 and g * g == n - prefix:
            return prefix, g
    return None


def choose_layer(classifier, image_size: tuple[int, int], layer: str | None = None) -> LayerChoice:
    """Pick the Grad-CAM layer: the last spatial conv stage, or the input of the last ViT block.

    With ``layer`` given, look that module name up in ``classifier.model``.
    One forward pass on a grey image records every module's output shape.
    """
    net = _net(classifier)
    named = dict(net.named_modules())
    h, w = image_size
    x = torch.full((1, 3, h, w), 0.5, device=_device(classifier))
    try:
        with torch.no_grad():
            order = _ScriptTaps(net).record(classifier, x) if _is_script(net) else _record_with_hooks(classifier, named, x)
    except Exception as e:
        raise AnalysisError(f"the classifier failed on a {h}x{w} probe image while choosing a Grad-CAM layer: {e}") from e
    shapes = dict(order)
    for name, _ in order:  # a frozen TorchScript graph still names the modules its code came from
        named.setdefault(name, None)
    if layer is not None:
        if layer not in named or not layer:
            close = [n for n in named if n and (layer in n or n.endswith(layer.split(".")[-1]))][:5]
            raise AnalysisError(
                f"attribution layer {layer!r} is not a module of the classifier; "
                f"try one of {close or [n for n, _ in order[-5:]]} (names from classifier.model.named_modules())."
            )
        shp = shapes.get(layer)
        if shp is None:
            raise AnalysisError(f"attribution layer {layer!r} produced no tensor in a forward pass; choose another layer.")
        if len(shp) == 4:
            return LayerChoice(layer, named[layer], "conv")
        if len(shp) == 3 and _square_split(shp[1]):
            prefix, g = _square_split(shp[1])
            return LayerChoice(layer, named[layer], "tokens", prefix, (g, g))
        raise AnalysisError(
            f"attribution layer {layer!r} outputs shape {shp}; Grad-CAM needs (B,C,h,w) or ViT tokens (B,N,D)."
        )
    # last spatial conv output in firing order (outer modules fire after inner ones, so a stage wins)
    conv_pos = max((i for i, (_, s) in enumerate(order) if len(s) == 4 and s[2] >= 2 and s[3] >= 2), default=-1)
    # transformer blocks: children of a ModuleList/Sequential whose output is square-gridded tokens
    block_lists: dict[str, list[tuple[int, str]]] = {}
    for i, (name, s) in enumerate(order):
        if len(s) == 3 and _square_split(s[1]) and "." in name:
            parent, _, child = name.rpartition(".")
            if child.isdigit() and (_is_list(named.get(parent)) or (parent in named and named[parent] is None)):
                block_lists.setdefault(parent, []).append((i, name))
    best_list = max(block_lists.values(), key=lambda v: v[-1][0], default=None)
    if best_list and len(best_list) >= 2 and best_list[-1][0] > conv_pos:
        _, name = best_list[-2]
        prefix, g = _square_split(shapes[name][1])
        return LayerChoice(name, named[name], "tokens", prefix, (g, g))
    if conv_pos >= 0:
        name = order[conv_pos][0]
        return LayerChoice(name, named[name], "conv")
    unnamed = " (this TorchScript graph names no modules, as after torch.jit.freeze and save)" \
        if _is_script(net) and not order else ""
    raise AnalysisError(
        f"no layer with a spatial (B,C,h,w) output or ViT tokens was found for Grad-CAM{unnamed}; "
        "pass layer= (--attribution-layer) naming a module of classifier.model."
    )


def _record_with_hooks(classifier, named: dict[str, nn.Module], x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
    """(module name, output shape) in the order the modules' forward hooks fire on one pass."""
    order: list[tuple[str, tuple[int, ...]]] = []
    hooks = []

    def make_hook(name):
        def hook(_m, _inp, out):
            t = _first_tensor(out)
            if t is not None:
                order.append((name, tuple(t.shape)))

        return hook

    for name, m in named.items():
        if name:
            hooks.append(m.register_forward_hook(make_hook(name)))
    try:
        classifier(x)
    finally:
        for hk in hooks:
            hk.remove()
    return order


def _is_script(net) -> bool:
    return isinstance(net, torch.jit.ScriptModule)


def _is_list(module) -> bool:
    """A ModuleList / Sequential, also as a scripted module (which keeps the Python class name)."""
    return isinstance(module, (nn.ModuleList, nn.Sequential)) or (
        _is_script(module) and getattr(module, "original_name", None) in ("ModuleList", "Sequential")
    )


# --------------------------------------------------------------------------- TorchScript layer taps

_CALL = re.compile(r"([^.()]+)\([^()]*\)")  # "layer4(Sequential)" in a node's module hierarchy
_NOT_A_MODULE = ("SELF", "UNKNOWN_INSTANCE")  # a method of the same module, a free function


def _module_path(node) -> str:
    """``"net.layer4.0.conv1"``: the submodule whose code emitted an inlined node ("" for the root's own code)."""
    try:
        hierarchy = node.getModuleHierarchy()
    except Exception:  # a node without a call stack
        return ""
    return ".".join(n for n in _CALL.findall(hierarchy) if n not in _NOT_A_MODULE)


class _ScriptTaps:
    """Module outputs of a TorchScript network, read from a copy of its inlined forward graph.

    TorchScript runs its graph without calling Python, so forward hooks on its submodules never
    fire. After inlining, every node still knows which submodule emitted it; a module's output
    (its last call) is the last tensor its nodes define that is used after them. The tapped graph
    returns those tensors next to the model's own output, and for Grad-CAM adds an extra zero
    input to the chosen output: the gradient with respect to that input is the gradient with
    respect to the layer, whatever the executor fuses. The network's own module is unchanged.
    """

    def __init__(self, net: nn.Module):
        self.net = net
        self.graph = net.forward.graph.copy()
        self._fn = None
        torch._C._jit_pass_inline(self.graph)
        nodes = list(self.graph.nodes())
        paths = [_module_path(n) for n in nodes]
        spans: dict[str, list[int]] = {}  # name -> [first, last] node index of its last call
        for i, p in enumerate(paths):
            if not p:
                continue
            parts = p.split(".")
            for k in range(1, len(parts) + 1):
                name = ".".join(parts[:k])
                span = spans.get(name)
                # one call continues while only its own nodes or nodes of no module come between
                if span is not None and all(not q or (q + ".").startswith(name + ".") for q in paths[span[1] + 1 : i]):
                    span[1] = i
                else:
                    spans[name] = [i, i]
        index = {n: i for i, n in enumerate(nodes)}
        self.outputs: dict[str, tuple[int, object]] = {}  # name -> (last node index, graph value)
        for name, (first, last) in spans.items():
            value = self._escaping(nodes, index, first, last)
            if value is not None:
                self.outputs[name] = (last, value)

    def _escaping(self, nodes, index, first: int, last: int):
        """The last tensor defined in nodes[first..last] that a later node (or the graph's return) uses."""

        def after(user) -> bool:
            while user.owningBlock().owningNode() is not None:  # a node nested in an if / loop
                user = user.owningBlock().owningNode()
            i = index.get(user)
            return i is None or i > last  # None: the graph's return node

        found = None
        for i in range(first, last + 1):
            for v in nodes[i].outputs():
                if not any(after(u.user) for u in v.uses()):
                    continue
                if isinstance(v.type(), torch._C.TensorType):
                    found = v
                elif nodes[i].kind() == "prim::TupleConstruct":  # a module returning (tensor, ...)
                    first_in = next(iter(nodes[i].inputs()), None)
                    if first_in is not None and isinstance(first_in.type(), torch._C.TensorType):
                        found = first_in
        return found

    def _run(self, classifier, images: torch.Tensor, *extra) -> tuple[torch.Tensor, tuple]:
        """The classifier's forward (its preprocessing, this graph, its logits) plus the tapped tensors."""
        if self._fn is None:  # the graph is final: (model output, *tapped tensors)
            self.graph.makeMultiOutputIntoTuple()
            self._fn = torch._C._create_function_from_graph("probe_layer_taps", self.graph)
        pre = getattr(classifier, "preprocess", None)
        x = pre(images) if isinstance(pre, nn.Module) else images
        out = self._fn(self.net._c, x, *extra)
        name = getattr(classifier, "name", type(self.net).__name__)
        return extract_logits(out[0], x.shape[0], f"classifier {name!r}"), tuple(out[1:])

    def record(self, classifier, x: torch.Tensor) -> list[tuple[str, tuple[int, ...]]]:
        """(module name, output shape) in hook order: by where each module ends, inner modules first."""
        names = sorted(self.outputs, key=lambda n: (self.outputs[n][0], -n.count(".")))
        for n in names:
            self.graph.registerOutput(self.outputs[n][1])
        _, taps = self._run(classifier, x)
        return [(n, tuple(t.shape)) for n, t in zip(names, taps)]

    def perturb(self, name: str) -> "_ScriptTaps":
        """Tap module ``name`` for :meth:`activation_and_gradient` (once, before the first run)."""
        if name not in self.outputs:
            raise AnalysisError(f"attribution layer {name!r} has no tensor output in the TorchScript graph; choose another layer.")
        value = self.outputs[name][1]
        g = self.graph
        delta = g.addInput("probe_delta")
        delta.setType(torch._C.TensorType.get())
        alpha = g.insertConstant(1)
        add = g.create("aten::add", [value, delta, alpha])
        add.insertAfter(value.node())
        alpha.node().moveBefore(add)
        add.output().setType(torch._C.TensorType.get())
        value.replaceAllUsesAfterNodeWith(add, add.output())
        g.registerOutput(value)
        return self

    def activation_and_gradient(self, classifier, x: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The tapped layer's output and the gradient of the ``target`` logits (summed over the batch) w.r.t. it."""
        with torch.no_grad():  # one pass for the layer's shape, one for its gradient
            _, (a,) = self._run(classifier, x, torch.zeros((), device=x.device, dtype=x.dtype))
        d = torch.zeros_like(a, requires_grad=True)
        logits, (a,) = self._run(classifier, x, d)
        (grad,) = torch.autograd.grad(logits[:, target].sum(), d)
        return a.detach(), grad


def _conv_cam(a: torch.Tensor, g: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """captum's LayerGradCam on (B,C,h,w): ReLU of the channel sum weighted by mean gradients, upsampled."""
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1, keepdim=True))
    return torch.nn.functional.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]


def _token_cam(a: torch.Tensor, g: torch.Tensor, choice: "LayerChoice", size: tuple[int, int]) -> torch.Tensor:
    gh, gw = choice.grid
    acts = a[:, choice.prefix_tokens :, :].reshape(a.shape[0], gh, gw, -1)
    grads = g[:, choice.prefix_tokens :, :].reshape(a.shape[0], gh, gw, -1)
    weights = grads.mean(dim=(1, 2), keepdim=True)
    cam = torch.relu((acts * weights).sum(-1))  # (B, gh, gw)
    return torch.nn.functional.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def _script_grad_cam(classifier, taps: _ScriptTaps, choice: "LayerChoice", x: torch.Tensor, target: int) -> torch.Tensor:
    a, g = taps.activation_and_gradient(classifier, x, target)
    if choice.kind == "conv":
        return _conv_cam(a, g, tuple(x.shape[-2:]))
    return _token_cam(a, g, choice, tuple(x.shape[-2:]))


def _device(classifier) -> torch.device:
    return module_device(classifier)


def _token_grad_cam(classifier, choice: LayerChoice, x: torch.Tensor, target: int) -> torch.Tensor:
    store: dict[str, torch.Tensor] = {}

    def hook(_m, _i, out):
        t = _first_tensor(out)
        t.retain_grad()
        store["a"] = t

    hk = choice.module.register_forward_hook(hook)
    try:
        x = x.clone().requires_grad_(True)
        logits = classifier(x)
        logits[:, target].sum().backward()
    finally:
        hk.remove()
    a = store["a"]
    g = a.grad if a.grad is not None else torch.zeros_like(a)
    return _token_cam(a.detach(), g, choice, tuple(x.shape[-2:]))


def attribute(
    classifier, images: torch.Tensor, target: int, config: AttributionConfig | None = None, layer_choice=None
) -> AttributionResult:
    """Heatmaps (B,H,W) for ``target`` on ``images`` (B,3,H,W) in [0,1], one entry per method run."""
    from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Occlusion

    cfg = config or AttributionConfig()
    res = AttributionResult()
    dev = _device(classifier)
    images = images.detach().float().to(dev)
    n, _, h, w = images.shape
    script = _is_script(_net(classifier))  # no hooks, but its graph can be tapped
    supports_hooks = script or bool(getattr(classifier, "supports_hooks", True))
    for method in cfg.methods:
        if method in HOOK_METHODS and not supports_hooks:
            res.skipped[method] = "the classifier does not support layer hooks and is not a TorchScript graph"
            continue
        t0 = time.perf_counter()
        outs = []
        try:
            if method == "grad_cam":
                try:
                    choice = layer_choice or choose_layer(classifier, (h, w), cfg.layer)
                except AnalysisError as e:
                    if cfg.layer is not None:  # the user's layer is wrong: say so
                        raise
                    res.skipped[method] = str(e)  # this network has no layer to show (the other methods still run)
                    continue
                res.layer = choice.name
                taps = _ScriptTaps(_net(classifier)).perturb(choice.name) if script else None
            for i in range(0, n, cfg.batch_size):
                x = images[i : i + cfg.batch_size]
                if method == "integrated_gradients":
                    ig = IntegratedGradients(classifier)
                    a = ig.attribute(
                        x.clone().requires_grad_(True),
                        baselines=torch.zeros_like(x),
                        target=target,
                        n_steps=cfg.ig_steps,
                        internal_batch_size=max(cfg.batch_size, 2) * 4,
                    )
                    outs.append(a.detach().abs().sum(1))
                elif method == "grad_cam":
                    if script:
                        outs.append(_script_grad_cam(classifier, taps, choice, x, target).detach())
                    elif choice.kind == "conv":
                        gc = LayerGradCam(classifier, choice.module)
                        a = gc.attribute(x.clone().requires_grad_(True), target=target, relu_attributions=True)
                        a = LayerAttribution.interpolate(a.detach(), (h, w), interpolate_mode="bilinear")
                        outs.append(a[:, 0])
                    else:
                        outs.append(_token_grad_cam(classifier, choice, x, target).detach())
                else:
                    win = cfg.occlusion_window or max(2, min(h, w) // 8)
                    stride = cfg.occlusion_stride or win
                    occ = Occlusion(classifier)
                    a = occ.attribute(
                        x,
                        sliding_window_shapes=(3, win, win),
                        strides=(3, stride, stride),
                        target=target,
                        baselines=0.5,
                        perturbations_per_eval=16,
                    )
                    outs.append(a.detach().sum(1))
        except AnalysisError:
            raise
        except Exception as e:
            if method in HOOK_METHODS:
                res.skipped[method] = f"failed: {summarize(e)}"  # one line, also for TorchScript's tracebacks
                continue
            raise AnalysisError(
                f"attribution method {method!r} failed on the classifier: {type(e).__name__}: {e}; "
                f"drop it with methods= or --attribution-methods."
            ) from e
        res.maps[method] = torch.cat(outs).float().cpu().numpy()
        res.seconds[method] = time.perf_counter() - t0
    return res


def _normalise(heat: np.ndarray) -> np.ndarray:
    pos = np.clip(heat, 0, None)
    top = np.percentile(pos, 99.5) if pos.size else 0.0
    if top <= 0:
        return np.zeros_like(pos)
    return np.clip(pos / top, 0, 1)


def overlay(image: torch.Tensor, heat: np.ndarray, *, min_size: int = 128, alpha: float = 0.5) -> np.ndarray:
    """Blend a heatmap (H,W) over an image (3,H,W) in [0,1]; returns (H',W',3) uint8, upscaled to ``min_size``."""
    from matplotlib import colormaps
    from PIL import Image

    rgb = to_uint8(image)
    h, w = rgb.shape[:2]
    scale = max(1, math.ceil(min_size / max(1, min(h, w))))
    size = (w * scale, h * scale)
    base = np.asarray(Image.fromarray(rgb).resize(size, Image.NEAREST), dtype=np.float32) / 255.0
    hm = Image.fromarray((_normalise(heat) * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    hn = np.asarray(hm, dtype=np.float32) / 255.0
    col = colormaps["jet"](hn)[..., :3]
    a = alpha * hn[..., None] ** 0.5  # weak heat stays transparent
    out = base * (1 - a) + col * a
    return (out * 255 + 0.5).clip(0, 255).astype(np.uint8)


def save_overlays(images: torch.Tensor, result: AttributionResult, out_dir: Path, stems: list[str], *, min_size: int = 128) -> dict[str, list[Path]]:
    """Write ``out_dir/<method>/<stem>.png`` for every image and method; returns the paths per method."""
    if len(stems) != images.shape[0]:
        raise AnalysisError(f"save_overlays got {images.shape[0]} images but {len(stems)} file stems.")
    written: dict[str, list[Path]] = {}
    for method, maps in result.maps.items():
        for img, heat, stem in zip(images, maps, stems):
            path = Path(out_dir) / method / f"{stem}.png"
            save_png(path, overlay(img, heat, min_size=min_size))
            written.setdefault(method, []).append(path)
    return written
