"""load_classifier: every format round-trips a tiny model, gradients reach the images, bad inputs fail clearly."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from probe.classifiers import DataConfig, load_classifier  # noqa: E402
from probe.errors import ClassifierError, DeviceError, LabelsError, ProbeError  # noqa: E402

SIZE = 32  # every tiny model takes 32x32 inputs
NUM_CLASSES = 5


class TinyNet(nn.Module):
    """A few-layer CNN with BatchNorm, so eval mode matters."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


class TupleNet(TinyNet):
    def __init__(self, second: str) -> None:
        super().__init__()
        self.second = second

    def forward(self, x):  # type: ignore[override]
        logits = super().forward(x)
        if self.second == "features":
            return logits, x.mean(dim=(2, 3, 1))
        if self.second == "logits":
            return logits, logits * 2
        if self.second == "dict":
            return {"logits": logits, "aux": logits * 2}
        if self.second == "dict2":
            return {"a": logits, "b": logits * 2}
        return logits.view(logits.shape[0], -1, 1, 1)  # 4-D


def _tiny(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    m = TinyNet()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m.eval()


def _images(n: int = 3, size: int = 48) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    """One tiny model saved in every file format (export is the slow one: done once)."""
    d = tmp_path_factory.mktemp("models")
    net = _tiny()
    x = torch.rand(2, 3, SIZE, SIZE)
    out: dict = {"net": net, "dir": d}
    ep = torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, str(d / "tiny.pt2"))
    out["export"] = d / "tiny.pt2"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(net), str(d / "tiny.ts"))
    out["torchscript"] = d / "tiny.ts"
    torch.save(net, d / "whole.pt")
    out["pickle"] = d / "whole.pt"

    import timm

    torch.manual_seed(0)
    tnet = timm.create_model("test_resnet", pretrained=False, num_classes=7).eval()
    torch.save(tnet.state_dict(), d / "timm_sd.pth")
    out["timm"], out["timm_path"] = tnet, d / "timm_sd.pth"
    return out


def _check_roundtrip(clf, original: nn.Module, num_classes: int) -> None:
    x = _images()
    with torch.no_grad():
        want = original(clf.preprocess(x))
        want = getattr(want, "logits", want)
        got = clf(x)
    assert got.shape == (3, num_classes)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    # Gradients reach the image through preprocess; the classifier itself stays frozen.
    xg = _images().requires_grad_(True)
    clf(xg)[:, 0].sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in clf.parameters())
    assert all(p.grad is None for p in clf.model.parameters())
    json.dumps(clf.describe())


@pytest.mark.parametrize("fmt", ["export", "torchscript", "pickle"])
def test_file_formats_match_original_and_pass_gradients(saved, fmt):
    kwargs = {"trust_pickle": True} if fmt == "pickle" else {}
    clf = load_classifier(saved[fmt], input_size=SIZE, **kwargs)
    assert clf.format == fmt
    assert clf.num_classes == NUM_CLASSES
    assert clf.supports_hooks is (fmt != "torchscript")  # .pt2 programs are unflattened into their module tree
    _check_roundtrip(clf, saved["net"], NUM_CLASSES)


def test_export_reads_input_size_from_program(saved):
    clf = load_classifier(saved["export"])
    assert clf.data_config.input_size == (3, SIZE, SIZE)
    assert "export" in clf.describe()["data_config_source"]


