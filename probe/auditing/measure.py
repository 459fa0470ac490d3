"""Time an audit's own work on this machine, so its plan has a time where the throughput table has no row.

``probe audit --dry-run --measure`` loads the classifier and the generator as the audit would (device, dtype, sampler)
and times, at the audit's settings (``measure``):

1. images without gradient, as the analysis makes them: one warm-up call, then ``calls`` calls of the analysis's batch
   (``AnalysisConfig.batch_size``, in chunks of the run's ``--max-batch`` where set) at the analysis's steps and
   guidance, each sampled, decoded and classified (``time_images``);
2. optimisation steps of a throwaway token for the first selected class at the token's settings: ``steps`` steps after
   a warm-up step that is left out, never stopped early (``time_token_steps``);
3. a :class:`probe.auditing.throughput.Measured` record of the medians, which the plan uses instead of the table.

Nothing is written: the throwaway token lives in the loaded generator only. ``benchmarks/generation_batch.py`` times
with the same two functions.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import torch

from probe.auditing.throughput import Measured

MEASURE_TOKEN = "<probe-measure>"


def time_images(generator, prompts: list[str], seeds: list[int], batch: int, *, steps: int | None,
                guidance: float | None, classifier=None, max_batch: int | None = None, scheduler: str | None = None,
                warmup: bool = True) -> list[float]:
    """Step 1: seconds of each call of ``batch`` prompts (whole batches of ``prompts`` only; the first call, a warm-up,
    left out when ``warmup``), each image sampled, decoded and, with ``classifier``, classified."""
    from probe.analysis._util import classify_probs

    seconds = []
    with torch.no_grad():
        for n, start in enumerate(range(0, len(prompts) - batch + 1, batch)):
            t0 = time.perf_counter()
            images = generator.generate(prompts[start:start + batch], seeds[start:start + batch], steps=steps,
                                        guidance_scale=guidance, max_batch=max_batch,
                                        scheduler=scheduler).float().cpu()  # .cpu(): synced
            if classifier is not None:
                classify_probs(classifier, images.clamp(0, 1), batch)
            if n or not warmup:
                seconds.append(time.perf_counter() - t0)
    return seconds


def time_token_steps(generator, classifier, target: int, token_config, steps: int = 2,
                     class_name: str | None = None) -> list[float]:
    """Step 2: seconds of each of ``steps`` optimisation steps of a throwaway token for class ``target``, after one
    warm-up step; the stop rules are set so that every step runs."""
    from probe.tokens import optimize_class_token

    n = steps + 1
    config = replace(token_config, max_steps=n, accuracy_threshold=1.0, patience=n, min_steps=n - 1)
    token = optimize_class_token(generator, classifier, target, config, token=MEASURE_TOKEN,
                                 **({} if class_name is None else {"class_name": class_name}))
    ends = [h["seconds"] for h in token.history]
    return [b - a for a, b in zip(ends, ends[1:])]


def measure(config, classifier, generator, classes: list[int], labels: list[str], *, calls: int = 2,
            steps: int = 2) -> Measured:
    """Steps 1-3 for an ``AuditConfig``: the analysis's and the token's sampling resolved as the audit resolves them
    (its flags, else the generator's defaults), prompts from the selected ``classes``' names. A failure of the
    models there is one RunError line (``--dry-run --measure`` printed a traceback)."""
    from probe.errors import ProbeError, RunError

    try:
        return _measure(config, classifier, generator, classes, labels, calls=calls, steps=steps)
    except ProbeError:
        raise
    except Exception as error:  # noqa: BLE001 - the models' own failure, named in one line
        raise RunError(f"measuring this machine failed ({type(error).__name__}: {str(error).splitlines()[0][:200]}); "
                       "check --steps, --scheduler and --dtype for this generator, or give --budget as images "
                       "(e.g. 5000img)") from None


def _measure(config, classifier, generator, classes: list[int], labels: list[str], *, calls: int,
             steps: int) -> Measured:
    from probe.analysis.config import AnalysisConfig
    from probe.classifiers.labels import object_name
    from probe.tokens import class_prompts

    token = config.token
    defaults = generator.defaults
    token_steps = token.steps or defaults.steps
    token_guidance = token.guidance_scale if token.guidance_scale is not None else defaults.guidance_scale
    analysis = config.analysis if config.analyze and config.analysis is not None else AnalysisConfig()
    image_steps = analysis.steps or token_steps
    image_guidance = analysis.guidance_scale if analysis.guidance_scale is not None else token_guidance
    batch = analysis.batch_size
    names = [object_name(labels[i]) for i in classes] or ["object"]
    prompts = [class_prompts(token.templates, names[i % len(names)], None)[i % len(token.templates)]
               for i in range((calls + 1) * batch)]
    seeds = list(range(token.seed, token.seed + len(prompts)))
    # 1. images without gradient, in the chunks the run will use (--max-batch, or on CUDA the one chosen from free
    #    memory: an unchunked batch of 16 timed optimistically, and could run out of memory where the run would not)
    from probe.generators.memory import resolve_max_batch

    image_times = time_images(generator, prompts, seeds, batch, steps=image_steps, guidance=image_guidance,
                              classifier=classifier, max_batch=resolve_max_batch(generator, token).max_batch,
                              scheduler=token.scheduler)
    # 2. optimisation steps
    step_times = time_token_steps(generator, classifier, classes[0] if classes else 0,
                                  replace(token, steps=token_steps, guidance_scale=token_guidance), steps,
                                  class_name=names[0])
    # 3. the record
    return Measured(image_s=statistics.median(image_times) / batch, image_batch=batch, image_calls=len(image_times),
                    step_s=statistics.median(step_times), step_images=token.batch_size, token_steps=len(step_times),
                    device=str(generator.device))
