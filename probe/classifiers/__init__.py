"""Classifier adapters: load the user's frozen image classifier behind one interface.

``load_classifier(spec, ...)`` returns a :class:`Classifier`, an ``nn.Module`` that
maps images in [0, 1], shape (B, 3, H, W), to logits (B, num_classes) through a
differentiable resize / center crop / normalize. The format is detected from the
file's bytes, not its extension:

===================  ==========================================  ===========  =====================
format               spec                                        needs        layer hooks
===================  ==========================================  ===========  =====================
``export``           ``.pt2`` from ``torch.export.save``          nothing      yes (unflattened)
``torchscript``      ``torch.jit.save`` archive                   nothing      no (graph taps)
``state_dict``       ``torch.save(model.state_dict())``           ``arch``     yes
``safetensors``      ``.safetensors`` state dict                  ``arch``     yes
``huggingface``      folder with ``config.json`` + weights        nothing      yes
``factory``          ``"package.module:function"``                importable   yes
``pickle``           ``torch.save(model)`` (whole module)         trust_pickle yes
``module``           an ``nn.Module`` object (Python API)         nothing      yes
===================  ==========================================  ===========  =====================

An ``nn.Module`` object is audited through a frozen copy that shares its weights (eval mode, no gradients on the
copy): the caller's module keeps its training mode and ``requires_grad``, and no gradient reaches it.

Layer hooks: an exported program loads as ``torch.export.unflatten``'s module tree, whose
submodules (``net.layer4``) fire forward hooks like the original model's. TorchScript runs its own
graph, where Python hooks never fire; Grad-CAM still runs on it (traced, scripted or frozen) by
tapping the layer's output in a copy of the inlined graph (:mod:`probe.analysis.attributions`).
So every format gets every attribution method; a graph that cannot be tapped (MKL-DNN layouts from
``torch.jit.optimize_for_inference``) has Grad-CAM listed as skipped, with the reason.

Loading never runs code from a file without ``trust_pickle``: a ``.pt2`` whose archive holds
entries that ``torch.export.load`` would unpickle (``use_pickle`` payloads, non-tensor sample
inputs, compiled AOTInductor code; see :mod:`probe.classifiers.export_archive`) is refused,
as is a whole pickled module.

``arch`` is ``"timm:NAME"`` or ``"torchvision:NAME"``; the number of classes is read
from the state dict's head. Sidecars next to a model file ``X.ext``: ``X.labels.txt``
(or ``.json`` / ``.csv``) and ``X.data.json`` (input_size, mean, std, crop_pct,
interpolation). ``select_classes("tabby,0-9,@more.txt", clf)`` turns ``--classes``
into indices; ``load_labels`` reads label files and ``"imagenet"``.
"""

from probe.lazy import lazy_attributes

# each name loads its module on first use: the label and data-config readers stay torch-free
_WHERE = {
    "Classifier": "probe.classifiers.classifier",
    "DataConfig": "probe.classifiers.data_config",
    "Preprocess": "probe.classifiers.preprocess",
    "detect_format": "probe.classifiers.detect",
    "load_classifier": "probe.classifiers.load",
    "load_labels": "probe.classifiers.labels",
    "object_name": "probe.classifiers.labels",
    "resolve_device": "probe.devices",
    "select_classes": "probe.classifiers.select",
    "split_synonyms": "probe.classifiers.labels",
}
__getattr__ = lazy_attributes(__name__, _WHERE)
__all__ = sorted(_WHERE)


def __dir__():
    return __all__