def test_a_greyscale_timm_state_dict_is_built_with_its_one_input_channel(tmp_path):
    """An X-ray classifier trained from a timm architecture with in_chans=1, saved as a state dict: --arch
    timm:NAME failed with 'stem ... (.., 1, ..) vs (.., 3, ..): pass the architecture the weights were trained with'.
    The first convolution's weights give the channel count, the grey average of the architecture's mean and std;
    --input-size 32 (a side, not a channel count) keeps its one channel."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", num_classes=3, in_chans=1).eval()
    torch.save(net.state_dict(), tmp_path / "xray.pth")
    clf = load_classifier(tmp_path / "xray.pth", arch="timm:test_resnet", input_size=SIZE)
    assert clf.num_classes == 3 and clf.data_config.input_size == (1, SIZE, SIZE)
    assert len(clf.data_config.mean) == 1 and len(clf.data_config.std) == 1
    x = _images()
    with torch.no_grad():
        assert torch.allclose(clf(x), net(clf.preprocess(x)), atol=1e-5)
    # torchvision builds 3-channel stems only: a ResNet whose conv1 was replaced is pointed at timm's twin, which loads it
    import torchvision

    tv = torchvision.models.resnet18(num_classes=2)
    tv.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    torch.save(tv.eval().state_dict(), tmp_path / "tv_xray.pth")
    with pytest.raises(ClassifierError, match=r"first convolution takes 1 channel\(s\) where torchvision:resnet18 builds "
                                              r"3: try --arch timm:resnet18"):
        load_classifier(tmp_path / "tv_xray.pth", arch="torchvision:resnet18")
    twin = load_classifier(tmp_path / "tv_xray.pth", arch="timm:resnet18", input_size=SIZE)
    with torch.no_grad():
        assert torch.allclose(twin(x), tv(twin.preprocess(x)), atol=1e-5)


def test_a_normalisation_nothing_stated_is_named_as_a_guess(saved, tmp_path):
    """An exported program carries no mean or std: ImageNet's are a guess, silently wrong for a network trained with
    others or normalising inside itself (the README's recommended format). The classifier says so in one line, with
    the fix; flags, a MODEL.data.json or a model that states them (timm, Hugging Face) leave no note."""
    import shutil

    guessed = load_classifier(saved["export"])
    assert guessed.guess_note is not None and "\n" not in guessed.guess_note
    assert "states no mean or std, so ImageNet's are used (0.485, 0.456, 0.406 / 0.229, 0.224, 0.225)" in guessed.guess_note
    assert "pass --mean and --std (0,0,0 and 1,1,1" in guessed.guess_note and "tiny.data.json beside" in guessed.guess_note
    assert guessed.describe()["guessed"] == ["mean", "std"]
    assert load_classifier(saved["export"], mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)).guess_note is None
    shutil.copy(saved["export"], tmp_path / "stated.pt2")
    (tmp_path / "stated.data.json").write_text('{"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}')
    assert load_classifier(tmp_path / "stated.pt2").guess_note is None
    assert load_classifier(saved["timm_path"], arch="timm:test_resnet").guess_note is None
    # a module in a notebook has no flags and no file to write a sidecar beside: the note names what it can pass
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()
    note = load_classifier(plain).guess_note
    assert "load_classifier(model, transform=tf)" in note and "--mean" not in note and "data.json" not in note


def test_torchscript_loads_without_deprecation_warning(saved):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = load_classifier(saved["torchscript"], input_size=SIZE)
        clf(_images(1))
    assert not [w for w in caught if "deprecated" in str(w.message).lower()]


def test_state_dict_timm_infers_head_and_data_config(saved):
    clf = load_classifier(saved["timm_path"], arch="timm:test_resnet")
    assert clf.format == "state_dict" and clf.arch == "timm:test_resnet"
    assert clf.num_classes == 7
    # timm's pretrained_cfg for test_resnet: 160 px, mean 0.5, crop 0.95, bilinear.
    assert clf.data_config.input_size == (3, 160, 160)
    assert clf.data_config.mean == (0.5, 0.5, 0.5)
    assert clf.data_config.crop_pct == pytest.approx(0.95)
    assert clf.data_config.interpolation == "bilinear"
    _check_roundtrip(clf, saved["timm"], 7)


def test_state_dict_prefix_and_checkpoint_wrapper_are_unwrapped(saved, tmp_path):
    sd = {"module." + k: v for k, v in saved["timm"].state_dict().items()}
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "ckpt.pt")
    clf = load_classifier(tmp_path / "ckpt.pt", arch="timm:test_resnet", input_size=64)
    _check_roundtrip(clf, saved["timm"], 7)


def test_safetensors_torchvision(tmp_path):
    import torchvision
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = torchvision.models.get_model("squeezenet1_1", weights=None, num_classes=3).eval()
    save_file(net.state_dict(), str(tmp_path / "weights.bin"))  # extension lies; the header decides
    clf = load_classifier(tmp_path / "weights.bin", arch="torchvision:squeezenet1_1", input_size=64)
    assert clf.format == "safetensors" and clf.num_classes == 3
    # torchvision's weight transforms: ImageNet statistics, bilinear, 224/256 crop, input size from the flag.
    assert clf.data_config.interpolation == "bilinear"
    assert clf.data_config.crop_pct == pytest.approx(224 / 256)
    assert clf.data_config.input_size == (3, 64, 64)
    _check_roundtrip(clf, net, 3)


def test_factory_and_module(tmp_path, monkeypatch):
    pkg = tmp_path / "myzoo"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "nets.py").write_text(
        "import torch\n"
        "def build():\n"
        "    torch.manual_seed(0)\n"
        "    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1),"
        " torch.nn.Flatten(), torch.nn.Linear(4, 6))\n"
        "def broken():\n    raise RuntimeError('no weights here')\n"
        "def not_a_model():\n    return 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    clf = load_classifier("myzoo.nets:build", input_size=SIZE)
    assert clf.format == "factory" and clf.num_classes == 6
    import myzoo.nets

    _check_roundtrip(clf, myzoo.nets.build(), 6)
    with pytest.raises(ClassifierError, match="factory raised RuntimeError: no weights here"):
        load_classifier("myzoo.nets:broken")
    with pytest.raises(ClassifierError, match="not a torch.nn.Module"):
        load_classifier("myzoo.nets:not_a_model")
    with pytest.raises(ClassifierError, match="did you mean build"):
        load_classifier("myzoo.nets:buidl")
    with pytest.raises(ClassifierError, match="cannot import module 'myzoo.nope'.*PYTHONPATH"):
        load_classifier("myzoo.nope:build")
    sys.modules.pop("myzoo.nets", None)
    sys.modules.pop("myzoo", None)


def test_module_instance_is_frozen_and_stays_bit_identical():
    """probe audits a frozen copy that shares the module's weights: the caller's module keeps its training mode and
    its gradients (it was put in eval mode with requires_grad off, so a notebook that audits and then trains its
    model again got 'element 0 of tensors does not require grad'), and no gradient reaches it."""
    net = _tiny()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    clf = load_classifier(net, input_size=SIZE, labels=["a", "b", "c", "d", "e"])
    assert clf.format == "module" and type(clf.model) is type(net) and clf.model is not net
    shared = {p.data_ptr() for p in net.parameters()}
    assert {p.data_ptr() for p in clf.model.parameters()} == shared  # the same weights, nothing copied
    clf.train()  # must not put BatchNorm into training mode
    assert not clf.model.training and not any(p.requires_grad for p in clf.model.parameters())
    x = _images().requires_grad_(True)
    clf(x).logsumexp(1).sum().backward()
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert x.grad.abs().sum() > 0
    assert net.training and all(p.requires_grad and p.grad is None for p in net.parameters())
    assert clf.labels == ["a", "b", "c", "d", "e"]
    net.eval()
    with torch.no_grad():
        assert torch.equal(clf.model(_images()), net(_images()))


def test_a_torch_compiled_module_is_audited_as_the_module_it_wraps():
    """A notebook's torch.compile(model) loaded, named 'OptimizedModule', and compiled again for each new batch size
    (about 10 s each on a CPU); the module inside is what gets audited, with its name and layers."""
    net = _tiny()
    clf = load_classifier(torch.compile(net), input_size=SIZE)
    assert type(clf.model) is type(net) and clf.name == type(net).__name__
    assert [p.data_ptr() for p in clf.model.parameters()] == [p.data_ptr() for p in net.parameters()]


# ---------------------------------------------------------------- Hugging Face


def _hf_folder(path: Path, id2label: dict | None) -> nn.Module:
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    kw = {"id2label": id2label, "label2id": {v: k for k, v in id2label.items()}} if id2label else {"num_labels": 3}
    cfg = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                    image_size=SIZE, patch_size=8, **kw)
    torch.manual_seed(0)
    model = ViTForImageClassification(cfg).eval()
    model.save_pretrained(str(path))
    ViTImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=[0.4, 0.5, 0.6],
                      image_std=[0.2, 0.25, 0.3], resample=2).save_pretrained(str(path))
    return model


def test_huggingface_folder(tmp_path):
    model = _hf_folder(tmp_path / "vit", {0: "cat, kitty", 1: "dog", 2: "bird"})
    clf = load_classifier(tmp_path / "vit")
    assert clf.format == "huggingface" and clf.num_classes == 3
    assert clf.labels == ["cat", "dog", "bird"] and clf.synonyms[0] == ["cat", "kitty"] and clf.has_names
    cfg = clf.data_config
    assert cfg.input_size == (3, SIZE, SIZE) and cfg.crop_pct == 1.0 and cfg.interpolation == "bilinear"
    assert cfg.mean == pytest.approx((0.4, 0.5, 0.6)) and cfg.std == pytest.approx((0.2, 0.25, 0.3))
    _check_roundtrip(clf, model, 3)


@pytest.mark.parametrize("arch", ["mobilevit", "efficientnet", "vit"])
def test_a_transformers_classifier_sees_what_its_own_processor_gives_it(tmp_path, arch):
    """The network's input, given probe's image, is what the folder's own image processor makes of the same image.
    Reading the processor's JSON got two hub families wrong: apple/mobilevit-small's config names no mean or std and
    its processor reorders channels to BGR (probe gave it ImageNet's statistics in RGB), and EfficientNet's processor
    divides by the std twice (include_top). And a photo of another aspect ratio is squashed, not center-cropped, where
    the processor squashes (a size of {height, width}: ViT, EfficientNet here; MobileViT crops): before, a 5:3 photo
    lost its sides, the background a classifier leans on. Measured through the processor, all three match."""
    import numpy as np
    import transformers as T
    from PIL import Image

    torch.manual_seed(0)
    if arch == "mobilevit":
        model = T.MobileViTForImageClassification(T.MobileViTConfig(
            image_size=64, hidden_sizes=[16, 24, 32], neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64], num_labels=3))
        # the hub's apple/mobilevit-small preprocessor_config.json as written (an old feature-extractor file)
        processor = {"crop_size": 64, "do_center_crop": True, "do_flip_channel_order": True, "do_resize": True,
                     "feature_extractor_type": "MobileViTFeatureExtractor", "resample": 2, "size": 72}
    elif arch == "efficientnet":
        model = T.EfficientNetForImageClassification(T.EfficientNetConfig(
            image_size=64, width_coefficient=1.0, depth_coefficient=0.1, hidden_dim=1280, num_labels=3))
        processor = T.EfficientNetImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.485, 0.456, 0.406],
                                                 image_std=[0.47853944, 0.4732864, 0.47434163]).to_dict()
    else:
        model = T.ViTForImageClassification(T.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                        intermediate_size=37, image_size=64, patch_size=16, num_labels=3))
        processor = T.ViTImageProcessor(size={"height": 64, "width": 64}, image_mean=[0.4, 0.5, 0.6],
                                        image_std=[0.2, 0.25, 0.3]).to_dict()
    folder = tmp_path / arch
    model.eval().save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    yy, xx = np.mgrid[0:96, 0:160] / 96.0  # a 5:3 photo
    image = Image.fromarray((np.clip(np.stack([np.sin(xx * 2) * 0.5 + 0.5, np.cos(yy * 3) * 0.5 + 0.5, (xx + yy) / 3],
                                              -1), 0, 1) * 255).astype("uint8"))
    expected = T.AutoImageProcessor.from_pretrained(str(folder))(image, return_tensors="pt")["pixel_values"]

    clf = load_classifier(folder)
    network = getattr(clf.model, "model", clf.model) if arch == "mobilevit" else clf.model
    seen = {}
    network.register_forward_pre_hook(lambda _m, args, kwargs: seen.update(x=(args or [kwargs.get("pixel_values")])[0]),
                                      with_kwargs=True)
    with torch.no_grad():
        clf(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None])
    assert seen["x"].shape == expected.shape
    assert float((seen["x"] - expected).abs().mean()) < 0.01, (arch, clf.data_config)
    assert ("channels reordered to BGR" in clf.data_source) == (arch == "mobilevit")
    assert clf.data_config.crop_mode == ("center" if arch == "mobilevit" else "squash")
    # the same model from_pretrained in a notebook, passed in memory: its folder's processor is read as for the folder
    in_memory = load_classifier(T.AutoModelForImageClassification.from_pretrained(str(folder)))
    assert in_memory.data_config == clf.data_config and type(in_memory.model) is type(clf.model)
    assert in_memory.guess_note is None
    assert clf.describe()["model_class"] == type(model).__name__ + (" (channels BGR)" if arch == "mobilevit" else "")


def test_a_greyscale_transformers_classifier_takes_one_channel(tmp_path, capfd):
    """A ViT with num_channels=1 (an X-ray model) failed its load-time forward ("Expected 1 but got 3"): a
    processor's sizes carry no channel count, the config does."""
    import transformers as T

    cfg = T.ViTConfig(image_size=SIZE, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=37, num_labels=3, num_channels=1)
    T.ViTForImageClassification(cfg).eval().save_pretrained(str(tmp_path / "xray"))
    T.ViTImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=[0.5], image_std=[0.5]).save_pretrained(
        str(tmp_path / "xray"))
    import transformers

    transformers.utils.logging.enable_progress_bar()  # as a fresh process has it
    capfd.readouterr()
    clf = load_classifier(tmp_path / "xray")
    assert "Loading weights" not in capfd.readouterr().err  # transformers' bar printed under probe audit --quiet
    assert clf.data_config.input_size == (1, SIZE, SIZE) and clf.data_config.mean == (0.5,)
    assert clf(_images()).shape == (3, 3)


def test_crop_mode_squash_keeps_the_sides_of_a_wide_image_and_a_sidecar_can_set_it(tmp_path):
    from probe.classifiers.data_config import DataConfig, read_data_sidecar
    from probe.classifiers.preprocess import Preprocess

    wide = torch.zeros(1, 3, 32, 64)
    wide[..., :8] = 1.0  # a white band on the left eighth
    plain = dict(input_size=16, mean=(0.0,), std=(1.0,), crop_pct=1.0, interpolation="bilinear")
    assert float(Preprocess(DataConfig(**plain))(wide)[..., 0].mean()) == 0.0  # cut by the center crop
    assert float(Preprocess(DataConfig(**plain, crop_mode="squash"))(wide)[..., 0].mean()) > 0.9
    (tmp_path / "m.data.json").write_text('{"crop_mode": "squash"}')
    assert read_data_sidecar(tmp_path / "m.data.json") == {"crop_mode": "squash"}
    (tmp_path / "bad.data.json").write_text('{"crop_mode": "stretch"}')
    with pytest.raises(ClassifierError, match="crop_mode='stretch' is not supported; use one of center, squash"):
        read_data_sidecar(tmp_path / "bad.data.json")


def test_a_timm_hub_folder_loads_with_its_data_config_and_labels(tmp_path):
    """What `hf download timm/NAME --local-dir DIR` gives (and probe's own hub-id error tells the user to run):
    config.json with "architecture" and timm's weights. transformers' timm wrapper failed on it ("got multiple values
    for keyword argument 'num_classes'"); timm builds it now, with its data config and labels: its own label names,
    or ImageNet's for a model whose tag names an ImageNet subset. A damaged weights file gets one line."""
    timm = pytest.importorskip("timm")
    from timm.models import save_for_hf

    torch.manual_seed(0)
    net = timm.create_model("resnet18", num_classes=3, pretrained_cfg_overlay=dict(
        input_size=(3, 64, 64), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), crop_pct=0.9)).eval()
    save_for_hf(net, tmp_path / "small", model_config={"label_names": ["cat", "dog", "red fox"]},
                safe_serialization=True)
    clf = load_classifier(tmp_path / "small")
    assert (clf.format, clf.arch, clf.labels, clf.has_names) == ("timm", "timm:resnet18", ["cat", "dog", "red fox"], True)
    c = clf.data_config
    assert (c.input_size, c.mean, c.std, c.crop_pct) == ((3, 64, 64), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 0.9)
    x = _images(2, 80)
    torch.testing.assert_close(clf(x), net(clf.preprocess(x)))
    save_for_hf(timm.create_model("resnet18").eval(), tmp_path / "in1k")  # the default tag: a1_in1k
    imagenet = load_classifier(tmp_path / "in1k")
    assert imagenet.num_classes == 1000 and imagenet.labels[:2] == ["tench", "goldfish"]
    (tmp_path / "small" / "model.safetensors").write_bytes(b"broken")
    with pytest.raises(ClassifierError, match="timm folder could not be loaded") as info:
        load_classifier(tmp_path / "small")
    assert "\n" not in str(info.value)
    # a torch-pickle weights file is read as tensors only: a payload in it is refused, never run
    (tmp_path / "small" / "model.safetensors").unlink()
    marker = tmp_path / "ran"
    torch.save({"fc.weight": _Payload(str(marker))}, str(tmp_path / "small" / "pytorch_model.bin"))
    with pytest.raises(ClassifierError, match="timm folder could not be loaded"):
        load_classifier(tmp_path / "small")
    assert not marker.exists()


