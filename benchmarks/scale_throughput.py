"""Classes per minute on the Ray backend with 1 and 2 workers, beside the local backend, on the shapes world.

    .venv/bin/python benchmarks/scale_throughput.py                 # 6 classes, the demo's token settings
    .venv/bin/python benchmarks/scale_throughput.py --workers 1,2,4 --classes all

Each configuration audits the same classes into a fresh run directory (tokens only: the analysis runs once on
the driver whatever the backend, so it is left out), and the table gives wall time, classes per minute and the
model-load time each Ray worker paid once (from the ``worker`` record of every class's metrics.json). The local
cluster is started once with as many CPU slots as the most workers asked for; a Ray worker uses one CPU thread
per slot, the local backend all of this machine's threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--classes", default="all", help="classes to audit (default: all 6 of the shapes world)")
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--no-local", action="store_true", help="skip the local backend's row")
    args = parser.parse_args(argv)
    import ray
    import torch

    from probe.run import RunDir
    from probe.auditing.loop import audit
    from probe.auditing.scale import ScaleConfig
    from probe.world.demo import demo_config

    counts = [int(w) for w in args.workers.split(",")]
    ray.init(num_cpus=max(counts), include_dashboard=False, configure_logging=False, log_to_driver=False)
    print(f"# probe scale_throughput: shapes world, classes {args.classes}, {args.max_steps} optimisation steps, "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, Ray {ray.__version__}")
    print("| backend | workers | classes | wall s | classes/min | model load per worker (s) |\n|---|---|---|---|---|---|")
    rows = ([("local", None)] if not args.no_local else []) + [("ray", w) for w in counts]
    with tempfile.TemporaryDirectory(prefix="probe-scale-") as tmp:
        for backend, workers in rows:
            out = Path(tmp) / f"{backend}-{workers}"
            config = replace(demo_config(out=out, classes=args.classes, max_steps=args.max_steps, analyze=False,
                                         report=False),
                             scale=ScaleConfig() if backend == "local" else ScaleConfig(backend="ray", workers=workers))
            start = time.perf_counter()
            result = audit(config, progress=False)
            wall = time.perf_counter() - start
            metrics = [m for _, m in RunDir(out).finished_classes()]
            loads = {(m["worker"]["host"], m["worker"]["pid"]): m["worker"]["load_seconds"]
                     for m in metrics if m.get("worker")}
            load = f"{statistics.median(loads.values()):.1f} (median of {len(loads)})" if loads else "– (loaded once in this process)"
            print(f"| {backend} | {workers or 1} | {len(result.rows)} | {wall:.1f} | {60 * len(result.rows) / wall:.2f} | "
                  f"{load} |", flush=True)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
