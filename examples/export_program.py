"""Hand probe your classifier as a torch.export program (.pt2), the recommended format.

An exported program loads without your model's code, and gradients flow through it (the token optimiser
needs them). Export with a dynamic batch dimension and write the two sidecars probe reads next to it:
MODEL.labels.txt (class names) and MODEL.data.json (input size, normalisation, crop, interpolation).
Here the model is the bundled shapes-world classifier, so the audit runs offline:

    python examples/export_program.py --out runs/examples/export_program
"""

from __future__ import annotations

import torch

import probe
from _world import arguments, audit_command, report, world_network, write_sidecars


def export(model: torch.nn.Module, path, input_size=(3, 32, 32)) -> None:
    """torch.export with a dynamic batch: probe classifies batches of any size."""
    example = torch.rand(2, *input_size)
    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(model.eval(), (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))


def main() -> None:
    out = arguments(__doc__, "export_program")
    path = out / "world.pt2"
    export(world_network(), path)  # your model: any nn.Module taking normalised images
    write_sidecars(path)  # world.labels.txt, world.data.json
    clf = probe.load_classifier(path)  # the format is detected from the file's contents
    report(clf, audit_command(path, out))


if __name__ == "__main__":
    main()