class _Payload:
    """Pickles as a call that would create a file: proof of code run by unpickling."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.path),))


def _cached_repo(cache: Path, repo_id: str, build) -> None:
    """``repo_id`` as the Hugging Face cache holds a downloaded snapshot: refs/main names a commit whose snapshot
    folder ``build`` fills."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    build(repo / "snapshots" / commit)


def test_a_hub_id_loads_from_the_hugging_face_cache_as_transformers_and_timm_do(tmp_path, monkeypatch):
    """`--model google/vit-...` or `timm/resnet...` is fetched into the hub cache and loaded like the folder (here
    offline: the cache already holds it, as after a download); it said "probe does not download classifiers"
    while the generator and the concept model took hub ids. Not cached and offline: one line with the fix."""
    timm = pytest.importorskip("timm")
    import huggingface_hub.constants
    from timm.models import save_for_hf

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    vit = {}
    _cached_repo(tmp_path / "hub", "probe-tests/tiny-vit",
                 lambda folder: vit.setdefault("model", _hf_folder(folder, {0: "cat", 1: "dog", 2: "snow/ice"})))
    net = timm.create_model("resnet18", num_classes=2).eval()
    _cached_repo(tmp_path / "hub", "probe-tests/tiny-resnet",
                 lambda folder: save_for_hf(net, folder, model_config={"label_names": ["ok", "defect"]},
                                            safe_serialization=True))
    clf = load_classifier("probe-tests/tiny-vit")
    assert (clf.format, clf.source, clf.name, clf.labels) == ("huggingface", "probe-tests/tiny-vit", "tiny-vit",
                                                              ["cat", "dog", "snow/ice"])
    x = _images(2, SIZE)
    torch.testing.assert_close(clf(x), vit["model"](pixel_values=clf.preprocess(x)).logits)
    # the same model from_pretrained by id in a notebook, passed in memory: the cache's processor is read
    from transformers import AutoModelForImageClassification

    in_memory = load_classifier(AutoModelForImageClassification.from_pretrained(
        "probe-tests/tiny-vit", cache_dir=str(tmp_path / "hub"), local_files_only=True))
    assert in_memory.data_config == clf.data_config and in_memory.data_config.mean == pytest.approx((0.4, 0.5, 0.6))
    resnet = load_classifier("probe-tests/tiny-resnet")
    assert (resnet.format, resnet.source, resnet.labels) == ("timm", "probe-tests/tiny-resnet", ["ok", "defect"])
    with pytest.raises(ClassifierError, match=r"model probe-tests/absent is not a local file or folder, has no cached "
                                              r"copy, and the hub is switched off .*`hf download probe-tests/absent --local-dir DIR`"):
        load_classifier("probe-tests/absent")


