"""Hand probe your classifier as weights only (a state dict), naming the architecture with --arch.

A state dict holds tensors and no code, so probe loads it safely (weights_only=True, or safetensors) and
rebuilds the network from the library you name: --arch timm:NAME or --arch torchvision:NAME. The head's
size gives the number of classes. Keys must match that library's model (wrapper prefixes such as
"module." are stripped).

1. world.pth: the bundled shapes-world classifier is timm's test_resnet looking at a 4x average-pooled
   thumbnail of a 32 px image. The pooling is not a parameter, so it moves into the data config instead:
   input_size 8 with "area" resizing is exactly that pooling. Same weights, same answers.
2. tv.safetensors: a torchvision mobilenet_v3_small with random weights, to show torchvision:NAME and
   safetensors (its accuracy is chance).

    python examples/state_dict_with_arch.py --out runs/examples/state_dict_with_arch
"""

from __future__ import annotations

import torch
import torchvision
from safetensors.torch import save_file

import probe
from _world import DATA, LABELS, arguments, audit_command, report, world_network, write_sidecars


def main() -> None:
    out = arguments(__doc__, "state_dict_with_arch")

    # 1. timm: the world weights. world_network() is Thumbnail(net=timm test_resnet): save the timm part.
    path = out / "world.pth"
    torch.save(world_network().net.state_dict(), path)
    write_sidecars(path, dict(DATA, input_size=[3, 8, 8], interpolation="area"))  # the 4x pooling
    clf = probe.load_classifier(path, arch="timm:test_resnet")
    report(clf, audit_command(path, out, "--arch", "timm:test_resnet"))

    # 2. torchvision, saved as safetensors (random weights: a stand-in for yours).
    tv = torchvision.models.mobilenet_v3_small(num_classes=len(LABELS))
    path = out / "tv.safetensors"
    save_file(tv.state_dict(), str(path))
    write_sidecars(path)
    clf = probe.load_classifier(path, arch="torchvision:mobilenet_v3_small")
    report(clf, audit_command(path, out, "--arch", "torchvision:mobilenet_v3_small", run="audit_tv"),
           carried=False)


if __name__ == "__main__":
    main()
