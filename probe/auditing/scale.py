"""Scale-out: where the classes of one audit run.

``ScaleConfig`` travels inside ``AuditConfig`` from the CLI to the loop in probe/auditing/loop.py:

- ``backend="local"``: one process takes the classes in turn (the default);
- ``backend="ray"``: long-lived Ray actors, one per GPU (or CPU slot), each loading the models once and taking
  classes from a shared queue (probe/auditing/backends/ray.py);
- ``shard="I/N"`` (either backend): this process runs only every N-th class from the I-th (0-based), for SLURM
  job arrays or Kubernetes indexed jobs writing into one run directory; ``probe report RUN_DIR`` analyses and
  renders once every shard is done.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from probe.errors import RunError, settings_from_dict

__all__ = ["ScaleConfig", "BACKENDS", "parse_shard"]

BACKENDS = ("local", "ray")  # the names probe/auditing/backends/ registers (kept here: checking them loads no backend)


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` -> (I, N) with 0 <= I < N; None for None."""
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise RunError(f"--shard {text!r} is not I/N; pass e.g. --shard 0/4 (slice 0 of 4, counted from 0)")
    i, n = int(match.group(1)), int(match.group(2))
    if n < 1 or not 0 <= i < n:
        example = f"{min(i, max(n, 1) - 1)}/{max(n, 1)}"
        raise RunError(f"--shard {text!r}: I must lie in 0..N-1 and N be at least 1; e.g. --shard {example}")
    return i, n


@dataclass(frozen=True)
class ScaleConfig:
    backend: str = "local"
    address: str | None = None  # Ray: None starts a local cluster; "auto" joins a running one; "ray://HOST:PORT"
    workers: int | None = None  # Ray: actors to start (default: one per GPU, else one per CPU slot)
    gpus_per_worker: float = 0.0  # Ray: GPUs each actor holds (1 on a GPU machine)
    cpus_per_worker: float = 1.0
    max_retries: int = 2  # Ray: a class whose worker died is retried this many times on another worker
    shard: str | None = None  # "I/N"

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise RunError(f"--backend {self.backend!r} is unknown; use one of {', '.join(BACKENDS)}")
        parse_shard(self.shard)
        if self.workers is not None and self.workers < 1:
            raise RunError(f"--workers {self.workers} must be at least 1")
        if self.gpus_per_worker < 0:
            raise RunError(f"--gpus-per-worker {self.gpus_per_worker:g} must be >= 0 (0 on CPUs, 1 per GPU worker)")
        if self.cpus_per_worker <= 0:  # ScaleConfig(cpus_per_worker=...) from Python: the CLI has no such flag
            raise RunError(f"cpus_per_worker={self.cpus_per_worker:g} must be > 0")
        if self.max_retries < 0:
            raise RunError(f"--max-retries {self.max_retries} must be >= 0")
        if self.backend == "local" and (self.address or self.workers or self.gpus_per_worker or self.max_retries != 2):
            raise RunError("--address, --workers, --gpus-per-worker and --max-retries belong to --backend ray; add "
                           "--backend ray")

    @property
    def slice(self) -> tuple[int, int] | None:
        return parse_shard(self.shard)

    def select(self, targets: list[int]) -> list[int]:
        """This process's classes: every N-th from the I-th (interleaved, so slices take similar time)."""
        if self.slice is None:
            return list(targets)
        i, n = self.slice
        return list(targets)[i::n]

    def lock_name(self) -> str | None:
        """Shards of one run hold their own lock (they write disjoint classes); None: the run's lock."""
        return None if self.slice is None else f".probe-shard-{self.slice[0]}-of-{self.slice[1]}.lock"

    def workers_label(self) -> str:
        label = "" if self.backend == "local" else f"Ray{'' if self.workers is None else f', {self.workers} workers'}"
        if self.slice is not None:
            label = (label + " · " if label else "") + f"shard {self.slice[0]}/{self.slice[1]}"
        return label

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "ScaleConfig":
        return cls(**settings_from_dict(cls, data, "scale settings", RunError))