def test_huggingface_generic_labels_count_as_none(tmp_path):
    _hf_folder(tmp_path / "vit", None)
    clf = load_classifier(tmp_path / "vit")
    assert clf.labels == ["0", "1", "2"] and not clf.has_names


def test_huggingface_folder_that_is_not_an_image_classifier(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37).save_pretrained(
        str(tmp_path / "bert")
    )
    with pytest.raises(ClassifierError, match="not an image classifier"):
        load_classifier(tmp_path / "bert")


# ---------------------------------------------------------------- sidecars and precedence


def test_sidecars_and_explicit_arguments_win(saved, tmp_path):
    path = tmp_path / "m.pt"
    torch.save(saved["timm"].state_dict(), path)
    (tmp_path / "m.labels.txt").write_text("\n".join(f"c{i}, alias{i}" for i in range(7)) + "\n")
    (tmp_path / "m.data.json").write_text(json.dumps({"input_size": 48, "mean": [0.1, 0.2, 0.3], "crop_pct": 1.0}))
    clf = load_classifier(path, arch="timm:test_resnet")
    assert clf.labels[3] == "c3" and clf.synonyms[3] == ["c3", "alias3"]
    cfg = clf.data_config
    assert cfg.input_size == (3, 48, 48) and cfg.mean == (0.1, 0.2, 0.3) and cfg.crop_pct == 1.0
    assert cfg.std == (0.5, 0.5, 0.5)  # not in the sidecar: from timm's pretrained_cfg
    clf = load_classifier(path, arch="timm:test_resnet", input_size=40, labels=[f"x{i}" for i in range(7)])
    assert clf.data_config.input_size == (3, 40, 40) and clf.data_config.mean == (0.1, 0.2, 0.3)
    assert clf.labels[0] == "x0"
    (tmp_path / "m.data.json").write_text(json.dumps({"input_sise": 48}))
    with pytest.raises(ClassifierError, match="unknown data config keys.*input_sise"):
        load_classifier(path, arch="timm:test_resnet")


