"""Hostile and careless classifier files: refused or explained in one line, never executed.

Each crafted file is first shown to be a real attack (plain ``torch.export.load`` runs
its payload, which creates a marker file), so the refusal cannot pass by accident.
"""

from __future__ import annotations

import io
import json
import pickle
import warnings
import zipfile
from fractions import Fraction
from pathlib import Path

import pytest
import torch
from torch import nn

from probe.classifiers import Classifier, load_classifier, select_classes
from probe.errors import ClassifierError, LabelsError

SIZE = 16


class SmallNet(nn.Module):
    """A small conv net (importable from this module, so whole-module pickles can be loaded)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class Payload:
    """Unpickling this creates ``marker``: stands in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _net() -> SmallNet:
    torch.manual_seed(0)
    return SmallNet().eval()


@pytest.fixture(scope="module")
def good_pt2(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "good.pt2"
    x = torch.rand(2, 3, SIZE, SIZE)
    ep = torch.export.export(_net(), (x,), dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(ep, str(path))
    return path


def _rewrite(src: Path, dst: Path, edit, extra: dict[str, bytes] | None = None) -> Path:
    """Copy the zip ``src`` to ``dst``, passing each member's bytes through ``edit(name, data)``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info, edit(info.filename, zin.read(info.filename)))
        for name, data in (extra or {}).items():
            zout.writestr(name, data)
    return dst


def _edit_config(suffix: str, change):
    def edit(name: str, data: bytes) -> bytes:
        if name.endswith(suffix):
            cfg = json.loads(data)
            change(cfg["config"])
            return json.dumps(cfg).encode()
        return data

    return edit


def _craft(kind: str, good: Path, tmp_path: Path, marker: Path) -> Path:
    evil = pickle.dumps(Payload(marker))
    dst = tmp_path / f"{kind}.pt2"
    if kind == "sample_inputs":
        return _rewrite(good, dst, lambda n, d: evil if n.endswith("data/sample_inputs/model.pt") else d)
    if kind == "use_pickle_weight":
        def change(config):
            first = next(iter(config))
            config[first]["use_pickle"] = True
            config[first]["path_name"] = "weight_0"

        edit = _edit_config("_weights_config.json", change)
        return _rewrite(good, dst, lambda n, d: evil if n.endswith("data/weights/weight_0") else edit(n, d))
    if kind == "opaque_constant":
        def add(config):
            config["evil"] = {"path_name": "opaque_obj_0", "is_param": False, "use_pickle": True, "tensor_meta": None}

        root = zipfile.ZipFile(good).namelist()[0].split("/", 1)[0]
        return _rewrite(good, dst, _edit_config("_constants_config.json", add),
                        {f"{root}/data/constants/opaque_obj_0": evil})
    if kind == "legacy_fallback":
        # An unknown constant type makes the new-layout loader raise RuntimeError; torch.export.load then
        # falls back to the pre-2.7 layout, whose serialized_*.pt entries it unpickles.
        from torch._export.serde.schema import SCHEMA_VERSION

        def bogus(config):
            config["bogus"] = {"path_name": "bogus_0", "is_param": False, "use_pickle": False, "tensor_meta": None}

        with zipfile.ZipFile(good) as zf:
            program = zf.read(next(n for n in zf.namelist() if n.endswith("models/model.json")))
        return _rewrite(good, dst, _edit_config("_constants_config.json", bogus), {
            "version": ".".join(map(str, SCHEMA_VERSION)).encode(),
            "serialized_exported_program.json": program,
            "serialized_state_dict.pt": evil,
            "serialized_constants.pt": evil,
            "serialized_example_inputs.pt": evil,
        })
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["sample_inputs", "use_pickle_weight", "opaque_constant", "legacy_fallback"])
def test_crafted_pt2_is_refused_without_running_its_pickle(good_pt2, tmp_path, capfd, kind):
    marker = tmp_path / "payload_ran"
    evil = _craft(kind, good_pt2, tmp_path, marker)
    # The file is a real attack: torch's own loader runs the payload.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.export.load(str(evil))
        except Exception:
            pass
    assert marker.exists(), "the crafted file should run its payload under plain torch.export.load"
    marker.unlink()
    capfd.readouterr()

    with pytest.raises(ClassifierError) as info:
        load_classifier(evil)
    msg = str(info.value)
    assert not marker.exists(), "load_classifier ran the pickled payload"
    assert "pickled entries that would run code" in msg and "--trust-pickle" in msg
    assert "torch.export.save" in msg and "\n" not in msg
    err = capfd.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err


def test_compiled_code_in_pt2_is_refused(good_pt2, tmp_path):
    root = zipfile.ZipFile(good_pt2).namelist()[0].split("/", 1)[0]
    evil = _rewrite(good_pt2, tmp_path / "aoti.pt2", lambda n, d: d,
                    {f"{root}/data/aotinductor/model/model.so": b"\x7fELF not really"})
    with pytest.raises(ClassifierError, match="AOTInductor.*--trust-pickle"):
        load_classifier(evil)


def test_duplicate_member_names_are_refused(good_pt2, tmp_path):
    # zipfile reads the last of two same-named entries; torch's reader may read the first.
    name = next(n for n in zipfile.ZipFile(good_pt2).namelist() if n.endswith("sample_inputs/model.pt"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        dup = _rewrite(good_pt2, tmp_path / "dup.pt2", lambda n, d: d, {name: b"x"})
    with pytest.raises(ClassifierError, match="twice"):
        load_classifier(dup)


def test_legitimate_pt2_files_load_without_trust(good_pt2, capfd):
    clf = load_classifier(good_pt2)
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(clf(x), _net()(clf.preprocess(x)), atol=1e-5)
    assert clf.data_config.input_size == (3, SIZE, SIZE)
    assert "trust_pickle" not in clf.describe()
    bundled = Path(__file__).parents[1] / "probe" / "world" / "assets" / "classifiers"
    for name in ("biased", "clean"):
        assert load_classifier(bundled / f"{name}.pt2").num_classes == 6
    assert "Logging error" not in capfd.readouterr().err


def test_trusted_pt2_with_pickled_inputs_loads_quietly(good_pt2, tmp_path, capfd):
    """A harmless non-tensor sample input needs trust; with it, torch's broken fallback log stays quiet."""
    x = torch.rand(2, 3, SIZE, SIZE)
    x.note = Fraction(1, 2)  # a Python attribute: not on torch's weights-only allowlist
    buf = io.BytesIO()
    torch.save(((x,), {}), buf)
    path = _rewrite(good_pt2, tmp_path / "fraction.pt2",
                    lambda n, d: buf.getvalue() if n.endswith("sample_inputs/model.pt") else d)
    with pytest.raises(ClassifierError, match="--trust-pickle"):
        load_classifier(path)
    capfd.readouterr()
    clf = load_classifier(path, trust_pickle=True)
    assert clf.num_classes == 3 and clf.describe()["trust_pickle"] is True
    err = capfd.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err


# ----------------------------------------------------------------------------- raw pickles


def test_raw_pickle_stream(tmp_path):
    net = _net()
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(net))
    with pytest.raises(ClassifierError) as info:
        load_classifier(path, input_size=SIZE)
    msg = str(info.value)
    assert "--trust-pickle" in msg and "truncated" not in msg and "SmallNet" in msg
    clf = load_classifier(path, trust_pickle=True, input_size=SIZE)
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(clf(x), net(clf.preprocess(x)), atol=1e-6)
    assert clf.format == "pickle" and clf.describe()["trust_pickle"] is True


class AttributeDict(dict):
    """Stands in for Lightning's hyper-parameter dict (a dict subclass pickled by reference)."""


def test_a_training_checkpoints_weights_load_and_its_objects_stay_inert(tmp_path):
    """timm's train.py and torchvision's reference scripts save {'state_dict'/'model': ..., 'args': argparse.Namespace};
    Lightning saves an AttributeDict of hyper-parameters. Such files were refused as pickled objects. Their weights
    now load without --trust-pickle and every other object stands in inert: a payload beside the weights (shown to
    run under plain torch.load) runs nothing, and a whole pickled model is still refused."""
    import argparse

    import timm

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", num_classes=3).eval()
    marker = tmp_path / "ran"
    attack = {"state_dict": net.state_dict(), "args": argparse.Namespace(lr=0.1, model="test_resnet"),
              "hyper_parameters": AttributeDict(lr=0.1), "epoch": 7, "payload": Payload(marker)}
    torch.save(attack, tmp_path / "checkpoint.pth.tar")
    torch.load(tmp_path / "checkpoint.pth.tar", weights_only=False)  # the real attack: plain unpickling runs it
    assert marker.exists()
    marker.unlink()
    clf = load_classifier(tmp_path / "checkpoint.pth.tar", arch="timm:test_resnet", input_size=SIZE)
    assert not marker.exists() and clf.num_classes == 3 and clf.format == "state_dict"
    x = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.allclose(clf(x), net(clf.preprocess(x)), atol=1e-6)
    torch.save({"model": _net(), "args": argparse.Namespace(lr=0.1)}, tmp_path / "whole.pth")
    with pytest.raises(ClassifierError, match="--trust-pickle"):
        load_classifier(tmp_path / "whole.pth", input_size=SIZE)


def test_only_a_truncated_pickle_says_truncated(tmp_path):
    data = pickle.dumps(_net())
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(data[: len(data) // 2])
    for trust in (False, True):
        with pytest.raises(ClassifierError, match="truncated"):
            load_classifier(cut, trust_pickle=trust)
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ClassifierError, match="--trust-pickle") as info:
        load_classifier(evil)
    assert "truncated" not in str(info.value).replace(str(evil), "") and not marker.exists()


# ----------------------------------------------------------------------------- misnamed files


def test_torch_save_named_safetensors_is_read_by_its_bytes(tmp_path):
    import timm

    torch.manual_seed(0)
    net = timm.create_model("test_resnet", pretrained=False, num_classes=3).eval()
    path = tmp_path / "weights.safetensors"
    torch.save(net.state_dict(), path)
    clf = load_classifier(path, arch="timm:test_resnet")
    assert clf.format == "state_dict" and clf.num_classes == 3
    x = torch.rand(2, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(clf(x), net(clf.preprocess(x)), atol=1e-5)


# ----------------------------------------------------------------------------- errors inside forward


class Raises(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 0:
            raise ValueError("calibration table missing for this checkpoint")
        return x


class WrongWidth(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def _script(module: nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), str(path))
    return path


class WritesAFile(nn.Module):
    """A model whose forward maps a file with aten::from_file (shared=True: filling the tensor writes to the file)."""

    def __init__(self, target: str) -> None:
        super().__init__()
        self.target = target
        self.fc = nn.Linear(3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = torch.from_file(self.target, True, 4, dtype=torch.uint8)
        t.fill_(65)
        return self.fc(x.mean(dim=(2, 3))) + t[:1].float() * 0


def test_a_model_whose_code_writes_files_is_refused_unless_trusted(tmp_path):
    """TorchScript and exported programs are code: a graph calling aten::from_file wrote "AAAA" over the first bytes
    of any file the user could write, in probe's load-time forward, with no flag (TorchScript's __setstate__ could do
    it inside torch.jit.load). Both are refused before they load; --trust-pickle still loads them."""
    victim = tmp_path / "victim.txt"
    victim.write_text("hello world")
    scripted = _script(WritesAFile(str(victim)), tmp_path / "writes.pt")

    def _shape_only(filename, shared=None, size=0, *, dtype=None, layout=None, device=None, pin_memory=None):
        return torch.empty(size, dtype=dtype or torch.float32, device="cpu")

    try:  # torch.export traces with fake tensors; from_file has no fake kernel (a crafted file needs none)
        torch.library.register_fake("aten::from_file", _shape_only)
    except RuntimeError:
        pass  # registered by an earlier run of this test in the same process

    exported = tmp_path / "writes.pt2"
    program = torch.export.export(WritesAFile(str(tmp_path / "marker")), (torch.rand(2, 3, 8, 8),),
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
    torch.export.save(program, str(exported))
    for model in (scripted, exported):
        with pytest.raises(ClassifierError, match=r"read or write files \(.*from_file\).*--trust-pickle") as info:
            load_classifier(model, input_size=(3, 8, 8))
        assert "\n" not in str(info.value)
    assert victim.read_text() == "hello world" and not (tmp_path / "marker").exists()
    load_classifier(scripted, input_size=(3, 8, 8), trust_pickle=True)  # the user's own model, trusted
    assert victim.read_text().startswith("AAAA")


def test_torchscript_forward_error_keeps_the_users_message(tmp_path):
    with pytest.raises(ClassifierError) as info:
        load_classifier(_script(Raises(), tmp_path / "raises.ts"))
    msg = str(info.value)
    assert "ValueError: calibration table missing for this checkpoint" in msg
    assert "--input-size" not in msg and "TorchScript interpreter" not in msg and "\n" not in msg
    with pytest.raises(ClassifierError) as info:
        load_classifier(Raises())
    assert "calibration table missing" in str(info.value) and "--input-size" not in str(info.value)


def test_torchscript_shape_error_still_names_the_input_size(tmp_path):
    with pytest.raises(ClassifierError) as info:
        load_classifier(_script(WrongWidth(), tmp_path / "wide.ts"))
    msg = str(info.value)
    assert "mat1 and mat2 shapes cannot be multiplied" in msg and "--input-size" in msg


def test_a_grey_model_is_told_how_to_state_its_channels_and_then_loads(tmp_path):
    """A 1-channel network (MNIST-style) was told to set --input-size, which sets pixels, not channels."""
    from torch import nn

    path = _script(nn.Sequential(nn.Conv2d(1, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)).eval(),
                   tmp_path / "digits.pt")
    with pytest.raises(ClassifierError) as info:
        load_classifier(path)
    msg = str(info.value)
    assert 'the model takes 1-channel images: write digits.data.json beside it with "input_size": [1, H, W]' in msg
    assert "--input-size" not in msg and "\n" not in msg
    (tmp_path / "digits.data.json").write_text('{"input_size": [1, 28, 28], "mean": [0.1307], "std": [0.3081]}')
    clf = load_classifier(path)
    assert clf.num_classes == 10 and clf(torch.rand(2, 3, 64, 64)).shape == (2, 10)  # RGB in, luminance to the model


# ----------------------------------------------------------------------------- --classes


@pytest.mark.parametrize("spec", ["²", "1²", "３", "¹-²"])
def test_non_ascii_digits_are_not_indices(spec):
    with pytest.raises(LabelsError, match="unknown class name") as info:
        select_classes(spec, ["cat", "dog", "fox", "owl"])
    assert repr(spec) in str(info.value)


def test_ascii_indices_still_work():
    assert select_classes("2,0-1", ["cat", "dog", "fox"]) == [2, 0, 1]


# ----------------------------------------------------------------------------- missing paths


@pytest.mark.parametrize("spec", ["models/nope.pt2", "./nope", "nope.pt", "/no/such/dir/model.pt", "~/nope.pth",
                                  "org/model.safetensors"])
def test_missing_local_path_says_so_without_hub_advice(spec):
    with pytest.raises(ClassifierError) as info:
        load_classifier(spec)
    msg = str(info.value)
    assert "does not exist" in msg and "check the path" in msg
    assert "download" not in msg and "huggingface" not in msg.lower()


def test_missing_path_next_to_a_local_folder_is_local(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    with pytest.raises(ClassifierError) as info:
        load_classifier("models/nope")
    assert "does not exist" in str(info.value) and "download" not in str(info.value)


@pytest.mark.parametrize("spec", ["google/vit-base-patch16-224", "timm/resnet50.a1_in1k"])
def test_hub_id_gets_hf_download_advice(spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ClassifierError) as info:
        load_classifier(spec)
    msg = str(info.value)
    assert f"`hf download {spec} --local-dir DIR`" in msg and "huggingface-cli" not in msg


# ----------------------------------------------------------------------------- unnamed classes


def test_classes_without_labels_are_named_by_index():
    clf = load_classifier(_net(), input_size=SIZE)
    assert clf.labels == ["0", "1", "2"] and not clf.has_names
    assert [t["label"] for t in clf.topk(torch.rand(1, 3, SIZE, SIZE), k=3)[0]] != [None] * 3
    assert all(isinstance(t["label"], str) and t["label"] != "None"
               for t in clf.topk(torch.rand(1, 3, SIZE, SIZE), k=3)[0])
    direct = Classifier(_net(), num_classes=3, labels=[None, None, None])
    assert direct.labels == ["0", "1", "2"] and "None" not in repr(direct)
    with pytest.raises(LabelsError, match="class 1 has no name"):
        Classifier(_net(), num_classes=3, labels=["cat", None, "fox"])


def test_model_config_with_empty_names_falls_back_to_indices():
    net = _net()
    net.config = type("Config", (), {"id2label": {0: None, 1: None, 2: None}})()
    clf = load_classifier(net, input_size=SIZE)
    assert clf.labels == ["0", "1", "2"] and clf.labels_source is None


@pytest.mark.parametrize("spec, hub", [("timm:resnet50", "timm/resnet50.a1_in1k"), ("torchvision:resnet18", None)])
def test_an_architecture_typed_as_the_model_says_it_needs_weights_and_where_to_get_them(spec, hub):
    """`--model timm:resnet50` (the --arch spelling) was read as a factory and got "timm has no attribute
    'resnet50'; check the function name"; it now names both ways to give weights, with timm's hub id where timm
    knows one (fetched like any hub id)."""
    with pytest.raises(ClassifierError) as info:
        load_classifier(spec)
    msg = str(info.value)
    assert "is an architecture, not weights" in msg and f"--arch {spec}" in msg
    assert (f"--model {hub}" in msg) if hub else "hub id" not in msg


@pytest.mark.parametrize("loader", ["classifier", "concepts"])
def test_a_model_folder_that_maps_to_its_own_code_never_runs_it_nor_offers_to(tmp_path, monkeypatch, loader):
    """A Hugging Face folder whose config.json has an auto_map names Python files in the folder. transformers' default
    asks "Do you wish to run the custom code? [y/N]" on a terminal, and a user who answers y runs the folder's code
    (shown: with the question answered y, the marker is written before this change). probe never asks and never runs
    it; the classifier loader says so in one line. For a concept model (CLIP or SigLIP, the only types it loads,
    whose code transformers has) transformers would not ask either: what keeps the folder's code out is probe's
    explicit trust_remote_code=False on every load, checked here."""
    folder = tmp_path / "evil"
    folder.mkdir()
    marker = tmp_path / "ran"
    model_type = "clip" if loader == "concepts" else "evilnet"
    (folder / "config.json").write_text(json.dumps({
        "model_type": model_type, "architectures": ["EvilModel"], "num_labels": 2,
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModel": "evil.EvilModel",
                     "AutoModelForImageClassification": "evil.EvilModel"}}))
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    asked: list[str] = []
    monkeypatch.setattr("builtins.input", lambda prompt="": asked.append(prompt) or "y")
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    if loader == "classifier":
        with pytest.raises(ClassifierError, match=r"maps to the folder's own Python code \(auto_map .*which probe never runs"):
            load_classifier(folder)
    else:
        import transformers

        from probe.concepts.model import load_concepts
        from probe.errors import ProbeError

        trusted: list = []
        for auto in ("AutoModel", "AutoProcessor"):
            real = getattr(transformers, auto).from_pretrained

            def spy(*args, _real=real, **kwargs):
                trusted.append(kwargs.get("trust_remote_code", "unset"))
                return _real(*args, **kwargs)

            monkeypatch.setattr(getattr(transformers, auto), "from_pretrained", spy)
        with pytest.raises(ProbeError, match="could not load the concept model"):
            load_concepts(folder)
        assert trusted and all(t is False for t in trusted), trusted
    assert not asked and not marker.exists()
