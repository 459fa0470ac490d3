"""Print the shapes-world generator's fidelity table (oracle accuracy on held-out caption combinations).

    .venv/bin/python benchmarks/world_fidelity.py                  # bundled generator, 2 seeds per case
    .venv/bin/python benchmarks/world_fidelity.py --path DIR --seeds 4 --steps 20 --guidance 4
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    from probe.world.training.fidelity import measure_fidelity

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--path", default=None, help="pipeline folder (default: the bundled one)")
    p.add_argument("--seeds", type=int, default=2, help="images per held-out (caption, tag) case")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument("--partial", type=int, default=16, help="images per shape from 'a photo of a {shape}'")
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    result = measure_fidelity(a.path, seeds_per_case=a.seeds, steps=a.steps, guidance=a.guidance,
                              partial_per_shape=a.partial, device=a.device)
    print(result.table())
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