# ---------------------------------------------------------------- preprocessing


def test_preprocess_crop_and_normalize_exactly():
    net = nn.Sequential(nn.Flatten(), nn.LazyLinear(2))
    clf = load_classifier(net, input_size=32, crop_pct=0.5, mean=0.5, std=0.25, interpolation="bilinear")
    x = torch.rand(2, 3, 64, 64)
    # 64 px is already floor(32 / 0.5): no resize, only the center crop and normalization.
    assert torch.equal(clf.preprocess(x), (x[:, :, 16:48, 16:48] - 0.5) / 0.25)
    y = clf.preprocess(torch.rand(1, 3, 100, 80))
    assert y.shape == (1, 3, 32, 32)


def test_preprocess_downsampling_is_antialiased_and_differentiable():
    cfg = DataConfig(input_size=16, crop_pct=1.0, mean=0.0, std=1.0, interpolation="bicubic")
    from probe.classifiers import Preprocess

    pre = Preprocess(cfg)
    # A 1-pixel checkerboard averages to grey with antialiasing (aliasing would keep extreme values).
    board = ((torch.arange(128)[:, None] + torch.arange(128)[None]) % 2).float().expand(1, 3, 128, 128)
    out = pre(board.clone().requires_grad_(True))
    assert (out - 0.5).abs().max() < 0.05
    x = torch.rand(1, 3, 128, 128, requires_grad=True)
    pre(x).sum().backward()
    assert x.grad.abs().sum() > 0


def test_grey_classifier_gets_luminance():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    clf = load_classifier(net, input_size=(1, 16, 16), crop_pct=1.0)
    assert clf.data_config.mean == pytest.approx((0.449,), abs=1e-3)
    red = torch.zeros(1, 3, 16, 16)
    red[:, 0] = 1.0
    assert torch.allclose(clf.preprocess(red), (torch.full((1, 1, 16, 16), 0.299) - 0.449) / 0.226, atol=1e-3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"crop_pct": 0.0}, "crop_pct"),
        ({"interpolation": "lanczos4"}, "interpolation"),
        ({"input_size": (2, 32, 32)}, "input_size"),
        ({"mean": (0.1, 0.2)}, "mean"),
        ({"std": (0.0, 1.0, 1.0)}, "std"),
    ],
)
def test_data_config_validation(kwargs, match):
    with pytest.raises(ClassifierError, match=match):
        DataConfig(**kwargs)


# ---------------------------------------------------------------- outputs


@pytest.mark.parametrize("second", ["features", "dict"])
def test_unambiguous_outputs_are_unwrapped(second):
    net = TupleNet(second)
    clf = load_classifier(net, input_size=SIZE)
    assert clf.num_classes == NUM_CLASSES
    assert clf(_images(2)).shape == (2, NUM_CLASSES)


@pytest.mark.parametrize(
    "second, match", [("logits", "ambiguous"), ("dict2", "none is called 'logits'"), ("4d", r"\(2, 5, 1, 1\)")]
)
def test_ambiguous_outputs_fail(second, match):
    with pytest.raises(ClassifierError, match=match) as info:
        load_classifier(TupleNet(second), input_size=SIZE)
    assert "wrap it" in str(info.value)


# ---------------------------------------------------------------- bad inputs


def test_missing_file(tmp_path):
    with pytest.raises(ClassifierError, match="no such file"):
        load_classifier(tmp_path / "nope.pt")
    with pytest.raises(ClassifierError, match="`hf download google/vit-base --local-dir DIR`"):
        load_classifier("google/vit-base")


@pytest.mark.parametrize("fmt", ["export", "torchscript", "timm_path", "safetensors"])
def test_truncated_files(saved, tmp_path, fmt):
    if fmt == "safetensors":
        from safetensors.torch import save_file

        src = tmp_path / "full.safetensors"
        save_file(saved["net"].state_dict(), str(src))
    else:
        src = saved[fmt]
    data = src.read_bytes()
    cut = tmp_path / f"cut{src.suffix}"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ClassifierError, match="truncated"):
        load_classifier(cut, arch="timm:test_resnet" if fmt in ("timm_path", "safetensors") else None)


