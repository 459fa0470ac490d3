"""The Ray backend: long-lived workers take the classes of one audit from a shared queue.

``RayBackend(config, token_config, run, labels, models).run(todo, bar)``:

1. Connect: ``ray.init`` starts a local cluster (``address=None``), or joins one (``"auto"``,
   ``"HOST:PORT"``, ``"ray://HOST:PORT"``). Without Ray installed: one line naming ``pip install 'probe-audit[ray]'``.
   ``check_ray(scale)`` runs first, in ``probe.auditing.loop.preflight``, before any model loads or file is written: the
   address's form, Ray's client extra for ``ray://``, a GPU for ``--gpus-per-worker`` on a local cluster, and
   whether the cluster answers a TCP connect within a few seconds.
2. Start the workers: one actor per GPU (``gpus_per_worker``) or CPU slot. Each loads the classifier and
   the generator once (``probe.auditing.class_run.load_models``), in its own process, and keeps them for every class.
3. Hand out classes: each idle worker gets the next class of the queue; the worker runs it exactly as the
   local loop does (``probe.auditing.class_run.run_class``) and writes the class's files into the run directory, which
   every worker must see (one machine, or shared storage on a cluster). A class whose own code fails is
   recorded as failed by the worker, as locally. With the analysis on, the same worker then measures the class's
   analysis (steps 3-5, ``probe.auditing.class_run.analyse_class``) on the models it holds and writes its record.
4. Survive lost workers: when a worker process dies mid-class, its class goes back to the queue (at most
   ``max_retries`` times, then it is recorded as failed with the reason, under the class's claim and from a clean
   folder: ``probe.auditing.class_run.record_lost_class``) and a fresh worker replaces the dead one. ``run_class``
   starts a class from a clean folder, so nothing of the dead attempt is kept or doubled.
   A worker that dies in a class's analysis leaves the class's token finished: the retry keeps it and measures
   the analysis again; past ``max_retries`` the driver measures it.
5. The driver (this process) holds the run's lock, writes summary.csv as classes finish, and once all are done
   decides over every class's analysis record (step 6, the false-discovery-rate step, once) and renders the
   report (probe/auditing/loop.py); re-running the same command resumes from the finished classes.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import time
from collections import deque
from pathlib import Path

from probe.errors import RunError

__all__ = ["RayBackend", "ClassWorker", "import_ray", "check_ray", "parse_address", "effective_address", "init_kwargs"]

INSTALL_RAY = "pip install 'probe-audit[ray]'"  # the distribution's name (PyPI's `probe` is another project)
CONNECT_TIMEOUT = 3.0  # seconds a cluster has to accept a TCP connect in the preflight
_HOST_PORT = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?):(?P<port>[0-9]{1,5})")


def import_ray():
    try:
        import ray
    except ImportError:
        raise RunError(f"--backend ray needs Ray, which is not installed; run `{INSTALL_RAY}` "
                       "(or `pip install -e '.[ray]'` in a checkout; or drop --backend ray to audit in this process)") from None
    return ray


def parse_address(address: str | None, flag: str = "--address") -> tuple[str, str, int] | None:
    """``--address`` as (kind, host, port): kind "gcs" for HOST:PORT, "client" for ray://HOST:PORT; None for a local
    cluster (None) or "auto". Anything else is a one-line RunError naming the forms."""
    if address is None or address.strip().lower() == "auto":
        return None
    text, kind = address.strip(), "gcs"
    if text.lower().startswith("ray://"):
        text, kind = text[len("ray://"):], "client"
    match = _HOST_PORT.fullmatch(text)
    port = int(match.group("port")) if match else 0
    if match is None or not 0 < port < 65536:
        raise RunError(f"{flag} {address!r} is not a Ray address; use 'auto' (a cluster started on this machine with "
                       "`ray start --head`), HOST:PORT (a head node's GCS, e.g. 10.0.0.1:6379), ray://HOST:PORT (Ray "
                       "Client, e.g. ray://head:10001), or drop --address for a local cluster")
    return kind, match.group("host").strip("[]"), port


def _client_installed() -> bool:
    """Ray Client (ray://) needs the ``ray[client]`` extra: grpcio."""
    try:
        return importlib.util.find_spec("grpc") is not None
    except (ImportError, ValueError):
        return False


def _reachable(host: str, port: int, timeout: float) -> str | None:
    """None when HOST:PORT accepts a TCP connection within ``timeout`` seconds, else the reason."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.timeout:
        return f"no answer within {timeout:g} s"
    except OSError as error:
        return error.strerror or type(error).__name__


def _gpus_visible() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # a broken CUDA install: as no GPU
        return 0


def effective_address(scale) -> tuple[str | None, str]:
    """The cluster ``ray.init`` will join, and what named it: ``RAY_ADDRESS`` wins over ``--address`` (as in Ray's
    own ``ray.init``); (None, "--address") for a local cluster started by this audit."""
    env = os.environ.get("RAY_ADDRESS") or None
    return (env, "RAY_ADDRESS") if env else (scale.address, "--address")


def init_kwargs(scale) -> dict:
    """``ray.init``'s arguments: a local cluster is sized for the workers asked for; joining a cluster (``--address``
    or ``RAY_ADDRESS``) passes no size, which Ray refuses for an existing cluster."""
    kwargs = {"include_dashboard": False, "log_to_driver": True, "configure_logging": False}
    address, _ = effective_address(scale)
    if address is not None:
        kwargs["address"] = address
    elif scale.workers is not None:
        kwargs["num_cpus"] = max(int(scale.workers * scale.cpus_per_worker), 1)
    return kwargs


def check_ray(scale, *, timeout: float = CONNECT_TIMEOUT) -> None:
    """Everything about ``--backend ray`` that can fail before a model loads, each as one RunError with the fix.

    The address's form (``parse_address``; ``RAY_ADDRESS`` wins over it, as in ``ray.init``), Ray itself, the
    client extra for ``ray://``, a GPU for ``--gpus-per-worker`` on a local cluster, and a TCP connect to the
    cluster within ``timeout`` seconds (a wrong host otherwise hangs for minutes in Ray's retries).
    """
    address, flag = effective_address(scale)
    parsed = parse_address(address, flag)
    ray = import_ray()
    if parsed is not None and parsed[0] == "client" and not _client_installed():
        raise RunError(f"{flag} {address!r} uses Ray Client, which needs Ray's client extra (grpcio), not installed; "
                       f"run `pip install 'ray[client]'` (or `{INSTALL_RAY}`), or pass the head node's HOST:PORT "
                       "from a machine of the cluster")
    if ray.is_initialized():  # already connected in this process (a notebook): Ray uses that connection
        return
    if address is None and scale.gpus_per_worker > 0:
        visible = _gpus_visible()
        if visible < scale.gpus_per_worker:
            raise RunError(f"--gpus-per-worker {scale.gpus_per_worker:g}: the local Ray cluster would have {visible} "
                           "GPU(s) (none visible to this process); use --gpus-per-worker 0 on CPUs, or --address to "
                           "join a cluster with GPUs")
    if address is None:
        return  # ray.init starts a local cluster
    if parsed is None:  # auto: the cluster `ray start --head` left on this machine
        try:
            from ray._private.services import get_ray_address_from_environment

            found = get_ray_address_from_environment("auto", None)
        except ConnectionError:
            raise RunError(f"{flag} {address!r}: no running Ray cluster on this machine; start one with "
                           "`ray start --head`, pass its HOST:PORT, or drop --address for a local cluster") from None
        except (ImportError, AttributeError, TypeError):  # Ray moved its helper: ray.init reports it
            return
        match = _HOST_PORT.fullmatch(str(found or ""))
        if match is None:
            return
        parsed = ("gcs", match.group("host").strip("[]"), int(match.group("port")))
    kind, host, port = parsed
    reason = _reachable(host, port, timeout)
    if reason is not None:
        raise RunError(f"cannot reach the Ray cluster at {flag} {address!r} ({host}:{port}: {reason}); check the "
                       f"host and port ({'the Ray Client port, 10001 by default' if kind == 'client' else 'the GCS port, 6379 by default'}"
                       "), start it with `ray start --head`, or drop --address for a local cluster")


class ClassWorker:
    """One worker: the models, loaded once; ``run(index)`` learns, evaluates and saves one class."""

    def __init__(self, audit: dict, token: dict, run_dir: str, labels: list[str]):
        from probe.auditing.config import AuditConfig
        from probe.auditing.class_run import load_models
        from probe.token_config import TokenConfig

        start = time.perf_counter()
        self.config = AuditConfig.from_dict(audit)
        self.token_config = TokenConfig.from_dict(token)
        self.classifier, self.eval_classifier, self.generator = load_models(self.config)
        if self.config.compile:
            self.generator.compile()
        self.run_dir, self.labels = run_dir, labels
        self.info = {"backend": "ray", "host": socket.gethostname(), "pid": os.getpid(),
                     "load_seconds": round(time.perf_counter() - start, 3)}

    def describe(self) -> dict:
        return dict(self.info)

    def run(self, index: int, attempt: int = 1) -> dict:
        """The class's token (unless finished: a retried class whose worker died in its analysis keeps its token),
        then its analysis's steps 3-5 on the same models; the driver decides over every class once."""
        from probe.auditing.class_run import analyse_class, run_class
        from probe.run import RunDir

        run = RunDir(self.run_dir)
        worker = {**self.info, "attempt": attempt}
        metrics = run_class(run, self.config, self.token_config, self.classifier, self.generator,
                            self.eval_classifier, index, self.labels[index], worker=worker)
        if self.config.analyze and metrics is not None and metrics.get("status") == "done":
            try:
                analyse_class(run, self.config.analysis, self.classifier, self.generator, index, self.labels[index],
                              worker=worker)
            except RunError:
                raise
            except Exception as error:  # the driver measures a class left without its record; the token is kept
                metrics = {**metrics, "analysis_error": f"{type(error).__name__}: {str(error)[:200]}"}
        return metrics


class RayBackend:
    def __init__(self, config, token_config, run, labels: list[str], models=None):
        # ``models`` (the driver's) are not used: each worker loads its own, once
        self.config, self.token_config, self.run_dir, self.labels = config, token_config, run, labels
        self.scale = config.scale
        self.workers_started = 0
        self.actors: list = []
        self.lost: list[str] = []  # one line per worker lost mid-class

    # 1. connect ---------------------------------------------------------------------------------------
    def _connect(self):
        ray = import_ray()
        if not ray.is_initialized():
            try:
                ray.init(**init_kwargs(self.scale))
            except ConnectionError as error:
                address, flag = effective_address(self.scale)
                raise RunError(f"cannot reach the Ray cluster at {flag} {address!r} ({error}); start it with `ray "
                               "start --head`, or drop --address (and unset RAY_ADDRESS) for a local cluster") from None
        return ray

    # 2. workers ---------------------------------------------------------------------------------------
    def _n_workers(self, ray, n_classes: int) -> int:
        if self.scale.workers is not None:
            return max(1, min(self.scale.workers, n_classes))
        resources = ray.cluster_resources()
        if self.scale.gpus_per_worker > 0:
            slots = int(resources.get("GPU", 0) // self.scale.gpus_per_worker)
            if slots < 1:
                raise RunError(f"--gpus-per-worker {self.scale.gpus_per_worker:g}: the Ray cluster has "
                               f"{resources.get('GPU', 0):g} GPUs; lower it, or use --gpus-per-worker 0 on CPUs")
        else:
            slots = int(resources.get("CPU", 1) // self.scale.cpus_per_worker)
        return max(1, min(slots, n_classes))

    def _start_worker(self, actor_class):
        self.workers_started += 1
        self.actors.append(worker := self._spawn(actor_class))
        return worker

    def _spawn(self, actor_class):
        audit = self.config.to_dict()
        audit["out"] = str(Path(self.config.out).resolve())  # workers need not share the driver's working directory
        return actor_class.remote(audit, self.token_config.to_dict(), str(self.run_dir.root.resolve()), self.labels)

    # 3-4. the queue ---------------------------------------------------------------------------------
    def run(self, todo: list[int], bar) -> bool:
        """Run ``todo`` on the workers; returns True when interrupted (Ctrl-C)."""
        if not todo:
            return False
        ray = self._connect()
        from probe.auditing.backends import finish
        from probe.auditing.class_run import record_lost_class

        actor_class = ray.remote(num_cpus=self.scale.cpus_per_worker, num_gpus=self.scale.gpus_per_worker,
                                 max_restarts=0, max_task_retries=0)(ClassWorker)
        idle = [self._start_worker(actor_class) for _ in range(self._n_workers(ray, len(todo)))]
        queue, running, attempts = deque(todo), {}, {}
        try:
            while queue or running:
                while idle and queue:
                    worker, index = idle.pop(), queue.popleft()
                    attempts[index] = attempts.get(index, 0) + 1
                    running[worker.run.remote(index, attempts[index])] = (index, worker)
                bar.in_flight(sorted((i, self.labels[i]) for i, _ in running.values()))
                (done,), _ = ray.wait(list(running), num_returns=1)
                index, worker = running.pop(done)
                try:
                    metrics = ray.get(done)
                except ray.exceptions.RayActorError as error:  # the worker process died (killed, OOM, node lost)
                    reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
                    self.lost.append(f"class {index}: {reason}")
                    self.actors.remove(worker)
                    idle.append(self._start_worker(actor_class))
                    if attempts[index] <= self.scale.max_retries:
                        bar.note(f"class {index} {self.labels[index]!r}: its worker died ({reason}); retrying on a "
                                 f"fresh worker (attempt {attempts[index] + 1} of {self.scale.max_retries + 1})")
                        queue.appendleft(index)  # next free worker takes it again, from a clean folder
                        bar.in_flight(sorted((i, self.labels[i]) for i, _ in running.values()))
                        continue
                    directory = self.run_dir.class_dir(index, self.labels[index])
                    finished = self.run_dir.read_class(directory)
                    if finished is not None and finished.done:  # it died in the analysis: the token stays
                        bar.note(f"class {index}: its worker died in its analysis ({reason}); the driver measures it")
                        self.run_dir.write_summary()
                        finish(bar, index, self.labels[index], finished.to_dict())
                        continue
                    error = RunError(f"its Ray worker died in each of its {attempts[index]} attempt(s) (last: "
                                     f"{reason}); the class was not finished (raise --max-retries, or look for what "
                                     "kills the worker: memory, the node)")
                    metrics = record_lost_class(self.run_dir, index, self.labels[index], error)
                except ray.exceptions.RayTaskError as error:  # RunError in a worker: the run directory is unusable
                    raise error.as_instanceof_cause() from None
                else:
                    idle.append(worker)
                self.run_dir.write_summary()
                finish(bar, index, self.labels[index], metrics)
                bar.in_flight(sorted((i, self.labels[i]) for i, _ in running.values()))
        except KeyboardInterrupt:
            return True
        finally:  # the workers' models are freed before the driver analyses; an unfinished class is redone on resume
            for actor in self.actors:
                ray.kill(actor)
            self.actors.clear()
        return False
