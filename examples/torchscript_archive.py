"""Hand probe your classifier as a TorchScript archive (torch.jit.save).

Like a .pt2, a TorchScript file carries its own code, so probe needs no --arch. torch deprecated
TorchScript in 2.14 (prefer examples/export_program.py) but probe still loads it. Python layer hooks do
not fire on scripted models, so Grad-CAM reads its layer from the graph instead; every method runs.
Here the model is the bundled shapes-world classifier, so the audit runs offline:

    python examples/torchscript_archive.py --out runs/examples/torchscript_archive
"""

from __future__ import annotations

import warnings

import torch

import probe
from _world import arguments, audit_command, report, world_network, write_sidecars


def main() -> None:
    out = arguments(__doc__, "torchscript_archive")
    path = out / "world.ts"
    with warnings.catch_warnings():  # torch >= 2.14 warns that TorchScript is deprecated
        warnings.simplefilter("ignore", FutureWarning)
        # Tracing records one forward pass; torch.jit.script(model) works as well where the code allows.
        scripted = torch.jit.trace(world_network(), torch.rand(2, 3, 32, 32))
        torch.jit.save(scripted, str(path))
    write_sidecars(path)  # world.labels.txt, world.data.json
    clf = probe.load_classifier(path)
    report(clf, audit_command(path, out))


if __name__ == "__main__":
    main()