def test_unknown_format(tmp_path):
    p = tmp_path / "model.xyz"
    p.write_bytes(b"GIF89a this is not a model" * 10)
    with pytest.raises(ClassifierError, match="unknown format.*torch.export.save"):
        load_classifier(p)
    p = tmp_path / "model.pt"
    p.write_bytes(b"garbage" * 10)
    with pytest.raises(ClassifierError, match="not a readable PyTorch"):
        load_classifier(p)
    (tmp_path / "folder").mkdir()
    with pytest.raises(ClassifierError, match="without config.json"):
        load_classifier(tmp_path / "folder")


def test_wrong_arch_lists_keys(saved):
    with pytest.raises(ClassifierError) as info:
        load_classifier(saved["timm_path"], arch="torchvision:resnet18")
    msg = str(info.value)
    assert "missing keys" in msg and "unexpected keys" in msg and "--arch torchvision:resnet18" in msg
    assert "in all)" in msg  # long key lists are truncated
    assert "\n" not in msg


def test_arch_problems(saved):
    with pytest.raises(ClassifierError, match="without the architecture; pass --arch"):
        load_classifier(saved["timm_path"])
    with pytest.raises(ClassifierError, match="did you mean timm:test_resnet"):
        load_classifier(saved["timm_path"], arch="timm:test_resnett")
    with pytest.raises(ClassifierError, match="e.g. timm:resnet18 or torchvision:resnet18$"):
        load_classifier(saved["timm_path"], arch="resnet18")  # the name given, with each library
    with pytest.raises(ClassifierError, match="e.g. timm:resnet50 or torchvision:resnet50$"):
        load_classifier(saved["timm_path"], arch="tv:resnet50")
    with pytest.raises(ClassifierError, match="drop --arch"):
        load_classifier(saved["export"], arch="timm:test_resnet")


def test_pickle_needs_trust(saved):
    with pytest.raises(ClassifierError) as info:
        load_classifier(saved["pickle"], input_size=SIZE)
    msg = str(info.value)
    assert "arbitrary code" in msg and "--trust-pickle" in msg
    assert "torch.export" in msg and "torch.jit.save" in msg and "--arch" in msg


def test_label_count_mismatch(saved, tmp_path):
    with pytest.raises(LabelsError, match="3 names but the classifier outputs 5 logits"):
        load_classifier(saved["export"], labels=["a", "b", "c"])
    side = saved["dir"] / "tiny.labels.txt"
    side.write_text("a\nb\n")
    try:
        with pytest.raises(LabelsError, match="tiny.labels.txt: 2 names"):
            load_classifier(saved["export"])
    finally:
        side.unlink()


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_export_with_fixed_batch(tmp_path, batch):
    """torch.export keeps its example's batch size unless told otherwise; probe sends batches of every size, so a
    fixed batch fails at load with the fix, whatever its size (a fixed batch of 2, the size of the load's test
    batch, loaded and then failed every class of the audit)."""
    net = _tiny()
    torch.export.save(torch.export.export(net, (torch.rand(batch, 3, SIZE, SIZE),)), str(tmp_path / "fixed.pt2"))
    with pytest.raises(ClassifierError, match=f"accepts only batch size {batch}; .*dynamic batch dimension"):
        load_classifier(tmp_path / "fixed.pt2")


class OneLogit(TinyNet):
    """A binary classifier trained with a sigmoid: one logit per image, as (B, 1) or squeezed to (B,)."""

    def __init__(self, squeeze: bool) -> None:
        super().__init__(num_classes=1)
        self.squeeze = squeeze

    def forward(self, x):  # type: ignore[override]
        z = super().forward(x)
        return z[:, 0] if self.squeeze else z


@pytest.mark.parametrize("squeeze", [False, True])
def test_a_single_logit_classifier_is_two_classes_whose_probability_is_the_sigmoid(tmp_path, squeeze):
    """Read as one class, a sigmoid classifier's softmax is 1 for every image: the audit "learned" a class its
    images always were (found walking a binary .pt2: baseline and token accuracy 1.00). Read as two classes with
    logits [0, z], P(positive) is sigmoid(z) exactly and gradients reach the images; one name is the positive
    class, two are negative first, three are refused; exported programs load the same."""
    torch.manual_seed(0)
    net = OneLogit(squeeze).eval()
    images = _images(4, SIZE).requires_grad_(True)
    clf = load_classifier(net, labels=["pneumonia"], input_size=(3, SIZE, SIZE))
    assert clf.num_classes == 2 and clf.labels == ["not pneumonia", "pneumonia"] and clf.single_logit
    z = net(clf.preprocess(images.detach())).reshape(-1)
    probs = clf(images).softmax(-1)
    torch.testing.assert_close(probs[:, 1], torch.sigmoid(z))
    assert 0.0 < float(probs[:, 1].detach().min()) and float(probs[:, 1].detach().max()) < 1.0
    probs[:, 1].sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert clf.describe()["single_logit"] is True and "sigmoid" in clf._repr_html_()
    assert load_classifier(net, labels=["normal", "pneumonia"]).labels == ["normal", "pneumonia"]
    assert load_classifier(net).labels == ["0", "1"]
    with pytest.raises(LabelsError, match="3 names but the classifier outputs one logit"):
        load_classifier(net, labels=["a", "b", "c"])
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(net, (torch.rand(2, 3, SIZE, SIZE),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(tmp_path / "binary.pt2"))
    exported = load_classifier(tmp_path / "binary.pt2", labels=["pneumonia"])
    torch.testing.assert_close(exported(images.detach()).softmax(-1), probs.detach())
    assert not load_classifier(_tiny()).single_logit


def test_wrong_input_size_names_the_flag(saved):
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * SIZE * SIZE, 2))
    with pytest.raises(ClassifierError, match="--input-size"):
        load_classifier(net)  # default 224 px does not fit a 32 px linear model


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda():
    with pytest.raises(DeviceError, match="--device cpu"):
        load_classifier(_tiny(), device="cuda")


def test_errors_are_one_line_probe_errors(saved, tmp_path):
    for call in (
        lambda: load_classifier(tmp_path / "nope.pt"),
        lambda: load_classifier(saved["pickle"]),
        lambda: load_classifier(saved["timm_path"], arch="torchvision:resnet18"),
    ):
        with pytest.raises(ProbeError) as info:
            call()
        assert "\n" not in str(info.value)


