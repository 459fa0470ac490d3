"""Hand probe a whole pickled nn.Module (torch.save(model)) -- only with --trust-pickle.

Unpickling runs code named in the file, so probe refuses such files unless you say you trust them:
--trust-pickle on the command line, trust_pickle=True in Python (the run records that you did). The
model's classes must also be importable when it loads. Prefer a .pt2, TorchScript or a state dict
(the other examples); this one shows the refusal, then the trusted load, with the bundled shapes-world
classifier:

    python examples/pickled_module.py --out runs/examples/pickled_module
"""

from __future__ import annotations

import torch

import probe
from _world import arguments, audit_command, report, world_network, write_sidecars


def main() -> None:
    out = arguments(__doc__, "pickled_module")
    path = out / "world.pt"
    torch.save(world_network(), path)  # the whole object, not model.state_dict()
    write_sidecars(path)  # world.labels.txt, world.data.json
    try:
        probe.load_classifier(path)
    except probe.ClassifierError as e:  # refused: one line naming the fix
        print(f"without trust_pickle: {e}")
    clf = probe.load_classifier(path, trust_pickle=True)  # only for files you trust
    report(clf, audit_command(path, out, "--trust-pickle"))


if __name__ == "__main__":
    main()
