"""Hand probe a timm model as the folder timm writes to the Hugging Face hub, or by its hub id.

`hf download timm/resnet50.a1_in1k --local-dir DIR` (or `timm.models.save_for_hf(model, DIR)` for your own) gives
a folder with config.json ("architecture", "pretrained_cfg") and model.safetensors. probe builds it with timm,
reads the weights as tensors only, takes the preprocessing from pretrained_cfg and the class names from its
label_names (ImageNet's for a model whose tag names an ImageNet subset). `--model timm/resnet50.a1_in1k` fetches
the same folder into the Hugging Face cache and loads it the same way.

world-timm/: the bundled shapes-world classifier is timm's test_resnet looking at a 4x average-pooled thumbnail of
a 32 px image; the pooling moves into pretrained_cfg (input_size 8, "area" resizing), as in state_dict_with_arch.py.
Same weights, same answers, no sidecars.

    python examples/timm_hub_folder.py --out runs/examples/timm_hub_folder
"""

from __future__ import annotations

from timm.models import save_for_hf

import probe
from _world import DATA, LABELS, arguments, audit_command, report, world_network


def main() -> None:
    out = arguments(__doc__, "timm_hub_folder")
    folder = out / "world-timm"
    net = world_network().net  # timm test_resnet with the bundled weights
    data = dict(DATA, input_size=(3, 8, 8), interpolation="area")  # the 4x pooling, as preprocessing
    save_for_hf(net, folder, model_config={"label_names": LABELS}, data_config=data, safe_serialization=True)
    clf = probe.load_classifier(folder)  # config.json with "architecture": a timm folder
    report(clf, audit_command(folder, out))


if __name__ == "__main__":
    main()