def test_repr_and_html(saved):
    clf = load_classifier(saved["export"], labels=["<b>a</b>", "b", "c", "d", "e"])
    assert "format='export'" in repr(clf) and "num_classes=5" in repr(clf)
    page = clf._repr_html_()
    assert "&lt;b&gt;a&lt;/b&gt;" in page and "<b>a</b>" not in page


def test_legacy_torch_save_format(tmp_path):
    """Pre-1.6 torch.save files are raw pickle streams, not zip archives."""
    import timm

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=4).eval()
    path = tmp_path / "legacy.pth"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=False)
    clf = load_classifier(path, arch="timm:test_resnet", input_size=64)
    _check_roundtrip(clf, net, 4)
    data = path.read_bytes()
    for cut in (200, len(data) // 2):  # inside the pickle, inside the tensor data
        (tmp_path / "cut.pth").write_bytes(data[:cut])
        with pytest.raises(ClassifierError, match="truncated or corrupt"):
            load_classifier(tmp_path / "cut.pth", arch="timm:test_resnet")
    torch.save(_tiny(), tmp_path / "whole.pth", _use_new_zipfile_serialization=False)
    with pytest.raises(ClassifierError, match=r"references \S*TinyNet.*--trust-pickle"):
        load_classifier(tmp_path / "whole.pth")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("fmt", ["export", "torchscript", "timm", "huggingface"])
def test_cuda_matches_cpu_and_passes_gradients(saved, tmp_path, fmt):
    if fmt == "timm":
        spec, kw = saved["timm_path"], {"arch": "timm:test_resnet", "input_size": 64}
    elif fmt == "huggingface":
        _hf_folder(tmp_path / "vit", {0: "cat", 1: "dog", 2: "bird"})
        spec, kw = tmp_path / "vit", {}
    else:
        spec, kw = saved[fmt], {"input_size": SIZE}
    cpu = load_classifier(spec, **kw)
    gpu = load_classifier(spec, device="cuda", **kw)
    assert gpu.device.type == "cuda" and gpu.preprocess.mean.device.type == "cuda"
    x = _images()
    with torch.no_grad():
        want = cpu(x)
        got = gpu(x.cuda())
    assert got.device.type == "cuda"
    assert torch.allclose(got.cpu(), want, atol=2e-2, rtol=2e-2), (got.cpu() - want).abs().max()
    # Generators on GPU hand over half-precision images; gradients must still reach them.
    xh = x.cuda().half().requires_grad_(True)
    gpu(xh)[:, 0].sum().backward()
    assert xh.grad is not None and xh.grad.dtype == torch.float16 and xh.grad.float().abs().sum() > 0
    assert all(p.grad is None for p in gpu.model.parameters())


def test_cli_style_string_arguments_and_topk():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 3))
    clf = load_classifier(net, input_size="24,32", mean="0.5", std="0.5,0.5,0.5", crop_pct="1.0",
                          interpolation="BICUBIC", labels=["a, alpha", "b", "c"])
    cfg = clf.data_config
    assert cfg.input_size == (3, 24, 32) and cfg.mean == (0.5, 0.5, 0.5) and cfg.interpolation == "bicubic"
    assert clf.preprocess(torch.rand(2, 3, 50, 50)).shape == (2, 3, 24, 32)  # non-square: resized to (H, W)
    top = clf.topk(_images(2), k=2)
    assert len(top) == 2 and [len(t) for t in top] == [2, 2]
    probs = clf(_images(2)).softmax(1)
    assert top[0][0]["prob"] == pytest.approx(probs[0].max().item(), abs=1e-6)
    assert top[0][0]["label"] == clf.labels[top[0][0]["index"]] and top[0][0]["prob"] >= top[0][1]["prob"]
    assert clf.labels[0] == "a"


def test_bad_image_tensors_are_explained():
    clf = load_classifier(_tiny(), input_size=SIZE)
    with pytest.raises(ClassifierError, match=r"\(B, 3, H, W\).*got \(2, 32, 32, 3\)"):
        clf(torch.rand(2, SIZE, SIZE, 3))
    with pytest.raises(ClassifierError, match="not floating point.*255"):
        clf(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))


