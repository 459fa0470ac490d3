"""Hand probe your classifier as code: a `package.module:function` that returns an nn.Module.

probe imports the module (it must be importable: installed, or its folder on PYTHONPATH), calls the
function with no arguments and audits the module it returns. Useful when the model is defined in your
own code base. A function carries no sidecars, so give the class names (--labels) and the
preprocessing (--input-size, --mean, --std, --crop-pct, --interpolation) as flags; a timm model's own
pretrained_cfg would also be read. The factory here is `factory_function:world_classifier`, defined in
this file, returning the bundled shapes-world classifier as plain PyTorch:

    python examples/factory_function.py --out runs/examples/factory_function
"""

from __future__ import annotations

import shlex
from pathlib import Path

import torch

import probe
from _world import DATA, LABELS, arguments, audit_command, report, world_network

SPEC = "factory_function:world_classifier"  # this file's module name : the function below


def world_classifier() -> torch.nn.Module:
    """The factory: build the network and load its weights (here from the bundled classifier)."""
    return world_network()


def main() -> None:
    out = arguments(__doc__, "factory_function")
    labels = out / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")  # one class name per output, in index order
    preprocessing = dict(input_size=DATA["input_size"][-1], mean=DATA["mean"], std=DATA["std"],
                         crop_pct=DATA["crop_pct"], interpolation=DATA["interpolation"])
    # This file's folder is on sys.path when it runs as a script, so probe can import the factory.
    clf = probe.load_classifier(SPEC, labels=labels, **preprocessing)
    flags = ["--labels", str(labels)]
    for name, value in preprocessing.items():
        shown = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        flags += [f"--{name.replace('_', '-')}", shown]
    env = "PYTHONPATH=" + shlex.quote(str(Path(__file__).resolve().parent))  # for the probe command
    report(clf, audit_command(SPEC, out, *flags, env=env))


if __name__ == "__main__":
    main()