def test_a_notebook_s_evaluation_transform_sets_the_data_config(tmp_path):
    """`load_classifier(model, transform=tf)` (and `probe.Audit(model, ..., transform=tf)`): the torchvision or timm
    evaluation transform a notebook already has gives input size, crop, interpolation and normalisation, and probe's
    own preprocessing then gives what the transform gives on a photo of another shape (PIL's resize against probe's
    tensor resize: within 0.01 on average). Before, only the ImageNet guess was there, with a warning."""
    import numpy as np
    import torch.nn.functional as F
    import torchvision
    from PIL import Image
    from torchvision import transforms as T
    from torchvision.transforms import v2

    from probe.classifiers import data_config as dc

    torch.manual_seed(0)
    photo = F.interpolate(torch.rand(1, 3, 6, 8), size=(300, 400), mode="bicubic", align_corners=False).clamp(0, 1)
    pil = Image.fromarray((photo[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    x = torch.from_numpy(np.array(pil)).permute(2, 0, 1).float()[None] / 255
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 3)).eval()
    cases = [(T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), T.Normalize([0.5] * 3, [0.25] * 3)]),
              dict(input_size=(3, 224, 224), crop_pct=0.875, crop_mode="center", mean=(0.5,) * 3, std=(0.25,) * 3)),
             (v2.Compose([v2.ToImage(), v2.Resize((160, 200)), v2.ToDtype(torch.float32, scale=True),
                          v2.Normalize([0.4] * 3, [0.3] * 3)]),
              dict(input_size=(3, 160, 200), crop_pct=1.0, crop_mode="squash", mean=(0.4,) * 3, std=(0.3,) * 3))]
    import timm

    cases.append((timm.data.create_transform(input_size=(3, 224, 224), crop_pct=0.9, crop_mode="squash",
                                             interpolation="bilinear", mean=(0.5,) * 3, std=(0.25,) * 3,
                                             is_training=False),  # Resize((248, 248)), then CenterCrop(224)
                  dict(input_size=(3, 224, 224), crop_pct=224 / 248, crop_mode="squash", mean=(0.5,) * 3)))
    for transform, expected in cases:
        clf = load_classifier(net, transform=transform)
        for key, value in expected.items():
            assert getattr(clf.data_config, key) == pytest.approx(value), (key, clf.data_config)
        assert clf.data_config.interpolation == "bilinear" and clf.guess_note is None
        assert (clf.preprocess(x) - transform(pil)[None]).abs().mean() < 0.01
    preset = load_classifier(net, transform=torchvision.models.ResNet50_Weights.IMAGENET1K_V2.transforms())
    assert preset.data_config.input_size == (3, 224, 224) and preset.data_config.crop_pct == pytest.approx(224 / 232)
    grey = dc.from_transform(T.Compose([T.Grayscale(), T.Resize(28), T.ToTensor(), T.Normalize((0.13,), (0.31,))]))
    assert grey["input_size"] == (1, 28, 28) and grey["mean"] == (0.13,)
    explicit = load_classifier(net, transform=cases[0][0], mean=(0.1, 0.2, 0.3))  # an argument still wins
    assert explicit.data_config.mean == (0.1, 0.2, 0.3) and explicit.data_config.std == (0.25,) * 3
    import probe

    audit = probe.Audit(net, "world", transform=cases[1][0])  # the notebook's Audit passes it on
    assert audit.classifier.data_config.input_size == (3, 160, 200)
    with pytest.raises(ClassifierError, match="RandomResizedCrop is a random step of a training transform"):
        load_classifier(net, transform=T.Compose([T.RandomResizedCrop(224), T.ToTensor()]))
    with pytest.raises(ClassifierError, match=r"Resize\(size=None\) sets only the longer side"):
        load_classifier(net, transform=v2.Resize(size=None, max_size=256))
    with pytest.raises(ClassifierError, match="probe does not read a Lambda step; pass the data settings"):
        load_classifier(net, transform=T.Compose([T.Lambda(lambda im: im), T.ToTensor()]))


@pytest.mark.parametrize("size", [(301, 403), (333, 257), (300, 400), (480, 640), (160, 171)])
def test_preprocessing_equals_torchvision_s_resize_and_center_crop_on_every_image_shape(size):
    """timm's eval transform is torchvision's Resize(int) then CenterCrop: the longer side truncated, the crop's offsets
    rounded half to even. probe rounded the longer side and floored the offsets, one pixel off where the margin or
    the longer side's fraction was odd: 0.04 mean absolute difference (normalised) at timm's crop_pct 0.95, 0.016 for
    Resize(256) on a 301x403 image. And a crop_pct read from Resize(400) + CenterCrop(224) floored to 399 pixels.
    Enlarging (160x171) a bicubic resize used the plain kernel (a = -0.75) where torchvision's antialiased one (and
    PIL) use a = -0.5."""
    import timm
    import torch.nn.functional as F
    from torchvision import transforms as T

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                              torch.nn.Linear(4, 3)).eval()
    timm_eval = timm.data.create_transform(input_size=(3, 224, 224), crop_pct=0.95, interpolation="bilinear",
                                           mean=(0.5,) * 3, std=(0.25,) * 3, is_training=False)
    transforms = [T.Compose([T.Resize(256), T.CenterCrop(224), T.Normalize([0.5] * 3, [0.25] * 3)]),
                  T.Compose([T.Resize(400), T.CenterCrop(224), T.Normalize([0.5] * 3, [0.25] * 3)]),
                  T.Compose([T.Resize(235, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(224),
                             T.Normalize([0.5] * 3, [0.25] * 3)]),
                  T.Compose([t for t in timm_eval.transforms if type(t).__name__ not in ("ToTensor", "MaybeToTensor")])]
    # smooth, within [0.2, 0.8]: a bicubic resize stays inside [0, 1], where probe clamps as an 8-bit pipeline would
    x = 0.2 + 0.6 * F.interpolate(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)), size=size,
                                  mode="bilinear", align_corners=False)
    for transform, resize in zip(transforms, (256, 400, 235, 235)):  # timm's: floor(224 / 0.95) = 235
        clf = load_classifier(net, transform=transform)
        assert clf.data_config.resize_size == (resize, resize)
        torch.testing.assert_close(clf.preprocess(x), transform(x), rtol=0, atol=1e-5)


def test_a_transformers_processor_s_center_crop_is_followed_to_the_pixel(tmp_path):
    """A ConvNeXt-style processor (shortest edge to 64, center crop to 56) on a 64x71 photo: the resize changes
    nothing, the crop's margin is 15 and transformers floors its half (7) where torchvision rounds it (8). probe feeds
    the network exactly what the processor gives it; a timm/torchvision classifier keeps torchvision's offset."""
    import numpy as np
    import transformers as T
    from PIL import Image

    torch.manual_seed(0)
    model = T.ConvNextForImageClassification(T.ConvNextConfig(num_channels=3, hidden_sizes=[8, 16], depths=[1, 1], num_stages=2,
                                                                image_size=56, num_labels=3))
    folder = tmp_path / "convnext"
    model.eval().save_pretrained(str(folder))
    T.ConvNextImageProcessor(size={"shortest_edge": 56}, crop_pct=0.875, resample=2, image_mean=[0.5] * 3,
                             image_std=[0.25] * 3).save_pretrained(str(folder))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, size=(64, 71, 3), dtype=np.uint8))
    expected = T.AutoImageProcessor.from_pretrained(str(folder))(image, return_tensors="pt")["pixel_values"]

    clf = load_classifier(folder)
    assert (clf.data_config.crop_mode, clf.data_config.crop_offset, clf.data_config.resize_size) == ("center", "floor",
                                                                                                    (64, 64))
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    torch.testing.assert_close(clf.preprocess(x), expected, rtol=0, atol=1e-5)
    assert DataConfig(input_size=(3, 56, 56), crop_pct=0.875).crop_offset == "round"  # torchvision's, by default
    with pytest.raises(ClassifierError, match="crop_offset"):
        DataConfig(crop_offset="ceil")
